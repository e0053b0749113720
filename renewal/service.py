"""Composition root: builds the flow's collaborators from app settings and the config document,
lazily, so the Functions entry points, the CLI and the tests share one wiring."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from renewal import settings
from renewal.config import RenewalConfig, WebhookDeployerConfig, anchors_of, load_config
from renewal.errors import EventRejected, NotFound
from renewal.flow.events import CertificateEvent, EventIgnored, parse_event
from renewal.flow.orchestrator import RenewalOrchestrator, RenewalOutcome
from renewal.flow.sweep import Sweep, SweepReport
from renewal.model import DeploymentNotice, RenewalJob, utcnow
from renewal.observability import log_event
from renewal.ports import (
    BackupArchive,
    CertificateStore,
    ClaimStore,
    DeadLetterStore,
    Deployer,
    JobQueue,
    Ledger,
    NoticeQueue,
    PoisonQueueStore,
    RecoveryTarget,
    RenewalWindows,
    RolloutLog,
    TargetRollout,
    VersionFacts,
)

if TYPE_CHECKING:
    from cryptography import x509

    from ca_clients import CAClient, SecretResolver
    from renewal.flow.backup import BackupSweepReport
    from renewal.flow.deploy import RolloutPass
    from renewal.flow.replay import ReplayResult
    from renewal.operations.recovery import DrillReport, Restored
    from renewal.operations.status import FailureReport

log = logging.getLogger("renewal.service")
T = TypeVar("T")


@dataclass(frozen=True)
class EventResult:
    status: str
    """enqueued | ignored | rejected"""
    detail: str
    job: RenewalJob | None = None


class RenewalService:
    def __init__(
        self,
        config: RenewalConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        stores: Mapping[str, CertificateStore] | None = None,
        storage: Any = None,
        keyvault_options: Mapping[str, Any] | None = None,
        client_context_extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self._stores = dict(stores) if stores is not None else None
        self._storage = storage
        self._keyvault_options = dict(keyvault_options or {})
        self._context_extra = dict(client_context_extra or {})
        self._issuers: dict[str, Any] = {}
        self._anchors: dict[str, list[Any]] = {}
        self._issuer_lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> RenewalService:
        env = dict(os.environ if environ is None else environ)
        return cls(load_config(env), environ=env, **kwargs)

    # -- credentials and adapters ------------------------------------------------------------------
    def _setting(self, setting: settings.Setting) -> str | None:
        return setting.read(self.environ)

    @cached_property
    def keyvault_credential(self) -> Any:
        mode = self._setting(settings.KEYVAULT_CREDENTIAL)
        if mode == "emulator":
            if not self._setting(settings.KEYVAULT_CA_BUNDLE):
                raise RuntimeError(
                    f"{settings.KEYVAULT_CREDENTIAL.name}=emulator needs {settings.KEYVAULT_CA_BUNDLE.name}"
                )
            from renewal.azure.keyvault import StaticTokenCredential

            return StaticTokenCredential()
        from azure.identity import DefaultAzureCredential

        client_id = self._setting(settings.AZURE_CLIENT_ID) or None
        return DefaultAzureCredential(managed_identity_client_id=client_id)

    @property
    def stores(self) -> Mapping[str, CertificateStore]:
        if self._stores is None:
            from renewal.azure.keyvault import open_store

            verify = self._setting(settings.KEYVAULT_CA_BUNDLE) or None
            options = dict(self._keyvault_options)
            options.setdefault("throttle_retries", self.config.defaults.keyvault_throttle_retries)
            pacer = options.pop("create_pacer", None)
            self._stores = {
                v.name: open_store(
                    v.name,
                    v.url,
                    self.keyvault_credential,
                    connection_verify=verify,
                    create_pacer=pacer or self._create_budget(v.name),
                    **options,
                )
                for v in self.config.vaults
            }
        return self._stores

    def _on_storage(self, build: Callable[[Any], T]) -> T | None:
        """``build(storage)``, or None where no storage account is configured (e.g. a CLI pointed at Key
        Vault only): the tables that only save work (create budget, version facts, renewal windows) are off."""
        from renewal.errors import StorageNotConfigured

        try:
            return build(self.storage)
        except StorageNotConfigured:
            return None

    def _create_budget(self, vault: str) -> Any:
        """The vault's create budget, shared by every instance through the storage account; None: the
        store's in-process pacer."""
        from renewal.azure.create_budget import TableCreatePacer

        return self._on_storage(lambda storage: TableCreatePacer(storage, vault))

    @cached_property
    def storage(self) -> Any:
        if self._storage is None:
            from renewal.azure.storage import StorageEndpoints

            self._storage = StorageEndpoints.from_settings(self.environ)
            self._storage.ensure_resources()
        return self._storage

    @cached_property
    def secrets(self) -> SecretResolver:
        from renewal.azure.secrets import ConfigSecretResolver

        return ConfigSecretResolver(
            configuration_vault=self.config.configuration_vault,
            certificate_vaults={v.url for v in self.config.vaults},
            credential_factory=lambda: self.keyvault_credential,
            environ=self.environ,
            connection_verify=self._setting(settings.KEYVAULT_CA_BUNDLE) or None,
        )

    @cached_property
    def ledger(self) -> Ledger:
        from renewal.azure.ledger import TableLedger

        return TableLedger(self.storage)

    @cached_property
    def renewal_windows(self) -> RenewalWindows | None:
        """The CAs' suggested renewal windows (RFC 9773 ARI), kept until their Retry-After; None when no
        storage is configured (then every look asks the CA, and views show the policy's decision)."""
        from renewal.azure.renewal_windows import TableRenewalWindows

        return self._on_storage(TableRenewalWindows)

    @cached_property
    def claims(self) -> ClaimStore:
        from renewal.azure.claims import BlobClaimStore

        return BlobClaimStore(self.storage, clock=self.clock)

    @cached_property
    def jobs(self) -> JobQueue:
        from renewal.azure.queues import StorageJobQueue

        return StorageJobQueue(self.storage)

    @cached_property
    def notices(self) -> NoticeQueue:
        from renewal.azure.queues import StorageNoticeQueue

        return StorageNoticeQueue(self.storage)

    @cached_property
    def poison(self) -> PoisonQueueStore:
        from renewal.azure.queues import PoisonQueues

        return PoisonQueues(self.storage)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        from renewal.azure.deadletter import DeadLetterStore

        return DeadLetterStore(self.storage)

    @cached_property
    def deployers(self) -> list[Deployer | TargetRollout]:
        from renewal.azure.deployers import EventGridDeployer, WebhookDeployer
        from renewal.config import EventGridDeployerConfig

        built: list[Deployer | TargetRollout] = []
        for d in self.config.deployers:
            if isinstance(d, WebhookDeployerConfig):
                built.append(WebhookDeployer(d, self.secrets))
            elif isinstance(d, EventGridDeployerConfig):
                built.append(EventGridDeployer(d, self.secrets, lambda: self.keyvault_credential))
            else:
                from renewal.azure.rollouts import build_rollout

                built.append(
                    build_rollout(
                        d,
                        credential_factory=lambda: self.keyvault_credential,
                        issuer_roots=self.issuer_roots,
                        clock=self.clock,
                    )
                )
        return built

    def issuer_roots(self, issuer: str) -> list[Any]:
        """The trust anchors of a configured issuer (none for a name the config does not know)."""
        section = next((s for s in self.config.issuers if s.get("name") == issuer), None)
        return anchors_of(section) if section is not None else []

    @cached_property
    def rollout_log(self) -> RolloutLog | None:
        """Each deployer target's outcome per version; None when no storage is configured."""
        from renewal.azure.rollout_log import TableRolloutLog

        return self._on_storage(TableRolloutLog)

    @cached_property
    def version_facts(self) -> VersionFacts | None:
        """Kept certificate versions for the operators' views; None when no storage is configured."""
        from renewal.azure.version_facts import TableVersionFacts

        return self._on_storage(TableVersionFacts)

    @cached_property
    def backups(self) -> BackupArchive | None:
        """The backup archive in another region; None when RENEWAL_BACKUP_STORAGE is not set."""
        if not self._setting(settings.BACKUP_STORAGE):
            return None
        from renewal.azure.backups import BlobBackupArchive

        return BlobBackupArchive.from_settings(self.environ, self._setting(settings.STORAGE_CLIENT_ID) or None)

    def _archive(self) -> BackupArchive:
        if self.backups is None:
            from renewal.errors import StorageNotConfigured

            raise StorageNotConfigured(settings.BACKUP_STORAGE.name, "not set: there is no backup archive")
        return self.backups

    def recovery_target(self, vault: str) -> RecoveryTarget:
        """A certificate vault, or a recovery vault of the config: the only vaults a restore may write to."""
        if vault in self.stores:
            return self.stores[vault]  # type: ignore[return-value]
        recovery = next((v for v in self.config.recovery_vaults if v.name == vault), None)
        if recovery is None:
            known = sorted([*self.stores, *(v.name for v in self.config.recovery_vaults)])
            raise NotFound("to", f"{vault!r} is neither a certificate vault nor a recovery vault; configured: {known}")
        from renewal.azure.keyvault import open_store

        verify = self._setting(settings.KEYVAULT_CA_BUNDLE) or None
        options = {k: v for k, v in self._keyvault_options.items() if k in ("sleep", "throttle_retries")}
        return open_store(recovery.name, recovery.url, self.keyvault_credential, connection_verify=verify, **options)

    # -- issuers --------------------------------------------------------------------------------------
    def issuer(self, name: str) -> CAClient:
        """The CA client for a configured issuer (with its fallbacks), built on first use."""
        with self._issuer_lock:
            if name not in self._issuers:
                from ca_clients import ClientContext
                from ca_clients.failover import build_issuers, failover_order

                sections = {str(s["name"]): s for s in self.config.issuers}
                if name not in sections:
                    from ca_clients import PermanentCAError

                    raise PermanentCAError(f"issuer {name!r} is not configured", issuer=name)
                context = ClientContext(secrets=self.secrets, extra=self._context_extra)
                wanted = failover_order(name, sections)  # the configuration names only known fallbacks
                self._issuers.update(build_issuers([sections[n] for n in wanted], context))
            return self._issuers[name]

    def trust_anchors(self, issuer: str) -> list[x509.Certificate]:
        """The CA certificates a chain from ``issuer`` must lead to (none for an issuer not configured)."""
        with self._issuer_lock:
            if issuer not in self._anchors:
                section = next((s for s in self.config.issuers if s.get("name") == issuer), {})
                self._anchors[issuer] = anchors_of(section)
            return self._anchors[issuer]

    def reset_issuers(self) -> None:
        """Drop built clients (after a config change in tests or a long-lived CLI session)."""
        with self._issuer_lock:
            self._issuers.clear()
            self._anchors.clear()

    # -- the flow -------------------------------------------------------------------------------------
    @cached_property
    def orchestrator(self) -> RenewalOrchestrator:
        return RenewalOrchestrator(
            config=self.config,
            stores=self.stores,
            issuers=self.issuer,
            trust_anchors=self.trust_anchors,
            ledger=self.ledger,
            claims=self.claims,
            jobs=self.jobs,
            notices=self.notices,
            clock=self.clock,
            renewal_windows=self.renewal_windows,
        )

    def sweep(self, **kwargs: Any) -> SweepReport:
        return Sweep(
            config=self.config,
            stores=self.stores,
            jobs=self.jobs,
            ledger=self.ledger,
            clock=self.clock,
            issuers=self.issuer,
            renewal_windows=self.renewal_windows,
        ).run(**kwargs)

    def handle_event(self, event: Mapping[str, Any]) -> EventResult:
        """One Event Grid event -> one queued job; malformed or foreign events are rejected, never raised."""
        try:
            parsed = parse_event(event, configured_vaults=self.vault_urls)
        except EventRejected as exc:
            log_event(
                log,
                "event.rejected",
                level=logging.WARNING,
                field=exc.field,
                error=exc.message,
                event_id=event.get("id") if isinstance(event, Mapping) else None,
            )
            return EventResult("rejected", str(exc))
        if isinstance(parsed, EventIgnored):
            log_event(log, "event.ignored", event_id=parsed.event_id, detail=parsed.reason)
            return EventResult("ignored", parsed.reason)
        job = self._job_for(parsed)
        self.jobs.enqueue(job)  # an exception here makes Event Grid retry, then dead-letter
        log_event(
            log,
            "event.accepted",
            vault=job.vault,
            certificate=job.name,
            version=job.version or None,
            event_id=parsed.event_id,
            event_type=parsed.event_type,
        )
        return EventResult("enqueued", f"{job.vault}/{job.name}", job)

    def _job_for(self, event: CertificateEvent) -> RenewalJob:
        job = event.to_job()
        return RenewalJob(**{**job.__dict__, "enqueued_at": self.clock()})

    def run_job(self, job: RenewalJob) -> RenewalOutcome:
        return self.orchestrator.run(job)

    def force_renewal(self, vault: str, name: str, *, requested_by: str = "operator") -> RenewalJob:
        if self.config.vault(vault) is None:
            raise NotFound("vault", f"{vault!r} is not configured")
        current = self.stores[vault].get_current(name)
        if current is None:
            raise NotFound("name", f"certificate {name!r} not found in {vault}")
        job = RenewalJob(
            vault=vault,
            name=name,
            reason="operator",
            force=True,
            version=current.version,
            trigger_id=f"{requested_by}-{self.clock():%Y%m%dT%H%M%S}",
            enqueued_at=self.clock(),
        )
        self.jobs.enqueue(job)
        log_event(
            log,
            "operator.force_renewal",
            vault=vault,
            certificate=name,
            version=current.version,
            requested_by=requested_by,
        )
        return job

    # -- failed work and status, each function given only the stores it reads ------------------------------
    @property
    def vault_urls(self) -> dict[str, str]:
        return {v.name: v.url for v in self.config.vaults}

    def failures(self) -> FailureReport:
        from renewal.operations.status import list_failures

        return list_failures(self.poison, self.dead_letters, self.ledger)

    def status(self, certificate: tuple[str, str] | None = None) -> dict[str, Any]:
        from renewal.operations.status import status

        return status(self.poison, self.dead_letters, self.ledger, self.rollout_log, certificate=certificate)

    def replay(self, **which: Any) -> ReplayResult:
        """``replay`` of renewal.flow.replay over this service's stores (``jobs``, ``notices``,
        ``dead_letters`` flags and ``ids`` pass through)."""
        from renewal.flow.replay import replay

        return replay(self.poison, self.dead_letters, self.jobs, vaults=self.vault_urls, clock=self.clock, **which)

    def deliver(self, claim: DeploymentNotice) -> RolloutPass:
        """One rollout pass for the notice a ``deployments`` message claims, as the ledger and Key Vault confirm
        it. A target still in progress brings the claim back after the delay it asked for; once none is, a
        failed target raises DeliveryFailed (the queue retries, then poisons the message for replay)."""
        from renewal.flow.deploy import RolloutPass, confirmed_notice, run_rollout

        store = self.stores.get(claim.vault)
        if store is None:
            raise NotFound("vault", f"{claim.vault!r} is not configured")
        confirmed = confirmed_notice(claim, self.ledger, store)
        if confirmed is None:
            return RolloutPass()
        notice, current = confirmed
        if self.backups is not None:
            from renewal.flow.backup import back_up

            back_up(store, self.backups, notice.name, notice.new_version, clock=self.clock, current=current)
        self._keep_facts(store.vault, current)
        result = run_rollout(notice, current, self.deployers, rollouts=self.rollout_log, now=self.clock())
        if not result.in_progress:
            result.raise_for_failures()
        else:
            # The delayed look also retries what failed; raising now instead would let the poison queue take
            # the only message that brings the targets in progress back.
            self.notices.enqueue(claim, delay=result.check_after)
            log_event(
                log,
                "deploy.check_again",
                vault=notice.vault,
                certificate=notice.name,
                version=notice.new_version,
                after_seconds=int(result.check_after.total_seconds()) if result.check_after else None,
                targets=len(result.in_progress),
            )
        return result

    def _keep_facts(self, vault: str, current: Any) -> None:
        """The operators' views need not read a version the service merged (best effort: a view reads it)."""
        if self.version_facts is None:
            return
        try:
            from renewal.operations.certificate_facts import with_leaf_facts

            self.version_facts.keep(vault, [with_leaf_facts(current)], read_at=self.clock())
        except Exception as exc:  # noqa: BLE001 - a missed row costs one read later, never a delivery
            log_event(log, "deploy.facts_not_kept", level=logging.WARNING, vault=vault, error=str(exc))

    # -- disaster recovery ----------------------------------------------------------------------------
    def back_up_estate(self) -> BackupSweepReport:
        from renewal.flow.backup import back_up_estate

        return back_up_estate(self.stores, self._archive(), clock=self.clock)

    def restore(self, vault: str, name: str, *, to: str, version: str | None = None) -> Restored:
        from renewal.operations.recovery import find_backup, restore

        archive = self._archive()
        return restore(archive, self.recovery_target(to), find_backup(archive, vault, name, version))

    def drill(self, *, to: str, sample: int | None = None) -> DrillReport:
        from renewal.operations.recovery import drill

        if to in self.stores:
            from renewal.errors import Rejected

            raise Rejected("to", f"{to!r} is a certificate vault; a drill restores into a vault of its own")
        return drill(self._archive(), self.ledger, self.recovery_target(to), sample=sample, clock=self.clock)
