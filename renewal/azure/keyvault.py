"""Key Vault certificates over the ``azure-keyvault-certificates`` SDK (implements CertificateStore).

Only the certificates API is used: promise 4 forbids reading certificate material through the
secrets API, and nothing here imports ``azure.keyvault.secrets``. A 429 on create or merge is not
retried by azure-core (POST without Retry-After), so this adapter backs off itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..model import (
    CertificateListing,
    CertificateVersion,
    LifetimeTrigger,
    PendingOperation,
    PolicySpec,
    SubjectAlternativeNames,
)
from ..observability import log_event
from ..ports import CertificateGone, KeyVaultThrottled, MergeRejected, PendingOperationExists

T = TypeVar("T")
log = logging.getLogger("renewal.keyvault")
PAGE_SIZE = 25
BACKOFF_SECONDS = (1, 2, 4, 8, 16, 16, 16, 16, 16, 16)


class StaticTokenCredential:
    """Dev/test credential for the Key Vault emulator, which accepts any bearer token."""

    def __init__(self, token: str = "emulator-dev-token") -> None:  # noqa: S107 - not a secret
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def policy_from_sdk(policy: Any) -> PolicySpec:
    triggers = tuple(
        LifetimeTrigger(
            lifetime_percentage=a.lifetime_percentage,
            days_before_expiry=a.days_before_expiry,
            action=str(getattr(a.action, "value", a.action) or "EmailContacts"),
        )
        for a in (policy.lifetime_actions or [])
        if a.lifetime_percentage is not None or a.days_before_expiry is not None
    )

    def enum_text(value: Any) -> str | None:
        return None if value is None else str(getattr(value, "value", value))

    return PolicySpec(
        subject=policy.subject or "",
        sans=SubjectAlternativeNames(
            dns_names=tuple(policy.san_dns_names or ()),
            emails=tuple(policy.san_emails or ()),
            upns=tuple(policy.san_user_principal_names or ()),
            uris=tuple(policy.san_uris or ()),
            ip_addresses=tuple(policy.san_ip_addresses or ()),
        ),
        issuer_name=policy.issuer_name or "Unknown",
        key_type=enum_text(policy.key_type) or "RSA",
        key_size=policy.key_size,
        key_curve=enum_text(policy.key_curve_name),
        exportable=policy.exportable,
        reuse_key=policy.reuse_key,
        content_type=enum_text(policy.content_type),
        ekus=tuple(policy.enhanced_key_usage or ()),
        key_usage=tuple(enum_text(k) or "" for k in (policy.key_usage or ())),
        validity_months=policy.validity_in_months,
        lifetime_triggers=triggers,
        certificate_transparency=policy.certificate_transparency,
        certificate_type=policy.certificate_type,
    )


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


class KeyVaultCertificateStore:
    """One vault. ``client`` is an ``azure.keyvault.certificates.CertificateClient``."""

    def __init__(
        self,
        vault: str,
        client: Any,
        *,
        throttle_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vault = vault
        self._client = client
        self._throttle_retries = throttle_retries
        self._sleep = sleep

    # -- error mapping and 429 backoff -------------------------------------------------------------
    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        from azure.core.exceptions import HttpResponseError

        for attempt in range(self._throttle_retries + 1):
            try:
                return fn()
            except HttpResponseError as exc:
                if exc.status_code != 429:
                    raise
                if attempt >= self._throttle_retries:
                    raise KeyVaultThrottled(f"{operation} throttled by Key Vault after {attempt + 1} attempts") from exc
                delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                log_event(log, "keyvault.throttled", vault=self.vault, operation=operation, retry_in=delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- reads ----------------------------------------------------------------------------------------
    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]:
        pages = self._client.list_properties_of_certificates(
            include_pending=include_pending or None, max_page_size=PAGE_SIZE
        )
        for props in pages:
            yield self._listing(props)

    def list_versions(self, name: str) -> Iterator[CertificateListing]:
        for props in self._client.list_properties_of_certificate_versions(name, max_page_size=PAGE_SIZE):
            yield self._listing(props)

    def _listing(self, props: Any) -> CertificateListing:
        return CertificateListing(
            vault=self.vault,
            name=props.name,
            version=props.version,
            enabled=props.enabled,
            not_before=props.not_before,
            expires_on=props.expires_on,
            created_on=props.created_on,
            tags=dict(props.tags or {}),
            pending=props.x509_thumbprint is None and props.expires_on is None,
        )

    def get_current(self, name: str) -> CertificateVersion | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            cert = self._call("get_certificate", lambda: self._client.get_certificate(name))
        except ResourceNotFoundError:
            return None
        if not cert.cer:
            return None
        props = cert.properties
        return CertificateVersion(
            vault=self.vault,
            name=name,
            version=props.version or "",
            id=cert.id or "",
            cer=bytes(cert.cer),
            enabled=bool(props.enabled),
            not_before=props.not_before,
            expires_on=props.expires_on,
            created_on=props.created_on,
            tags=dict(props.tags or {}),
            policy=policy_from_sdk(cert.policy) if cert.policy is not None else None,
        )

    def get_policy(self, name: str) -> PolicySpec:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return policy_from_sdk(self._call("get_policy", lambda: self._client.get_certificate_policy(name)))
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
            self._call("merge", lambda: self._client.merge_certificate(name, chain_der, tags=tags or None))
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: pending operation not found at merge") from exc
        except HttpResponseError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code != 429:
                raise MergeRejected(f"{self.vault}/{name}: Key Vault refused the merge: {exc.message}") from exc
            raise
        current = self.get_current(name)
        if current is None:
            raise CertificateGone(f"{self.vault}/{name}: certificate vanished right after merge")
        return current

    def update_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        self._call(
            "update_properties",
            lambda: self._client.update_certificate_properties(name, version, tags=tags),
        )

    def update_policy(self, name: str, policy: PolicySpec) -> PolicySpec:
        from azure.core.exceptions import ResourceNotFoundError

        sdk_policy = policy_to_sdk(policy)
        try:
            updated = self._call(
                "update_policy", lambda: self._client.update_certificate_policy(name, sdk_policy)
            )
        except ResourceNotFoundError as exc:
            raise CertificateGone(f"{self.vault}/{name}: certificate not found") from exc
        return policy_from_sdk(updated)

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

    kwargs: dict[str, Any] = {}
    if connection_verify:
        kwargs["connection_verify"] = connection_verify
    throttle_retries = options.pop("throttle_retries", 5)
    sleep = options.pop("sleep", time.sleep)
    client = CertificateClient(url, credential, **kwargs, **options)
    return KeyVaultCertificateStore(vault, client, throttle_retries=throttle_retries, sleep=sleep)


def utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value else None
