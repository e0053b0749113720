"""HashiCorp Vault / OpenBao PKI: ``<mount>/sign/<role>`` or ``<mount>/sign-verbatim[/<role>]``.

The CSR goes to Vault unchanged; the chain comes from the response's ``ca_chain`` (issuing CA first,
then anything above it) or, when Vault omits it, ``issuing_ca``. Authentication is a static token,
AppRole, Azure (a managed-identity token presented to Vault's ``azure`` auth) or JWT (a JWT from a
secret reference or the managed-identity token, presented to a ``jwt`` auth mount). The client token is
cached until shortly before its lease ends; a ``403`` triggers one fresh login before it counts as a
refusal. Tokens and secrets never reach logs or exception text.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .base import ClientContext, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from .chain import load_pem_chain
from .config_types import SecretRef, check_secret_reference

log = logging.getLogger(__name__)

# Renew a cached token this long before Vault would expire it, so a sign never races the expiry.
TOKEN_EXPIRY_MARGIN_SECONDS = 30.0
DEFAULT_AZURE_RESOURCE = "https://management.azure.com/"


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mount: str | None = Field(default=None, description="auth mount path; defaults to the method name")


class TokenAuth(_Auth):
    method: Literal["token"]
    token: SecretRef = Field(description="secret reference to a Vault token")


class AppRoleAuth(_Auth):
    method: Literal["approle"]
    role_id: str
    secret_id: SecretRef = Field(description="secret reference to the AppRole secret_id")


class AzureAuth(_Auth):
    method: Literal["azure"]
    role: str
    resource: str = Field(default=DEFAULT_AZURE_RESOURCE, description="audience of the managed-identity token")
    client_id: str | None = Field(default=None, description="user-assigned managed identity client id")
    subscription_id: str | None = None
    resource_group_name: str | None = None
    vm_name: str | None = None
    vmss_name: str | None = None

    @model_validator(mode="after")
    def _one_compute(self) -> AzureAuth:
        if self.vm_name and self.vmss_name:
            raise ValueError("give vm_name or vmss_name, not both")
        return self


class JwtAuth(_Auth):
    method: Literal["jwt"]
    role: str
    jwt: Any = Field(default=None, description="secret reference to the JWT; omitted = managed-identity token")
    resource: str | None = Field(default=None, description="managed-identity token audience when jwt is omitted")
    client_id: str | None = None

    @model_validator(mode="after")
    def _source(self) -> JwtAuth:
        if self.jwt is not None:
            check_secret_reference(self.jwt)
        elif not self.resource:
            raise ValueError("give jwt (a secret reference) or resource (for a managed-identity token)")
        return self


AuthConfig = Annotated[TokenAuth | AppRoleAuth | AzureAuth | JwtAuth, Field(discriminator="method")]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Vault/OpenBao address, e.g. https://vault.example.internal:8200")
    mount: str = Field(default="pki", description="PKI secrets engine mount path")
    role: str | None = Field(default=None, description="PKI role; required for mode 'sign'")
    mode: Literal["sign", "sign-verbatim"] = "sign"
    namespace: str | None = Field(default=None, description="Vault Enterprise/OpenBao namespace (X-Vault-Namespace)")
    auth: AuthConfig
    ca_bundle: str | None = Field(default=None, description="PEM text or path of CAs trusted for Vault's TLS")
    default_ttl: str | None = Field(default=None, description="TTL sent when the request has no validity wish")
    extra_params: dict[str, Any] = Field(default_factory=dict, description="extra fields for the sign call")

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("extra_params")
    @classmethod
    def _no_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = {"csr", "ttl", "format"} & set(value)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are set by the client")
        return value

    @model_validator(mode="after")
    def _role_for_sign(self) -> Config:
        if self.mode == "sign" and not self.role:
            raise ValueError("role is required when mode is 'sign'")
        return self


def _ttl(validity: timedelta | None, default: str | None) -> str | None:
    if validity is None:
        return default
    return f"{max(int(validity.total_seconds()), 1)}s"


def _vault_errors(exc: Exception) -> str:
    """Vault's own error words (hvac keeps them in ``errors``), without the request URL."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple) and errors:
        return "; ".join(str(e) for e in errors)
    message = getattr(exc, "message", None) or ""
    return str(message) or type(exc).__name__


