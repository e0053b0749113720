"""The orchestrator built directly over in-memory ports, one case per outcome of its steps: what it
returns or raises, what the attempt's ledger row says, what was queued, and what Key Vault holds. The
integration tests (tests/flow, tests/reliability) drive the same code against the emulator and Azurite."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ca_clients import IssuancePending, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from renewal.config import parse_config
from renewal.errors import CertificateGone, KeyVaultThrottled, MergeRejected, RenewalFailed, StoreUnavailable
from renewal.flow.orchestrator import RenewalOrchestrator
from renewal.model import AttemptState, LifetimeTrigger, PolicySpec, RenewalJob, SubjectAlternativeNames
from tests.hostile_chains import HOSTILE, NOW, Hierarchy, hierarchy
from tests.memory_ports import MemoryClaims, MemoryJobs, MemoryLedger, MemoryNotices, MemoryStore

VAULT, NAME = "kv-a", "web"
POLICY = PolicySpec(
    subject="CN=web.example.test",
    sans=SubjectAlternativeNames(dns_names=("web.example.test",)),
    validity_months=12,
    lifetime_triggers=(LifetimeTrigger(days_before_expiry=30),),
)
PKI = {"corp": hierarchy("Corp"), "backup": hierarchy("Backup")}


@dataclass
class FakeCA:
    """A CA client whose next answers a test scripts: "issue", "pending", "permanent", "transient", or a
    hostile chain's name from tests.hostile_chains."""

    name: str
    pki: Hierarchy
    script: list[str] = field(default_factory=list)
    requests: list[SignRequest] = field(default_factory=list)
    answer_as: str | None = None

    def sign(self, request: SignRequest) -> IssuedChain:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else "issue"
        if step == "pending":
            raise IssuancePending({"order": f"order-{len(self.requests)}"}, dt.timedelta(seconds=30))
        if step == "permanent":
            raise PermanentCAError("policy forbids this name", issuer=self.name)
        if step == "transient":
            raise TransientCAError("503 from the CA", issuer=self.name)
        chain = self.pki.honest(request.csr) if step == "issue" else HOSTILE[step][1](self.pki, request.csr)
        return IssuedChain(tuple(chain), issuer_name=self.answer_as or self.name)


