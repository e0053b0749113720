"""Key Vault faults through the emulator knobs: 429 storms without Retry-After, 5xx bursts, latency,
and a certificate deleted, its policy changed or its pending operation cancelled mid-renewal. The
service retries or stops cleanly; nothing is merged wrongly (versions, ledger rows, merge counters)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509

import function_app
from ca_clients import IssuedChain, SignRequest
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.model import RenewalJob
from renewal.service import RenewalService

from .conftest import make_config


@pytest.fixture
def fast_flow(flow):
    """The flow service with azure-core's own retry backoff shrunk (5xx on GET) and sleeps recorded."""
    sleeps: list[float] = []
    flow.service = RenewalService(
        parse_config(make_config(flow.kv, flow.ca_paths, None)),
        environ=flow.environ,
        storage=flow.storage,
        clock=lambda: dt.datetime.fromtimestamp(flow.kv.admin.now(), dt.UTC),
        keyvault_options={"sleep": sleeps.append, "retry_backoff_factor": 0.01, "retry_backoff_max": 0.05},
    )
    flow.sleeps = sleeps
    function_app._service = flow.service
    yield flow
    function_app._service = None


def drain(flow: Any) -> Any:
    return QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(
        timeout=90, wait_for_delayed=True
    )


def notice_count(flow: Any) -> int:
    props = flow.storage.queue_client(settings.DEPLOYMENTS_QUEUE).get_queue_properties()
    return props.approximate_message_count or 0


def assert_renewed_once(flow: Any, name: str, before: str, vault: str = "kv-alpha") -> None:
    versions = flow.versions(name, vault)
    assert len(versions) == 2 and before in versions, versions
    assert flow.current(name, vault).properties.version != before
    rows = flow.service.ledger.history(vault, name)
    assert [r.state for r in rows].count("notified") == 1, rows


@pytest.mark.parametrize(
    ("fail_next", "delivery_failures"),
    [
        ({"create": 4}, 0),  # absorbed by the store's own backoff (5 retries)
        ({"merge": 5}, 0),
        ({"create": 3, "merge": 3, "get_certificate": 2}, 0),
        # Outlives one backoff round: the job goes back to the queue as waiting for capacity, which is not a
        # failed delivery (no dequeue count spent), and the second run succeeds.
        ({"create": 9}, 0),
    ],
)
def test_429_storms_without_retry_after(fast_flow, fail_next, delivery_failures):
    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    before = flow.current("web").properties.version
    flow.service.force_renewal("kv-alpha", "web")
    flow.kv.admin.set_knobs(fail_next=fail_next, fault_status=429)
    stats = drain(flow)
    assert stats.failed == delivery_failures and stats.poisoned == 0
    assert_renewed_once(flow, "web", before)
    assert flow.sleeps, "the backoff must sleep through the injected clock, not really"
    counters = flow.kv.admin.counters()
    assert counters["merge"] == 1 + fail_next.get("merge", 0)
    assert notice_count(flow) == 1


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("operation", ["create", "merge", "get_certificate", "get_pending"])
def test_5xx_bursts_are_retried_and_merge_once(fast_flow, status, operation):
    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    before = flow.current("web").properties.version
    flow.service.force_renewal("kv-alpha", "web")
    flow.kv.admin.set_knobs(fail_next={operation: 3}, fault_status=status)
    stats = drain(flow)
    assert stats.poisoned == 0
    assert_renewed_once(flow, "web", before)
    assert notice_count(flow) == 1


def test_random_faults_and_latency_across_a_fleet(fast_flow):
    """35% of every request fails with 503, each answer takes 20 ms: every certificate still ends with
    exactly one new version (the queue retries; what is poisoned is replayed)."""

    flow = fast_flow
    names = [f"fleet-{i}" for i in range(8)]
    for name in names:
        flow.seed("kv-alpha", name, days_left=5)
    before = {n: flow.current(n).properties.version for n in names}
    flow.kv.admin.set_knobs(fault_rate=0.35, fault_status=503, latency_ms=20)
    for name in names:
        flow.service.jobs.enqueue(RenewalJob(vault="kv-alpha", name=name, reason="sweep"))
    first = drain(flow)
    flow.kv.admin.set_knobs(fault_rate=0.0, latency_ms=0)
    flow.service.replay()
    drain(flow)
    for name in names:
        assert_renewed_once(flow, name, before[name])
    assert flow.kv.admin.counters()["get_secret"] == 0
    assert notice_count(flow) == len(names)
    print(f"fleet under 35% 503 + 20 ms: failed deliveries {first.failed}, poisoned {first.poisoned}")


