"""Throttling, injected faults, latency, counters and bulk seeding."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificatePolicy

from emulator.testing import EmulatorHandle


def test_creates_are_throttled_per_vault_with_the_service_answer(kv: EmulatorHandle) -> None:
    kv.admin.set_knobs(create_limit=3)
    client = kv.certificate_client("kv-alpha")
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=t")
    for i in range(3):
        client.begin_create_certificate(f"t{i}", policy)
    with pytest.raises(HttpResponseError) as exc:
        client.begin_create_certificate("t3", policy)  # POST without Retry-After: azure-core does not retry
    assert exc.value.status_code == 429 and exc.value.error.code == "Throttled"
    assert "VaultRequestTypeLimitReached" in exc.value.error.message
    assert "Retry-After" not in exc.value.response.headers
    # The limit is per vault.
    kv.certificate_client("kv-beta").begin_create_certificate("t3", policy)


def test_other_requests_are_throttled_and_the_window_passes(kv: EmulatorHandle) -> None:
    kv.admin.seed("kv-alpha", count=1, prefix="w")
    kv.admin.set_knobs(other_limit=5, window_seconds=0.5)
    client = kv.certificate_client("kv-alpha", retry_total=0)
    for _ in range(5):
        client.get_certificate("w-0")
    with pytest.raises(HttpResponseError) as exc:
        client.get_certificate("w-0")
    assert exc.value.status_code == 429
    time.sleep(0.6)
    client.get_certificate("w-0")
    kv.admin.set_knobs(throttling=False)
    for _ in range(10):
        client.get_certificate("w-0")


def test_injected_faults_and_counters(kv: EmulatorHandle) -> None:
    kv.admin.seed("kv-alpha", count=1, prefix="f")
    client = kv.certificate_client("kv-alpha", retry_total=0)
    kv.admin.set_knobs(fail_next={"get_certificate": 1}, fault_status=500)
    with pytest.raises(HttpResponseError) as exc:
        client.get_certificate("f-0")
    assert exc.value.status_code == 500
    client.get_certificate("f-0")
    kv.admin.set_knobs(fault_operations={"list": 1.0}, fault_status=503)
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_properties_of_certificates())
    assert exc.value.status_code == 503
    client.get_certificate_policy("f-0")
    counts = kv.admin.counters()
    assert counts["get_certificate"] == 2 and counts["list"] == 1 and counts["get_policy"] == 1
    assert counts["create"] == 0 and counts["get_secret"] == 0
    assert kv.admin.counters("kv-beta")["get_certificate"] == 0
    kv.admin.reset_counters()
    assert set(kv.admin.counters().values()) == {0}
    # With retries on, azure-core rides over a transient fault.
    kv.admin.set_knobs(fault_operations={}, fail_next={"get_certificate": 1})
    kv.certificate_client("kv-alpha", retry_backoff_factor=0.01).get_certificate("f-0")


def test_added_latency(kv: EmulatorHandle) -> None:
    kv.admin.seed("kv-alpha", count=1, prefix="l")
    client = kv.certificate_client("kv-alpha")
    client.get_certificate("l-0")
    kv.admin.set_knobs(latency_ms=200)
    started = time.monotonic()
    client.get_certificate("l-0")
    assert time.monotonic() - started >= 0.2


def test_bad_knobs_are_refused(kv: EmulatorHandle) -> None:
    with pytest.raises(RuntimeError, match="400"):
        kv.admin.set_knobs(no_such_knob=1)
    with pytest.raises(RuntimeError, match="400"):
        kv.admin.set_knobs(latency_ms="slow")


def test_bulk_seed_is_fast_and_carries_the_chosen_fields(kv: EmulatorHandle) -> None:
    now = int(kv.admin.now())
    policy = {
        "issuer": {"name": "Unknown"},
        "x509_props": {"subject": "CN=seeded", "validity_months": 12},
        "lifetime_actions": [{"trigger": {"days_before_expiry": 45}, "action": {"action_type": "EmailContacts"}}],
    }
    started = time.monotonic()
    for vault in ("kv-alpha", "kv-beta"):
        kv.admin.seed(vault, count=5000, prefix="bulk", expires=now + 20 * 86400, tags={"env": "bench"}, policy=policy)
    assert time.monotonic() - started < 15
    client = kv.certificate_client("kv-beta")
    cert = client.get_certificate("bulk-4999")
    assert cert.properties.tags == {"env": "bench"}
    assert int(cert.properties.expires_on.timestamp()) == now + 20 * 86400
    assert cert.policy.lifetime_actions[0].days_before_expiry == 45
    first_page = next(client.list_properties_of_certificates(max_page_size=25).by_page())
    assert len(list(first_page)) == 25
