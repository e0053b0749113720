"""ARI (RFC 9773) in the due decision: the moment chosen inside the CA's window, the policy as the latest
bound, windows kept until their Retry-After, CA failures falling back to the policy; then the sweep and the
orchestrator over in-memory ports with a scripted ACME client. The ACME client and a CA that serves
renewalInfo over real sockets are tested in tests/ca_clients/test_acme_ari.py and tests/flow/test_ari_flow.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_clients import IssuedChain, RenewalInfo, SignRequest, TransientCAError
from ca_clients.ari import ari_cert_id, ari_cert_id_of_der
from renewal.config import parse_config
from renewal.flow.ari import (
    ARI_TRIGGER,
    DEFAULT_RECHECK,
    FAILURES_BEFORE_PAUSE,
    MAX_RECHECK,
    MIN_RECHECK,
    UNNAMED_RECHECK,
    RenewalTiming,
    apply_window,
    chosen_moment,
    recheck_delay,
    thumbprint_of,
)
from renewal.flow.due import DueDecision, is_due
from renewal.flow.orchestrator import RenewalOrchestrator
from renewal.flow.sweep import FOLLOW_UP_PER_VAULT, SCHEDULE_MARGIN, Sweep
from renewal.model import LifetimeTrigger, PolicySpec, RenewalJob, RenewalWindow, SubjectAlternativeNames
from tests.hostile_chains import NOW, Hierarchy, hierarchy
from tests.memory_ports import (
    MemoryClaims,
    MemoryJobs,
    MemoryLedger,
    MemoryNotices,
    MemoryRenewalWindows,
    MemoryStore,
)

HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
VAULT = "kv-a"
PKI = hierarchy("ARI")
POLICY = PolicySpec(
    subject="CN=web.example.test",
    sans=SubjectAlternativeNames(dns_names=("web.example.test",)),
    validity_months=3,
    lifetime_triggers=(LifetimeTrigger(days_before_expiry=30),),
)


def window(start: dt.datetime, end: dt.datetime, *, cert_id: str = "aYhb.AIdl", **kw: Any) -> RenewalWindow:
    values: dict[str, Any] = {
        "vault": VAULT,
        "name": "web",
        "thumbprint": "ab" * 20,
        "issuer": "acme",
        "cert_id": cert_id,
        "checked_at": NOW,
        "recheck_at": NOW + 6 * HOUR,
        "start": start,
        "end": end,
        **kw,
    }
    return RenewalWindow(**values)


def policy_decision(renew_at: dt.datetime, now: dt.datetime = NOW) -> DueDecision:
    return DueDecision(renew_at <= now, "days_before_expiry=30: due at ...", renew_at, "policy")


# -- the moment and the decision ----------------------------------------------------------------------------
def test_the_moment_is_inside_the_window_stable_and_spread_uniformly() -> None:
    start, end = NOW + 10 * DAY, NOW + 12 * DAY
    moments = [chosen_moment(window(start, end, cert_id=f"id-{i}")) for i in range(2000)]
    assert all(start <= m <= end for m in moments)
    assert chosen_moment(window(start, end, cert_id="id-7")) == moments[7]  # every instance, every sweep
    fractions = sorted((m - start) / (end - start) for m in moments)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):  # quantiles of a uniform draw
        assert abs(fractions[int(q * len(fractions))] - q) < 0.05, q
    # A window the CA moves gives a new moment inside the new window.
    moved = chosen_moment(window(NOW - 2 * HOUR, NOW - HOUR, cert_id="id-7"))
    assert NOW - 2 * HOUR <= moved <= NOW - HOUR


def test_a_window_in_the_future_before_the_policy_trigger_decides_and_says_so() -> None:
    w = window(dt.datetime(2030, 12, 1, tzinfo=dt.UTC), dt.datetime(2030, 12, 3, tzinfo=dt.UTC))
    decision = apply_window(policy_decision(dt.datetime(2031, 1, 1, tzinfo=dt.UTC)), w, NOW)
    assert decision.trigger == ARI_TRIGGER == "ari" and not decision.due
    assert decision.renew_at == chosen_moment(w)
    assert decision.reason.startswith("ARI window 2030-12-01 00:00Z..2030-12-03 00:00Z: renew at 2030-12-0")


def test_a_window_in_the_past_makes_it_due_now() -> None:
    w = window(NOW - 3 * HOUR, NOW - HOUR, explanation_url="https://ca.example/incident")
    decision = apply_window(policy_decision(NOW + 40 * DAY), w, NOW)
    assert decision.due and decision.trigger == "ari"
    assert "the window has passed: renew now" in decision.reason
    assert decision.reason.endswith("see https://ca.example/incident")


def test_a_window_straddling_now_is_due_exactly_when_its_moment_has_come() -> None:
    outcomes = set()
    for i in range(40):
        w = window(NOW - DAY, NOW + DAY, cert_id=f"straddle-{i}")
        decision = apply_window(policy_decision(NOW + 40 * DAY), w, NOW)
        assert decision.trigger == "ari" and decision.due == (chosen_moment(w) <= NOW)
        outcomes.add(decision.due)
    assert outcomes == {True, False}  # some certificates now, the others later: the CA's load is spread


def test_the_policy_trigger_is_the_latest_bound() -> None:
    w = window(NOW + 50 * DAY, NOW + 52 * DAY)
    policy = policy_decision(NOW + 40 * DAY)
    assert apply_window(policy, w, NOW) == policy
    due_by_policy = policy_decision(NOW - DAY)
    assert apply_window(due_by_policy, window(NOW + DAY, NOW + 2 * DAY), NOW) == due_by_policy


def test_no_window_expired_or_undated_certificates_keep_their_decision() -> None:
    policy = policy_decision(NOW + 40 * DAY)
    unknown_to_ca = replace(window(NOW, NOW + DAY), start=None, end=None)
    assert apply_window(policy, None, NOW) == policy
    assert apply_window(policy, unknown_to_ca, NOW) == policy
    expired = is_due(now=NOW, not_before=NOW - 90 * DAY, expires_on=NOW - HOUR)
    assert apply_window(expired, window(NOW + DAY, NOW + 2 * DAY), NOW) == expired


@pytest.mark.parametrize(
    ("retry_after", "kept_for"),
    [
        (None, DEFAULT_RECHECK),
        (dt.timedelta(seconds=0), MIN_RECHECK),
        (dt.timedelta(seconds=30), MIN_RECHECK),
        (dt.timedelta(hours=3), dt.timedelta(hours=3)),
        (dt.timedelta(days=30), MAX_RECHECK),
    ],
)
def test_retry_after_is_clamped(retry_after: dt.timedelta | None, kept_for: dt.timedelta) -> None:
    assert recheck_delay(retry_after) == kept_for
    assert (MIN_RECHECK, DEFAULT_RECHECK, MAX_RECHECK) == (HOUR, 6 * HOUR, DAY)


# -- a scripted ACME client ---------------------------------------------------------------------------------
@dataclass
class FakeAcme:
    """An ACME issuer whose CA publishes renewal information: one window for every certificate it knows."""

    name: str
    pki: Hierarchy
    start: dt.datetime
    end: dt.datetime
    retry_after: dt.timedelta | None = 6 * HOUR
    offers: bool = True
    unreachable: bool = False
    down: bool = False
    unknown: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)
    requests: list[SignRequest] = field(default_factory=list)

    def offers_renewal_info(self) -> bool:
        if self.unreachable:
            raise TransientCAError("directory: connection refused", issuer=self.name)
        return self.offers

    def renewal_info(self, certificate: x509.Certificate | str) -> RenewalInfo | None:
        cert_id = certificate if isinstance(certificate, str) else ari_cert_id(certificate)
        self.asked.append(cert_id)
        if self.down:
            raise TransientCAError("renewal info answered 503", issuer=self.name)
        if cert_id in self.unknown:
            return None
        return RenewalInfo(cert_id, self.start, self.end, self.retry_after)

    def sign(self, request: SignRequest) -> IssuedChain:
        self.requests.append(request)
        return IssuedChain(tuple(self.pki.honest(request.csr)), issuer_name=self.name)

    def move_window(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start, self.end = start, end


def config() -> Any:
    root = PKI.root.cert.public_bytes(Encoding.PEM).decode()
    return parse_config(
        {
            "vaults": [{"name": VAULT, "url": "https://kv-a.vault.azure.net"}],
            "issuers": [
                {
                    "name": "acme",
                    "type": "acme",
                    "directory_url": "https://acme.example.test/dir",
                    "account_key": {"file": "/nonexistent/account.pem"},
                    "trust_anchors": [root],
                },
                {
                    "name": "corp",
                    "type": "local",
                    "ca_certificate": "/x",
                    "ca_key": {"file": "/k"},
                    "trust_anchors": [root],
                },
            ],
            "routes": [{"issuer": "corp", "match": "local-*"}],
            "default_issuer": "acme",
        }
    )


@dataclass
class Estate:
    """One vault in memory, the kept windows, the job queue and the ACME CA, at a clock the test moves."""

    now: dt.datetime
    ca: FakeAcme
    store: MemoryStore = field(default_factory=lambda: MemoryStore(VAULT))
    windows: MemoryRenewalWindows = field(default_factory=MemoryRenewalWindows)
    jobs: MemoryJobs = field(default_factory=MemoryJobs)
    issuers_built: list[str] = field(default_factory=list)

    def issuer(self, name: str) -> Any:
        self.issuers_built.append(name)
        return self.ca

    def seed(self, name: str = "web", *, days_left: int = 60, lifetime: int = 90) -> str:
        expires = self.now + dt.timedelta(days=days_left)
        return self.store.seed(name, POLICY, not_before=expires - dt.timedelta(days=lifetime), expires_on=expires)

    def timing(self, *, bulk: bool = False) -> RenewalTiming:
        return RenewalTiming(config=config(), issuers=self.issuer, windows=self.windows, now=self.now, bulk=bulk)

    def sweep(self, **kw: Any) -> Any:
        self.jobs.sent.clear()
        self.store.calls.clear()
        return Sweep(
            config=config(),
            stores={VAULT: self.store},
            jobs=self.jobs,
            clock=lambda: self.now,
            issuers=self.issuer,
            renewal_windows=self.windows,
        ).run(collect_all=True, **kw)

    def current(self, name: str = "web") -> Any:
        return self.store.versions[name][-1]

    def cert_id(self, name: str = "web") -> str:
        return ari_cert_id_of_der(self.current(name).cer)


def decision_of(report: Any, name: str = "web") -> DueDecision:
    (entry,) = [e for e in [*report.due, *report.later] if e.name == name]
    return entry.decision


@pytest.fixture
def estate() -> Estate:
    return Estate(NOW, FakeAcme("acme", PKI, NOW + 20 * DAY, NOW + 22 * DAY))


# -- asking and keeping -------------------------------------------------------------------------------------
def test_a_window_is_kept_until_its_retry_after_then_asked_again(estate: Estate) -> None:
    estate.seed()
    current, cert_id = estate.current(), estate.cert_id()
    first = estate.timing().window_for(current, "acme")
    assert first is not None and first.cert_id == cert_id and first.thumbprint == thumbprint_of(current.cer)
    assert first.recheck_at == NOW + 6 * HOUR and estate.ca.asked == [cert_id]
    assert estate.windows.rows[(VAULT, "web")] == first

    estate.now = NOW + 5 * HOUR  # another instance, before Retry-After passes: the kept window, no question
    assert estate.timing().window_for(current, "acme") == first and estate.ca.asked == [cert_id]

    estate.now = NOW + 6 * HOUR + dt.timedelta(seconds=1)
    estate.ca.move_window(NOW - 2 * HOUR, NOW - HOUR)
    again = estate.timing().window_for(current, "acme")
    assert estate.ca.asked == [cert_id, cert_id] and again is not None and again.end == NOW - HOUR


def test_a_ca_that_fails_leaves_the_last_window_or_the_policy(estate: Estate) -> None:
    estate.seed()
    current = estate.current()
    estate.ca.down = True
    assert estate.timing().window_for(current, "acme") is None  # nothing kept: the policy decides
    assert estate.windows.rows == {}

    estate.ca.down = False
    kept = estate.timing().window_for(current, "acme")
    estate.now = NOW + DAY  # stale now, and the CA is down again: the stale window still counts
    estate.ca.down = True
    assert estate.timing().window_for(current, "acme") == kept


def test_an_issuer_that_keeps_failing_is_not_asked_again_in_the_same_run(estate: Estate) -> None:
    for i in range(40):
        estate.seed(f"web-{i}")
    estate.ca.down = True
    report = estate.sweep()
    # Questions already on their way when the pause began still go; no new ones start.
    assert FAILURES_BEFORE_PAUSE <= len(estate.ca.asked) <= FAILURES_BEFORE_PAUSE + FOLLOW_UP_PER_VAULT
    assert report.ari_failures == len(estate.ca.asked) and report.errors == [] and report.scanned == 40
    decisions = [decision_of(report, f"web-{i}") for i in range(40)]
    assert all(d.trigger != "ari" and not d.due for d in decisions)  # the policy decided for each


def test_a_certificate_the_ca_does_not_know_or_ari_cannot_name_is_asked_about_weekly(estate: Estate) -> None:
    estate.seed()
    estate.ca.unknown.add(estate.cert_id())
    unknown = estate.timing().window_for(estate.current(), "acme")
    assert unknown is not None and not unknown.suggested and unknown.recheck_at == NOW + UNNAMED_RECHECK

    # A certificate without an Authority Key Identifier cannot be named: no question is sent at all.
    cert = x509.load_der_x509_certificate(estate.current().cer)
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    timing = estate.timing()
    estate.ca.asked.clear()
    bare = replace(estate.current(), name="bare", cer=_without_aki())
    unnamed = timing.window_for(bare, "acme")
    assert unnamed is not None and unnamed.cert_id == "" and not unnamed.suggested and estate.ca.asked == []


def _without_aki() -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 60 * DAY)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_only_acme_issuers_that_offer_renewal_info_are_asked(estate: Estate) -> None:
    timing = estate.timing()
    assert timing.ari_issuer(VAULT, "local-web", {}) is None  # routed to the local CA: never built
    assert estate.issuers_built == []
    assert timing.ari_issuer(VAULT, "web", {}) == "acme"
    assert timing.ari_issuer(VAULT, "web2", {}) == "acme" and estate.issuers_built == ["acme"]  # once a run
    estate.ca.offers = False
    assert estate.timing().ari_issuer(VAULT, "web", {}) is None


def test_an_unreachable_directory_uses_kept_windows_and_asks_nothing(estate: Estate) -> None:
    estate.seed()
    kept = estate.timing().window_for(estate.current(), "acme")
    estate.now = NOW + DAY
    estate.ca.unreachable = True
    estate.ca.asked.clear()
    timing = estate.timing()
    assert timing.ari_issuer(VAULT, "web", {}) == "acme"
    assert timing.window_for(estate.current(), "acme") == kept and estate.ca.asked == []


def test_a_table_that_fails_costs_questions_not_decisions(estate: Estate) -> None:
    estate.seed()
    estate.windows.fail = ConnectionError("table unreachable")
    window = estate.timing().window_for(estate.current(), "acme")
    assert window is not None and window.suggested


# -- the sweep ----------------------------------------------------------------------------------------------
def test_a_sweep_without_its_kept_windows_leaves_the_policy_rather_than_reading_every_certificate(
    estate: Estate,
) -> None:
    for i in range(5):
        estate.seed(f"web-{i}")
    estate.windows.fail = ConnectionError("table unreachable")
    report = estate.sweep()
    assert (report.ari_reads, report.ari_checks, report.errors) == (0, 0, [])
    assert "get_current" not in estate.store.calls and report.scanned == 5


def test_the_sweep_reads_a_certificate_once_then_decides_from_kept_windows(estate: Estate) -> None:
    estate.seed()
    estate.seed("local-web")  # routed to a local CA: no ARI
    report = estate.sweep()
    assert (report.ari_reads, report.ari_checks) == (1, 1)
    assert estate.store.calls.count("get_current") == 1
    decision = decision_of(report)
    assert decision.trigger == "ari" and not decision.due and decision.reason.startswith("ARI window")
    assert decision_of(report, "local-web").trigger != "ari" and estate.jobs.sent == []

    estate.now = NOW + 2 * HOUR  # the next sweep, Retry-After not passed: no read, no question
    report = estate.sweep()
    assert (report.ari_reads, report.ari_checks, estate.windows.loads) == (0, 0, 2)
    assert "get_current" not in estate.store.calls and decision_of(report).trigger == "ari"


def test_when_the_ca_moves_the_window_to_now_the_next_sweep_renews(estate: Estate) -> None:
    estate.seed()
    estate.sweep()
    estate.ca.move_window(NOW - 2 * HOUR, NOW - HOUR)  # mass revocation
    estate.now = NOW + 7 * HOUR  # the next sweep after Retry-After (6 h)
    report = estate.sweep()
    assert (report.ari_reads, report.ari_checks) == (0, 1)  # the kept certID names it: no read
    decision = decision_of(report)
    assert decision.due and decision.trigger == "ari" and "the window has passed: renew now" in decision.reason
    (job, delay) = estate.jobs.sent[0]
    assert (job.name, job.reason, delay) == ("web", "sweep", None)


def test_a_moment_before_the_next_sweep_gets_a_job_delayed_to_it(estate: Estate) -> None:
    estate.seed()
    estate.ca.move_window(NOW + 2 * HOUR, NOW + 8 * HOUR)
    report = estate.sweep()
    decision = decision_of(report)
    assert not decision.due and decision.trigger == "ari" and report.ari_scheduled == 1
    ((job, delay),) = estate.jobs.sent
    assert delay == decision.renew_at - NOW + SCHEDULE_MARGIN and job.name == "web"
    assert estate.sweep(dry_run=True).ari_scheduled == 1 and estate.jobs.sent == []


def test_a_sweep_goes_on_when_reads_and_the_ca_fail(estate: Estate) -> None:
    estate.seed("a")
    estate.seed("b", days_left=10)  # due by its policy (30 days before expiry)
    estate.store.fail["get_current"] = ConnectionError("Key Vault reset the connection")
    estate.ca.down = True
    report = estate.sweep()
    assert report.errors == [] and report.scanned == 2
    assert report.ari_failures == 2 and [e.name for e in report.due] == ["b"]
    assert decision_of(report, "b").trigger != "ari"


# -- the orchestrator ---------------------------------------------------------------------------------------
def orchestrator(estate: Estate) -> RenewalOrchestrator:
    return RenewalOrchestrator(
        config=config(),
        stores={VAULT: estate.store},
        issuers=estate.issuer,
        trust_anchors=lambda _name: [PKI.root.cert],
        ledger=MemoryLedger(),
        claims=MemoryClaims(),
        jobs=MemoryJobs(),
        notices=MemoryNotices(),
        clock=lambda: estate.now,
        renewal_windows=estate.windows,
    )


def test_a_job_the_ca_made_due_renews_and_names_the_certificate_it_replaces(estate: Estate) -> None:
    estate.seed()
    cert_id = estate.cert_id()
    estate.ca.move_window(NOW - 2 * HOUR, NOW - HOUR)
    estate.sweep()  # keeps the window the job's re-check reads
    asked = len(estate.ca.asked)
    outcome = orchestrator(estate).run(RenewalJob(vault=VAULT, name="web", reason="sweep"))
    assert outcome.status == "renewed"
    (request,) = estate.ca.requests
    assert request.replaces == cert_id
    assert len(estate.ca.asked) == asked  # the kept window served the re-check and the replaces


def test_without_ari_the_policy_decides_and_no_replaces_is_sent(estate: Estate) -> None:
    estate.seed()
    estate.ca.offers = False
    assert orchestrator(estate).run(RenewalJob(vault=VAULT, name="web", reason="sweep")).status == "not-due"
    outcome = orchestrator(estate).run(RenewalJob(vault=VAULT, name="web", reason="operator", force=True))
    assert outcome.status == "renewed" and estate.ca.requests[0].replaces is None


def test_a_window_still_ahead_stops_the_job_as_not_due_with_the_ari_reason(estate: Estate) -> None:
    estate.seed()
    outcome = orchestrator(estate).run(RenewalJob(vault=VAULT, name="web", reason="sweep"))
    assert outcome.status == "not-due" and outcome.detail.startswith("ARI window")
    assert estate.ca.requests == []


def test_a_ca_down_at_the_re_check_leaves_the_policy_and_a_forced_renewal_still_runs(estate: Estate) -> None:
    estate.seed(days_left=10)  # due by policy
    estate.ca.down = True
    outcome = orchestrator(estate).run(RenewalJob(vault=VAULT, name="web", reason="sweep"))
    assert outcome.status == "renewed" and estate.ca.requests[0].replaces is None


# -- views (the inventory, the dashboard) -------------------------------------------------------------------
def test_a_view_shows_the_kept_window_and_never_asks(estate: Estate) -> None:
    estate.seed()
    estate.seed("local-web")
    estate.ca.move_window(NOW - 2 * HOUR, NOW - HOUR)
    estate.sweep()
    asked, built = len(estate.ca.asked), len(estate.issuers_built)
    view = RenewalTiming(config=config(), issuers=None, windows=estate.windows, now=NOW + 30 * DAY, bulk=True)
    for listing in estate.store.list_certificates():
        policy = is_due(now=view.now, not_before=listing.not_before, expires_on=listing.expires_on, tags={})
        shown = view.with_kept_window(
            policy, vault=VAULT, name=listing.name, tags=listing.tags, thumbprint=listing.thumbprint
        )
        if listing.name == "web":
            assert shown.trigger == "ari" and shown.due and shown.reason.startswith("ARI window")
        else:
            assert shown == policy
    assert (len(estate.ca.asked), len(estate.issuers_built)) == (asked, built)  # no client built, nothing asked
