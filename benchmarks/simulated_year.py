"""A year in the life of an estate, in simulated time: the real functions renew 1,000 certificates over 3 vaults
while CAs go down, events are lost, Key Vault throttles and fails, workers die and a CA revokes early.

    python benchmarks/simulated_year.py                 # 1,000 certificates, 365 days (about 5 minutes here)
    python benchmarks/simulated_year.py --certificates 100 --days 120   # the short variant the tests run

**One clock.** The Key Vault emulator (its own process) keeps time as real time plus an offset that only moves
forward (``kv.admin.advance_clock``); the service, both CAs, the queue host and this script read the same
clock (real time plus the same offset, kept here as it is advanced). The clock moves an hour at a time, and
to the moment the next queued message becomes visible when that comes sooner; at each step the work that is
due is drained before the clock moves on.

**Events.** Each vault has an Event Grid subscription to a loopback web hook (``devtools.eventgrid_host``) that
hands every delivery to the real ``function_app.on_certificate_event`` through ``azure.functions``' own
converter. The emulator publishes NearExpiry/Expired as its clock passes them; each step waits for the
deliveries (``flush_events``) before it drains the queue.

**Queues.** Azurite keeps real time, so the queues are an in-memory host of our own (:class:`QueueHost`) that
follows the Functions host's queue-trigger rules in simulated time: delays (visibility), a 10-minute hold
while a message runs, a retry 30 s after a failure (``host.json`` visibilityTimeout), ``maxDequeueCount``
then ``<queue>-poison``, and a message whose worker died coming back with its dequeue count spent. Each
message goes to the real ``function_app.renewal_worker`` / ``deploy_notifier`` through
``devtools.host.queue_message`` (the worker's own converter). The service's JobQueue, NoticeQueue and
PoisonQueueStore ports are this host; the ledger, claims (with their TTL, in simulated time) and renewal
windows are in memory. The nightly sweep runs at 02:30 through ``function_app.nightly_sweep``; the operator
replays through ``function_app.ops_replay``.

**CAs.** ``corp-local`` is the product's local CA client (``type: local``), its clock the simulated one.
``public-acme`` is configured as an ACME issuer (``type: acme``, falling back to ``corp-local``) but is a
simulated CA in this process: pebble and step-ca run on real time and cannot follow a simulated clock, so the
ACME wire protocol is not exercised here (``tests/ca_clients`` and ``tests/flow/test_ari_flow.py`` do that
against pebble); what is exercised is everything above it: the failover client, the routing, RFC 9773
renewal information in the sweep and the worker's re-check, ``replaces``. It issues the CA/Browser Forum
lifetimes (47, 100, 200, 397 days: the longest that fits the policy's validity, as a public CA's profile
would); the local CA issues what the policy's validity asks (61, 122, 213 and 397 days for 2, 4, 7 and 14
months). Its renewal window is one day either side of two thirds of the lifetime, Retry-After 6 h.

Everything measured comes from this script's own record (every merge, through a thin wrapper around the
stores), Key Vault's own counters and version lists, and the CAs' own counts, not from the service's ledger.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import heapq
import itertools
import json
import logging
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from harness import verdict  # noqa: E402

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
SWEEP_AT = dt.time(2, 30)
"""``RENEWAL_SWEEP_SCHEDULE``'s default, ``0 30 2 * * *`` (UTC)."""
OPERATOR_AT = dt.time(9, 0)
SWEEP_PERIOD = DAY
LATE_GRACE = dt.timedelta(minutes=15)
"""After the sweep that finds a certificate due, its job may wait for the vault's create budget (the sweep
spreads a vault's due jobs at Key Vault's 2 creates a second): lateness allows a sweep period plus this."""
IN_FLIGHT_HOLD = dt.timedelta(minutes=10)
"""How long the host hides a message while its function runs: a worker that dies leaves it hidden this long."""
RETRY_VISIBILITY = dt.timedelta(seconds=30)
"""``host.json``: extensions.queues.visibilityTimeout."""
ACME_RETRY_AFTER = dt.timedelta(hours=6)
CAB_LIFETIMES = (47, 100, 200, 397)
VALIDITY_MONTHS = (2, 4, 7, 14)
"""The policies' validity per lifetime class (Key Vault policies speak whole months)."""
DAYS_BEFORE_EXPIRY = {2: 12, 4: 30, 7: 45, 14: 60}
KV_FAULT_KINDS = ("kv-429", "kv-5xx")
PUBLIC, PRIVATE = "public-acme", "corp-local"


class WorkerKilled(BaseException):
    """Raised at a crash point: the worker process dies there (no handler in the product catches it)."""


# -- the estate and what happened to it ---------------------------------------------------------------------
@dataclass
class VersionRecord:
    current_from: dt.datetime
    not_before: dt.datetime
    expires: dt.datetime
    issuer: str
    """public-acme, corp-local, or "seed" (the certificate arrived with it)."""
    cert_id: str | None = None
    thumbprint: str | None = None


@dataclass
class CertRecord:
    vault: str
    name: str
    route: str
    months: int
    policies: list[tuple[dt.datetime, tuple[str, int] | None]]
    """(since, trigger): ("percent", P), ("days", D), or None (no trigger: the default fraction)."""
    arrived: dt.datetime
    arrived_expired: bool = False
    deleted: dt.datetime | None = None
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.vault, self.name)

    def trigger_at(self, when: dt.datetime) -> tuple[str, int] | None:
        """The trigger in force just before ``when`` (a change made by a renewal applies to its new version)."""
        trigger = self.policies[0][1]
        for since, value in self.policies:
            if since < when:
                trigger = value
        return trigger


@dataclass
class FaultBand:
    kind: str
    start: dt.datetime
    end: dt.datetime
    scope: str = "*"
    """A vault, an issuer, or * (everything)."""


@dataclass
class YearSpec:
    certificates: int = 1000
    days: int = 365
    vaults: tuple[str, ...] = ("kv-sim-east", "kv-sim-west", "kv-sim-north")
    added: int = 50
    deleted: int = 30
    arrive_expired: int = 5
    revoked: int = 200
    event_loss: float = 0.05
    kill_rate: float = 0.02
    """Share of job deliveries that arm a crash point; the next worker that reaches it dies there."""
    public_share: float = 0.6
    seed: int = 20261201
    step: dt.timedelta = HOUR
    policy_recheck_days: int = 2
    """The service's ``defaults.policy_recheck_days`` (0 would leave in-place policy edits unseen)."""
    wall_bound: float = 600.0
    """Seconds the whole run may take (the issue's 10 minutes; the short variant's CI budget is 2)."""
    artifact: Path = ROOT / "test-artifacts" / "simulated_year.svg"

    def day(self, fraction: float) -> float:
        """A day of the year as a fraction of its length (faults keep their places in a shorter year)."""
        return round(self.days * fraction, 2)


