"""Key Vault certificates over the ``azure-keyvault-certificates`` SDK (implements CertificateStore).

Only the certificates API is used: promise 4 forbids reading certificate material through the
secrets API, and nothing here imports ``azure.keyvault.secrets``. A 429 on create or merge is not
retried by azure-core (POST without Retry-After), so this adapter backs off itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

from renewal import settings
from renewal.errors import (
    CertificateGone,
    KeyVaultThrottled,
    MergeRejected,
    PendingOperationExists,
    RestoreRefused,
    StoreError,
    StoreUnavailable,
)
from renewal.model import (
    CertificateListing,
    CertificateVersion,
    LifetimeTrigger,
    PendingOperation,
    PolicySpec,
    SubjectAlternativeNames,
)
from renewal.observability import log_event

T = TypeVar("T")
log = logging.getLogger("renewal.keyvault")
PAGE_SIZE = 25
BACKOFF_SECONDS = (1, 2, 4, 8, 16, 16, 16, 16, 16, 16)
VAULT_CONNECTIONS = 64
"""Kept-alive connections per vault: the most threads that read one vault at once (a report's 32 readers and
its listing, a sweep's follow-up pool)."""
CREATE_LIMIT = settings.KEYVAULT_CREATE_LIMIT
"""Certificate creates Key Vault accepts per vault per window (software keys; HSM vaults allow 10)."""
CREATE_WINDOW_SECONDS = settings.KEYVAULT_CREATE_WINDOW_SECONDS


class CreatePacer:
    """Spaces certificate creates to Key Vault's per-vault create limit (a sliding window of 20 per 10 s).

    Shared by every store of one vault in the process, so concurrent workers queue for a slot instead of
    drawing 429s (no Retry-After; azure-core does not retry a POST) and sleeping through the 1-2-4-8-16 s
    backoff while the window has room again. ``margin`` covers the gap between sending here and arrival
    there. A 429 that still comes (another instance, an HSM vault's lower limit) is backed off as before.
    """

    def __init__(
        self,
        limit: int = CREATE_LIMIT,
        window_seconds: float = CREATE_WINDOW_SECONDS,
        *,
        margin_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds + margin_seconds
        self._clock = clock
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next free slot; returns how many seconds to wait before sending the create."""
        with self._lock:
            now = self._clock()
            start = now
            if len(self._slots) >= self.limit:
                start = max(now, self._slots[-self.limit] + self.window)
            self._slots.append(start)
            while len(self._slots) > self.limit:
                self._slots.popleft()
            return start - now


_PACERS: dict[str, CreatePacer] = {}
_PACERS_LOCK = threading.Lock()


def create_pacer_for(vault_url: str) -> CreatePacer:
    """The process-wide pacer of one vault (keyed by its URL)."""
    key = vault_url.rstrip("/").lower()
    with _PACERS_LOCK:
        return _PACERS.setdefault(key, CreatePacer())


class StaticTokenCredential:
    """Dev/test credential for the Key Vault emulator, which accepts any bearer token."""

    def __init__(self, token: str = "emulator-dev-token") -> None:  # noqa: S107 - not a secret
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def policy_to_sdk(spec: PolicySpec) -> Any:
    from azure.keyvault.certificates import CertificatePolicy, LifetimeAction

    return CertificatePolicy(
        issuer_name=spec.issuer_name,
        subject=spec.subject or None,
        san_dns_names=list(spec.sans.dns_names) or None,
        san_emails=list(spec.sans.emails) or None,
        san_user_principal_names=list(spec.sans.upns) or None,
        san_uris=list(spec.sans.uris) or None,
        san_ip_addresses=list(spec.sans.ip_addresses) or None,
        exportable=spec.exportable,
        key_type=spec.key_type,
        key_size=spec.key_size,
        key_curve_name=spec.key_curve,
        reuse_key=spec.reuse_key,
        content_type=spec.content_type,
        enhanced_key_usage=list(spec.ekus) or None,
        key_usage=list(spec.key_usage) or None,
        validity_in_months=spec.validity_months,
        lifetime_actions=[
            LifetimeAction(t.action, lifetime_percentage=t.lifetime_percentage, days_before_expiry=t.days_before_expiry)
            for t in spec.lifetime_triggers
        ]
        or None,
        certificate_type=spec.certificate_type,
        certificate_transparency=spec.certificate_transparency,
    )


def policy_from_wire(data: dict[str, Any]) -> PolicySpec:
    """A policy from the service's JSON (as in a certificate bundle), without the SDK's model layer."""
    key, x509_props = data.get("key_props") or {}, data.get("x509_props") or {}
    sans = x509_props.get("sans") or {}
    triggers = tuple(
        LifetimeTrigger(
            lifetime_percentage=(a.get("trigger") or {}).get("lifetime_percentage"),
            days_before_expiry=(a.get("trigger") or {}).get("days_before_expiry"),
            action=str((a.get("action") or {}).get("action_type") or "EmailContacts"),
        )
        for a in data.get("lifetime_actions") or []
        if (a.get("trigger") or {}).get("lifetime_percentage") is not None
        or (a.get("trigger") or {}).get("days_before_expiry") is not None
    )
    issuer = data.get("issuer") or {}
    return PolicySpec(
        subject=x509_props.get("subject") or "",
        sans=SubjectAlternativeNames(
            dns_names=tuple(sans.get("dns_names") or ()),
            emails=tuple(sans.get("emails") or ()),
            upns=tuple(sans.get("upns") or ()),
            uris=tuple(sans.get("uris") or ()),
            ip_addresses=tuple(sans.get("ipAddresses") or ()),
        ),
        issuer_name=issuer.get("name") or "Unknown",
        key_type=key.get("kty") or "RSA",
        key_size=key.get("key_size"),
        key_curve=key.get("crv"),
        exportable=key.get("exportable"),
        reuse_key=key.get("reuse_key"),
        content_type=(data.get("secret_props") or {}).get("contentType"),
        ekus=tuple(x509_props.get("ekus") or ()),
        key_usage=tuple(x509_props.get("key_usage") or ()),
        validity_months=x509_props.get("validity_months"),
        lifetime_triggers=triggers,
        certificate_transparency=issuer.get("cert_transparency"),
        certificate_type=issuer.get("cty"),
    )


def _epoch(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, dt.UTC) if isinstance(value, (int, float)) else None


class KeyVaultCertificateStore:
    """One vault. ``client`` is an ``azure.keyvault.certificates.CertificateClient``."""

    def __init__(
        self,
        vault: str,
        client: Any,
        *,
        throttle_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        create_pacer: CreatePacer | None = None,
        reader: Any = None,
    ) -> None:
        self.vault = vault
        self._client = client
        self._reader = reader
        """A keyvault_io.VaultReader: GETs on the process's I/O loop (None: on the client's own pipeline)."""
        self._throttle_retries = throttle_retries
        self._sleep = sleep
        self._create_pacer = create_pacer

    # -- error mapping and 429 backoff -------------------------------------------------------------
    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one Key Vault call: 429 is backed off here (KeyVaultThrottled once it outlives the retries),
        5xx and connection failures become StoreUnavailable; other answers (404, 409, 400) go to the caller,
        which maps them to the port's errors."""
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        for attempt in range(self._throttle_retries + 1):
            if operation == "create" and self._create_pacer is not None:
                wait = self._create_pacer.reserve()
                if wait > 0:
                    self._sleep(wait)
            try:
                return fn()
            except (ServiceRequestError, ServiceResponseError) as exc:
                raise StoreUnavailable(
                    f"{operation}: Key Vault {self.vault} unreachable ({type(exc).__name__})"
                ) from exc
            except HttpResponseError as exc:
                if exc.status_code is not None and exc.status_code >= 500:
                    raise StoreUnavailable(f"{operation}: Key Vault {self.vault} answered {exc.status_code}") from exc
                if exc.status_code != 429:
                    raise
                if attempt >= self._throttle_retries:
                    raise KeyVaultThrottled(f"{operation} throttled by Key Vault after {attempt + 1} attempts") from exc
                delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                log_event(log, "keyvault.throttled", vault=self.vault, operation=operation, retry_in=delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- reads ----------------------------------------------------------------------------------------
    # Reads go through the SDK client's own pipeline (auth challenge, retries, api-version, TLS) with
    # ``send_request`` and are parsed straight from the service's JSON: the SDK's model layer costs more
    # CPU than the requests themselves when a sweep or report reads thousands of certificates.
    def _get_json(self, operation: str, path: str) -> dict[str, Any]:
        """GET ``path`` (relative to the vault, or an absolute nextLink); 404 raises ResourceNotFoundError."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.core.rest import HttpRequest

        if self._reader is not None:
            reader = self._reader
            return self._call(operation, lambda: reader.get_json(path))

        def get() -> dict[str, Any]:
            response = self._client.send_request(HttpRequest("GET", path))
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response)
            response.raise_for_status()
            return response.json()

        return self._call(operation, get)

    def _listings(self, operation: str, path: str) -> Iterator[CertificateListing]:
        """Every item of a paged list, one page in memory at a time."""
        url: str | None = path
        while url:
            page = self._get_json(operation, url)
            for item in page.get("value") or ():
                yield self._listing_from_wire(item)
            url = page.get("nextLink") or None

    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]:
        pending = "&includePending=true" if include_pending else ""
        return self._listings("list", f"/certificates?maxresults={PAGE_SIZE}{pending}")

    def _listing_from_wire(self, item: dict[str, Any]) -> CertificateListing:
        """A certificate item of the list API (``id``, ``attributes``, ``tags``, ``x5t``) as a listing."""
        parts = str(item.get("id") or "").rstrip("/").split("/")
        at = parts.index("certificates") if "certificates" in parts else len(parts)
        name = parts[at + 1] if len(parts) > at + 1 else ""
        version = parts[at + 2] if len(parts) > at + 2 else None
        attributes = item.get("attributes") or {}

        def when(key: str) -> dt.datetime | None:
            value = attributes.get(key)
            return dt.datetime.fromtimestamp(value, dt.UTC) if value is not None else None

        expires_on = when("exp")
        return CertificateListing(
            vault=self.vault,
            name=name,
            version=version,
            enabled=attributes.get("enabled"),
            not_before=when("nbf"),
            expires_on=expires_on,
            created_on=when("created"),
            tags=dict(item.get("tags") or {}),
            pending=item.get("x5t") is None and expires_on is None,
            thumbprint=_x5t_hex(item.get("x5t")),
        )

    def list_versions(self, name: str) -> Iterator[CertificateListing]:
        return self._listings("list_versions", f"/certificates/{quote(name, safe='')}/versions?maxresults={PAGE_SIZE}")

    def get_current(self, name: str) -> CertificateVersion | None:
        """The current version with its policy; None when the certificate (or a completed version) is absent."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            bundle = self._get_json("get_certificate", f"/certificates/{quote(name, safe='')}/")
        except ResourceNotFoundError:
            return None
        if not bundle.get("cer"):
            return None
        attributes = bundle.get("attributes") or {}
        cert_id = bundle.get("id") or ""
        return CertificateVersion(
            vault=self.vault,
            name=name,
            version=cert_id.rstrip("/").rsplit("/", 1)[-1],
            id=cert_id,
            cer=base64.b64decode(bundle["cer"]),
            enabled=bool(attributes.get("enabled")),
            not_before=_epoch(attributes.get("nbf")),
            expires_on=_epoch(attributes.get("exp")),
            created_on=_epoch(attributes.get("created")),
            tags=dict(bundle.get("tags") or {}),
            policy=policy_from_wire(bundle["policy"]) if bundle.get("policy") else None,
        )

    def get_policy(self, name: str) -> PolicySpec:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return policy_from_wire(self._get_json("get_policy", f"/certificates/{quote(name, safe='')}/policy"))
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: certificate not found") from exc

    def get_pending(self, name: str) -> PendingOperation | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            op = self._call("get_pending", lambda: self._client.get_certificate_operation(name))
        except ResourceNotFoundError:
            return None
        return self._operation(name, op)

    def _operation(self, name: str, op: Any) -> PendingOperation:
        error = getattr(op, "error", None)
        return PendingOperation(
            vault=self.vault,
            name=name,
            request_id=op.request_id or "",
            status=op.status or "",
            csr_der=bytes(op.csr) if op.csr else None,
            issuer_name=op.issuer_name,
            cancellation_requested=bool(op.cancellation_requested),
            error=f"{error.code}: {error.message}" if error is not None else None,
        )

    # -- writes ---------------------------------------------------------------------------------------
    def begin_pending(self, name: str, policy: PolicySpec, *, tags: dict[str, str]) -> PendingOperation:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        sdk_policy = policy_to_sdk(policy)
        try:
            poller = self._call(
                "create", lambda: self._client.begin_create_certificate(name, sdk_policy, tags=tags or None)
            )
            op = poller.result()  # issuer Unknown: the poller is done at once with the operation
        except ResourceExistsError as exc:
            raise PendingOperationExists(f"{self.vault}/{name}: a pending operation is in progress") from exc
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: certificate not found") from exc
        if not hasattr(op, "request_id"):
            # A CertificateOperation is expected; a KeyVaultCertificate means the issuer was not Unknown.
            raise RuntimeError(f"{self.vault}/{name}: create completed immediately; issuer must be Unknown")
        return self._operation(name, op)

    def delete_pending(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._call("delete_pending", lambda: self._client.delete_certificate_operation(name))
        except ResourceNotFoundError:
            return

    def merge(self, name: str, chain_der: list[bytes], *, tags: dict[str, str] | None = None) -> CertificateVersion:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            merged = self._call("merge", lambda: self._client.merge_certificate(name, chain_der, tags=tags or None))
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: pending operation not found at merge") from exc
        except HttpResponseError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code != 429:
                raise MergeRejected(f"{self.vault}/{name}: Key Vault refused the merge: {exc.message}") from exc
            raise
        # The merge answers with the new certificate (version, id, cer): no second read is needed. The
        # policy is the one the pending operation was created with; callers that need it read it.
        return self._version_of(merged, name, "merge")

    def _version_of(self, answer: Any, name: str, operation: str) -> CertificateVersion:
        """The SDK's KeyVaultCertificate of a merge or restore answer (without its policy)."""
        if not answer.cer:
            raise CertificateGone(f"{self.vault}/{name}: {operation} answered without a certificate")
        props = answer.properties
        return CertificateVersion(
            vault=self.vault,
            name=name,
            version=props.version or "",
            id=answer.id or "",
            cer=bytes(answer.cer),
            enabled=bool(props.enabled),
            not_before=props.not_before,
            expires_on=props.expires_on,
            created_on=props.created_on,
            tags=dict(props.tags or {}),
        )

    def update_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        self._call(
            "update_properties",
            lambda: self._client.update_certificate_properties(name, version, tags=tags),
        )

    def update_policy(self, name: str, policy: PolicySpec) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        sdk_policy = policy_to_sdk(policy)
        try:
            self._call("update_policy", lambda: self._client.update_certificate_policy(name, sdk_policy))
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: certificate not found") from exc

    # -- backup and restore (disaster recovery) --------------------------------------------------------
    def backup(self, name: str) -> bytes:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            return self._call("backup", lambda: self._client.backup_certificate(name))
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: certificate not found") from exc
        except HttpResponseError as exc:  # 403: the identity lacks certificates/backup (a role to fix, then replay)
            raise StoreError(f"{self.vault}/{name}: Key Vault refused the backup: {exc.message}") from exc

    def restore(self, backup: bytes) -> CertificateVersion:
        from azure.core.exceptions import HttpResponseError

        try:
            restored = self._call("restore", lambda: self._client.restore_certificate_backup(backup))
        except HttpResponseError as exc:
            if exc.status_code in (400, 409):
                raise RestoreRefused(f"{self.vault}: Key Vault refused the restore: {exc.message}") from exc
            raise
        # The answer is the restored current version (with its policy): no second read is needed.
        return self._version_of(restored, restored.name or "", "restore")

    def delete_and_purge(self, name: str) -> None:
        """Delete, wait for the soft delete, purge (drill copies only: a drill vault must allow purge)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._call("delete", lambda: self._client.begin_delete_certificate(name).wait())
        except ResourceNotFoundError:
            pass
        try:
            self._call("purge", lambda: self._client.purge_deleted_certificate(name))
        except ResourceNotFoundError:
            return

    def import_certificate(
        self,
        name: str,
        data: bytes,
        *,
        password: str | None = None,
        policy: PolicySpec | None = None,
        tags: dict[str, str] | None = None,
    ) -> CertificateVersion:
        """Import a PFX or PEM (key + chain) through the certificates API. Operator CLI only: the
        private key passes through the caller; the Functions app never imports."""
        sdk_policy = policy_to_sdk(policy) if policy is not None else None
        self._call(
            "import",
            lambda: self._client.import_certificate(
                name, data, password=password, policy=sdk_policy, tags=tags or None
            ),
        )
        current = self.get_current(name)
        if current is None:
            raise CertificateGone(f"{self.vault}/{name}: certificate vanished right after import")
        return current


def open_store(vault: str, url: str, credential: Any, *, connection_verify: str | None = None, **options: Any):
    from azure.keyvault.certificates import CertificateClient

    verify = connection_verify or _environment_ca_bundle()
    kwargs: dict[str, Any] = {"connection_verify": verify}
    throttle_retries = options.pop("throttle_retries", 5)
    sleep = options.pop("sleep", time.sleep)
    create_pacer = options.pop("create_pacer", None) or create_pacer_for(url)
    reader = None
    if "transport" not in options:
        from azure.core.pipeline.transport import RequestsTransport

        from renewal.azure.keyvault_io import VaultReader

        session = vault_session(url)
        # azure-core passes the transport's own connection_verify with each request.
        kwargs["transport"] = RequestsTransport(session=session, session_owner=False, connection_verify=verify)
        reader = VaultReader(
            url,
            credential,
            verify=verify,
            proxies=_proxy_as_requests_picks_it(url, session.proxies),
            connections=VAULT_CONNECTIONS,
            options=dict(options),
        )
    client = CertificateClient(url, credential, **kwargs, **options)
    return KeyVaultCertificateStore(
        vault, client, throttle_retries=throttle_retries, sleep=sleep, create_pacer=create_pacer, reader=reader
    )


def vault_session(url: str) -> Any:
    """A requests session for one vault with the environment's proxy settings resolved once, for its host
    (NO_PROXY honoured). Left to itself, requests re-reads every environment variable and ~/.netrc on each
    request: about 13 % of a policy read's CPU here, on every Key Vault call the service makes."""
    import requests
    from requests.adapters import HTTPAdapter
    from requests.utils import get_environ_proxies
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.proxies.update(get_environ_proxies(url))
    session.trust_env = False
    # As azure-core mounts its own (its retry policy retries, not urllib3), with room for every thread that
    # reads the vault at once: with requests' 10 a scan's 32 readers closed a connection after most requests
    # and paid a new TLS handshake for the next (12 % of a first report's samples).
    adapter = HTTPAdapter(
        pool_maxsize=VAULT_CONNECTIONS, max_retries=Retry(total=False, redirect=False, raise_on_status=False)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _proxy_as_requests_picks_it(url: str, proxies: dict[str, str]) -> dict[str, str]:
    """The one proxy requests would use for ``url`` (``https``, or ``all`` from ALL_PROXY, or per host), for a
    transport that only looks a proxy up by scheme."""
    from requests.utils import select_proxy

    chosen = select_proxy(url, proxies)
    return {url.split(":", 1)[0]: chosen} if chosen else {}


def _environment_ca_bundle() -> str | bool:
    """What requests would take from the environment when no CA bundle is configured (a corporate TLS proxy's
    bundle in REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE), read once; else the public roots."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def _x5t_hex(x5t: Any) -> str | None:
    """``x5t`` (base64url SHA-1, unpadded) as lower-case hex, the thumbprint form notices carry."""
    if not isinstance(x5t, str) or not x5t:
        return None
    try:
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex()
    except ValueError:
        return None


def utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value else None