class VaultPKIClient:
    def __init__(
        self,
        name: str,
        config: Config,
        context: ClientContext,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._config = config
        self._context = context
        self._clock = clock
        self._verify: bool | str = _tls_verify(config.ca_bundle)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires: float | None = None
        self._credential: Any = context.extra.get("azure_credential")
        self._session: Any = None

    # -- authentication -------------------------------------------------------------------------

    def _hvac(self, token: str | None = None):
        import hvac
        import requests

        if self._session is None:
            self._session = requests.Session()  # one connection pool across logins and signs
            # hvac takes verify from a passed session (its own verify argument is then ignored).
            self._session.verify = self._verify
        return hvac.Client(
            session=self._session,
            url=self._config.url,
            token=token,
            namespace=self._config.namespace,
            verify=self._verify,
            timeout=self._context.timeout_seconds,
        )

    def _field(self, leaf: str) -> str:
        return f"issuers.{self.name}.auth.{leaf}"

    def _managed_identity_token(self, resource: str, client_id: str | None) -> str:
        if self._credential is None:
            from azure.identity import ManagedIdentityCredential

            self._credential = (
                ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
            )
        try:
            return self._credential.get_token(resource).token
        except Exception as exc:  # noqa: BLE001 - azure-identity raises several unrelated types
            raise TransientCAError(
                f"could not get a managed-identity token for {resource}: {type(exc).__name__}", issuer=self.name
            ) from None

    def _login(self) -> tuple[str, float | None]:
        """A fresh client token and its lifetime in seconds (None = no known expiry)."""
        auth = self._config.auth
        secrets = self._context.secrets
        if isinstance(auth, TokenAuth):
            return secrets.resolve(auth.token, field=self._field("token")).strip(), None
        client = self._hvac()
        if isinstance(auth, AppRoleAuth):
            secret_id = secrets.resolve(auth.secret_id, field=self._field("secret_id")).strip()
            response = self._call(
                "login",
                lambda: client.auth.approle.login(
                    auth.role_id, secret_id, use_token=False, mount_point=auth.mount or "approle"
                ),
            )
        elif isinstance(auth, AzureAuth):
            jwt = self._managed_identity_token(auth.resource, auth.client_id)
            response = self._call(
                "login",
                lambda: client.auth.azure.login(
                    auth.role,
                    jwt,
                    subscription_id=auth.subscription_id,
                    resource_group_name=auth.resource_group_name,
                    vm_name=auth.vm_name,
                    vmss_name=auth.vmss_name,
                    use_token=False,
                    mount_point=auth.mount or "azure",
                ),
            )
        else:
            if auth.jwt is not None:
                jwt = secrets.resolve(auth.jwt, field=self._field("jwt")).strip()
            else:
                jwt = self._managed_identity_token(auth.resource or "", auth.client_id)
            response = self._call(
                "login", lambda: client.auth.jwt.jwt_login(auth.role, jwt, use_token=False, path=auth.mount or "jwt")
            )
        try:
            token = response["auth"]["client_token"]
            lease = float(response["auth"].get("lease_duration") or 0)
        except (KeyError, TypeError):
            # A 2xx without a JSON token is a proxy or server fault, not a refusal: worth retrying.
            raise TransientCAError("Vault login answered without a client token", issuer=self.name) from None
        log.info("vault.login", extra={"issuer": self.name, "method": auth.method, "lease_seconds": lease})
        return token, (lease or None)

    def _current_token(self, *, fresh: bool = False) -> str:
        with self._lock:
            expired = self._token_expires is not None and self._clock() >= self._token_expires
            if fresh or self._token is None or expired:
                token, lifetime = self._login()
                self._token = token
                self._token_expires = (
                    None if lifetime is None else self._clock() + max(lifetime - TOKEN_EXPIRY_MARGIN_SECONDS, 0.0)
                )
            return self._token

    # -- signing --------------------------------------------------------------------------------

    def _call(self, what: str, operation: Callable[[], Any]) -> Any:
        """Run one Vault call; every failure leaves as a CA outcome, except a sign's 403 (re-login)."""
        import hvac.exceptions as hx
        import requests

        try:
            return operation()
        except hx.Forbidden as exc:
            if what == "sign":
                raise
            raise PermanentCAError(f"Vault {what} refused: {_vault_errors(exc)}", issuer=self.name) from None
        except (
            hx.VaultDown,  # sealed or standby: 503
            hx.InternalServerError,
            hx.BadGateway,
            hx.VaultNotInitialized,
            hx.RateLimitExceeded,
            hx.PreconditionFailed,  # replication lag on a performance standby
            hx.UnexpectedError,  # statuses hvac does not name, e.g. 504 from a proxy
        ) as exc:
            raise TransientCAError(f"Vault {what} failed: {_vault_errors(exc)}", issuer=self.name) from None
        except hx.InvalidPath as exc:
            raise PermanentCAError(
                f"Vault {what} failed: path not found (check mount, role and namespace): {_vault_errors(exc)}",
                issuer=self.name,
            ) from None
        except hx.VaultError as exc:  # 400, 401, 405: the request itself is refused
            raise PermanentCAError(f"Vault {what} refused: {_vault_errors(exc)}", issuer=self.name) from None
        except requests.exceptions.SSLError as exc:
            raise PermanentCAError(
                f"Vault {what}: TLS verification failed ({type(exc).__name__}); check ca_bundle", issuer=self.name
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise TransientCAError(
                f"Vault {what}: {type(exc).__name__} reaching {self._config.url}", issuer=self.name
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientCAError(f"Vault {what}: {type(exc).__name__}", issuer=self.name) from None

    def _sign_path(self) -> str:
        mount = self._config.mount
        if self._config.mode == "sign":
            return f"/v1/{mount}/sign/{self._config.role}"
        return f"/v1/{mount}/sign-verbatim/{self._config.role}" if self._config.role else f"/v1/{mount}/sign-verbatim"

    def sign(self, request: SignRequest) -> IssuedChain:
        import hvac.exceptions as hx

        try:
            csr_pem = request.csr_pem.decode()
        except ValueError as exc:
            raise PermanentCAError(f"CSR could not be parsed: {exc}", issuer=self.name) from None
        params: dict[str, Any] = {**self._config.extra_params, "csr": csr_pem, "format": "pem"}
        ttl = _ttl(request.validity, self._config.default_ttl)
        if ttl:
            params["ttl"] = ttl
        path = self._sign_path()
        started = time.monotonic()
        response: Any = None
        for attempt in (1, 2):
            client = self._hvac(self._current_token(fresh=attempt == 2))
            try:
                response = self._call("sign", lambda c=client: c.adapter.post(path, json=params))
                break
            except hx.Forbidden as exc:
                if attempt == 2:
                    raise PermanentCAError(f"Vault sign refused: {_vault_errors(exc)}", issuer=self.name) from None
                log.info("vault.relogin", extra={"issuer": self.name, "reason": "403"})
        chain = self._chain(response)
        log.info(
            "vault.signed",
            extra={
                "issuer": self.name,
                "vault": request.identity.vault,
                "certificate": request.identity.name,
                "request_id": request.identity.request_id,
                "serial": (response.get("data") or {}).get("serial_number"),
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return IssuedChain(tuple(chain), issuer_name=self.name)

    def _chain(self, response: Any) -> list[x509.Certificate]:
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict) or not data.get("certificate"):
            raise TransientCAError("Vault sign answered without a certificate", issuer=self.name)
        try:
            certs = load_pem_chain(data["certificate"])
            above = data.get("ca_chain") or ([data["issuing_ca"]] if data.get("issuing_ca") else [])
            for pem in above:
                certs.extend(load_pem_chain(pem))
        except ValueError as exc:
            raise PermanentCAError(
                f"Vault returned a certificate that does not parse: {exc}", issuer=self.name
            ) from None
        return certs


def _tls_verify(ca_bundle: str | None) -> bool | str:
    """requests wants a path; inline PEM is written once to a private temporary file."""
    if not ca_bundle:
        return True
    if "-----BEGIN" not in ca_bundle:
        return ca_bundle
    handle = tempfile.NamedTemporaryFile("w", prefix="vault-ca-", suffix=".pem", delete=False)
    with handle:
        handle.write(ca_bundle)
    return str(Path(handle.name))


def build(name: str, config: Config, context: ClientContext) -> VaultPKIClient:
    return VaultPKIClient(name, config, context, clock=context.extra.get("clock", time.monotonic))
