"""``adopt`` and ``import`` against the emulator: what they change, what they refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from renewal.errors import AdoptionRefused
from renewal.flow.due import ISSUER_TAG, MIRRORED_TRIGGER_TAG
from renewal.operations import cli
from renewal.operations.adoption import adopt, issuer_san_kinds
from renewal.operations.compliance import CHAIN_LENGTH_TAG
from tests.flow.conftest import Flow

from .conftest import local_ca, make_certificate, make_key, pem_bundle, pfx_bundle, rebuilt

runner = CliRunner()


def seed_unmanaged(
    flow: Flow,
    name: str,
    *,
    lifetime_actions: list[dict[str, Any]] | None = None,
    sans: dict[str, list[str]] | None = None,
) -> None:
    now = flow.now()
    flow.kv.admin.seed(
        "kv-alpha",
        certificates=[{"name": name}],
        not_before=now - 10 * 86400,
        expires=now + 80 * 86400,
        tags={"owner": "team-a"},
        policy={
            "issuer": {"name": "Self"},
            "x509_props": {
                "subject": f"CN={name}.example.test",
                "sans": sans or {"dns_names": [f"{name}.example.test"]},
            },
            "lifetime_actions": lifetime_actions if lifetime_actions is not None else [],
        },
    )


def test_dry_run_changes_nothing(flow: Flow, use_service: Any) -> None:
    seed_unmanaged(flow, "legacy")
    flow.kv.admin.reset_counters()

    result = runner.invoke(cli.app, ["adopt", "kv-alpha", "legacy", "--issuer", "corp-local", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "would change" in result.output
    assert f"tag:{ISSUER_TAG}: (none) -> corp-local" in result.output
    assert "policy.issuer_name: Self -> Unknown" in result.output
    counters = flow.kv.admin.counters()
    assert counters["update_policy"] == 0 and counters["update_certificate"] == 0
    current = flow.current("legacy")
    assert ISSUER_TAG not in (current.properties.tags or {})
    assert current.policy.issuer_name == "Self"


def test_adopt_sets_tag_issuer_and_trigger(flow: Flow, use_service: Any) -> None:
    seed_unmanaged(flow, "legacy")
    version = flow.current("legacy").properties.version

    result = runner.invoke(cli.app, ["adopt", "kv-alpha", "legacy", "--issuer", "partner-ca"])

    assert result.exit_code == 0, result.output
    current = flow.current("legacy")
    assert current.properties.version == version  # no new version: only tags and policy change
    tags = current.properties.tags
    assert tags[ISSUER_TAG] == "partner-ca" and tags["owner"] == "team-a"
    assert tags[MIRRORED_TRIGGER_TAG] == "days_before_expiry=30"
    policy = flow.client().get_certificate_policy("legacy")
    assert policy.issuer_name == "Unknown"
    [action] = policy.lifetime_actions
    assert action.days_before_expiry == 30 and str(getattr(action.action, "value", action.action)) == "EmailContacts"
    assert policy.subject == "CN=legacy.example.test"
    # adopting again changes nothing
    again = runner.invoke(cli.app, ["adopt", "kv-alpha", "legacy", "--issuer", "partner-ca"])
    assert again.exit_code == 0 and "nothing to change" in again.output


def test_adopt_keeps_an_existing_trigger_value(flow: Flow) -> None:
    seed_unmanaged(
        flow,
        "auto",
        lifetime_actions=[{"trigger": {"lifetime_percentage": 75}, "action": {"action_type": "AutoRenew"}}],
    )
    result = adopt(flow.service, "kv-alpha", "auto", issuer="corp-local")
    assert result.applied
    [action] = flow.client().get_certificate_policy("auto").lifetime_actions
    assert action.lifetime_percentage == 75
    assert str(getattr(action.action, "value", action.action)) == "EmailContacts"
    assert flow.current("auto").properties.tags[MIRRORED_TRIGGER_TAG] == "lifetime_percentage=75"


def test_adopt_refusals(flow: Flow, use_service: Any) -> None:
    seed_unmanaged(flow, "legacy")
    unknown = runner.invoke(cli.app, ["adopt", "kv-alpha", "legacy", "--issuer", "nobody"])
    assert unknown.exit_code == 1 and "issuer" in unknown.output
    missing = runner.invoke(cli.app, ["adopt", "kv-alpha", "absent", "--issuer", "corp-local"])
    assert missing.exit_code == 3
    assert flow.kv.admin.counters()["update_policy"] == 0


def test_acme_cannot_renew_ip_sans(flow: Flow) -> None:
    assert issuer_san_kinds({"type": "acme"}) == {"dns"}
    seed_unmanaged(flow, "device", sans={"dns_names": ["device.example.test"], "ipAddresses": ["10.0.0.7"]})
    acme = {
        "name": "public-acme",
        "type": "acme",
        "directory_url": "https://127.0.0.1:1/dir",
        "account_key": {"setting": "ACME_ACCOUNT_KEY"},
    }
    service = rebuilt(flow, issuers=[*flow.service.config.issuers, acme])
    with pytest.raises(AdoptionRefused, match="cannot issue ip SANs"):
        adopt(service, "kv-alpha", "device", issuer="public-acme")
    assert adopt(service, "kv-alpha", "device", issuer="corp-local", dry_run=True).changes


# -- import ----------------------------------------------------------------------------------------
def issued_leaf(flow: Flow, name: str, key_kind: str = "p256") -> tuple[Any, Any, Any]:
    issuing, issuing_key, _root = local_ca(flow)
    key = make_key(key_kind)
    leaf = make_certificate(key, common_name=f"{name}.example.test", issuer_cert=issuing, issuer_key=issuing_key)
    return key, leaf, issuing


def test_import_pem_with_chain(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    key, leaf, issuing = issued_leaf(flow, "imported")
    path = tmp_path / "imported.pem"
    path.write_bytes(pem_bundle(key, [leaf, issuing]))

    result = runner.invoke(cli.app, ["import", "kv-alpha", "imported", str(path), "--issuer", "corp-local"])

    assert result.exit_code == 0, result.output
    current = flow.current("imported")
    assert bytes(current.cer) == leaf.public_bytes(
        __import__("cryptography").hazmat.primitives.serialization.Encoding.DER
    )
    tags = current.properties.tags
    assert tags[CHAIN_LENGTH_TAG] == "2" and tags[ISSUER_TAG] == "corp-local"
    assert current.policy.issuer_name == "Unknown" and current.policy.lifetime_actions
    report = json.loads(runner.invoke(cli.app, ["report", "--format", "json"]).stdout)
    rules = {f["rule"] for f in report["findings"] if f["name"] == "imported"}
    assert not rules & {"chain-incomplete", "chain-unverified"}


def test_import_pfx_with_password_setting(flow: Flow, use_service: Any, tmp_path: Any, monkeypatch: Any) -> None:
    key, leaf, issuing = issued_leaf(flow, "boxed", "rsa2048")
    path = tmp_path / "boxed.pfx"
    path.write_bytes(pfx_bundle(key, [leaf, issuing], "pfx-pass-4821"))
    monkeypatch.setenv("BOXED_PFX_PASSWORD", "pfx-pass-4821")

    result = runner.invoke(
        cli.app, ["import", "kv-alpha", "boxed", str(path), "--password-setting", "BOXED_PFX_PASSWORD"]
    )

    assert result.exit_code == 0, result.output
    assert "pfx-pass-4821" not in result.output
    assert flow.current("boxed").properties.tags[CHAIN_LENGTH_TAG] == "2"


def test_import_refuses_incomplete_chain(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    key, leaf, _issuing = issued_leaf(flow, "bare")
    path = tmp_path / "bare.pem"
    path.write_bytes(pem_bundle(key, [leaf]))
    flow.kv.admin.reset_counters()

    refused = runner.invoke(cli.app, ["import", "kv-alpha", "bare", str(path)])

    assert refused.exit_code == 1
    assert "chain-incomplete" in refused.output
    assert flow.kv.admin.counters()["import"] == 0

    allowed = runner.invoke(cli.app, ["import", "kv-alpha", "bare", str(path), "--allow-incomplete-chain"])
    assert allowed.exit_code == 0, allowed.output
    assert flow.current("bare").properties.tags[CHAIN_LENGTH_TAG] == "1"
    report = json.loads(runner.invoke(cli.app, ["report", "--format", "json"]).stdout)
    assert "chain-incomplete" in {f["rule"] for f in report["findings"] if f["name"] == "bare"}


def test_import_refuses_rsa_1024_and_long_validity(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    weak = make_key("rsa1024")
    path = tmp_path / "weak.pem"
    path.write_bytes(pem_bundle(weak, [make_certificate(weak, common_name="weak.example.test", days=5 * 365)]))
    flow.kv.admin.reset_counters()

    refused = runner.invoke(cli.app, ["import", "kv-alpha", "weak", str(path)])

    assert refused.exit_code == 1
    assert "key-too-small" in refused.output and "validity-too-long" in refused.output
    assert flow.kv.admin.counters()["import"] == 0


def test_import_refuses_garbage(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    path = tmp_path / "junk.pfx"
    path.write_bytes(b"not a certificate")
    result = runner.invoke(cli.app, ["import", "kv-alpha", "junk", str(path)])
    assert result.exit_code == 1 and "file:" in result.output
