"""The operator dashboard: estate overview, failures with replay, one certificate's history.

Framework-free on purpose: ``function_app`` turns an ``azure.functions.HttpRequest`` into a
:class:`DashboardRequest` and a :class:`DashboardResponse` back, so ``renewal`` never imports
``azure.functions``. GET pages only read (each certificate's state, due decision and compliance
findings come from the estate report: the inventory plus the compliance rules); the one
state-changing call, replay, is a POST that must carry a valid CSRF token and come from the
dashboard's own origin.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from renewal import settings
from renewal.observability import log_event
from renewal.operations.dashboard import csrf

if TYPE_CHECKING:
    from renewal.service import RenewalService

log = logging.getLogger("renewal.operations.dashboard")
ROUTE = "ops/dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REPLAY_KINDS = {"job": "jobs", "notice": "notices", "dead_letter": "dead_letters"}


@dataclass(frozen=True)
class DashboardRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, str] = field(default_factory=dict)
    route: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}


@dataclass(frozen=True)
class DashboardResponse:
    status: int
    body: str
    headers: dict[str, str]
    mimetype: str = "text/html"


def _links(request: DashboardRequest) -> Any:
    from renewal.operations.dashboard.pages import Links

    path = urlsplit(request.url).path
    at = path.find("/" + ROUTE)
    base = (path[:at] if at >= 0 else "/api") + "/" + ROUTE
    return Links(base, request.params.get("code") or None)


def _html(status: int, body: str, **extra: str) -> DashboardResponse:
    return DashboardResponse(status, body, {**SECURITY_HEADERS, **extra})


def _secret(service: RenewalService) -> str | None:
    return settings.DASHBOARD_SECRET.read(service.environ) or None


def _principal(service: RenewalService, request: DashboardRequest) -> str:
    """The signed-in operator, as App Service authentication names them. Anyone can send the header;
    only the platform's front end, when authentication is on, strips and sets it."""
    if (settings.EASY_AUTH.read(service.environ) or "").lower() != "true":
        return ""
    return request.lower_headers.get(csrf.PRINCIPAL_HEADER, "")


def overview(service: RenewalService, request: DashboardRequest) -> DashboardResponse:
    """The estate overview; its certificate list is searched, filtered, sorted and paged by the query's
    parameters (listing.CertificateQuery), and ``format=csv|json`` exports the filtered list."""
    from renewal.errors import Rejected
    from renewal.operations.dashboard import listing, pages
    from renewal.operations.dashboard.estate import gather

    links = _links(request)
    try:
        query = listing.CertificateQuery.from_params(request.params)
    except Rejected as exc:
        return _html(400, pages.error_page("Bad request", str(exc), links))
    export = request.params.get("format") or ""
    if export not in ("", "csv", "json"):
        return _html(400, pages.error_page("Bad request", f"format: {export[:20]!r} is not csv or json", links))
    # A plain load (or a reload) builds the estate afresh (kept versions make that a listing); moving
    # within the list (another page, a filter, an export) reuses the estate it was built from, for a minute.
    within_list = any(request.params.get(k) for k in (*listing.QUERY_PARAMS, "format"))
    estate = gather(service, fresh=request.params.get("fresh") == "1" or not within_list)
    if export:
        rows = listing.select(estate.certificates, query, paged=False).rows
        body = listing.to_csv(rows) if export == "csv" else listing.to_json(rows)
        disposition = f'attachment; filename="certificates.{export}"'
        mimetype = "text/csv" if export == "csv" else "application/json"
        return DashboardResponse(200, body, {**SECURITY_HEADERS, "Content-Disposition": disposition}, mimetype)
    token = csrf.issue_token(
        secret=_secret(service), now=service.clock().timestamp(), principal=_principal(service, request)
    )
    message = request.params.get("message") or None
    body = pages.overview(estate, links, csrf=token, message=message, query=query)
    return _html(200, pages.page("Estate", body, links))


def certificate(service: RenewalService, request: DashboardRequest) -> DashboardResponse:
    from renewal.operations.dashboard import pages
    from renewal.operations.dashboard.estate import certificate as detail_of

    links = _links(request)
    vault, name = request.route.get("vault", ""), request.route.get("name", "")
    if service.config.vault(vault) is None:
        return _html(404, pages.error_page("Not found", f"vault: {vault!r} is not configured", links))
    detail = detail_of(service, vault, name)
    if detail is None:
        return _html(404, pages.error_page("Not found", f"certificate {name!r} not found in {vault}", links))
    return _html(200, pages.page(f"{vault}/{name}", pages.certificate(detail, links), links))


def replay(service: RenewalService, request: DashboardRequest) -> DashboardResponse:
    """POST from a failure's Replay button: checks origin and token, re-drives that one item, then
    redirects (303) to the overview with the result, so a reload never repeats the POST."""
    from urllib.parse import quote

    from renewal.operations.dashboard import pages

    links = _links(request)
    form = request.form()
    try:
        csrf.check_origin(request.url, request.lower_headers)
        csrf.check_token(
            form.get("csrf"),
            secret=_secret(service),
            now=service.clock().timestamp(),
            principal=_principal(service, request),
        )
    except csrf.CsrfRejected as exc:
        log_event(log, "dashboard.replay_refused", level=logging.WARNING, reason=str(exc))
        return _html(403, pages.error_page("Refused", str(exc), links))
    kind, item = form.get("kind", ""), form.get("id", "")
    if kind not in REPLAY_KINDS or not item:
        return _html(400, pages.error_page("Bad request", "kind/id: a failure to replay is required", links))
    flags = {flag: flag == REPLAY_KINDS[kind] for flag in REPLAY_KINDS.values()}
    result = service.replay(ids=[item], **flags)
    from renewal.operations.dashboard.estate import forget

    forget(service)  # the next overview shows the failure gone
    moved = result.jobs + result.notices + result.events
    log_event(
        log, "dashboard.replay", kind=kind, item=item, moved=moved, principal=_principal(service, request) or None
    )
    text = f"Replayed {moved} item(s) back onto the queue." if moved else f"Nothing replayed for {item}."
    if result.left and not moved:
        text += " Left in place: " + "; ".join(result.left)
    return _html(303, "", Location=links.overview(f"message={quote(text, safe='')}"))