# -- the clock ----------------------------------------------------------------------------------------------
class SimClock:
    """Real time plus the emulator's offset, moved only through :meth:`advance` (which moves the emulator's)."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.offset = admin.now() - time.time()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.offset, dt.UTC)

    def advance_to(self, target: dt.datetime) -> int:
        seconds = (target - self.now()).total_seconds()
        if seconds <= 0:
            return 0
        published = self.admin.advance_clock(seconds=seconds)
        self.offset += seconds
        return published


# -- the queues, in simulated time -----------------------------------------------------------------------------
@dataclass
class Message:
    id: str
    body: str
    inserted_on: dt.datetime
    visible_at: dt.datetime
    dequeue_count: int = 0

    @property
    def payload(self) -> Any | None:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class QueueHost:
    """The ``renewal-jobs`` and ``deployments`` queues and their poison twins, with the Functions host's
    delivery rules in simulated time. Implements the service's JobQueue, NoticeQueue and PoisonQueueStore."""

    def __init__(self, clock: SimClock) -> None:
        from renewal import settings

        self.clock = clock
        self.settings = settings
        self.queues: dict[str, list[Message]] = {
            name: [] for q in (settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE) for name in (q, f"{q}-poison")
        }
        self.lock = threading.Lock()
        self.poisoned = 0
        self.deliveries = 0
        self.failed_deliveries = 0

    # the ports
    def send(self, queue: str, body: str, delay: dt.timedelta | None = None) -> None:
        now = self.clock.now()
        # The service counts whole seconds, rounded up (renewal.azure.queues.delay_seconds).
        delay_s = 0 if delay is None or delay.total_seconds() <= 0 else -(-delay.total_seconds() // 1)
        message = Message(uuid.uuid4().hex, body, now, now + dt.timedelta(seconds=min(delay_s, 7 * 86_400)))
        with self.lock:
            self.queues[queue].append(message)

    def jobs_port(self) -> Any:
        host = self

        class Jobs:
            def enqueue(self, job: Any, *, delay: dt.timedelta | None = None) -> None:
                host.send(host.settings.JOBS_QUEUE, job.to_json(), delay)

        return Jobs()

    def notices_port(self, world: World) -> Any:
        host = self

        class Notices:
            def enqueue(self, notice: Any) -> None:
                world.crash_point("before-notice")
                host.send(host.settings.DEPLOYMENTS_QUEUE, notice.to_json())

        return Notices()

    def _main(self, queue_name: str) -> str:
        return queue_name.removesuffix("-poison")

    def list_poison(self, queue_name: str = "renewal-jobs", *, limit: int = 5000) -> list[Message]:
        with self.lock:
            return list(self.queues[f"{self._main(queue_name)}-poison"][:limit])

    def requeue_poison(
        self,
        queue_name: str = "renewal-jobs",
        *,
        ids: Collection[str] | None = None,
        transform: Callable[[Any], str | None] | None = None,
        limit: int = 5000,
    ) -> int:
        main = self._main(queue_name)
        moved = 0
        for message in self.list_poison(main, limit=limit):
            if ids is not None and message.id not in ids:
                continue
            body = transform(message) if transform else message.body
            if body is None:
                continue
            self.send(main, body)
            with self.lock:
                self.queues[f"{main}-poison"].remove(message)
            moved += 1
        return moved

    def depths(self) -> dict[str, int]:
        with self.lock:
            return {name: len(messages) for name, messages in self.queues.items()}

    # the host
    def next_visible(self) -> dt.datetime | None:
        with self.lock:
            times = [m.visible_at for q in self._mains() for m in self.queues[q]]
        return min(times) if times else None

    def _mains(self) -> tuple[str, str]:
        return (self.settings.JOBS_QUEUE, self.settings.DEPLOYMENTS_QUEUE)

    def take(self, now: dt.datetime) -> tuple[str, Message] | None:
        """The visible message inserted first (jobs before notices at a tie), hidden while it runs."""
        with self.lock:
            best: tuple[str, Message] | None = None
            for queue in self._mains():
                for message in self.queues[queue]:
                    if message.visible_at <= now and (best is None or message.visible_at < best[1].visible_at):
                        best = (queue, message)
            if best is not None:
                best[1].dequeue_count += 1
                best[1].visible_at = now + IN_FLIGHT_HOLD
            return best

    def settle(self, queue: str, message: Message, outcome: str, now: dt.datetime) -> None:
        """``done`` deletes; ``failed`` retries after the visibility timeout, or poisons on the last
        dequeue; ``killed`` leaves it hidden for the rest of its hold (the worker is gone)."""
        with self.lock:
            if outcome == "done":
                self.queues[queue].remove(message)
            elif outcome == "failed":
                self.failed_deliveries += 1
                if message.dequeue_count >= self.settings.MAX_DEQUEUE_COUNT:
                    self._poison(queue, message)
                else:
                    message.visible_at = now + RETRY_VISIBILITY
            elif outcome == "overdue":
                self._poison(queue, message)

    def _poison(self, queue: str, message: Message) -> None:
        self.queues[queue].remove(message)
        self.queues[f"{queue}-poison"].append(message)
        self.poisoned += 1


# -- in-memory ports ---------------------------------------------------------------------------------------------
class Ledger:
    """The ``renewals`` table in memory, indexed by certificate (rows are copies, as a table's are)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def get(self, vault: str, name: str, request_id: str) -> Any:
        with self.lock:
            row = self.rows.get((vault, name), {}).get(request_id)
            return copy.deepcopy(row) if row else None

    def upsert(self, row: Any) -> None:
        with self.lock:
            self.rows.setdefault((row.vault, row.name), {})[row.request_id] = copy.deepcopy(row)

    def history(self, vault: str, name: str) -> list[Any]:
        with self.lock:
            rows = [copy.deepcopy(r) for r in self.rows.get((vault, name), {}).values()]
        floor = dt.datetime.min.replace(tzinfo=dt.UTC)
        return sorted(rows, key=lambda r: r.started_at or floor, reverse=True)

    def recent(self, *, states: set[Any] | None = None, limit: int = 100) -> list[Any]:
        with self.lock:
            rows = [r for per in self.rows.values() for r in per.values() if not states or r.state in states]
        floor = dt.datetime.min.replace(tzinfo=dt.UTC)
        rows.sort(key=lambda r: r.updated_at or r.started_at or floor, reverse=True)
        return [copy.deepcopy(r) for r in rows[:limit]]


class Claims:
    """Blob-lease claims with their TTL in simulated time. A worker that dies keeps its claim until it lapses."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.held: dict[tuple[str, str], dt.datetime] = {}
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> Iterator[bool]:
        key, now = (vault, name), self.clock.now()
        with self.lock:
            until = self.held.get(key)
            mine = until is None or until <= now
            if mine:
                self.held[key] = now + ttl
        if not mine:
            yield False
            return
        killed = False
        try:
            yield True
        except WorkerKilled:
            killed = True
            raise
        finally:
            if not killed:
                with self.lock:
                    self.held.pop(key, None)


class NoDeadLetters:
    """Event Grid dead-letter blobs: none here (the web hook always answers; a lost event is never retried)."""

    def list(self, prefix: str | None = None) -> list[Any]:
        return []

    def blob_names(self, prefix: str | None = None) -> list[str]:
        return []

    def remove(self, blob_name: str) -> bool:
        return False


class NoPacer:
    """The create pacer keeps real time; the emulator's service limits are off here (see the README)."""

    def reserve(self) -> float:
        return 0.0


# -- the world: what this script records, the crash points, the CAs ---------------------------------------------
class World:
    def __init__(self, spec: YearSpec, clock: SimClock) -> None:
        self.spec = spec
        self.clock = clock
        self.rng = random.Random(spec.seed)
        self.certs: dict[tuple[str, str], CertRecord] = {}
        self.faults: list[FaultBand] = []
        self.job_failures: dict[tuple[str, str], list[dt.datetime]] = {}
        self.sweep_failures: list[tuple[dt.datetime, str]] = []
        self.armed: str | None = None
        self.kills: dict[str, int] = {}
        self.submissions: dict[str, int] = {PUBLIC: 0, PRIVATE: 0}
        """CSRs that reached a CA that was up (signed or refused)."""
        self.issued: dict[str, int] = {PUBLIC: 0, PRIVATE: 0}
        """Certificates the CAs signed."""
        self.refusals: dict[str, int] = {PUBLIC: 0, PRIVATE: 0}
        self.unreachable: dict[str, int] = {PUBLIC: 0, PRIVATE: 0}
        self.replaces_sent = 0
        self.ari_checks = 0
        self.acme_down = False
        self.acme_profile = "tlsserver"
        self.acme_issued: dict[str, tuple[dt.datetime, dt.datetime]] = {}
        self.acme_windows: dict[str, list[tuple[dt.datetime, dt.datetime, dt.datetime]]] = {}
        """cert_id -> [(published, start, end)]: the windows the CA has suggested, in order."""
        self.events = {"delivered": 0, "lost": 0}
        self.soonest: list[tuple[dt.datetime, float]] = []
        self.revoked: dict[tuple[str, str], tuple[dt.datetime, str]] = {}
        """Certificates whose window the CA moved to "now": key -> (when, the cert_id it moved)."""
        self.edited: tuple[str, str] | None = None
        self.kv_default_pending: set[tuple[str, str]] = set()
        """Certificates whose policy went to Key Vault without a lifetime action (see SimStore.begin_pending)."""
        self.lock = threading.Lock()

    # crash points (tests/reliability/worker.py's, raised instead of SIGKILL: nothing in the product catches it)
    def crash_point(self, point: str) -> None:
        if self.armed == point:
            self.armed = None
            self.kills[point] = self.kills.get(point, 0) + 1
            raise WorkerKilled(point)

    def band(self, kind: str, start: dt.datetime, end: dt.datetime, scope: str = "*") -> None:
        self.faults.append(FaultBand(kind, start, end, scope))

    def merged(self, vault: str, name: str, version: Any) -> None:
        from cryptography import x509

        from ca_clients.ari import ari_cert_id
        from renewal.flow.ari import thumbprint_of

        leaf = x509.load_der_x509_certificate(version.cer)
        issuer_cn = leaf.issuer.rfc4514_string()
        issuer = PUBLIC if "Sim Public ACME" in issuer_cn else PRIVATE
        record = VersionRecord(
            current_from=self.clock.now(),
            not_before=version.not_before,
            expires=version.expires_on,
            issuer=issuer,
            cert_id=ari_cert_id(leaf) if issuer == PUBLIC else None,
            thumbprint=thumbprint_of(version.cer),
        )
        with self.lock:
            cert = self.certs[(vault, name)]
            cert.versions.append(record)
            if (vault, name) in self.kv_default_pending:
                self.kv_default_pending.discard((vault, name))
                if cert.policies[-1][1] is None:
                    # Key Vault gives a policy without lifetime actions its default (80 %, EmailContacts): the
                    # renewal re-submitted the policy, so from this version on the certificate has that trigger.
                    cert.policies.append((record.current_from, ("percent", 80)))

    def acme_window(self, cert_id: str) -> tuple[dt.datetime, dt.datetime] | None:
        with self.lock:
            windows = self.acme_windows.get(cert_id)
            return (windows[-1][1], windows[-1][2]) if windows else None


class SimStore:
    """The product's Key Vault store, with this script's record of every merge and two crash points."""

    def __init__(self, inner: Any, world: World) -> None:
        self._inner = inner
        self._world = world
        self.vault = inner.vault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def begin_pending(self, name: str, policy: Any, *, tags: dict[str, str]) -> Any:
        operation = self._inner.begin_pending(name, policy, tags=tags)
        if not policy.lifetime_triggers:
            self._world.kv_default_pending.add((self.vault, name))
        self._world.crash_point("after-create")
        return operation

    def merge(self, name: str, chain_der: list[bytes], *, tags: dict[str, str] | None = None) -> Any:
        merged = self._inner.merge(name, chain_der, tags=tags)
        self._world.merged(self.vault, name, merged)
        self._world.crash_point("after-merge")
        return merged


class SimulatedAcmeCA:
    """An ACME CA with renewal information (RFC 9773) in this process, on the simulated clock (see the module
    docstring for why). It signs with a CA of its own through the product's local signer."""

    def __init__(self, name: str, section: dict[str, Any], signer: Any, world: World) -> None:
        self.name = name
        self.profile = section.get("profile")
        self.signer = signer
        self.world = world

    def _reachable(self) -> None:
        from ca_clients import TransientCAError

        if self.world.acme_down:
            with self.world.lock:
                self.world.unreachable[PUBLIC] += 1
            raise TransientCAError("connection refused (CA outage)", issuer=self.name)

    def offers_renewal_info(self) -> bool:
        self._reachable()
        return True

    def renewal_info(self, certificate: Any) -> Any:
        from ca_clients import RenewalInfo
        from ca_clients.ari import ari_cert_id

        self._reachable()
        cert_id = certificate if isinstance(certificate, str) else ari_cert_id(certificate)
        with self.world.lock:
            self.world.ari_checks += 1
        window = self.world.acme_window(cert_id)
        if window is None:
            return None  # 404: not a certificate this CA issued
        return RenewalInfo(cert_id, window[0], window[1], retry_after=ACME_RETRY_AFTER)

    def sign(self, request: Any) -> Any:
        from ca_clients import IssuedChain, PermanentCAError
        from ca_clients.ari import ari_cert_id

        self._reachable()
        with self.world.lock:
            self.world.submissions[PUBLIC] += 1
            if request.replaces:
                self.world.replaces_sent += 1
        if self.profile != self.world.acme_profile:
            with self.world.lock:
                self.world.refusals[PUBLIC] += 1
            raise PermanentCAError(f"invalidProfile: profile {self.profile!r} is not offered", issuer=self.name)
        wanted = request.validity or dt.timedelta(days=90)
        days = max([d for d in CAB_LIFETIMES if dt.timedelta(days=d) <= wanted] or [CAB_LIFETIMES[0]])
        issued = self.signer.sign(dataclasses.replace(request, validity=dt.timedelta(days=days)))
        leaf = issued.leaf
        with self.world.lock:
            self.world.issued[PUBLIC] += 1
        nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        middle = nb + (na - nb) * 2 / 3
        cert_id = ari_cert_id(leaf)
        with self.world.lock:
            self.world.acme_issued[cert_id] = (nb, na)
            self.world.acme_windows[cert_id] = [(self.world.clock.now(), middle - DAY, middle + DAY)]
        return IssuedChain(issued.certificates, issuer_name=self.name)


class CountedCA:
    """The product's local CA client, counted."""

    def __init__(self, inner: Any, world: World) -> None:
        self.inner = inner
        self.name = inner.name
        self.world = world

    def sign(self, request: Any) -> Any:
        with self.world.lock:
            self.world.submissions[self.name] += 1
        issued = self.inner.sign(request)
        with self.world.lock:
            self.world.issued[self.name] += 1
        return issued


class KillableIssuer:
    """What the orchestrator gets for an issuer name: the failover client, with the ``after-ca`` crash point."""

    def __init__(self, inner: Any, world: World) -> None:
        self.inner = inner
        self.name = inner.name
        self.world = world

    def sign(self, request: Any) -> Any:
        issued = self.inner.sign(request)
        self.world.crash_point("after-ca")
        return issued

    def offers_renewal_info(self) -> bool:
        return bool(getattr(self.inner, "offers_renewal_info", lambda: False)())

    def renewal_info(self, certificate: Any) -> Any:
        method = getattr(self.inner, "renewal_info", None)
        return method(certificate) if method is not None else None


def simulated_service(config: Any, *, environ: dict[str, str], world: World, ports: dict[str, Any], **kwargs: Any):
    """A RenewalService whose storage ports are this simulation's and whose ACME issuer is the simulated CA;
    every other part (stores over the SDK, orchestrator, sweep, ARI timing, failover, local CA) is the product's."""
    from ca_clients import ClientContext, PermanentCAError
    from ca_clients.failover import FailoverClient, failover_order
    from ca_clients.local import Config as LocalConfig
    from ca_clients.local import build as build_local
    from ca_clients.registry import CheckedClient, build_client
    from renewal.service import RenewalService

    class SimulatedService(RenewalService):
        def issuer(self, name: str) -> Any:
            with self._issuer_lock:
                if name not in self._issuers:
                    sections = {str(s["name"]): s for s in self.config.issuers}
                    if name not in sections:
                        raise PermanentCAError(f"issuer {name!r} is not configured", issuer=name)
                    context = ClientContext(secrets=self.secrets, extra=self._context_extra)
                    members = [self._member(sections[n], context) for n in failover_order(name, sections)]
                    client = FailoverClient(members[0], members[1:]) if len(members) > 1 else members[0]
                    self._issuers[name] = KillableIssuer(client, world)
                return self._issuers[name]

        def _member(self, section: dict[str, Any], context: Any) -> Any:
            if section["type"] == "acme":
                signer = build_local(section["name"], LocalConfig(**ports["acme_signer"]), context)
                return CheckedClient(SimulatedAcmeCA(section["name"], section, signer, world))
            return CountedCA(build_client(section, context), world)

    service = SimulatedService(config, environ=environ, **kwargs)
    for name in ("ledger", "claims", "jobs", "notices", "poison", "dead_letters", "renewal_windows"):
        setattr(service, name, ports[name])
    service.version_facts = None
    service.backups = None
    return service


# -- the estate -------------------------------------------------------------------------------------------------
def policy_wire(name: str, months: int, trigger: tuple[str, int] | None) -> dict[str, Any]:
    host = f"{name}.example.test"
    wire: dict[str, Any] = {
        "issuer": {"name": "Unknown"},
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": False, "reuse_key": False},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": f"CN={host}", "sans": {"dns_names": [host]}, "validity_months": months},
        "lifetime_actions": [],
    }
    if trigger is not None:
        key = "lifetime_percentage" if trigger[0] == "percent" else "days_before_expiry"
        wire["lifetime_actions"] = [{"trigger": {key: trigger[1]}, "action": {"action_type": "EmailContacts"}}]
    return wire


