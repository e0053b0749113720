"""OpenTelemetry metrics, modelled on cert-manager's ``certmanager_certificate_*`` series.

Instruments (meter ``renewal``; attribute names match the log fields: vault, certificate, issuer):

- ``renewal.certificate.expiration_timestamp`` (gauge, s since epoch) per vault/certificate/issuer
- ``renewal.certificate.renewal_timestamp`` (gauge, s since epoch): when the certificate becomes due
- ``renewal.certificate.ready_status`` (gauge, 1/0): 1 while the live version is valid and not past its
  renew-at time (a certificate past renew-at is still served but is not "ready" in cert-manager's sense)
- ``renewal.renewals`` (counter) by outcome (renewed | pending | failed | rejected | retrying) and issuer
- ``renewal.ca.request.duration`` (histogram, s) by issuer and outcome, around ``client.sign``
- ``renewal.event_to_merge.duration`` (histogram, s) by issuer: from the trigger (job enqueued) to merge
- ``renewal.poison_queue.depth`` (gauge) by queue

The gauges are observable: the sweep (and every dashboard view, which runs the sweep dry) feeds a
snapshot, and the exporter reads it. Nothing here imports opentelemetry until a metric is first
recorded or :func:`configure` runs, so ``import function_app`` stays cheap; without opentelemetry
installed every call is a no-op. Without an exporter configured the API's no-op meter is used.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from renewal import settings

if TYPE_CHECKING:
    from renewal.ports import PoisonQueueStore

log = logging.getLogger("renewal.metrics")
METER_NAME = "renewal"

EXPIRATION = "renewal.certificate.expiration_timestamp"
RENEWAL_AT = "renewal.certificate.renewal_timestamp"
READY = "renewal.certificate.ready_status"
RENEWALS = "renewal.renewals"
CA_DURATION = "renewal.ca.request.duration"
EVENT_TO_MERGE = "renewal.event_to_merge.duration"
POISON_DEPTH = "renewal.poison_queue.depth"
BACKUPS = "renewal.backups"
BACKUP_RECOVERY_POINT = "renewal.backup.recovery_point"
BACKUP_OVERDUE_HOURS = 24


@dataclass(frozen=True)
class CertificateSample:
    vault: str
    certificate: str
    issuer: str
    expires_at: float | None
    renew_at: float | None
    ready: bool


class _Null:
    """Stands in for every instrument when opentelemetry is not installed."""

    def add(self, *_a: Any, **_k: Any) -> None:
        pass

    def record(self, *_a: Any, **_k: Any) -> None:
        pass


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.certificates: dict[tuple[str, str], CertificateSample] = {}
        self.poison_source: Callable[[], Mapping[str, int]] | None = None
        self.instruments: dict[str, Any] | None = None
        self.meter_provider: Any = None

    def build(self, meter_provider: Any = None) -> dict[str, Any]:
        try:
            from opentelemetry import metrics as otel
        except ImportError:
            null = _Null()
            return {RENEWALS: null, CA_DURATION: null, EVENT_TO_MERGE: null, BACKUPS: null, BACKUP_RECOVERY_POINT: null}
        meter = (meter_provider or otel.get_meter_provider()).get_meter(METER_NAME)
        meter.create_observable_gauge(EXPIRATION, [self._observe_expiration], unit="s", description=_doc(EXPIRATION))
        meter.create_observable_gauge(RENEWAL_AT, [self._observe_renew_at], unit="s", description=_doc(RENEWAL_AT))
        meter.create_observable_gauge(READY, [self._observe_ready], unit="1", description=_doc(READY))
        meter.create_observable_gauge(
            POISON_DEPTH, [self._observe_poison], unit="{message}", description=_doc(POISON_DEPTH)
        )
        return {
            RENEWALS: meter.create_counter(RENEWALS, unit="{renewal}", description=_doc(RENEWALS)),
            CA_DURATION: meter.create_histogram(CA_DURATION, unit="s", description=_doc(CA_DURATION)),
            EVENT_TO_MERGE: meter.create_histogram(EVENT_TO_MERGE, unit="s", description=_doc(EVENT_TO_MERGE)),
            BACKUPS: meter.create_counter(BACKUPS, unit="{backup}", description=_doc(BACKUPS)),
            BACKUP_RECOVERY_POINT: meter.create_histogram(
                BACKUP_RECOVERY_POINT, unit="s", description=_doc(BACKUP_RECOVERY_POINT)
            ),
        }

    def get(self, name: str) -> Any:
        with self.lock:
            if self.instruments is None:
                self.instruments = self.build(self.meter_provider)
            return self.instruments[name]

    # -- observable gauge callbacks (run by the reader/exporter) -------------------------------------
    def _samples(self) -> list[CertificateSample]:
        with self.lock:
            return list(self.certificates.values())

    def _observe(self, value: Callable[[CertificateSample], float | None]) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for s in self._samples():
            v = value(s)
            if v is not None:
                yield Observation(v, {"vault": s.vault, "certificate": s.certificate, "issuer": s.issuer})

    def _observe_expiration(self, _options: Any) -> Iterator[Any]:
        return self._observe(lambda s: s.expires_at)

    def _observe_renew_at(self, _options: Any) -> Iterator[Any]:
        return self._observe(lambda s: s.renew_at)

    def _observe_ready(self, _options: Any) -> Iterator[Any]:
        return self._observe(lambda s: 1.0 if s.ready else 0.0)

    def _observe_poison(self, _options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        source = self.poison_source
        if source is None:
            return
        try:
            depths = dict(source())
        except Exception as exc:  # noqa: BLE001 - a storage hiccup must not break the export of other metrics
            log.warning("poison queue depth unavailable: %s", exc)
            return
        for queue, depth in depths.items():
            yield Observation(depth, {"queue": queue})


_DOCS = {
    EXPIRATION: "The date after which the live certificate version expires, as seconds since the epoch.",
    RENEWAL_AT: "The time at which the certificate becomes due for renewal, as seconds since the epoch.",
    READY: "1 when the live version is valid and not past its renewal time, else 0.",
    RENEWALS: "Renewal attempts that reached the CA, by outcome and issuer.",
    CA_DURATION: "Duration of one CA sign call, by issuer and outcome.",
    EVENT_TO_MERGE: "Time from the trigger (event, sweep or operator) to the merge of the new version.",
    POISON_DEPTH: "Messages waiting in a poison queue (failed work to replay).",
    BACKUPS: "Backups of certificate versions, by vault and outcome (written, failed, overdue: a version older "
    "than a day that has no backup).",
    BACKUP_RECOVERY_POINT: "Time from a version's creation to its backup in the archive.",
}


def _doc(name: str) -> str:
    return _DOCS[name]


_registry = _Registry()


def _ts(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


# -- feeding the gauges ---------------------------------------------------------------------------------
def observe_certificate(listing: Any, decision: Any, issuer: str | None, now: dt.datetime) -> None:
    """Called by the sweep (and the dashboard) for every certificate it decides on: ``listing`` (vault, name,
    validity), its ``DueDecision`` and the issuer it routes to ("" when none applies)."""
    issuer = issuer or ""
    valid = (listing.expires_on is None or listing.expires_on > now) and (
        listing.not_before is None or listing.not_before <= now
    )
    overdue = decision.renew_at is not None and decision.renew_at <= now
    sample = CertificateSample(
        listing.vault, listing.name, issuer, _ts(listing.expires_on), _ts(decision.renew_at), valid and not overdue
    )
    with _registry.lock:
        _registry.certificates[(listing.vault, listing.name)] = sample


def watch_poison_queues(source: Callable[[], Mapping[str, int]] | None) -> None:
    """Register where the poison-queue depth gauge reads from (a callable returning {queue: depth})."""
    _registry.poison_source = source


def watch_service(poison: PoisonQueueStore) -> None:
    """Feed the poison-queue gauge from the poison queues' depths."""

    def depths() -> dict[str, int]:
        return {name: count for name, count in poison.depths().items() if name.endswith("-poison")}

    watch_poison_queues(depths)


