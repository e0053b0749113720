"""The composition root without a storage account (a CLI pointed at Key Vault only)."""

from __future__ import annotations

from renewal.azure.keyvault import CreatePacer
from renewal.config import parse_config
from renewal.service import RenewalService
from tests.flow.conftest import make_config


class _Vaults:
    vault_urls = {"kv-alpha": "https://kv-alpha.vault.azure.net"}


def test_without_storage_the_stores_pace_creates_in_process_and_optional_tables_are_off(tmp_path):
    from ca_clients.local import create_ca_files

    config = parse_config(make_config(_Vaults(), create_ca_files(tmp_path / "ca"), None))
    service = RenewalService(
        config, environ={"RENEWAL_KEYVAULT_CREDENTIAL": "emulator", "RENEWAL_KEYVAULT_CA_BUNDLE": str(tmp_path)}
    )
    store = service.stores["kv-alpha"]
    assert isinstance(store._create_pacer, CreatePacer)  # not the Table-storage budget
    assert service.version_facts is None and service.renewal_windows is None and service.backups is None


def test_the_sweep_table_prints_a_cas_text_as_text_not_as_console_markup():
    import datetime as dt

    from typer.testing import CliRunner

    from renewal.flow.ari import apply_window
    from renewal.flow.due import DueDecision
    from renewal.flow.sweep import SweepEntry, SweepReport
    from renewal.model import RenewalWindow
    from renewal.operations import cli

    now = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    hostile = "https://ca.example/[/bold][link=javascript:x]incident"
    window = RenewalWindow(
        vault="kv-alpha", name="web", issuer="acme", thumbprint="ab" * 20, cert_id="a.b",
        start=now - dt.timedelta(hours=2), end=now - dt.timedelta(hours=1), explanation_url=hostile,
        checked_at=now, recheck_at=now,
    )  # fmt: skip
    decision = apply_window(DueDecision(False, "later", now + dt.timedelta(days=9), "policy"), window, now)
    assert decision.due and hostile in decision.reason

    class Service:
        def sweep(self, **_: object) -> SweepReport:
            report = SweepReport(started_at=now)
            report.due.append(SweepEntry("kv-alpha", "web", "v1", now, decision, True))
            return report

    old = cli.service_factory
    cli.service_factory = Service
    try:
        result = CliRunner().invoke(cli.app, ["sweep", "--dry-run"], catch_exceptions=False, env={"COLUMNS": "400"})
    finally:
        cli.service_factory = old
    assert result.exit_code == 0 and "[/bold][link=javascript:x]incident" in result.output
