"""Starting the emulator: in-process with --state persistence, and as a subprocess via the CLI."""

from __future__ import annotations

import time
from pathlib import Path

from azure.keyvault.certificates import CertificatePolicy

from emulator.testing import running_emulator


def test_state_file_keeps_vaults_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with running_emulator(["kv-one"], state=state) as kv:
        client = kv.certificate_client("kv-one")
        cert = client.begin_create_certificate("keep", CertificatePolicy.get_default(), tags={"k": "v"}).result()
        client.begin_create_certificate("half", CertificatePolicy(issuer_name="Unknown", subject="CN=h")).result()
        kv.admin.seed("kv-one", count=3, prefix="s")
        kv.admin.advance_clock(days=2)
        csr = client.get_certificate_operation("half").csr
    assert state.exists()
    with running_emulator(["kv-one", "kv-two"], state=state) as kv:
        client = kv.certificate_client("kv-one")
        again = client.get_certificate("keep")
        assert again.cer == cert.cer and again.properties.tags == {"k": "v"}
        assert client.get_certificate_operation("half").csr == csr
        assert len(list(client.list_properties_of_certificates())) == 4
        assert kv.admin.now() >= time.time() + 2 * 86400 - 60  # the clock offset survives too
        assert "kv-two" in kv.vault_urls


def test_subprocess_mode_runs_the_cli(tmp_path: Path) -> None:
    with running_emulator(["kv-alpha", "kv-beta"], subprocess_mode=True) as kv:
        assert kv.vault_urls["kv-alpha"] != kv.vault_urls["kv-beta"]
        assert Path(kv.ca_bundle).exists()
        client = kv.certificate_client("kv-beta")
        assert client.begin_create_certificate("sub", CertificatePolicy.get_default()).result().name == "sub"
        assert kv.admin.counters("kv-beta")["create"] == 1