def lifetime_days(route: str, months: int) -> int:
    """What the route's CA issues for a policy of ``months`` (see the module docstring)."""
    wanted = round(months * 30.4375)
    if route == PUBLIC:
        return max([d for d in CAB_LIFETIMES if d <= wanted] or [CAB_LIFETIMES[0]])
    return min(wanted, 397)


def policy_trigger(nb: dt.datetime, exp: dt.datetime, trigger: tuple[str, int] | None) -> dt.datetime:
    """docs/renewal-timing.md's rule: the policy's trigger, or 2/3 of the lifetime (the default fraction)."""
    if trigger is None:
        return nb + (exp - nb) * (2 / 3)
    if trigger[0] == "percent":
        return nb + (exp - nb) * (trigger[1] / 100)
    return exp - dt.timedelta(days=trigger[1])


def mirrored_tags(trigger: tuple[str, int] | None) -> dict[str, str]:
    """What ``python -m renewal adopt`` leaves on an adopted certificate: the policy's trigger, mirrored."""
    if trigger is None:
        return {}
    key = "lifetime_percentage" if trigger[0] == "percent" else "days_before_expiry"
    return {"renewal-policy-trigger": f"{key}={trigger[1]}"}


def random_trigger(rng: random.Random, months: int) -> tuple[str, int] | None:
    kind = rng.choice(("percent", "days", "none"))
    if kind == "percent":
        return ("percent", rng.choice((60, 70, 80)))
    if kind == "days":
        return ("days", DAYS_BEFORE_EXPIRY[months])
    return None