# -- recording from the orchestrator ---------------------------------------------------------------------
def renewal_finished(outcome: str, issuer: str) -> None:
    _registry.get(RENEWALS).add(1, {"outcome": outcome, "issuer": issuer or "unknown"})


def renewal_merged(job: Any, issuer: str, started_at: dt.datetime | None, now: dt.datetime) -> None:
    """A new version went live: count it and record the time since the trigger."""
    renewal_finished("renewed", issuer)
    since = [t for t in (job.enqueued_at, started_at) if t is not None]
    if since:
        _registry.get(EVENT_TO_MERGE).record(max(0.0, (now - min(since)).total_seconds()), {"issuer": issuer})


def backup_written(vault: str, seconds_after_version: float | None) -> None:
    _registry.get(BACKUPS).add(1, {"vault": vault, "outcome": "written"})
    if seconds_after_version is not None:
        _registry.get(BACKUP_RECOVERY_POINT).record(max(0.0, seconds_after_version), {"vault": vault})
        if seconds_after_version > BACKUP_OVERDUE_HOURS * 3600:
            _registry.get(BACKUPS).add(1, {"vault": vault, "outcome": "overdue"})


def backup_failed(vault: str, *, overdue: bool) -> None:
    """A backup try failed; ``overdue`` when the version it was for is older than a day (the alert's case)."""
    _registry.get(BACKUPS).add(1, {"vault": vault, "outcome": "overdue" if overdue else "failed"})