class NoticeOutage(MemoryNotices):
    """The deployments queue is down for the first ``failures`` notices (a worker that dies after merge)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def enqueue(self, notice: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("queue unreachable")
        super().enqueue(notice)


@dataclass
class World:
    store: MemoryStore
    ledger: MemoryLedger
    claims: MemoryClaims
    jobs: MemoryJobs
    notices: MemoryNotices
    cas: dict[str, FakeCA]
    orchestrator: RenewalOrchestrator
    broken_issuers: set[str] = field(default_factory=set)

    def seed(self, *, days_left: int = 5, lifetime: int = 90) -> str:
        expires = NOW + dt.timedelta(days=days_left)
        return self.store.seed(NAME, POLICY, not_before=expires - dt.timedelta(days=lifetime), expires_on=expires)

    def run(self, **job: Any) -> Any:
        return self.orchestrator.run(RenewalJob(**{"vault": VAULT, "name": NAME, "reason": "sweep", **job}))

    def row(self) -> Any:
        (row,) = self.ledger.history(VAULT, NAME)
        return row

    def versions(self) -> int:
        return len(self.store.versions.get(NAME, []))


def build_world(*, max_pending_polls: int = 1000, notices: MemoryNotices | None = None) -> World:
    def issuer(name: str) -> dict[str, Any]:
        root = PKI[name].root.cert.public_bytes(Encoding.PEM).decode()
        return {
            "name": name,
            "type": "local",
            "ca_certificate": "/x",
            "ca_key": {"file": "/k"},
            "trust_anchors": [root],
        }

    config = parse_config(
        {
            "vaults": [{"name": VAULT, "url": "https://kv-a.vault.azure.net"}],
            "issuers": [issuer("corp"), issuer("backup")],
            "default_issuer": "corp",
            "defaults": {"max_pending_polls": max_pending_polls},
        }
    )
    store, ledger, claims, jobs = MemoryStore(VAULT), MemoryLedger(), MemoryClaims(), MemoryJobs()
    notices = notices or MemoryNotices()
    cas = {name: FakeCA(name, PKI[name]) for name in PKI}
    world = World(store, ledger, claims, jobs, notices, cas, None)  # type: ignore[arg-type]

    def issuers(name: str) -> FakeCA:
        if name in world.broken_issuers:
            raise RuntimeError(f"app setting for {name}'s key is not set")
        return cas[name]

    world.orchestrator = RenewalOrchestrator(
        config=config,
        stores={VAULT: store},
        issuers=issuers,  # type: ignore[arg-type]
        trust_anchors=lambda name: [PKI[name].root.cert],
        ledger=ledger,
        claims=claims,
        jobs=jobs,
        notices=notices,
        clock=lambda: NOW,
    )
    return world


@pytest.fixture
def world() -> World:
    return build_world()


# -- step 1 and 2: reasons not to renew ---------------------------------------------------------------------
def test_not_due_stops_before_anything_is_created(world):
    world.seed(days_left=80)
    assert world.run().status == "not-due"
    assert "create" not in world.store.calls and world.ledger.rows == {} and world.notices.sent == []


def test_a_certificate_that_is_gone_stops(world):
    assert world.run().status == "gone"
    assert "create" not in world.store.calls


@pytest.mark.parametrize("force", [False, True])
def test_a_job_for_an_older_version_finds_it_renewed_forced_or_not(world, force):
    world.seed()
    outcome = world.run(version="an-older-version", force=force)
    assert outcome.status == "already-renewed" and world.versions() == 1
    assert "create" not in world.store.calls


def test_claimed_elsewhere_touches_nothing(world):
    world.seed()
    world.claims.held_elsewhere = True
    assert world.run().status == "claimed-elsewhere"
    assert world.store.calls == []
    # It comes back later (the holder may have died with the claim), a bounded number of times.
    ((again, delay),) = world.jobs.sent
    assert again.requeues == 1 and delay is not None
    limit = world.orchestrator.config.defaults.max_requeues
    assert world.run(requeues=limit).status == "claimed-elsewhere" and len(world.jobs.sent) == 1


def test_an_unconfigured_vault_is_a_permanent_failure(world):
    with pytest.raises(RenewalFailed) as failed:
        world.orchestrator.run(RenewalJob(vault="kv-other", name=NAME, reason="sweep"))
    assert failed.value.permanent


# -- steps 3 to 7: the happy path and resumes ---------------------------------------------------------------
def test_a_due_certificate_is_renewed_once_with_one_notice(world):
    old = world.seed()
    outcome = world.run()
    assert outcome.status == "renewed" and world.versions() == 2
    row = world.row()
    assert row.state is AttemptState.NOTIFIED and row.old_version == old and row.new_version == outcome.new_version
    assert [n.new_version for n in world.notices.sent] == [outcome.new_version]
    assert len(world.cas["corp"].requests) == 1 and world.jobs.sent == []


def test_an_existing_pending_operation_is_resumed_not_duplicated(world):
    world.seed()
    existing = world.store.begin_pending(NAME, POLICY, tags={})
    world.store.calls.clear()
    outcome = world.run()
    assert outcome.status == "renewed" and outcome.request_id == existing.request_id
    assert "create" not in world.store.calls


def test_create_answering_409_resumes_the_operation_that_exists(world):
    world.seed()
    existing = world.store.begin_pending(NAME, POLICY, tags={})
    real_get_pending, reads = world.store.get_pending, []

    def racing_read(name: str) -> Any:  # the first read misses it (created a moment later by someone else)
        reads.append(name)
        return None if len(reads) == 1 else real_get_pending(name)

    world.store.get_pending = racing_read  # type: ignore[method-assign]
    outcome = world.run()
    assert outcome.status == "renewed" and outcome.request_id == existing.request_id
    assert world.store.calls.count("create") == 2  # the seed's and the one answered 409


def test_a_pending_csr_the_policy_no_longer_fits_is_replaced(world):
    world.seed()
    stale = world.store.begin_pending(NAME, PolicySpec(subject="CN=old-name.example.test"), tags={})
    outcome = world.run()
    assert outcome.status == "renewed" and outcome.request_id != stale.request_id
    assert "delete_pending" in world.store.calls


def test_a_routing_error_creates_no_pending_version(world):
    world.seed()
    world.store.versions[NAME][-1].tags["renewal-issuer"] = "ghost"
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    assert failed.value.permanent and "create" not in world.store.calls


# -- step 4: the CA's answers ----------------------------------------------------------------------------
def test_pending_at_the_ca_keeps_the_ticket_on_the_row_and_polls_with_a_job_that_carries_none(world):
    world.seed()
    world.cas["corp"].script = ["pending"]
    outcome = world.run(trigger_id="evt-1")
    assert outcome.status == "pending"
    row = world.row()
    assert row.state is AttemptState.PENDING_AT_CA and row.ticket == {"order": "order-1"}
    assert row.extra["ticket_csr_sha256"] and row.pending_polls == 1
    ((follow_up, delay),) = world.jobs.sent
    assert follow_up.reason == "pending-followup" and follow_up.trigger_id == "evt-1"
    assert delay == dt.timedelta(seconds=30) and "ticket" not in follow_up.to_json()
    # The follow-up job resumes with the ledger's ticket, at the same CA, for the same request.
    assert world.run(reason="pending-followup").status == "renewed"
    assert world.cas["corp"].requests[1].ticket == {"order": "order-1"}
    assert world.row().state is AttemptState.NOTIFIED and world.row().ticket is None


@pytest.mark.parametrize("tamper", ["issuer", "csr"])
def test_a_kept_ticket_of_another_issuer_or_another_csr_is_not_sent(world, tamper):
    world.seed()
    world.cas["corp"].script = ["pending"]
    world.run()
    row = world.row()
    if tamper == "issuer":
        row.issuer = "retired-ca"  # the CA that made the ticket is no longer configured: routing picks corp
    else:
        row.extra["ticket_csr_sha256"] = "0" * 64
    world.ledger.upsert(row)
    world.run(reason="pending-followup")
    assert len(world.cas["corp"].requests) == 2 and world.cas["corp"].requests[-1].ticket is None


def test_too_many_polls_fail_permanently():
    world = build_world(max_pending_polls=1)
    world.seed()
    world.cas["corp"].script = ["pending", "pending"]
    world.run()
    with pytest.raises(RenewalFailed) as failed:
        world.run(reason="pending-followup")
    assert failed.value.permanent and world.row().state is AttemptState.FAILED and "after 1 polls" in world.row().error


@pytest.mark.parametrize(
    ("answer", "state", "permanent"),
    [("permanent", AttemptState.FAILED, True), ("transient", AttemptState.RETRYING, False)],
)
def test_a_ca_refusal_or_outage_is_recorded_and_the_live_version_stays(world, answer, state, permanent):
    world.seed()
    world.cas["corp"].script = [answer]
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    assert failed.value.permanent is permanent
    assert world.row().state is state and world.row().error and world.versions() == 1 and world.notices.sent == []


def test_an_issuer_that_cannot_be_built_fails_permanently(world):
    world.seed()
    world.broken_issuers.add("corp")
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    assert failed.value.permanent and "could not be set up" in world.row().error


# -- steps 5 and 6: verification and merge -----------------------------------------------------------------
@pytest.mark.parametrize("hostile", ["code-signing-only", "leaf-is-a-ca", "ten-year-leaf", "another-hierarchy"])
def test_a_refused_chain_is_rejected_naming_its_rule(world, hostile):
    world.seed()
    world.cas["corp"].script = [hostile]
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    check = HOSTILE[hostile][0]
    assert failed.value.permanent and world.row().state is AttemptState.REJECTED
    assert f"{check}:" in world.row().error and world.versions() == 1 and "merge" not in world.store.calls


def test_a_fallback_issuers_chain_meets_the_fallbacks_anchors_not_the_primarys(world):
    world.seed()
    world.cas["corp"].pki, world.cas["corp"].answer_as = PKI["backup"], "backup"  # failover signed it
    assert world.run().status == "renewed"
    world2 = build_world()
    world2.seed()
    world2.cas["corp"].answer_as = "backup"  # says backup, but the chain is the primary's: not backup's anchor
    with pytest.raises(RenewalFailed):
        world2.run()
    assert "path:" in world2.row().error


@pytest.mark.parametrize(
    ("failure", "state", "permanent"),
    [
        (MergeRejected("BadParameter: key mismatch"), AttemptState.REJECTED, True),
        (CertificateGone("pending operation deleted"), AttemptState.RETRYING, False),
    ],
)
def test_a_merge_key_vault_refuses_or_that_lost_its_operation(world, failure, state, permanent):
    world.seed()
    world.store.fail["merge"] = failure
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    assert failed.value.permanent is permanent and world.row().state is state and world.versions() == 1


def test_key_vault_unavailable_is_retried_by_the_queue(world):
    world.seed()
    world.store.fail["create"] = StoreUnavailable("503")
    with pytest.raises(RenewalFailed) as failed:
        world.run()
    assert not failed.value.permanent


def test_throttling_sends_the_job_back_without_failing_it_until_the_bound():
    world = build_world()
    world.seed()
    world.store.fail["create"] = KeyVaultThrottled("create throttled by Key Vault after 6 attempts")
    outcome = world.run(trigger_id="evt-7")
    assert outcome.status == "waiting-for-capacity" and world.ledger.rows == {}
    ((again, delay),) = world.jobs.sent
    assert again.requeues == 1 and again.trigger_id == "evt-7" and 10 <= delay.total_seconds() <= 20
    # An attempt already in flight says why it waits.
    world.store.begin_pending(NAME, POLICY, tags={})
    world.cas["corp"].script = ["transient"]
    with pytest.raises(RenewalFailed):
        world.run()
    world.store.fail["merge"] = KeyVaultThrottled("merge throttled")
    assert world.run(requeues=1).status == "waiting-for-capacity"
    assert world.row().state is AttemptState.WAITING_FOR_CAPACITY and "merge throttled" in world.row().error
    # Past the bound it takes the normal retry path (the queue's dequeue count, then poison).
    limit = world.orchestrator.config.defaults.max_requeues
    world.store.fail["merge"] = KeyVaultThrottled("merge throttled")
    with pytest.raises(RenewalFailed) as failed:
        world.run(requeues=limit)
    assert not failed.value.permanent


# -- step 7: a worker that died between merge and notice ---------------------------------------------------
def test_bookkeeping_after_a_crash_between_merge_and_notice_sends_exactly_one_notice():
    world = build_world(notices=NoticeOutage(failures=1))
    world.seed()
    with pytest.raises(ConnectionError):
        world.run()
    assert world.versions() == 2 and world.notices.sent == []
    outcome = world.run()  # the queue delivers the job again
    assert outcome.status == "renewed" and outcome.detail == "bookkeeping finished"
    assert len(world.notices.sent) == 1 and world.row().state is AttemptState.NOTIFIED
    assert world.versions() == 2 and world.run().status == "not-due"
