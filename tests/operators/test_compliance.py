"""Every compliance rule, each fed a certificate that breaks it: real certificates built here and
imported through the SDK where the rule reads certificate material, seeded where attributes suffice."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner

from renewal.flow.due import ISSUER_TAG
from renewal.operations import cli
from renewal.operations.compliance import CHAIN_LENGTH_TAG, RULES, Finding, is_self_issued
from renewal.operations.report import build_report
from tests.flow.conftest import Flow

from .conftest import import_via_sdk, local_ca, make_certificate, make_key, sha1_signed, strict


def findings_for(service: Any, name: str, vault: str = "kv-alpha") -> list[Finding]:
    report = build_report(service)
    return report.by_certificate.get(f"{vault}/{name}", [])


def rules_of(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def test_rsa_key_below_minimum(flow: Flow) -> None:
    # Key Vault itself refuses RSA keys under 2048 bits (the emulator too), so a vault can only hold
    # a key "too small" for a stricter threshold: RSA 2048 against min_rsa_bits 3072.
    weak = make_key("rsa1024")
    with pytest.raises(HttpResponseError, match="key_size"):
        import_via_sdk(flow, "rsa-1024", weak, [make_certificate(weak, common_name="weak.example.test")])
    key = make_key("rsa2048")
    import_via_sdk(flow, "rsa-2048", key, [make_certificate(key, common_name="rsa.example.test")])
    assert "key-too-small" not in rules_of(findings_for(flow.service, "rsa-2048"))
    found = findings_for(strict(flow, min_rsa_bits=3072), "rsa-2048")
    finding = next(f for f in found if f.rule == "key-too-small")
    assert finding.severity == "error" and "2048" in finding.message and finding.version


def test_ec_curve_below_minimum(flow: Flow) -> None:
    key = make_key("p256")
    import_via_sdk(flow, "ec-256", key, [make_certificate(key, common_name="ec.example.test")])
    assert "key-too-small" not in rules_of(findings_for(flow.service, "ec-256"))
    assert "key-too-small" in rules_of(findings_for(strict(flow, min_ec_curve="P-384"), "ec-256"))


def test_sha1_signature(flow: Flow) -> None:
    key = make_key("rsa2048")
    cert = sha1_signed(key, "sha1.example.test")
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    assert is_self_issued(cert)  # the SHA-1 signature is real
    import_via_sdk(flow, "sha1", key, [cert])
    found = findings_for(flow.service, "sha1")
    assert "weak-signature" in rules_of(found)
    assert "key-too-small" not in rules_of(found)


def test_five_year_validity_imported(flow: Flow) -> None:
    key = make_key("p256")
    import_via_sdk(flow, "long", key, [make_certificate(key, common_name="long.example.test", days=5 * 365)])
    found = findings_for(flow.service, "long")
    assert "validity-too-long" in rules_of(found)
    assert "validity-too-long" not in rules_of(findings_for(strict(flow, max_validity_days=2000), "long"))


def test_five_year_validity_seeded(flow: Flow) -> None:
    flow.seed("kv-beta", "seeded-long", days_left=4 * 365, lifetime_days=5 * 365)
    assert "validity-too-long" in rules_of(findings_for(flow.service, "seeded-long", "kv-beta"))


def test_expired_current_version(flow: Flow) -> None:
    flow.seed("kv-alpha", "expired", days_left=-2)
    found = findings_for(flow.service, "expired")
    assert "expired-current" in rules_of(found)
    assert next(f for f in found if f.rule == "expired-current").severity == "error"


def test_expired_certificate_imported(flow: Flow) -> None:
    key = make_key("p256")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    import_via_sdk(flow, "old", key, [make_certificate(key, common_name="old.example.test", start=start, days=30)])
    assert "expired-current" in rules_of(findings_for(flow.service, "old"))


def test_no_route_never_renews(flow: Flow) -> None:
    flow.seed("kv-alpha", "orphan", days_left=40, tags={ISSUER_TAG: "decommissioned-ca"})
    found = findings_for(flow.service, "orphan")
    assert "no-route" in rules_of(found)
    assert "decommissioned-ca" in next(f for f in found if f.rule == "no-route").message


def test_policy_without_lifetime_action(flow: Flow) -> None:
    now = flow.now()
    flow.kv.admin.seed(
        "kv-alpha",
        certificates=[{"name": "no-trigger"}],
        not_before=now - 10 * 86400,
        expires=now + 80 * 86400,
        policy={"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=t.example.test"}, "lifetime_actions": []},
    )
    found = findings_for(flow.service, "no-trigger")
    assert "no-lifetime-trigger" in rules_of(found)
    assert next(f for f in found if f.rule == "no-lifetime-trigger").severity == "warning"


def test_disabled_current_version(flow: Flow) -> None:
    now = flow.now()
    flow.kv.admin.seed(
        "kv-alpha",
        certificates=[{"name": "off", "enabled": False}],
        not_before=now - 10 * 86400,
        expires=now + 80 * 86400,
    )
    assert "current-disabled" in rules_of(findings_for(flow.service, "off"))


def test_exportable_key_when_forbidden(flow: Flow) -> None:
    flow.seed("kv-alpha", "portable", days_left=40)
    flow.client().update_certificate_policy(
        "portable", flow.client().get_certificate_policy("portable").__class__(exportable=True, subject="CN=portable")
    )
    assert "exportable-key" not in rules_of(findings_for(flow.service, "portable"))
    assert "exportable-key" in rules_of(findings_for(strict(flow, forbid_exportable=True), "portable"))


def test_chain_rules(flow: Flow) -> None:
    issuing, issuing_key, _root = local_ca(flow)
    leaf_key = make_key("p256")
    leaf = make_certificate(leaf_key, common_name="leaf.example.test", issuer_cert=issuing, issuer_key=issuing_key)
    import_via_sdk(flow, "leaf-only", leaf_key, [leaf])  # imported outside the CLI: nothing recorded
    import_via_sdk(flow, "leaf-recorded-incomplete", leaf_key, [leaf], tags={CHAIN_LENGTH_TAG: "1"})
    import_via_sdk(flow, "leaf-with-chain", leaf_key, [leaf, issuing], tags={CHAIN_LENGTH_TAG: "2"})
    self_key = make_key("p256")
    import_via_sdk(flow, "self-signed", self_key, [make_certificate(self_key, common_name="self.example.test")])

    report = build_report(flow.service)
    rules = {key: rules_of(found) for key, found in report.by_certificate.items()}

    assert "chain-unverified" in rules["kv-alpha/leaf-only"]
    assert "chain-incomplete" in rules["kv-alpha/leaf-recorded-incomplete"]
    assert not {"chain-unverified", "chain-incomplete"} & rules.get("kv-alpha/leaf-with-chain", set())
    assert not {"chain-unverified", "chain-incomplete"} & rules.get("kv-alpha/self-signed", set())


def test_chain_verified_at_merge_counts_as_complete(flow: Flow) -> None:
    flow.seed("kv-alpha", "renewed", days_left=5)  # seeded: issued by the emulator's seed CA
    assert "chain-unverified" in rules_of(findings_for(flow.service, "renewed"))
    flow.service.run_job(flow.service.force_renewal("kv-alpha", "renewed"))
    assert not {"chain-unverified", "chain-incomplete"} & rules_of(findings_for(flow.service, "renewed"))


def test_unreadable_certificate(flow: Flow) -> None:
    flow.seed("kv-alpha", "flaky", days_left=40)
    flow.kv.admin.set_knobs(fail_next={"get_certificate": 10}, fault_status=400)
    assert "unreadable" in rules_of(findings_for(flow.service, "flaky"))


def test_every_rule_has_a_test() -> None:
    source = open(__file__).read()
    assert [rule for rule in RULES if f'"{rule}"' not in source] == []


def test_report_exit_codes(flow: Flow, use_service: Any) -> None:
    key = make_key("p256")
    import_via_sdk(flow, "fine", key, [make_certificate(key, common_name="fine.example.test")])
    runner = CliRunner()
    ok = runner.invoke(cli.app, ["report", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    flow.seed("kv-beta", "lapsed", days_left=-1)
    failed = runner.invoke(cli.app, ["report", "--format", "json"])
    assert failed.exit_code == 1
    assert "expired-current" in {f["rule"] for f in json.loads(failed.stdout)["findings"]}
    table = runner.invoke(cli.app, ["report"])
    assert table.exit_code == 1 and "1 error(s)" in table.output


def _unused(_: x509.Certificate) -> None:  # keeps the x509 import for type hints in helpers
    return None