def seed_certificate(
    kv: Any, world: World, vault: str, name: str, route: str, months: int, trigger: tuple[str, int] | None,
    *, age: dt.timedelta | None = None, expired: bool = False,
) -> CertRecord:  # fmt: skip
    """One adopted certificate, arrived with a version of the route's lifetime, ``age`` into it."""
    now = world.clock.now()
    life = dt.timedelta(days=lifetime_days(route, months))
    if expired:
        nb = now - life - dt.timedelta(days=2)
    else:
        assert age is not None
        nb = now - age
    exp = nb + life
    kv.admin.seed(
        vault,
        certificates=[{"name": name}],
        not_before=int(nb.timestamp()),
        expires=int(exp.timestamp()),
        tags=mirrored_tags(trigger),
        policy=policy_wire(name, months, trigger),
    )
    nb = dt.datetime.fromtimestamp(int(nb.timestamp()), dt.UTC)
    exp = dt.datetime.fromtimestamp(int(exp.timestamp()), dt.UTC)
    record = CertRecord(vault, name, route, months, [(now, trigger)], now, arrived_expired=expired)
    record.versions.append(VersionRecord(now, nb, exp, "seed"))
    world.certs[record.key] = record
    return record


def new_certificate(kv: Any, world: World, index: int, *, at_start: bool, expired: bool = False) -> CertRecord:
    rng = world.rng
    vault = world.spec.vaults[index % len(world.spec.vaults)]
    route = PUBLIC if rng.random() < world.spec.public_share else PRIVATE
    months = VALIDITY_MONTHS[index % len(VALIDITY_MONTHS)]
    trigger = random_trigger(rng, months)
    life = dt.timedelta(days=lifetime_days(route, months))
    origin = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    first_due = policy_trigger(origin, origin + life, trigger) - origin
    # At the start: spread over the time before the first trigger, so none is due on day one. Later: anywhere.
    age = first_due * rng.uniform(0.02, 0.97) if at_start else life * rng.uniform(0.0, 0.5)
    prefix = "pub" if route == PUBLIC else "int"
    name = f"{prefix}-{lifetime_days(route, months)}d-{index:04d}"
    return seed_certificate(kv, world, vault, name, route, months, trigger, age=age, expired=expired)


def _stride(count: int, rate: float) -> bool:
    """Whether the ``count``-th of a series is one of the ``rate`` share picked at even spacing (a fault that
    happens at a steady rate, so a short run sees it as surely as a long one)."""
    return int(count * rate) > int((count - 1) * rate)


# -- the year ---------------------------------------------------------------------------------------------------
@dataclass
class YearResult:
    spec: YearSpec
    world: World
    wall_seconds: float
    keyvault_requests: int
    kv_versions: dict[tuple[str, str], int]
    poison_left: int
    replays: list[dict[str, Any]]
    start: dt.datetime
    end: dt.datetime
    deliveries: int = 0
    failed_deliveries: int = 0
    poisoned: int = 0
    policy_mismatches: list[str] = field(default_factory=list)
    requests_by_operation: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    passed: bool = True


