"""DESIGN.md promises 1-3 against the emulator and Azurite, each with a test that fails if it breaks."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import function_app
from ca_clients import IssuancePending, IssuedChain, SignRequest
from devtools.pump import QueuePump
from renewal import settings
from renewal.flow.sweep import Sweep


@pytest.fixture(autouse=True)
def wired(flow):
    function_app._service = flow.service
    yield
    function_app._service = None


def run_jobs(flow, *, concurrency=1, timeout=90):
    return QueuePump(
        flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=concurrency
    ).run_until_idle(timeout=timeout, wait_for_delayed=True)


class CountingIssuer:
    """Wraps the real local CA client and counts submissions (the CA side of promise 1)."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0
        self._lock = threading.Lock()

    def sign(self, request: SignRequest) -> IssuedChain:
        with self._lock:
            self.calls += 1
        return self.inner.sign(request)


def test_twenty_duplicate_events_and_a_sweep_give_one_version_one_ca_call_one_notice(flow):
    flow.seed("kv-alpha", "web", days_left=10)
    version = flow.current("web").properties.version
    counting = CountingIssuer(flow.service.issuer("corp-local"))
    flow.service._issuers["corp-local"] = counting

    threads = [
        threading.Thread(
            target=flow.service.handle_event, args=(flow.event("kv-alpha", "web", version, event_id=f"e{i}"),)
        )
        for i in range(20)
    ]
    threads.append(threading.Thread(target=flow.service.sweep))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stats = run_jobs(flow, concurrency=8)
    assert stats.poisoned == 0
    assert len(flow.versions("web")) == 2
    assert counting.calls == 1
    counters = flow.kv.admin.counters()
    assert counters.get("create") == 1 and counters.get("merge") == 1
    notices = flow.storage.queue_client(settings.DEPLOYMENTS_QUEUE).get_queue_properties().approximate_message_count
    assert notices == 1


class RogueIssuer:
    """A CA that answers with something that must never be merged."""

    def __init__(self, real, mode):
        self.real, self.mode, self.name = real, mode, "corp-local"

    def sign(self, request: SignRequest) -> IssuedChain:
        good = self.real.sign(request)
        leaf, rest = good.leaf, good.certificates[1:]
        ca_key = self.real.inner._ca_key
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .issuer_name(leaf.issuer)
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if self.mode == "other-key":
            builder = builder.subject_name(leaf.subject).public_key(
                ec.generate_private_key(ec.SECP256R1()).public_key()
            )
            builder = builder.not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            builder = builder.add_extension(
                leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False
            )
        elif self.mode == "other-sans":
            builder = builder.subject_name(leaf.subject).public_key(leaf.public_key())
            builder = builder.not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example.test")]), False)
        else:  # expired
            builder = builder.subject_name(leaf.subject).public_key(leaf.public_key())
            builder = builder.not_valid_before(now - dt.timedelta(days=60)).not_valid_after(now - dt.timedelta(days=1))
            builder = builder.add_extension(
                leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False
            )
        forged = builder.sign(ca_key, hashes.SHA256())
        return IssuedChain((forged, *rest), issuer_name="corp-local")


@pytest.mark.parametrize("mode", ["other-key", "other-sans", "expired"])
def test_a_bad_chain_is_never_merged_and_the_live_version_stays(flow, mode):
    flow.seed("kv-alpha", "web", days_left=10)
    before = flow.current("web").properties.version
    flow.service._issuers["corp-local"] = RogueIssuer(flow.service.issuer("corp-local"), mode)
    flow.service.force_renewal("kv-alpha", "web")
    stats = run_jobs(flow)
    assert stats.poisoned == 1
    assert flow.current("web").properties.version == before
    assert flow.versions("web") == [before]
    assert flow.kv.admin.counters().get("merge", 0) == 0
    row = flow.service.ledger.history("kv-alpha", "web")[0]
    assert row.state == "rejected" and "not merged" in row.error


def test_failed_job_lands_in_poison_with_reason_and_replay_renews_once_fixed(flow):
    flow.seed("kv-alpha", "partner-api", days_left=3)
    before = flow.current("partner-api").properties.version
    flow.service.force_renewal("kv-alpha", "partner-api")
    stats = run_jobs(flow)
    assert stats.failed == settings.MAX_DEQUEUE_COUNT and stats.poisoned == 1

    failures = flow.service.failures()
    assert [(f.vault, f.name) for f in failures.jobs] == [("kv-alpha", "partner-api")]
    assert "PARTNER_CA_KEY" in failures.jobs[0].reason  # the reason names what is missing
    assert flow.current("partner-api").properties.version == before

    # The operator fixes the issuer (the app setting appears), then replays.
    flow.service.environ["PARTNER_CA_KEY"] = flow.ca_paths["ca_key"].read_text()
    flow.service.reset_issuers()
    result = flow.service.replay()
    assert result.jobs == 1 and not result.left
    assert run_jobs(flow).processed == 1
    assert flow.current("partner-api").properties.version != before
    assert flow.service.failures().total == 0


class SlowIssuer:
    """Accepts the request and answers later (ACME processing, AD CS pending approval)."""

    def __init__(self, real):
        self.real, self.name, self.tickets = real, real.name, []

    def sign(self, request: SignRequest) -> IssuedChain:
        self.tickets.append(request.ticket)
        if request.ticket is None:
            raise IssuancePending({"order": request.identity.request_id}, dt.timedelta(seconds=1))
        assert request.ticket == {"order": request.identity.request_id}
        return self.real.sign(request)