class MidFlightIssuer:
    """The real local CA, with something done to the certificate in Key Vault while the CA works."""

    def __init__(self, real: Any, action: Any) -> None:
        self.real, self.action, self.name, self.calls = real, action, real.name, 0

    def sign(self, request: SignRequest) -> IssuedChain:
        self.calls += 1
        if self.calls == 1:
            self.action(request)
        return self.real.sign(request)


def test_certificate_deleted_mid_renewal_stops_cleanly(fast_flow):
    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    client = flow.client()
    flow.service._issuers["corp-local"] = MidFlightIssuer(
        flow.service.issuer("corp-local"), lambda _r: client.begin_delete_certificate("web").wait()
    )
    flow.service.force_renewal("kv-alpha", "web")
    stats = drain(flow)
    assert stats.poisoned == 0  # the retry sees the certificate gone and stops: nothing to renew
    assert flow.kv.admin.counters()["merge"] == 1  # the one merge attempt hit a deleted certificate
    with pytest.raises(Exception, match=r"(?i)not ?found"):
        client.get_certificate("web")
    rows = flow.service.ledger.history("kv-alpha", "web")
    assert rows and all(r.new_version is None for r in rows)
    assert notice_count(flow) == 0


def test_policy_changed_mid_renewal_merges_only_what_matches_the_csr(fast_flow):
    from azure.keyvault.certificates import CertificatePolicy

    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    before = flow.current("web").properties.version
    client = flow.client()
    new_policy = CertificatePolicy(
        issuer_name="Unknown",
        subject="CN=web2.example.test",
        san_dns_names=["web2.example.test"],
        key_type="EC",
        key_curve_name="P-256",
    )
    flow.service._issuers["corp-local"] = MidFlightIssuer(
        flow.service.issuer("corp-local"), lambda _r: client.update_certificate_policy("web", new_policy)
    )
    flow.service.force_renewal("kv-alpha", "web")
    stats = drain(flow)
    assert stats.poisoned == 0
    versions = flow.versions("web")
    assert len(versions) == 2 and before in versions
    # What was merged is the certificate for the pending CSR (its key and names), never a mix.
    leaf = x509.load_der_x509_certificate(bytes(flow.current("web").cer))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["web.example.test"]
    # The next renewal follows the new policy.
    flow.service.force_renewal("kv-alpha", "web")
    drain(flow)
    leaf = x509.load_der_x509_certificate(bytes(flow.current("web").cer))
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["web2.example.test"]
    assert len(flow.versions("web")) == 3


def test_policy_changed_under_a_left_over_pending_csr_starts_over(fast_flow):
    from azure.keyvault.certificates import CertificatePolicy

    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    client = flow.client()
    old = CertificatePolicy(
        issuer_name="Unknown", subject="CN=web.example.test", san_dns_names=["web.example.test"],
        key_type="EC", key_curve_name="P-256",
    )  # fmt: skip
    stale = client.begin_create_certificate("web", old).result()  # a crashed run left this behind
    client.update_certificate_policy(
        "web",
        CertificatePolicy(
            issuer_name="Unknown", subject="CN=web3.example.test", san_dns_names=["web3.example.test"],
            key_type="EC", key_curve_name="P-256",
        ),
    )  # fmt: skip
    flow.service.force_renewal("kv-alpha", "web")
    assert drain(flow).poisoned == 0
    rows = flow.service.ledger.history("kv-alpha", "web")
    assert [r.state for r in rows] == ["notified"] and rows[0].request_id != stale.request_id
    assert len(flow.versions("web")) == 2


@pytest.mark.parametrize("how", ["cancel", "delete"])
def test_pending_operation_cancelled_by_someone_else(fast_flow, how):
    flow = fast_flow
    flow.seed("kv-alpha", "web", days_left=10)
    before = flow.current("web").properties.version
    client = flow.client()

    def interfere(_request: SignRequest) -> None:
        if how == "cancel":
            client.cancel_certificate_operation("web")
        else:
            client.delete_certificate_operation("web")

    issuer = MidFlightIssuer(flow.service.issuer("corp-local"), interfere)
    flow.service._issuers["corp-local"] = issuer
    flow.service.force_renewal("kv-alpha", "web")
    stats = drain(flow)
    versions = flow.versions("web")
    rows = flow.service.ledger.history("kv-alpha", "web")
    # Either the queue retry starts a fresh operation and renews once, or the job stops and is recorded.
    if stats.poisoned:
        assert versions == [before] and any(r.error for r in rows)
    else:
        assert len(versions) == 2 and before in versions
        assert [r.state for r in rows].count("notified") == 1
        assert notice_count(flow) == 1
    print(f"pending {how}: failed={stats.failed} poisoned={stats.poisoned} states={[r.state for r in rows]}")