class Year:
    def __init__(self, spec: YearSpec, kv: Any, workdir: Path) -> None:
        import function_app
        from ca_clients.local import create_ca_files
        from devtools import host
        from renewal import settings
        from renewal.config import parse_config
        from tests.memory_ports import MemoryRenewalWindows

        self.spec, self.kv, self.workdir = spec, kv, workdir
        self.function_app, self.host, self.settings = function_app, host, settings
        self.clock = SimClock(kv.admin)
        self.world = World(spec, self.clock)
        self.queues = QueueHost(self.clock)
        self.replays: list[dict[str, Any]] = []
        self.job_deliveries = 0
        self.event_deliveries = 0
        self.start = self.clock.now()
        self.next_sample = self.start
        self.webhook_url = ""
        self._schedule: list[tuple[dt.datetime, int, str, Callable[[], None]]] = []
        self._seq = itertools.count()
        local = create_ca_files(workdir / "corp-local", common_name="Sim Corp Issuing CA")
        acme = create_ca_files(workdir / "public-acme", common_name="Sim Public ACME Issuing CA")
        account_key = workdir / "acme-account.pem"
        from ca_clients.acme import generate_account_key_pem

        account_key.write_text(generate_account_key_pem())
        self.ports: dict[str, Any] = {
            "ledger": Ledger(),
            "claims": Claims(self.clock),
            "jobs": self.queues.jobs_port(),
            "notices": self.queues.notices_port(self.world),
            "poison": self.queues,
            "dead_letters": NoDeadLetters(),
            "renewal_windows": MemoryRenewalWindows(),
            "acme_signer": {
                "ca_certificate": str(acme["ca_certificate"]),
                "ca_key": {"file": str(acme["ca_key"])},
                "chain": str(acme["chain"]),
                "max_validity_days": 397,
            },
        }

        def document(profile: str) -> dict[str, Any]:
            return {
                "vaults": [{"name": v, "url": kv.vault_url(v)} for v in spec.vaults],
                "issuers": [
                    {
                        "name": PUBLIC,
                        "type": "acme",
                        "directory_url": "https://127.0.0.1:9/acme/directory",  # never dialled: simulated
                        "account_key": {"file": str(account_key)},
                        "profile": profile,
                        "trust_anchors": [str(acme["root"])],
                        "fallbacks": [PRIVATE],
                    },
                    {
                        "name": PRIVATE,
                        "type": "local",
                        "ca_certificate": str(local["ca_certificate"]),
                        "ca_key": {"file": str(local["ca_key"])},
                        "chain": str(local["chain"]),
                        "max_validity_days": 397,
                        "trust_anchors": [str(local["root"])],
                    },
                ],
                "routes": [{"issuer": PUBLIC, "match": "pub-*"}],
                "default_issuer": PRIVATE,
                "deployers": [],
                # A policy edited in place is seen within policy_recheck_days nights.
                "defaults": {"policy_recheck_days": spec.policy_recheck_days},
            }

        self.good_config = parse_config(document("tlsserver"))
        self.bad_config = parse_config(document("tls-server"))  # the operator's typo
        self.environ = {
            settings.KEYVAULT_CREDENTIAL.name: "emulator",
            settings.KEYVAULT_CA_BUNDLE.name: kv.ca_bundle,
        }
        from renewal.azure.keyvault import StaticTokenCredential, open_store

        self.stores = {
            v: SimStore(
                open_store(
                    v,
                    kv.vault_url(v),
                    StaticTokenCredential(),
                    connection_verify=kv.ca_bundle,
                    sleep=lambda _s: None,  # a 429 backoff of seconds is nothing on an hourly step
                    create_pacer=NoPacer(),
                    retry_backoff_factor=0.0,  # azure-core's own retries: the same, without real sleeps
                ),
                self.world,
            )
            for v in spec.vaults
        }
        self.install(self.good_config)

    def install(self, config: Any) -> None:
        """Deploy the app with ``config``: a new service (as a host restart after a settings change)."""
        self.function_app._service = simulated_service(
            config,
            environ=self.environ,
            world=self.world,
            ports=self.ports,
            clock=self.clock.now,
            stores=self.stores,
            client_context_extra={"now": self.clock.now},
        )

    @property
    def service(self) -> Any:
        return self.function_app._service

    # scheduling
    def at(self, when: dt.datetime, name: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._schedule, (when, next(self._seq), name, action))

    def start_of_day(self, day: float, at: dt.time) -> dt.datetime:
        """``at`` o'clock on day ``day`` of the year."""
        base = self.start + dt.timedelta(days=day)
        return dt.datetime.combine(base.date(), at, dt.UTC)

    def subscribe(self, vault: str) -> None:
        from renewal.flow.events import EXPIRED, NEAR_EXPIRY

        self.kv.admin.subscribe(vault, "renewal-events", self.webhook_url, event_types=[NEAR_EXPIRY, EXPIRED])

    # the functions, as the host calls them
    def deliver(self, queue: str, message: Message) -> None:
        now = self.clock.now()
        if message.dequeue_count > self.settings.MAX_DEQUEUE_COUNT:
            self.queues.settle(queue, message, "overdue", now)
            return
        function = (
            self.function_app.renewal_worker if queue == self.settings.JOBS_QUEUE else self.function_app.deploy_notifier
        )
        argument = self.host.queue_message(
            message.body.encode(),
            message_id=message.id,
            dequeue_count=message.dequeue_count,
            inserted_on=message.inserted_on,
            next_visible_on=message.visible_at,
            pop_receipt=uuid.uuid4().hex,
        )
        world = self.world
        self.queues.deliveries += 1
        if queue == self.settings.JOBS_QUEUE:
            self.job_deliveries += 1
            if world.armed is None and _stride(self.job_deliveries, self.spec.kill_rate):
                # Armed until a worker reaches that point (most deliveries find nothing due and reach none).
                world.armed = world.rng.choice(("after-create", "after-ca", "after-merge", "before-notice"))
        try:
            function(argument)
        except WorkerKilled:
            self.queues.settle(queue, message, "killed", now)
            self._failed(message)
            return
        except Exception:  # noqa: BLE001 - the host retries, then poisons
            self.queues.settle(queue, message, "failed", self.clock.now())
            self._failed(message)
            return
        self.queues.settle(queue, message, "done", now)

    def _failed(self, message: Message) -> None:
        payload = message.payload or {}
        key = (payload.get("vault"), payload.get("name"))
        self.world.job_failures.setdefault(key, []).append(self.clock.now())

    def on_event(self, event: Any) -> None:
        """The web hook's function: one delivery in 20 (5 %) is lost on the way (the handler never runs)."""
        with self.world.lock:
            self.event_deliveries += 1
            lost = _stride(self.event_deliveries, self.spec.event_loss)
            self.world.events["lost" if lost else "delivered"] += 1
        if not lost:
            self.function_app.on_certificate_event(event)

    def sweep(self) -> None:
        try:
            self.function_app.nightly_sweep(self.host.timer_request())
        except RuntimeError as exc:
            now = self.clock.now()
            for vault in self.spec.vaults:
                if f"{vault}:" in str(exc):
                    self.world.sweep_failures.append((now, vault))
        self.at(self.clock.now().replace(hour=2, minute=30, second=0, microsecond=0) + DAY, "sweep", self.sweep)

    def replay(self, why: str) -> None:
        """The operator's replay, through the admin HTTP function."""
        request = self.host.http_request("POST", "http://localhost/api/ops/replay", body=b"{}")
        response = self.function_app.ops_replay(request)
        result = json.loads(response.get_body())
        if result.get("jobs") or result.get("notices") or result.get("events"):
            self.replays.append({"at": self.clock.now().isoformat(timespec="minutes"), "why": why, **result})

    def operator_round(self) -> None:
        """Every morning: failed work is replayed, unless its cause (a known misconfiguration) still stands."""
        if self.service.config is self.good_config and any(self.queues.depths()[q] for q in self._poison_queues()):
            self.replay("morning check: poison after transient faults")
        self.at(
            self.clock.now().replace(hour=9, minute=0, second=0, microsecond=0) + DAY, "operator", self.operator_round
        )

    def _poison_queues(self) -> list[str]:
        return [f"{q}-poison" for q in (self.settings.JOBS_QUEUE, self.settings.DEPLOYMENTS_QUEUE)]

    # the loop
    def drain(self) -> None:
        while True:
            taken = self.queues.take(self.clock.now())
            if taken is None:
                return
            self.deliver(*taken)

    def step_to(self, target: dt.datetime) -> None:
        published = self.clock.advance_to(target)
        if published:
            self.kv.admin.flush_events(timeout=60)

    def run(self, end: dt.datetime) -> None:
        """Step the clock to ``end``: an hour at a time, or to the next scheduled action or visible message."""
        while True:
            while self._schedule and self._schedule[0][0] <= self.clock.now():
                _, _, _, action = heapq.heappop(self._schedule)
                action()
                self.drain()
            self.drain()
            now = self.clock.now()
            if now >= self.next_sample:
                self._sample()
                self.next_sample += dt.timedelta(hours=6)
            if now >= end:
                return
            target = min(now + self.spec.step, end)
            if self._schedule:
                target = min(target, self._schedule[0][0])
            visible = self.queues.next_visible()
            if visible is not None:
                target = min(target, max(visible, now))
            self.step_to(target)

    def _sample(self) -> None:
        now = self.clock.now()
        soonest = min(
            (
                (c.versions[-1].expires - now).total_seconds() / 86_400
                for c in self.world.certs.values()
                if c.deleted is None and c.versions and not (c.arrived_expired and len(c.versions) == 1)
            ),
            default=0.0,
        )
        self.world.soonest.append((now, soonest))