def test_pending_at_the_ca_is_followed_up_with_its_ticket_without_failing(flow):
    flow.seed("kv-alpha", "web", days_left=5)
    slow = SlowIssuer(flow.service.issuer("corp-local"))
    flow.service._issuers["corp-local"] = slow
    flow.service.force_renewal("kv-alpha", "web")
    stats = run_jobs(flow)
    assert stats.failed == 0 and stats.processed == 2
    assert slow.tickets[0] is None and slow.tickets[1] is not None
    assert len(flow.versions("web")) == 2
    assert flow.kv.admin.counters().get("create") == 1


def test_an_existing_pending_operation_is_resumed_not_duplicated(flow):
    from azure.keyvault.certificates import CertificatePolicy

    flow.seed("kv-alpha", "web", days_left=5)
    client = flow.client()
    policy = CertificatePolicy(
        issuer_name="Unknown",
        subject="CN=web.example.test",
        san_dns_names=["web.example.test"],
        key_type="EC",
        key_curve_name="P-256",
    )
    op = client.begin_create_certificate("web", policy).result()  # a crash left this behind
    flow.service.force_renewal("kv-alpha", "web")
    run_jobs(flow)
    rows = flow.service.ledger.history("kv-alpha", "web")
    assert rows[0].request_id == op.request_id and rows[0].state == "notified"
    assert len(flow.versions("web")) == 2


def test_create_throttled_without_retry_after_is_absorbed(flow):
    flow.seed("kv-alpha", "web", days_left=5)
    flow.kv.admin.set_knobs(fail_next={"create": 2}, fault_status=429)
    flow.service.force_renewal("kv-alpha", "web")
    stats = run_jobs(flow)
    assert stats.failed == 0 and len(flow.versions("web")) == 2


def test_sweep_reads_list_pages_and_policies_only_for_default_due(flow):
    for i in range(30):
        flow.seed("kv-alpha", f"fleet-{i}", days_left=80 if i % 3 else 10)
    flow.kv.admin.reset_counters()
    report = Sweep(
        config=flow.service.config, stores=flow.service.stores, jobs=flow.service.jobs, clock=flow.service.clock
    ).run(vaults=["kv-alpha"], dry_run=True)
    assert report.scanned == 30 and len(report.due) == 10
    counters = flow.kv.admin.counters("kv-alpha")
    assert counters.get("list") == 2  # ceil(30 / 25) pages
    assert counters.get("get_certificate", 0) == 0
    assert counters.get("get_policy") == 10  # one per certificate due by the default rule


def test_a_stale_in_flight_row_without_a_pending_operation_is_closed_once(flow):
    from renewal.model import LedgerRow

    flow.seed("kv-alpha", "web", days_left=80)
    long_ago = flow.service.clock() - dt.timedelta(days=3)
    flow.service.ledger.upsert(
        LedgerRow(
            vault="kv-alpha",
            name="web",
            request_id="lost-request",
            state="retrying",
            issuer="corp-local",
            error="CA corp-local unavailable: timeout",
            started_at=long_ago,
            updated_at=long_ago,
        )
    )
    assert flow.service.sweep().stale_resumed == 1
    run_jobs(flow)
    row = flow.service.ledger.get("kv-alpha", "web", "lost-request")
    assert row.state == "abandoned" and "no pending operation in progress" in row.error
    assert flow.service.sweep().stale_resumed == 0
    assert len(flow.versions("web")) == 1


def test_the_rolling_policy_recheck_follows_a_lifetime_action_edited_in_place(flow):
    """Key Vault's listing does not show a policy edit (a recorded answer of the real service: the policy's
    ``updated`` moves, the certificate's does not), so the sweep follows the tag mirrored at the last renewal;
    with ``policy_recheck_days`` it re-reads each policy once every N nights."""
    from azure.keyvault.certificates import CertificatePolicyAction, LifetimeAction

    from renewal.flow.due import MIRRORED_TRIGGER_TAG

    for i in range(12):
        flow.seed("kv-alpha", f"fleet-{i}", days_left=45, tags={MIRRORED_TRIGGER_TAG: "days_before_expiry=30"})
    client = flow.client()
    for i in range(12):  # in the portal: renew 60 days before expiry from now on
        policy = client.get_certificate_policy(f"fleet-{i}")
        policy._lifetime_actions = [LifetimeAction(CertificatePolicyAction.email_contacts, days_before_expiry=60)]
        client.update_certificate_policy(f"fleet-{i}", policy)

    def sweep(days: int, *, dry_run: bool = True):
        config = flow.service.config.model_copy(
            update={"defaults": flow.service.config.defaults.model_copy(update={"policy_recheck_days": days})}
        )
        return Sweep(config=config, stores=flow.service.stores, jobs=flow.service.jobs, clock=flow.service.clock).run(
            vaults=["kv-alpha"], dry_run=dry_run
        )

    assert len(sweep(0).due) == 0  # the mirrored tag still says 30 days: the edit is not seen
    flow.kv.admin.reset_counters()
    tonight = sweep(3)
    share = flow.kv.admin.counters("kv-alpha").get("get_policy", 0)
    assert 0 < share < 12 and len(tonight.due) == share == tonight.policy_edits  # a third-ish a night
    assert all(
        flow.current(e.name).properties.tags[MIRRORED_TRIGGER_TAG] == "days_before_expiry=30" for e in tonight.due
    )
    everyone = sweep(1, dry_run=False)
    assert len(everyone.due) == 12 and everyone.policy_edits == 12
    # the edit is mirrored: the nights between rechecks see it without reading the policy
    assert {flow.current(f"fleet-{i}").properties.tags[MIRRORED_TRIGGER_TAG] for i in range(12)} == {
        "days_before_expiry=60"
    }
    flow.kv.admin.reset_counters()
    assert len(sweep(0).due) == 12 and flow.kv.admin.counters("kv-alpha").get("get_policy", 0) == 0
