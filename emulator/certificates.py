"""The certificate operations: service semantics over the store, answering with wire bundles."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import crypto, policy, wire
from .backup import BackupSealer
from .clock import Clock
from .errors import (
    KEY_MISMATCH,
    PENDING_IN_PROGRESS,
    ServiceError,
    bad_parameter,
    deleted_not_found,
    not_found,
    pending_not_found,
)
from .store import RECOVERABLE_DAYS, Certificate, PendingOperation, Vault, Version, new_id

Result = tuple[int, dict[str, Any] | None]
MONTH = 30 * 86400


class NewVersionSink(Protocol):
    def new_version(self, vault: Vault, base: str, cert: Certificate, version: Version) -> None: ...


@dataclass
class Request:
    vault: Vault
    base: str  # https://127.0.0.1:PORT, the vault URL without trailing slash
    api_version: str
    query: dict[str, str]
    raw_body: bytes
    name: str = ""
    version: str = ""
    _body: dict[str, Any] | None = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        if self._body is None:
            if not self.raw_body.strip():
                self._body = {}
            else:
                try:
                    parsed = json.loads(self.raw_body)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise bad_parameter("The request body is not valid JSON.") from exc
                if not isinstance(parsed, dict):
                    raise bad_parameter("The request body must be a JSON object.")
                self._body = parsed
        return self._body


def _tags(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_parameter("Property tags must be an object of strings.")
    if len(value) > 15:
        raise bad_parameter("A maximum of 15 tags is allowed.")
    return dict(value)


def _attributes(body: dict[str, Any]) -> dict[str, Any]:
    attrs = body.get("attributes")
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise bad_parameter("Property attributes must be an object.")
    for key in ("enabled",):
        if key in attrs and attrs[key] is not None and not isinstance(attrs[key], bool):
            raise bad_parameter(f"Property attributes.{key} must be a boolean.")
    for key in ("nbf", "exp"):
        if (
            key in attrs
            and attrs[key] is not None
            and (isinstance(attrs[key], bool) or not isinstance(attrs[key], int))
        ):
            raise bad_parameter(f"Property attributes.{key} must be an integer.")
    return attrs


def _max_results(query: dict[str, str]) -> int:
    raw = query.get("maxresults")
    if raw is None or raw == "":
        return 25
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_parameter(f"Invalid maxresults value '{raw}'.") from exc
    if not 1 <= value <= 25:
        raise bad_parameter("The value of maxresults must be between 1 and 25.")
    return value


def _certificate_der(data: bytes) -> bytes:
    """One decoded x5c entry as DER. Key Vault also takes the base64 text of a DER certificate (what the
    SDK sends for ``x509_certificates=[pem_body.encode()]``) and PEM: such a body is decoded once more."""
    try:
        crypto.load_der(data)
        return data
    except ValueError:
        pass
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not DER, base64 text or PEM") from None
    if "-----BEGIN" in text:
        text = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not DER, base64 text or PEM") from None
    crypto.load_der(der)
    return der


def _b64decode(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise bad_parameter(f"Property {where} must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_parameter(f"Property {where} is not valid base64.") from exc


class CertificateService:
    def __init__(
        self,
        clock: Clock,
        sink: NewVersionSink,
        on_change: Callable[[], None] = lambda: None,
        backups: BackupSealer | None = None,
    ) -> None:
        self.clock = clock
        self.sink = sink
        self.on_change = on_change
        self.backups = backups or BackupSealer()

    # ---- lookups ----------------------------------------------------------------------------------

    def _live(self, req: Request) -> Certificate:
        cert = req.vault.certificates.get(req.name)
        if cert is None:
            raise not_found(req.name)
        return cert

    def _version(self, req: Request, cert: Certificate) -> Version:
        version = cert.versions.get(req.version) if req.version else cert.latest()
        if version is None:
            raise not_found(req.name if not req.version else f"{req.name}/{req.version}")
        return version

    def _check_not_deleted(self, vault: Vault, name: str) -> None:
        if name in vault.deleted:
            raise ServiceError(
                409,
                "Conflict",
                f"Certificate {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the certificate can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )

    def _check_can_write(self, vault: Vault, name: str) -> None:
        self._check_not_deleted(vault, name)
        cert = vault.certificates.get(name)
        if cert is not None and cert.pending is not None and cert.pending.in_progress:
            raise ServiceError(409, "Forbidden", PENDING_IN_PROGRESS)

    # ---- create / pending / merge -----------------------------------------------------------------

    def create(self, req: Request) -> Result:
        policy.check_name(req.name)
        body = req.body()
        if "policy" not in body:
            raise bad_parameter("Property policy is required.")
        new_policy = policy.normalize(body["policy"])
        attrs = _attributes(body)
        tags = _tags(body.get("tags")) or {}
        preserve = body.get("preserveCertOrder")
        with req.vault.lock:
            self._check_can_write(req.vault, req.name)
            now = self.clock.seconds()
            cert = req.vault.certificates.get(req.name)
            if cert is None:
                cert = Certificate(req.name, new_policy, now, now)
            else:
                cert.policy, cert.policy_updated = new_policy, now
            if isinstance(preserve, bool):
                cert.preserve_order = preserve
            key_props = new_policy["key_props"]
            reuse = key_props["reuse_key"] and cert.latest() is not None and cert.latest().key is not None  # type: ignore[union-attr]
            key = (
                cert.latest().key  # type: ignore[union-attr]
                if reuse
                else crypto.generate_key(key_props["kty"], key_props["key_size"], key_props.get("crv"))
            )
            assert key is not None
            issuer = new_policy["issuer"]
            op = PendingOperation(
                request_id=new_id(),
                version=new_id(),
                key=key,
                csr=crypto.build_csr(key, new_policy["x509_props"]),
                issuer=issuer,
                enabled=attrs.get("enabled", True) is not False,
                tags=tags,
            )
            cert.pending = op
            req.vault.certificates[req.name] = cert
            if issuer["name"].lower() == "self":
                months = new_policy["x509_props"]["validity_months"]
                der = crypto.self_signed(key, new_policy["x509_props"], now - 300, now + months * MONTH)
                self._complete(req, cert, [der])
            result = wire.operation(req.base, cert)
            if issuer["name"].lower() == "self":
                # The service answers a create with inProgress and the SDK poller relies on it: a poller
                # that starts finished never fetches the certificate. The next GET /pending says completed.
                result.pop("target", None)
                result["status"] = "inProgress"
                result["status_details"] = "Pending certificate created. Certificate request is in progress."
        self.on_change()
        return 202, result

    def _complete(self, req: Request, cert: Certificate, chain: list[bytes]) -> Version:
        op = cert.pending
        assert op is not None
        now = self.clock.seconds()
        nbf, exp = crypto.validity(chain[0])
        version = Version(
            version=op.version,
            created=now,
            updated=now,
            enabled=op.enabled,
            not_before=nbf,
            expires=exp,
            tags=op.tags,
            content_type=cert.policy["secret_props"]["contentType"],
            exportable=cert.policy["key_props"]["exportable"],
            key=op.key,
            chain=chain,
        )
        cert.versions[version.version] = version
        cert.current = version.version
        op.status, op.status_details = "completed", ""
        op.target = f"{req.base}/certificates/{cert.name}"
        self.sink.new_version(req.vault, req.base, cert, version)
        return version

    def _pending(self, req: Request) -> Certificate:
        cert = req.vault.certificates.get(req.name)
        if cert is None or cert.pending is None:
            raise pending_not_found(req.name)
        wanted = req.query.get("request_id")
        if wanted and wanted != cert.pending.request_id:
            raise pending_not_found(req.name)
        return cert

    def get_pending(self, req: Request) -> Result:
        with req.vault.lock:
            return 200, wire.operation(req.base, self._pending(req))

    def cancel(self, req: Request) -> Result:
        body = req.body()
        flag = body.get("cancellation_requested")
        if not isinstance(flag, bool):
            raise bad_parameter("Property cancellation_requested must be a boolean.")
        with req.vault.lock:
            cert = self._pending(req)
            op = cert.pending
            assert op is not None
            if flag:
                if not op.in_progress:
                    raise bad_parameter("The pending certificate operation is not in progress and cannot be canceled.")
                op.cancellation_requested = True
                op.status, op.status_details = "canceled", "Pending certificate was canceled."
            result = wire.operation(req.base, cert)
        self.on_change()
        return 200, result

    def delete_pending(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._pending(req)
            result = wire.operation(req.base, cert)
            cert.pending = None
            if not cert.versions:
                del req.vault.certificates[cert.name]
        self.on_change()
        return 200, result

    def merge(self, req: Request) -> Result:
        body = req.body()
        x5c = body.get("x5c")
        if not isinstance(x5c, list) or not x5c:
            raise bad_parameter("Property x5c is required and must be a non-empty array.")
        try:
            chain = [_certificate_der(_b64decode(item, f"x5c[{i}]")) for i, item in enumerate(x5c)]
            leaf = crypto.load_der(chain[0])
        except ValueError as exc:
            raise bad_parameter("Property x5c does not hold valid X.509 certificates.") from exc
        attrs = _attributes(body)
        tags = _tags(body.get("tags"))
        with req.vault.lock:
            cert = req.vault.certificates.get(req.name)
            if cert is None or cert.pending is None or not cert.pending.in_progress:
                raise pending_not_found(req.name)
            op = cert.pending
            if op.issuer["name"].lower() not in ("unknown",):
                raise ServiceError(403, "Forbidden", "Merge is not allowed for a certificate issued by an issuer.")
            if crypto.public_bytes(leaf.public_key()) != crypto.public_bytes(op.key):
                raise bad_parameter(KEY_MISMATCH)
            if "enabled" in attrs and attrs["enabled"] is not None:
                op.enabled = attrs["enabled"]
            if tags is not None:
                op.tags = tags
            version = self._complete(req, cert, chain)
            result = wire.bundle(req.base, cert, version)
        self.on_change()
        return 201, result

    # ---- read / update ----------------------------------------------------------------------------

    def get(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._live(req)
            if not req.version and cert.latest() is None and cert.pending is not None:
                return 200, wire.pending_bundle(req.base, cert)
            return 200, wire.bundle(req.base, cert, self._version(req, cert))

    def update(self, req: Request) -> Result:
        body = req.body()
        attrs = _attributes(body)
        tags = _tags(body.get("tags"))
        new_policy = body.get("policy")
        with req.vault.lock:
            cert = self._live(req)
            version = self._version(req, cert)
            now = self.clock.seconds()
            if attrs.get("enabled") is not None:
                version.enabled = attrs["enabled"]
            if tags is not None:
                version.tags = tags
            if new_policy is not None:
                cert.policy = policy.normalize(policy.merge_patch(cert.policy, policy._obj(new_policy, "policy")))
                cert.policy_updated = now
            version.updated = now
            result = wire.bundle(req.base, cert, version)
        self.on_change()
        return 200, result

    def get_policy(self, req: Request) -> Result:
        with req.vault.lock:
            return 200, wire.policy(req.base, self._live(req))

    def update_policy(self, req: Request) -> Result:
        body = req.body()
        with req.vault.lock:
            cert = self._live(req)
            cert.policy = policy.normalize(policy.merge_patch(cert.policy, body))
            cert.policy_updated = self.clock.seconds()
            result = wire.policy(req.base, cert)
        self.on_change()
        return 200, result

    # ---- listing ----------------------------------------------------------------------------------

    def _page(self, req: Request, path: str, keys: list[str], render: Callable[[str], dict[str, Any]]) -> Result:
        size = _max_results(req.query)
        after = ""
        token = req.query.get("$skiptoken")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
                assert isinstance(after, str)
            except Exception as exc:
                raise bad_parameter("The $skiptoken is invalid.") from exc
        keys = sorted(k for k in keys if k > after)
        page, rest = keys[:size], keys[size:]
        next_link = None
        if rest:
            token = base64.urlsafe_b64encode(json.dumps({"after": page[-1]}).encode()).rstrip(b"=").decode()
            extra = "&includePending=true" if req.query.get("includePending", "").lower() == "true" else ""
            next_link = f"{req.base}{path}?api-version={req.api_version}&$skiptoken={token}&maxresults={size}{extra}"
        return 200, {"value": [render(k) for k in page], "nextLink": next_link}

    def list(self, req: Request) -> Result:
        include_pending = req.query.get("includePending", "").lower() == "true"
        with req.vault.lock:
            certs = req.vault.certificates
            names = [n for n, c in certs.items() if c.current or (include_pending and c.pending)]
            return self._page(
                req,
                "/certificates",
                names,
                lambda n: wire.item(req.base, certs[n], certs[n].latest(), with_version=False),
            )

    def list_versions(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._live(req)
            return self._page(
                req,
                f"/certificates/{cert.name}/versions",
                list(cert.versions),
                lambda v: wire.item(req.base, cert, cert.versions[v], with_version=True),
            )

    # ---- import -----------------------------------------------------------------------------------

    def import_(self, req: Request) -> Result:
        policy.check_name(req.name)
        body = req.body()
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("Property value is required.")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise bad_parameter("Property pwd must be a string.")
        raw_policy = body.get("policy")
        declared = (
            ((raw_policy or {}).get("secret_props") or {}).get("contentType") if isinstance(raw_policy, dict) else None
        )
        # The SDK base64-encodes PEM files too; raw PEM text is accepted as well.
        data = value.encode() if "-----BEGIN" in value else _b64decode(value, "value")
        try:
            if b"-----BEGIN" in data or declared == "application/x-pem-file":
                key, chain = crypto.parse_pem(data.decode())
                content_type = "application/x-pem-file"
            else:
                key, chain = crypto.parse_pfx(data, password)
                content_type = "application/x-pkcs12"
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise bad_parameter(f"The specified certificate content could not be read: {exc}") from exc
        if crypto.public_bytes(crypto.load_der(chain[0]).public_key()) != crypto.public_bytes(key):
            raise bad_parameter(KEY_MISMATCH)
        derived = {
            "key_props": crypto.key_props_of(key),
            "secret_props": {"contentType": content_type},
            "x509_props": crypto.x509_props_of(chain[0]),
            "issuer": {"name": "Unknown"},
        }
        new_policy = (
            policy.normalize(
                policy.merge_patch(derived, raw_policy),
                derived="validity_months" not in ((raw_policy.get("x509_props") or {}) if raw_policy else {}),
            )
            if isinstance(raw_policy, dict)
            else policy.normalize(derived, derived=True)  # Key Vault's own description of the certificate
        )
        new_policy["key_props"] |= crypto.key_props_of(key)  # the key decides, whatever the policy said
        attrs = _attributes(body)
        tags = _tags(body.get("tags")) or {}
        with req.vault.lock:
            self._check_can_write(req.vault, req.name)
            now = self.clock.seconds()
            cert = req.vault.certificates.get(req.name)
            if cert is None:
                cert = Certificate(req.name, new_policy, now, now)
            else:
                cert.policy, cert.policy_updated = new_policy, now
            if isinstance(body.get("preserveCertOrder"), bool):
                cert.preserve_order = body["preserveCertOrder"]
            cert.pending = PendingOperation(
                new_id(), new_id(), key, b"", new_policy["issuer"], enabled=attrs.get("enabled") is not False, tags=tags
            )
            req.vault.certificates[req.name] = cert
            version = self._complete(req, cert, chain)
            cert.pending = None  # an import leaves no pending operation behind
            result = wire.bundle(req.base, cert, version)
        self.on_change()
        return 200, result

    # ---- soft delete ------------------------------------------------------------------------------

    def delete(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._live(req)
            now = self.clock.seconds()
            cert.deleted_date, cert.scheduled_purge = now, now + RECOVERABLE_DAYS * 86400
            del req.vault.certificates[cert.name]
            req.vault.deleted[cert.name] = cert
            result = self._deleted_bundle(req, cert)
        self.on_change()
        return 200, result

    def _deleted_bundle(self, req: Request, cert: Certificate) -> dict[str, Any]:
        latest = cert.latest()
        body = wire.bundle(req.base, cert, latest) if latest else wire.pending_bundle(req.base, cert)
        return body | wire.deleted_fields(req.base, cert)

    def _deleted(self, req: Request) -> Certificate:
        cert = req.vault.deleted.get(req.name)
        if cert is None:
            raise deleted_not_found(req.name)
        return cert

    def get_deleted(self, req: Request) -> Result:
        with req.vault.lock:
            return 200, self._deleted_bundle(req, self._deleted(req))

    def list_deleted(self, req: Request) -> Result:
        with req.vault.lock:
            deleted = req.vault.deleted

            def render(name: str) -> dict[str, Any]:
                cert = deleted[name]
                latest = cert.latest()
                base_item = wire.item(req.base, cert, latest, with_version=False) if latest else {"id": ""}
                base_item["id"] = f"{req.base}/certificates/{name}"
                return base_item | wire.deleted_fields(req.base, cert)

            return self._page(req, "/deletedcertificates", list(deleted), render)

    def recover(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._deleted(req)
            if req.name in req.vault.certificates:
                raise ServiceError(409, "Conflict", f"Certificate {req.name} already exists.")
            del req.vault.deleted[req.name]
            cert.deleted_date = cert.scheduled_purge = None
            req.vault.certificates[req.name] = cert
            latest = cert.latest()
            result = wire.bundle(req.base, cert, latest) if latest else wire.pending_bundle(req.base, cert)
        self.on_change()
        return 200, result

    def purge(self, req: Request) -> Result:
        with req.vault.lock:
            self._deleted(req)
            del req.vault.deleted[req.name]
        self.on_change()
        return 204, None

    # ---- backup / restore -------------------------------------------------------------------------

    def backup(self, req: Request) -> Result:
        with req.vault.lock:
            cert = self._live(req)
            if not cert.versions:  # only a pending first version: nothing a restore could bring back
                raise not_found(req.name)
            blob = self.backups.seal(req.vault, cert)
        return 200, {"value": base64.urlsafe_b64encode(blob).rstrip(b"=").decode()}  # base64url, as the SDK reads

    def restore(self, req: Request) -> Result:
        value = req.body().get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("Property value is required.")
        try:
            blob = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_parameter("Property value is not valid base64url.") from exc
        opened = self.backups.open(blob)
        cert, vault = opened.certificate, req.vault
        # Key Vault restores only within the subscription and the geography of the vault backed up.
        if opened.subscription != vault.subscription:
            raise bad_parameter(
                f"The backup was taken in a vault of subscription {opened.subscription}; it can only be restored "
                f"into a vault of the same Azure subscription, and this vault is in subscription {vault.subscription}."
            )
        if opened.geography != vault.geography:
            raise bad_parameter(
                f"The backup was taken in a vault in geography {opened.geography}; it can only be restored into "
                f"a vault in the same Azure geography, and this vault is in geography {vault.geography}."
            )
        latest = cert.latest()
        assert latest is not None  # backups are only taken of certificates with a version
        with vault.lock:
            self._check_not_deleted(vault, cert.name)
            if cert.name in vault.certificates:  # never overwritten
                raise ServiceError(
                    409,
                    "Conflict",
                    f"Conflict while restoring certificate {req.base}/certificates/{cert.name}/{latest.version} - "
                    "certificate already exists or concurrent access",
                )
            vault.certificates[cert.name] = cert
            result = wire.bundle(req.base, cert, latest)
        self.on_change()
        return 200, result

    # ---- the managed secret -----------------------------------------------------------------------

    def get_secret(self, req: Request) -> Result:
        with req.vault.lock:
            cert = req.vault.certificates.get(req.name)
            if cert is None:
                raise ServiceError(
                    404, "SecretNotFound", f"A secret with (name/id) {req.name} was not found in this key vault."
                )
            version = cert.versions.get(req.version) if req.version else cert.latest()
            if version is None:
                raise ServiceError(
                    404,
                    "SecretNotFound",
                    f"A secret with (name/id) {req.name}/{req.version} was not found in this key vault.",
                )
            key = version.private_key() if version.exportable else None
            chain = version.chain_der()
            if version.content_type == "application/x-pem-file":
                value = crypto.to_pem(key, chain)
            else:
                value = wire.b64(crypto.to_pkcs12(key, chain, cert.name))
            return 200, wire.secret(req.base, cert, version, value)