def schedule_year(year: Year) -> None:
    """The estate's changes and the faults, at their places in the year (as fractions of it, so a shorter year
    keeps every kind)."""
    spec, world, kv = year.spec, year.world, year.kv
    rng = random.Random(spec.seed + 1)
    start = year.start

    # the nightly sweep and the operator's morning check
    first_sweep = dt.datetime.combine(start.date(), SWEEP_AT, dt.UTC)
    year.at(first_sweep if first_sweep > start else first_sweep + DAY, "sweep", year.sweep)
    first_round = dt.datetime.combine(start.date(), OPERATOR_AT, dt.UTC)
    year.at(first_round if first_round > start else first_round + DAY, "operator", year.operator_round)

    # 50 added (5 of them already expired) and 30 deleted, spread over the first 90 % of the year
    for i in range(spec.added):
        expired = i < spec.arrive_expired
        index = spec.certificates + i
        year.at(
            start + dt.timedelta(days=rng.uniform(0.02, 0.9) * spec.days),
            "add",
            lambda index=index, expired=expired: new_certificate(kv, world, index, at_start=False, expired=expired),
        )

    def delete_one() -> None:
        live = [
            c for c in world.certs.values() if c.deleted is None and not c.arrived_expired and c.key != world.edited
        ]
        victim = world.rng.choice(sorted(live, key=lambda c: c.key))
        kv.certificate_client(victim.vault).begin_delete_certificate(victim.name)
        victim.deleted = world.clock.now()

    for _ in range(spec.deleted):
        year.at(start + dt.timedelta(days=rng.uniform(0.02, 0.9) * spec.days), "delete", delete_one)

    # one policy edited in place: a private certificate's trigger moves from 80 % of its lifetime to 50 %
    def edit_policy() -> None:
        """In the portal: a private certificate's trigger moves to 50 % of the lifetime, days before its old one."""
        from azure.keyvault.certificates import CertificatePolicyAction, LifetimeAction

        now, end = world.clock.now(), year.start + dt.timedelta(days=spec.days)

        def fits(c: CertRecord) -> bool:
            version = c.versions[-1]
            new = policy_trigger(version.not_before, version.expires, ("percent", 50))
            old = policy_trigger(version.not_before, version.expires, c.trigger_at(now))
            return now + 2 * DAY < new < end - 10 * DAY and old - new > 5 * DAY

        live = (c for c in world.certs.values() if c.deleted is None and c.route == PRIVATE and not c.arrived_expired)
        chosen = next(c for c in sorted(live, key=lambda c: c.key) if fits(c))
        client = kv.certificate_client(chosen.vault)
        policy = client.get_certificate_policy(chosen.name)
        policy._lifetime_actions = [LifetimeAction(CertificatePolicyAction.email_contacts, lifetime_percentage=50)]
        client.update_certificate_policy(chosen.name, policy)
        chosen.policies.append((now, ("percent", 50)))
        world.edited = chosen.key

    year.at(year.start_of_day(spec.day(0.33), dt.time(11, 0)), "policy edit", edit_policy)

    # a 3-day outage of the ACME CA (failover to the local CA)
    def outage(down: bool) -> Callable[[], None]:
        def act() -> None:
            world.acme_down = down

        return act

    outage_start = year.start_of_day(spec.day(0.16), dt.time(6, 0))
    year.at(outage_start, "acme down", outage(True))
    year.at(outage_start + 3 * DAY, "acme up", outage(False))
    world.band("CA outage", outage_start, outage_start + 3 * DAY, PUBLIC)

    # a week with one vault's Event Grid subscription disabled
    quiet_vault = spec.vaults[1]
    quiet_start = year.start_of_day(spec.day(0.27), dt.time(8, 0))
    year.at(quiet_start, "unsubscribe", lambda: kv.admin.unsubscribe(quiet_vault, "renewal-events"))
    year.at(quiet_start + 7 * DAY, "resubscribe", lambda: year.subscribe(quiet_vault))
    world.band("events off", quiet_start, quiet_start + 7 * DAY, quiet_vault)

    # 429 storms (one over the nightly sweep) and 5xx bursts from Key Vault
    def knobs(**values: Any) -> Callable[[], None]:
        return lambda: kv.admin.set_knobs(**values)

    for fraction, at, hours in ((0.08, dt.time(1, 30), 2.0), (0.45, dt.time(13, 0), 3.0), (0.7, dt.time(2, 0), 1.5)):
        begin = year.start_of_day(spec.day(fraction), at)
        year.at(begin, "429 storm", knobs(fault_status=429, fault_rate=0.8))
        year.at(begin + dt.timedelta(hours=hours), "429 storm over", knobs(fault_rate=0.0))
        world.band("kv-429", begin, begin + dt.timedelta(hours=hours))
    for fraction, at, minutes in ((0.12, dt.time(2, 25), 40), (0.52, dt.time(10, 0), 60), (0.78, dt.time(16, 0), 30)):
        begin = year.start_of_day(spec.day(fraction), at)
        year.at(begin, "5xx burst", knobs(fault_status=503, fault_rate=0.5))
        year.at(begin + dt.timedelta(minutes=minutes), "5xx burst over", knobs(fault_rate=0.0))
        world.band("kv-5xx", begin, begin + dt.timedelta(minutes=minutes))
    # and a burst that fails the next 25 merges and creates outright, whenever they come
    burst = year.start_of_day(spec.day(0.6), dt.time(3, 0))
    count = max(3, spec.certificates // 40)
    year.at(burst, "5xx merges", knobs(fault_status=503, fail_next={"merge": count, "create": count}))
    year.at(burst + 2 * DAY, "5xx merges over", knobs(fail_next={}))
    world.band("kv-5xx", burst, burst + 2 * DAY)

    # the mass-revocation day: the ACME CA moves the window of 200 of its certificates to "now"
    def revoke() -> None:
        now = world.clock.now()
        current = {
            c.versions[-1].cert_id: c
            for c in world.certs.values()
            if c.deleted is None and c.versions[-1].issuer == PUBLIC and c.versions[-1].cert_id
        }
        chosen = world.rng.sample(sorted(current), min(spec.revoked, len(current)))
        with world.lock:
            for cert_id in chosen:
                world.acme_windows[cert_id].append((now, now - 2 * HOUR, now - HOUR))
        world.revoked = {current[c].key: (now, c) for c in chosen}

    revocation = year.start_of_day(spec.day(0.58), dt.time(10, 0))
    year.at(revocation, "mass revocation", revoke)
    world.band("mass revocation", revocation, revocation + HOUR, PUBLIC)

    # a misconfigured issuer for 2 days (a typo in the ACME profile), then fixed and replayed
    misconfig = year.start_of_day(spec.day(0.64), dt.time(9, 30))

    def fix() -> None:
        year.install(year.good_config)
        year.replay("after fixing the issuer's profile")

    def due_while_misconfigured() -> None:
        # An ACME certificate adopted past its trigger (9 days left): whatever else the estate has due in these
        # two days, this one meets the broken profile, so a short year exercises the fault too.
        months, trigger = 3, ("days", 10)
        life = dt.timedelta(days=lifetime_days(PUBLIC, months))
        name = f"pub-{life.days}d-adopted-due"
        seed_certificate(kv, world, spec.vaults[0], name, PUBLIC, months, trigger, age=life - dt.timedelta(days=9))

    year.at(misconfig, "misconfigure", lambda: year.install(year.bad_config))
    year.at(misconfig + HOUR, "adopt a due certificate", due_while_misconfigured)
    year.at(misconfig + 2 * DAY, "fix and replay", fix)
    world.band("issuer misconfigured", misconfig, misconfig + 2 * DAY, PUBLIC)


def check_policies(kv: Any, world: World) -> list[str]:
    """This script's idea of each live certificate's trigger against the policy Key Vault holds (after the
    request counters were read: these reads are not the service's)."""
    wrong = []
    for record in sorted(world.certs.values(), key=lambda c: c.key):
        if record.deleted is not None:
            continue
        policy = kv.certificate_client(record.vault).get_certificate_policy(record.name)
        actions = policy.lifetime_actions or []
        held = None
        if actions:
            action = actions[0]
            held = ("percent", action.lifetime_percentage) if action.lifetime_percentage else (
                "days", action.days_before_expiry)  # fmt: skip
        if held != record.policies[-1][1]:
            wrong.append(f"{record.vault}/{record.name}: Key Vault {held}, recorded {record.policies[-1][1]}")
    return wrong


def simulate(spec: YearSpec, *, progress: Callable[[str], None] | None = None) -> YearResult:
    """Run the year; returns the record the verdicts are computed from."""
    from devtools.eventgrid_host import eventgrid_webhook
    from emulator.testing import running_emulator

    started = time.perf_counter()
    quiet = {name: logging.getLogger(name).level for name in ("renewal", "devtools", "ca_clients", "azure")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simulated-year-")))
        kv = stack.enter_context(running_emulator(list(spec.vaults), subprocess_mode=True, throttling=False))
        kv.admin.set_knobs(latency_ms=0, throttling=False)
        year = Year(spec, kv, workdir)
        year.webhook_url, _ = stack.enter_context(eventgrid_webhook(year.on_event))
        stack.callback(setattr, year.function_app, "_service", None)
        for i in range(spec.certificates):
            new_certificate(kv, year.world, i, at_start=True)
        for vault in spec.vaults:
            year.subscribe(vault)
        schedule_year(year)
        end = year.start + dt.timedelta(days=spec.days)
        kv.admin.reset_counters()
        last = time.perf_counter()
        day = 0
        while year.clock.now() < end:
            day += 1
            year.run(min(year.start + dt.timedelta(days=day), end))
            if progress is not None and (day % 30 == 0 or year.clock.now() >= end):
                now = time.perf_counter()
                progress(f"day {day}: {now - started:.0f}s ({now - last:.1f}s for the last 30 days)")
                last = now
        counters = kv.admin.counters()
        requests_made = sum(counters.values())
        policy_mismatches = check_policies(kv, year.world)
        versions = {}
        for record in year.world.certs.values():
            if record.deleted is None:
                client = kv.certificate_client(record.vault)
                versions[record.key] = sum(1 for _ in client.list_properties_of_certificate_versions(record.name))
        depths = year.queues.depths()
        poison_left = sum(depths[q] for q in year._poison_queues())
        result = YearResult(
            spec,
            year.world,
            time.perf_counter() - started,
            requests_made,
            versions,
            poison_left,
            year.replays,
            year.start,
            end,
            deliveries=year.queues.deliveries,
            failed_deliveries=year.queues.failed_deliveries,
            poisoned=year.queues.poisoned,
            policy_mismatches=policy_mismatches,
            requests_by_operation={k: v for k, v in sorted(counters.items(), key=lambda kv: -kv[1]) if v},
        )
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    return result


# -- the figures ----------------------------------------------------------------------------------------------------
@dataclass
class Renewal:
    record: CertRecord
    previous: VersionRecord
    new: VersionRecord

    @property
    def at(self) -> dt.datetime:
        return self.new.current_from


def renewals(result: YearResult) -> list[Renewal]:
    return [
        Renewal(c, c.versions[i - 1], c.versions[i])
        for c in result.world.certs.values()
        for i in range(1, len(c.versions))
    ]


def due_bounds(renewal: Renewal, world: World) -> tuple[dt.datetime, dt.datetime]:
    """(earliest, latest-base) for a renewal: it may not come before its trigger (the policy's, or the CA's
    window for a certificate the ACME CA issued); it must come within a sweep period of the moment the trigger
    was both reached and knowable (a policy edit or a moved window cannot be acted on before it happened)."""
    from renewal.flow.ari import chosen_moment
    from renewal.model import RenewalWindow

    previous, record = renewal.previous, renewal.record
    trigger = record.trigger_at(renewal.at)
    edited = max((since for since, _ in record.policies if since < renewal.at), default=record.arrived)
    due = policy_trigger(previous.not_before, previous.expires, trigger)
    known = max(previous.current_from, edited if edited > previous.current_from else previous.current_from)
    if previous.cert_id:
        windows = [w for w in world.acme_windows.get(previous.cert_id, []) if w[0] <= renewal.at]
        if windows:
            published, start, end = windows[-1]
            window = RenewalWindow(
                record.vault, record.name, previous.thumbprint or "", PUBLIC, previous.cert_id, published,
                published, start, end,
            )  # fmt: skip
            moment = chosen_moment(window)
            if moment < due:
                due = moment
                known = max(known, published)
    return due, max(due, known)


def excused(renewal: Renewal, base: dt.datetime, result: YearResult) -> bool:
    """Did a fault stand in the way between the trigger and the renewal, and was the renewal then made within a
    sweep period of its end? Faults that count: Key Vault failing, the certificate's issuer misconfigured, a job
    of the certificate failing (a killed worker too), a sweep failing for its vault. Not a CA outage (failover
    must carry it), lost events or a disabled subscription (the sweep must), nor a revocation (its own line)."""
    world, record = result.world, renewal.record
    ends = [
        band.end
        for band in world.faults
        if band.start <= renewal.at
        and band.end >= base
        and (band.kind in KV_FAULT_KINDS or (band.kind == "issuer misconfigured" and band.scope == record.route))
    ]
    ends += [t for t in world.job_failures.get(record.key, []) if base <= t <= renewal.at]
    ends += [t for t, vault in world.sweep_failures if vault == record.vault and base <= t <= renewal.at]
    return bool(ends) and renewal.at - min(max(ends), renewal.at) <= SWEEP_PERIOD + LATE_GRACE


def figures(result: YearResult) -> YearResult:
    world, spec = result.world, result.spec
    lines: list[str] = []
    ok = True

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    def check(name: str, figure: str, value: float, bound: float, bound_text: str, *, at_most: bool = True) -> None:
        nonlocal ok
        import io
        from contextlib import redirect_stdout

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            passed = verdict(name, figure, value, bound, bound_text, at_most=at_most)
        for line in buffer.getvalue().splitlines():
            say(line)
        ok = ok and passed

    done = renewals(result)
    live = [c for c in world.certs.values()]
    say(
        f"estate: {sum(1 for c in live if c.arrived < result.start + HOUR)} certificates at the start over "
        f"{len(spec.vaults)} vaults, {spec.added} added ({spec.arrive_expired} expired on arrival), "
        f"{sum(1 for c in live if c.deleted)} deleted; {spec.days} days"
    )
    say(
        f"renewals: {len(done)} ({sum(1 for r in done if r.new.issuer == PUBLIC)} by {PUBLIC}, "
        f"{sum(1 for r in done if r.new.issuer == PRIVATE)} by {PRIVATE}); queue deliveries {result.deliveries} "
        f"({result.failed_deliveries} failed, {result.poisoned} poisoned)"
    )
    if result.policy_mismatches:
        say(f"policies: {len(result.policy_mismatches)} differ from this script's record, e.g. "
            f"{result.policy_mismatches[0]}")  # fmt: skip

    # lapses
    lapse = dt.timedelta(0)
    lapsed: set[tuple[str, str]] = set()
    late_arrivals: list[float] = []
    for record in live:
        stop_all = min(record.deleted or result.end, result.end)
        for i, version in enumerate(record.versions):
            until = record.versions[i + 1].current_from if i + 1 < len(record.versions) else stop_all
            until = min(until, stop_all)
            if record.arrived_expired and i == 0:
                late_arrivals.append((until - record.arrived).total_seconds() / 3600)
                continue
            start = max(version.expires, version.current_from)
            if until > start:
                lapse += until - start
                lapsed.add(record.key)
    arrivals_ok = all(hours <= 24 for hours in late_arrivals) and len(late_arrivals) == spec.arrive_expired
    minutes = lapse.total_seconds() / 60
    check(
        "simulated_year lapses",
        f"{minutes:.0f} minutes with an expired current version over {len(lapsed)} certificates; "
        f"{len(late_arrivals)} arrived expired, renewed after {max(late_arrivals, default=0):.1f} h at most",
        minutes + (0 if arrivals_ok else 1_000_000),
        0,
        "0 minutes; arrived expired: renewed within 24 h",
    )

    # renewals outside their window
    early, late, late_excused, worst = [], [], 0, dt.timedelta(0)
    lateness: list[float] = []
    edited = world.certs[world.edited] if world.edited is not None else None
    edited_at = next((t for t, trig in edited.policies[1:] if trig == ("percent", 50)), None) if edited else None
    edit_renewal = next((r for r in done if r.record is edited and edited_at and r.at > edited_at), None)
    for renewal in done:
        if renewal.record.arrived_expired and renewal.previous is renewal.record.versions[0]:
            continue
        if renewal is edit_renewal:
            continue  # its own line below
        due, base = due_bounds(renewal, world)
        if renewal.at < due - dt.timedelta(seconds=1):
            early.append(renewal)
            continue
        delay = renewal.at - base
        lateness.append(delay.total_seconds() / 3600)
        if delay > SWEEP_PERIOD + LATE_GRACE:
            if excused(renewal, base, result):
                late_excused += 1
            else:
                late.append(renewal)
                worst = max(worst, delay)
    for renewal in (early + late)[:5]:
        due, base = due_bounds(renewal, world)
        say(
            f"  outside: {renewal.record.vault}/{renewal.record.name} renewed {renewal.at:%Y-%m-%d %H:%M} "
            f"trigger {due:%Y-%m-%d %H:%M} (known {base:%Y-%m-%d %H:%M}) by {renewal.new.issuer}"
        )
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99)] if lateness else 0.0
    median = lateness[len(lateness) // 2] if lateness else 0.0
    check(
        "simulated_year renewals outside their window",
        f"{len(early)} before the trigger, {len(late)} later than trigger + {SWEEP_PERIOD.total_seconds() / 3600:.0f} h"
        f" (+{LATE_GRACE.total_seconds() / 60:.0f} min create spread) with no fault in the way "
        f"({late_excused} later with a fault in the way; median {median:.1f} h,"
        f" p99 {p99:.1f} h after the trigger)",
        len(early) + len(late),
        0,
        "0",
    )

    if edited is not None and edited_at is not None:
        what = f"{edited.vault}/{edited.name}: trigger set to 50 % of the lifetime on {edited_at:%Y-%m-%d %H:%M}"
        if edit_renewal is not None:
            due, base = due_bounds(edit_renewal, world)
            hours = (edit_renewal.at - base).total_seconds() / 3600
            what += (
                f", renewed {edit_renewal.at:%Y-%m-%d %H:%M}, {hours:.1f} h after its new trigger {due:%Y-%m-%d %H:%M}"
            )
            early_edit = edit_renewal.at < due - dt.timedelta(seconds=1)
            hours = 1e6 if early_edit else hours
        else:
            version = edited.versions[-1]
            due = policy_trigger(version.not_before, version.expires, ("percent", 50))
            hours = max(0.0, (result.end - due).total_seconds() / 3600)
            what += f", not renewed by the end (new trigger {due:%Y-%m-%d %H:%M})"
        limit = (SWEEP_PERIOD + LATE_GRACE).total_seconds() / 3600
        check("simulated_year policy edited in place", what, hours, limit, f"renewed within {limit:.2f} h of it")

    # mass revocation
    revoked = world.revoked
    in_time, slowest = 0, 0.0
    for key, (moved, _cert_id) in revoked.items():
        record = world.certs[key]
        after = [v for v in record.versions if v.current_from >= moved]
        gone = record.deleted is not None and record.deleted <= moved + DAY
        if after or gone:
            hours = ((after[0].current_from if after else record.deleted) - moved).total_seconds() / 3600
            slowest = max(slowest, hours)
            in_time += hours <= 24
    check(
        "simulated_year mass revocation",
        f"{in_time}/{len(revoked)} certificates whose ARI window moved to now renewed within 24 h "
        f"(slowest {slowest:.1f} h)",
        in_time,
        max(1, len(revoked)),
        f"{len(revoked)}/{len(revoked)}",
        at_most=False,
    )

    # versions and CA submissions per renewal
    created = sum(n - 1 for n in result.kv_versions.values())
    recorded = sum(len(c.versions) - 1 for c in live if c.deleted is None)
    occasions = len(done) - len(early)
    live_occasions = sum(1 for r in done if r.record.deleted is None) - sum(
        1 for r in early if r.record.deleted is None
    )
    per_renewal = created / live_occasions if live_occasions else float("inf")
    check(
        "simulated_year versions per renewal",
        f"{per_renewal:.3f} ({created} new versions in Key Vault for {live_occasions} due renewals of the "
        f"certificates that remain; {recorded} merges recorded)",
        per_renewal,
        1.0,
        "1.00",
    )
    issued = world.issued[PUBLIC] + world.issued[PRIVATE]
    submissions = world.submissions[PUBLIC] + world.submissions[PRIVATE]
    per_issued = issued / occasions if occasions else float("inf")
    check(
        "simulated_year CA submissions per renewal",
        f"{per_issued:.3f} ({issued} CSRs signed for {occasions} due renewals: {world.issued[PUBLIC]} by {PUBLIC}, "
        f"{world.issued[PRIVATE]} by {PRIVATE}; besides, {submissions - issued} refused by the misconfigured issuer "
        f"and {world.unreachable[PUBLIC]} calls found {PUBLIC} down: "
        f"{submissions / occasions if occasions else 0:.3f} CSRs sent per renewal in all)",
        per_issued,
        1.05,
        "<= 1.05",
    )

    # Key Vault requests
    cert_days = sum((min(c.deleted or result.end, result.end) - c.arrived).total_seconds() / 86_400 for c in live)
    per_cert_day = result.keyvault_requests / cert_days if cert_days else 0.0
    say(
        f"simulated_year Key Vault requests per certificate per day: {per_cert_day:.3f} "
        f"({result.keyvault_requests} requests over {cert_days:.0f} certificate-days: "
        + ", ".join(f"{op} {n}" for op, n in result.requests_by_operation.items())
        + ")"
    )

    # failures left
    check(
        "simulated_year failures left unreplayed",
        f"{result.poison_left} poison messages at the end ({len(result.replays)} replays: "
        + ", ".join(f"{r['at']} {r['jobs']} jobs/{r['notices']} notices ({r['why']})" for r in result.replays)
        + ")",
        result.poison_left,
        0,
        "0",
    )
    kills = ", ".join(f"{k} {v}" for k, v in sorted(world.kills.items())) or "none"
    say(
        f"faults: events {world.events['delivered']} delivered, {world.events['lost']} lost; workers killed: {kills}; "
        f"sweep failures {len(world.sweep_failures)}; ARI checks {world.ari_checks}; orders with replaces "
        f"{world.replaces_sent}"
    )
    bound = spec.wall_bound
    check(
        "simulated_year wall time",
        f"{result.wall_seconds:.0f} s for {spec.days} days of {spec.certificates} certificates",
        result.wall_seconds,
        bound,
        f"<= {bound:.0f} s",
    )
    write_svg(result, done, spec.artifact)
    say(f"picture: {spec.artifact}")
    result.lines, result.passed = lines, ok
    return result


# -- the picture ---------------------------------------------------------------------------------------------------
def write_svg(result: YearResult, done: list[Renewal], path: Path) -> None:
    width, height, left, right = 1100, 560, 60, 20
    top_h, bottom_top, bottom_h = 230, 330, 180
    days = result.spec.days
    per_day = [0] * days
    for renewal in done:
        index = int((renewal.at - result.start).total_seconds() // 86_400)
        if 0 <= index < days:
            per_day[index] += 1
    peak = max([*per_day, 1])
    x_scale = (width - left - right) / days

    def x(day: float) -> float:
        return left + day * x_scale

    def day_of(moment: dt.datetime) -> float:
        return (moment - result.start).total_seconds() / 86_400

    colours = {
        "CA outage": "#f4a261",
        "events off": "#a8dadc",
        "kv-429": "#e9c46a",
        "kv-5xx": "#e76f51",
        "mass revocation": "#9d4edd",
        "issuer misconfigured": "#ff006e",
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">A simulated year: {result.spec.certificates} '
        f"certificates, {len(done)} renewals, {days} days</text>",
    ]
    for band in result.world.faults:
        x0, x1 = x(day_of(band.start)), x(day_of(band.end))
        colour = colours.get(band.kind, "#cccccc")
        for y0, h in ((30, top_h), (bottom_top, bottom_h)):
            parts.append(
                f'<rect x="{x0:.1f}" y="{y0}" width="{max(2.0, x1 - x0):.1f}" height="{h}" fill="{colour}" '
                f'opacity="0.45"><title>{band.kind} ({band.scope}) {band.start:%Y-%m-%d %H:%M}</title></rect>'
            )
    bar_w = max(1.0, x_scale * 0.8)
    for i, count in enumerate(per_day):
        h = top_h * count / peak
        parts.append(
            f'<rect x="{x(i):.1f}" y="{30 + top_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#264653"/>'
        )
    parts.append(f'<line x1="{left}" y1="{30 + top_h}" x2="{width - right}" y2="{30 + top_h}" stroke="black"/>')
    parts.append(f'<text x="{left - 6}" y="36" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left - 6}" y="{30 + top_h}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left}" y="{30 + top_h + 14}">renewals per day</text>')
    samples = result.world.soonest
    worst = max([s for _, s in samples] + [1.0])
    points = " ".join(
        f"{x(day_of(t)):.1f},{bottom_top + bottom_h - bottom_h * max(0.0, s) / worst:.1f}" for t, s in samples
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#2a9d8f" stroke-width="1.5"/>')
    parts.append(
        f'<line x1="{left}" y1="{bottom_top + bottom_h}" x2="{width - right}" y2="{bottom_top + bottom_h}" '
        'stroke="black"/>'
    )
    parts.append(f'<text x="{left - 6}" y="{bottom_top + 6}" text-anchor="end">{worst:.0f} d</text>')
    parts.append(f'<text x="{left - 6}" y="{bottom_top + bottom_h}" text-anchor="end">0 d</text>')
    parts.append(
        f'<text x="{left}" y="{bottom_top + bottom_h + 14}">days to expiry of the soonest-expiring current version '
        f"(lowest {min((s for _, s in samples), default=0.0):.1f} d)</text>"
    )
    for month in range(0, days + 1, 30):
        parts.append(f'<text x="{x(month):.1f}" y="{height - 24}" text-anchor="middle">day {month}</text>')
    legend_x = left
    for kind, colour in colours.items():
        parts.append(f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" fill="{colour}" opacity="0.6"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{height - 5}">{kind}</text>')
        legend_x += 40 + 7 * len(kind)
    parts.append(f'<text x="{legend_x}" y="{height - 5}">(5 % of events lost and workers killed throughout)</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def spec_for(
    certificates: int = 1000,
    days: int = 365,
    *,
    seed: int = YearSpec.seed,
    policy_recheck_days: int = YearSpec.policy_recheck_days,
) -> YearSpec:
    """The full year, or a smaller estate with the same kinds of change and fault in proportion (the short
    variant the tests run: 100 certificates, 120 days)."""
    spec = YearSpec(certificates=certificates, days=days, seed=seed, policy_recheck_days=policy_recheck_days)
    if certificates >= 1000:
        return spec
    scale = certificates / 1000
    return dataclasses.replace(
        spec,
        added=max(5, round(50 * scale)),
        deleted=max(3, round(30 * scale)),
        arrive_expired=max(1, round(5 * scale)),
        revoked=max(10, round(200 * scale)),
        wall_bound=120.0,
        artifact=ROOT / "test-artifacts" / "simulated_year_short.svg",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=YearSpec.seed)
    parser.add_argument("--policy-recheck-days", type=int, default=YearSpec.policy_recheck_days)
    args = parser.parse_args(argv)
    spec = spec_for(args.certificates, args.days, seed=args.seed, policy_recheck_days=args.policy_recheck_days)
    result = simulate(spec, progress=lambda line: print(line, flush=True))
    return 0 if figures(result).passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
