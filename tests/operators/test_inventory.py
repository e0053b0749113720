"""The inventory against the emulator and Azurite: routes, renew-at, last renewal, read counts."""

from __future__ import annotations

import datetime as dt

from renewal.flow.due import ISSUER_TAG
from renewal.operations.inventory import InventoryBuilder, build_inventory
from tests.flow.conftest import Flow

from .conftest import rebuilt


def test_routes_renew_at_and_reasons(flow: Flow) -> None:
    flow.seed("kv-alpha", "web-1", days_left=60, trigger={"days_before_expiry": 30})
    flow.seed("kv-alpha", "partner-api", days_left=10)
    flow.seed("kv-beta", "tagged", days_left=80, tags={ISSUER_TAG: "partner-ca"})
    flow.seed("kv-beta", "lost", days_left=80, tags={ISSUER_TAG: "retired-ca"})

    inventory = build_inventory(flow.service)

    entries = inventory.by_key()
    assert sorted(entries) == ["kv-alpha/partner-api", "kv-alpha/web-1", "kv-beta/lost", "kv-beta/tagged"]
    web = entries["kv-alpha/web-1"]
    assert web.issuer == "corp-local" and web.route_problem is None
    assert web.decision.due is False and web.decision.trigger == "policy"
    assert web.expires_on is not None and web.decision.renew_at == web.expires_on - dt.timedelta(days=30)
    assert "days_before_expiry=30" in web.decision.reason
    assert entries["kv-alpha/partner-api"].issuer == "partner-ca"
    assert entries["kv-alpha/partner-api"].decision.due is True
    assert entries["kv-beta/tagged"].issuer == "partner-ca"
    lost = entries["kv-beta/lost"]
    assert lost.issuer is None and lost.route_problem is not None and "retired-ca" in lost.route_problem
    assert web.last_renewal is None and not web.merged_by_service
    assert web.current is not None and web.current.policy is not None and web.current.cer
    assert inventory.errors == []


def test_one_read_per_certificate(flow: Flow) -> None:
    flow.kv.admin.seed("kv-alpha", count=60, prefix="bulk")
    flow.kv.admin.seed("kv-beta", count=40, prefix="bulk")
    flow.kv.admin.reset_counters()

    inventory = InventoryBuilder(
        config=flow.service.config, stores=flow.service.stores, ledger=flow.service.ledger, max_workers=8
    ).build()

    assert len(inventory.entries) == 100 and inventory.certificate_reads == 100
    counters = flow.kv.admin.counters()
    assert counters["get_certificate"] == 100
    assert counters["get_policy"] == 0 and counters["list_versions"] == 0 and counters["get_secret"] == 0
    assert counters["list"] == 3 + 2  # 25 per page: 60 -> 3 pages, 40 -> 2 pages


def test_last_renewal_after_a_real_renewal(flow: Flow) -> None:
    flow.seed("kv-alpha", "renewed", days_left=50)
    before = flow.current("renewed").properties.version
    job = flow.service.force_renewal("kv-alpha", "renewed")
    outcome = flow.service.run_job(job)
    assert outcome.status == "renewed"

    entry = build_inventory(flow.service).by_key()["kv-alpha/renewed"]

    assert entry.version == outcome.new_version != before
    assert entry.last_renewal is not None
    assert entry.last_renewal.state == "notified" and entry.last_renewal.succeeded
    assert entry.last_renewal.old_version == before and entry.last_renewal.new_version == outcome.new_version
    assert entry.last_renewal.issuer == "corp-local"
    assert entry.merged_by_service


def test_unreadable_certificate_is_reported_not_fatal(flow: Flow) -> None:
    flow.seed("kv-alpha", "flaky", days_left=50)
    flow.kv.admin.set_knobs(fail_next={"get_certificate": 1}, fault_status=500)
    service = rebuilt(flow)  # no azure-core retries of the 500 would hide it: retries are off below
    service._keyvault_options["retry_total"] = 0

    entry = build_inventory(service).by_key()["kv-alpha/flaky"]

    assert entry.current is None and entry.read_error is not None
    assert entry.expires_on is not None  # still known from the listing


def test_store_reads_match_what_the_sdk_parses(flow: Flow) -> None:
    """The store reads the wire JSON itself (for speed); it must agree with the SDK's own models."""
    flow.seed(
        "kv-alpha",
        "same",
        days_left=40,
        sans=["same.example.test", "alt.example.test"],
        trigger={"lifetime_percentage": 70},
    )
    store = flow.service.stores["kv-alpha"]
    sdk = flow.client().get_certificate("same")

    current = store.get_current("same")

    assert current is not None and current.policy is not None
    assert (current.version, current.id, current.cer) == (sdk.properties.version, sdk.id, bytes(sdk.cer))
    assert (current.not_before, current.expires_on, current.created_on, current.enabled, current.tags) == (
        sdk.properties.not_before,
        sdk.properties.expires_on,
        sdk.properties.created_on,
        sdk.properties.enabled,
        sdk.properties.tags or {},
    )
    policy = current.policy
    assert policy.subject == sdk.policy.subject
    assert list(policy.sans.dns_names) == list(sdk.policy.san_dns_names)
    assert (policy.key_type, policy.key_curve, policy.exportable) == (
        sdk.policy.key_type.value,
        sdk.policy.key_curve_name.value,
        sdk.policy.exportable,
    )
    assert [t.lifetime_percentage for t in policy.lifetime_triggers] == [
        a.lifetime_percentage for a in sdk.policy.lifetime_actions
    ]
    assert store.get_policy("same") == policy
    sdk_versions = [p.version for p in flow.client().list_properties_of_certificate_versions("same")]
    assert [v.version for v in store.list_versions("same")] == sdk_versions
    assert store.get_current("missing") is None