_CA_OUTCOMES = {"IssuancePending": "pending", "PermanentCAError": "permanent", "TransientCAError": "transient"}


@contextmanager
def ca_request(issuer: str) -> Iterator[None]:
    start = time.perf_counter()
    outcome = "issued"
    try:
        yield
    except BaseException as exc:
        outcome = "error"
        for base in type(exc).__mro__:
            if base.__name__ in _CA_OUTCOMES:
                outcome = _CA_OUTCOMES[base.__name__]
                break
        raise
    finally:
        duration = time.perf_counter() - start
        _registry.get(CA_DURATION).record(duration, {"issuer": issuer, "outcome": outcome})


# -- wiring ---------------------------------------------------------------------------------------------------
def use_meter_provider(provider: Any) -> None:
    """Tests and embedders: build the instruments on this provider (e.g. one with an InMemoryMetricReader)."""
    with _registry.lock:
        _registry.meter_provider = provider
        _registry.instruments = None


def reset() -> None:
    """Forget the snapshot, the poison source and the instruments (tests)."""
    with _registry.lock:
        _registry.certificates.clear()
        _registry.poison_source = None
        _registry.instruments = None
        _registry.meter_provider = None


_configured = False


def configure(environ: Mapping[str, str] | None = None) -> str:
    """Install the exporter chosen by RENEWAL_METRICS_EXPORTER once per process; returns what was chosen.

    ``auto`` (default): Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set, else none.
    ``azure-monitor`` | ``console`` | ``otlp`` | ``none`` force a choice."""
    global _configured
    env = dict(environ or {})
    choice = (settings.METRICS_EXPORTER.read(env) or "auto").lower()
    connection = settings.APPLICATIONINSIGHTS_CONNECTION_STRING.read(env)
    if choice == "auto":
        choice = "azure-monitor" if connection else "none"
    if _configured or choice == "none":
        return choice
    try:
        if choice == "azure-monitor":
            from azure.monitor.opentelemetry import configure_azure_monitor

            kwargs: dict[str, Any] = {"connection_string": connection, "logger_name": "renewal"}
            client_id = settings.AZURE_CLIENT_ID.read(env)
            if client_id:  # local auth is off on the component: send with the managed identity
                from azure.identity import ManagedIdentityCredential

                kwargs["credential"] = ManagedIdentityCredential(client_id=client_id)
            configure_azure_monitor(**kwargs)
        else:
            from opentelemetry import metrics as otel
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            if choice == "console":
                from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

                exporter: Any = ConsoleMetricExporter()
            elif choice == "otlp":
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

                exporter = OTLPMetricExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT etc. configure it
            else:
                raise ValueError(f"{settings.METRICS_EXPORTER.name}: unknown value {choice!r}")
            otel.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)]))
    except ImportError as exc:
        name = settings.METRICS_EXPORTER.name
        log.warning("%s=%s: exporter package missing (%s); metrics stay no-op", name, choice, exc)
        return "none"
    _configured = True
    return choice
