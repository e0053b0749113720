"""A small Azure Resource Manager client: GET, PATCH and PUT of one resource, and long-running operation status.

Raw requests over ``azure.mgmt.core``'s ``ARMPipelineClient`` (ARM's bearer-challenge policy, azure-core's
retry policy) rather than the azure-mgmt-* packages, on purpose: each rollout makes two to four calls per
service, while the packages cost, measured on first use, 31 MB / 401 ms (network), 19 MB / 292 ms (web),
19 MB / 252 ms (apimanagement) and 5.9 MB / 195 ms (cdn). The bodies are ARM's camelCase JSON, as those
packages' models spell them. Azure modules are imported inside the functions that use them (cold start).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlparse

CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
RETRIES = 3
"""azure-core's retry policy retries 408/429/5xx (honouring Retry-After) this often; a connection or TLS error
once (a refused handshake does not heal in seconds; the next pass tries again)."""


class ArmReply(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]

    @property
    def async_operation(self) -> str | None:
        """The ``Azure-AsyncOperation`` status URL of a long-running operation ARM accepted: with 201 or 202, and
        with 200 too (a PUT updating a resource that provisions in the background)."""
        return self.headers.get("Azure-AsyncOperation") or None

    @property
    def retry_after(self) -> int | None:
        value = self.headers.get("Retry-After")
        return int(value) if value and value.strip().isdigit() else None


UNREACHABLE = "no answer from"


class ArmUnreachable(Exception):
    """No answer from ARM (connection, TLS or timeout), after the retries."""


class ArmError(Exception):
    """ARM refused a request: the HTTP status and ARM's error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OperationStatus:
    """An ``Azure-AsyncOperation`` answer: ``InProgress``, ``Succeeded``, ``Failed`` or ``Canceled``."""

    status: str
    error_code: str = ""
    error_message: str = ""
    retry_after: int | None = None

    @property
    def in_progress(self) -> bool:
        return self.status.lower() in ("inprogress", "accepted", "running", "updating", "creating", "deleting")

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == "succeeded"


def _error_of(status: int, body: dict[str, Any], text: str) -> ArmError:
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    code = str(error.get("code") or "") or {401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(status, "")
    message = str(error.get("message") or "") or text[:300]
    return ArmError(status, code or "Error", message.strip() or "(no message)")


class ArmClient:
    """One ARM endpoint, one token credential, one CA bundle (``connection_verify`` on every request, because
    azure-core would otherwise let REQUESTS_CA_BUNDLE decide)."""

    def __init__(self, endpoint: str, credential_factory: Callable[[], Any], *, ca_bundle: str | None = None):
        self.endpoint = endpoint.rstrip("/")
        self._credential_factory = credential_factory
        self._verify: str | bool = ca_bundle or True
        self._client: Any = None

    def _pipeline(self) -> Any:
        if self._client is None:
            from azure.core.pipeline import policies
            from azure.mgmt.core import ARMPipelineClient
            from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

            credential = self._credential_factory()
            self._client = ARMPipelineClient(
                base_url=self.endpoint,
                policies=[
                    policies.RequestIdPolicy(),
                    policies.HeadersPolicy(),
                    policies.UserAgentPolicy(sdk_moniker="renewal-rollouts"),
                    policies.RetryPolicy(retry_total=RETRIES, retry_connect=1, retry_backoff_max=30),
                    ARMChallengeAuthenticationPolicy(credential, f"{self.endpoint}/.default"),
                ],
            )
        return self._client

    def on_endpoint(self, url: str) -> bool:
        """Whether ``url`` is on this ARM endpoint (the only place a token is sent)."""
        ours, theirs = urlparse(self.endpoint), urlparse(url)
        return theirs.scheme == "https" and (theirs.hostname, theirs.port) == (ours.hostname, ours.port)

    def _send(self, method: str, url: str, body: dict[str, Any] | None = None) -> ArmReply:
        from azure.core.rest import HttpRequest

        if not self.on_endpoint(url):
            raise ValueError(f"{url[:300]} is not on {self.endpoint}: not sent (the token goes to ARM only)")
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        request.headers["Accept"] = "application/json"
        response = self._client_send(request)
        text = response.text() if response.content else ""
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status_code >= 400:
            raise _error_of(response.status_code, data, text)
        return ArmReply(response.status_code, data, response.headers)  # azure-core's: case-insensitive

    def _client_send(self, request: Any) -> Any:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        try:
            return self._pipeline().send_request(
                request,
                connection_verify=self._verify,
                connection_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
            )
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ArmUnreachable(f"{UNREACHABLE} {self.endpoint}: {type(exc).__name__}: {exc}"[:500]) from exc

    def _url(self, resource_id: str, api_version: str) -> str:
        return f"{self.endpoint}{resource_id}?api-version={api_version}"

    def get(self, resource_id: str, api_version: str) -> ArmReply:
        return self._send("GET", self._url(resource_id, api_version))

    def patch(self, resource_id: str, api_version: str, body: dict[str, Any]) -> ArmReply:
        return self._send("PATCH", self._url(resource_id, api_version), body)

    def put(self, resource_id: str, api_version: str, body: dict[str, Any]) -> ArmReply:
        return self._send("PUT", self._url(resource_id, api_version), body)

    def operation_status(self, url: str) -> OperationStatus:
        """One look at a long-running operation (the URL ARM gave in ``Azure-AsyncOperation``)."""
        reply = self._send("GET", url)
        error = reply.body.get("error") if isinstance(reply.body.get("error"), dict) else {}
        return OperationStatus(
            status=str(reply.body.get("status") or "InProgress"),
            error_code=str(error.get("code") or ""),
            error_message=str(error.get("message") or ""),
            retry_after=reply.retry_after,
        )
