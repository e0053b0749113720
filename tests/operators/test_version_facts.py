"""Kept versions (the versionfacts table): a repeated report reads only what changed, against the emulator
and Azurite through the real SDKs."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from renewal.azure.version_facts import TableVersionFacts, policy_from_json, policy_to_json
from renewal.model import LifetimeTrigger, PolicySpec, SubjectAlternativeNames
from renewal.operations import cli
from renewal.operations.certificate_facts import leaf_facts, with_leaf_facts
from renewal.operations.report import build_report
from tests.flow.conftest import Flow

runner = CliRunner()


def reads(flow: Flow) -> int:
    return flow.kv.admin.counters().get("get_certificate", 0)


def test_a_second_report_reads_no_certificate_and_finds_the_same(flow: Flow) -> None:
    for i in range(30):
        flow.seed("kv-alpha", f"app-{i:02d}", days_left=60)
    flow.seed("kv-beta", "api", days_left=5)
    flow.kv.admin.reset_counters()
    first = build_report(flow.service)
    assert reads(flow) == 31 and first.inventory.certificate_reads == 31 and first.inventory.kept_reused == 0

    flow.kv.admin.reset_counters()
    second = build_report(flow.service)
    assert reads(flow) == 0  # the list pages alone
    assert second.inventory.kept_reused == 31 and second.inventory.certificate_reads == 0
    assert json.loads(second.to_json())["certificates"] == json.loads(first.to_json())["certificates"]
    assert [f.to_dict() for f in second.findings] == [f.to_dict() for f in first.findings]


def test_a_new_version_tags_and_an_old_policy_are_seen_and_refresh_reads_everything(
    flow: Flow, use_service: Any
) -> None:
    flow.seed("kv-alpha", "web", days_left=10)
    flow.seed("kv-alpha", "api", days_left=60)
    build_report(flow.service)

    flow.client().update_certificate_properties("api", tags={"owner": "team-a"})  # no new version
    flow.service.run_job(flow.service.force_renewal("kv-alpha", "web"))
    flow.kv.admin.reset_counters()
    report = build_report(flow.service)
    assert reads(flow) == 1  # only web: its listed thumbprint is a new version's
    entries = report.inventory.by_key()
    assert entries["kv-alpha/web"].version == flow.current("web").properties.version
    assert entries["kv-alpha/api"].tags == {"owner": "team-a"}  # tags come from the fresh listing

    # A policy can be edited in place: a kept one older than a day is read again.
    flow.kv.admin.advance_clock(days=1, seconds=60)
    flow.kv.admin.reset_counters()
    build_report(flow.service)
    assert reads(flow) == 2
    flow.kv.admin.reset_counters()
    result = runner.invoke(cli.app, ["report", "--format", "json", "--refresh"], catch_exceptions=False)
    assert json.loads(result.stdout)["summary"]["certificate_reads"] == 2 and reads(flow) == 2


def test_a_kept_row_round_trips_every_field(flow: Flow) -> None:
    flow.seed("kv-alpha", "web", days_left=60, sans=["web.example.test", "www.example.test"])
    current = flow.service.stores["kv-alpha"].get_current("web")
    facts = TableVersionFacts(flow.storage)
    facts.keep("kv-alpha", [current], read_at=flow.service.clock())
    kept = facts.load("kv-alpha")["web"]
    assert kept.current == current and current.leaf is None
    # a version kept with its certificate's facts gives them back, so a view judges it without parsing it
    with_facts = with_leaf_facts(current)
    facts.keep("kv-alpha", [with_facts], read_at=flow.service.clock())
    assert facts.load("kv-alpha")["web"].current.leaf == with_facts.leaf == leaf_facts(current.cer)
    assert (
        kept.current == current
        and kept.thumbprint == flow.service.stores["kv-alpha"].list_certificates().__next__().thumbprint
    )
    policy = PolicySpec(
        subject="CN=x",
        sans=SubjectAlternativeNames(dns_names=("a", "b"), ip_addresses=("10.0.0.1",)),
        lifetime_triggers=(LifetimeTrigger(days_before_expiry=30), LifetimeTrigger(lifetime_percentage=80)),
        ekus=("1.3.6.1.5.5.7.3.1",),
        key_usage=("digitalSignature",),
        exportable=False,
    )
    assert policy_from_json(policy_to_json(policy)) == policy


def test_an_unreadable_facts_table_falls_back_to_key_vault(flow: Flow, monkeypatch: Any) -> None:
    flow.seed("kv-alpha", "web", days_left=60)
    build_report(flow.service)

    def broken(self: Any, vault: str) -> Any:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(TableVersionFacts, "load", broken)
    flow.kv.admin.reset_counters()
    report = build_report(flow.service)
    assert reads(flow) == 1 and len(report.inventory.entries) == 1 and not report.inventory.errors


def test_rows_of_deleted_certificates_are_forgotten_by_the_next_complete_view(flow: Flow) -> None:
    flow.seed("kv-alpha", "web", days_left=60)
    flow.seed("kv-alpha", "old", days_left=60)
    build_report(flow.service)
    facts = TableVersionFacts(flow.storage)
    assert set(facts.load("kv-alpha")) == {"web", "old"}
    flow.client().begin_delete_certificate("old").wait()
    report = build_report(flow.service)
    assert [e.name for e in report.inventory.entries] == ["web"]
    assert set(facts.load("kv-alpha")) == {"web"}
