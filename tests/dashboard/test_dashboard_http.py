"""The dashboard over real HTTP (the local Functions adapter): pages, auth levels, CSRF and origin checks."""

from __future__ import annotations

import json
import re

import requests

import function_app
from devtools.functions_http import app_functions
from renewal.flow.due import ISSUER_TAG
from renewal.operations.dashboard import csrf

from .conftest import run_jobs, seed_estate


def test_no_ops_route_is_anonymous():
    routes = {}
    for function in app_functions(function_app.app):
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            if binding["type"] == "httpTrigger":
                routes[binding["route"]] = binding["authLevel"]
    assert {"ops/dashboard", "ops/dashboard/certificates/{vault}/{name}", "ops/dashboard/replay"} <= set(routes)
    assert all(r.startswith("ops/") for r in routes)
    assert set(routes.values()) == {"FUNCTION"}, routes


def test_calls_without_the_function_key_are_refused(dashboard):
    for method, route in (("GET", "ops/dashboard"), ("POST", "ops/dashboard/replay"), ("GET", "ops/status")):
        response = requests.request(method, dashboard.url(route, with_key=False), timeout=30)
        assert response.status_code == 401, route
        bad = requests.request(method, dashboard.url(route, with_key=False) + "?code=wrong", timeout=30)
        assert bad.status_code == 401, route


def test_overview_and_certificate_pages(flow, dashboard):
    seed_estate(flow)
    page = requests.get(dashboard.url("ops/dashboard"), timeout=60)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    html = page.text
    assert '<svg id="expiry-chart"' in html and "<script" not in html
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing loaded from elsewhere
    counts = dict(re.findall(r'data-state="(\w+)"><strong>(\d+)</strong>', html))
    assert counts == {"expired": "1", "failing": "0", "renewing": "0", "due": "2", "healthy": "1"}
    assert "kv-alpha/partner-api" in html
    link = re.search(r'href="([^"]*/certificates/kv-alpha/web\?code=[^"]+)"', html).group(1)
    detail = requests.get(dashboard.base_url + link.replace("&amp;", "&"), timeout=60)
    assert detail.status_code == 200
    assert flow.current("web").properties.version in detail.text
    assert "1 versions" in detail.text
    missing = requests.get(dashboard.url("ops/dashboard/certificates/kv-alpha/nope"), timeout=30)
    assert missing.status_code == 404


def _row(html: str, name: str) -> str:
    return re.search(rf'<tr><td><a href="[^"]*">{re.escape(name)}</a>.*?</tr>', html).group(0)


def _findings_on_page(html: str) -> list[tuple[str, str, str]]:
    section = re.search(r'<section aria-labelledby="h-findings" id="findings">(.*?)</section>', html, re.S).group(1)
    cells = re.findall(
        r"<tr><td><span class=\"sev-(\w+)\">\w+</span></td><td>([\w-]+)</td><td>(.*?)</td></tr>", section
    )
    return [(severity, rule, message) for severity, rule, message in cells]


def test_compliance_findings_per_certificate(flow, dashboard):
    flow.seed("kv-alpha", "legacy", days_left=-1)  # expired: an expired-current error
    flow.seed("kv-beta", "orphan", days_left=60, tags={ISSUER_TAG: "retired-ca"})  # no configured issuer
    flow.seed("kv-alpha", "web", days_left=60)
    flow.service.run_job(flow.service.force_renewal("kv-alpha", "web"))  # merged by the service: no chain warning

    html = requests.get(dashboard.url("ops/dashboard"), timeout=60).text

    legacy = _row(html, "kv-alpha/legacy")
    assert re.search(
        r'class="sev-error" href="[^"]*/certificates/kv-alpha/legacy\?[^"]*#findings" data-findings="2"', legacy
    )
    assert "chain-unverified, expired-current" in legacy
    orphan = _row(html, "kv-beta/orphan")
    assert "no route" in orphan and 'data-findings="2"' in orphan and "no-route" in orphan
    assert '<span class="findings-none">0</span>' in _row(html, "kv-alpha/web")
    assert re.search(r'id="finding-summary">.*?2 errors.*?2 warnings.*?on 2 of 3 certificates', html)

    link = re.search(r'href="([^"]*/certificates/kv-alpha/legacy\?code=[^"]+)"', html).group(1)
    page = requests.get(dashboard.base_url + link.replace("&amp;", "&"), timeout=60).text
    found = _findings_on_page(page)
    assert [(severity, rule) for severity, rule, _ in found] == [
        ("error", "expired-current"),
        ("warning", "chain-unverified"),
    ]
    assert "the current version expired at" in found[0][2]
    orphan_page = requests.get(dashboard.url("ops/dashboard/certificates/kv-beta/orphan"), timeout=60).text
    assert ("error", "no-route") in [(severity, rule) for severity, rule, _ in _findings_on_page(orphan_page)]
    assert "retired-ca" in orphan_page
    web_page = requests.get(dashboard.url("ops/dashboard/certificates/kv-alpha/web"), timeout=60).text
    assert _findings_on_page(web_page) == [] and "0 findings" in web_page


def test_overview_reads_each_certificate_once(flow, dashboard):
    flow.kv.admin.seed("kv-alpha", count=30, prefix="bulk")
    flow.kv.admin.seed("kv-beta", count=20, prefix="bulk")
    flow.kv.admin.reset_counters()

    html = requests.get(dashboard.url("ops/dashboard"), timeout=60).text

    assert "50 certificates, expires soonest first, page 1 of 1" in html
    counters = flow.kv.admin.counters()
    assert counters["get_certificate"] == 50  # the inventory's one read per certificate, nothing more
    assert counters["list"] == 2 + 1  # one streamed listing per vault (25 per page)
    assert counters["get_policy"] == 0 and counters["list_versions"] == 0 and counters["get_secret"] == 0
    assert "50 certificates, 50 read from Key Vault." in html

    # A reload lists again but reads only what changed (the versions it read are kept in the versionfacts
    # table): here one renewed certificate.
    flow.service.run_job(flow.service.force_renewal("kv-alpha", "bulk-7"))
    flow.kv.admin.reset_counters()
    html = requests.get(dashboard.url("ops/dashboard"), timeout=60).text
    assert flow.kv.admin.counters()["get_certificate"] == 1
    assert "50 certificates, 1 read from Key Vault; 49 unchanged versions from the version facts table" in html
    assert '<span class="findings-none">0</span>' in _row(html, "kv-alpha/bulk-7")  # merged by the service
    assert "notified" in _row(html, "kv-alpha/bulk-7")


def _replay_form(html: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', html, re.S)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(2)))
    return {"action": form.group(1).replace("&amp;", "&"), **fields}


def test_replay_post_needs_token_and_own_origin(flow, dashboard):
    flow.seed("kv-alpha", "partner-api", days_left=3)
    flow.service.force_renewal("kv-alpha", "partner-api")
    assert run_jobs(flow).poisoned == 1
    html = requests.get(dashboard.url("ops/dashboard"), timeout=60).text
    assert "PARTNER_CA_KEY" in html  # the failure's reason is shown
    form = _replay_form(html)
    action = dashboard.base_url + form["action"]
    good = {"csrf": form["csrf"], "kind": form["kind"], "id": form["id"]}
    own = {"Origin": dashboard.base_url}

    refused = [
        requests.post(action, data={**good, "csrf": ""}, headers=own, timeout=30),
        requests.post(action, data={**good, "csrf": "1700000000.deadbeef"}, headers=own, timeout=30),
        requests.post(action, data={**good, "csrf": form["csrf"] + "0"}, headers=own, timeout=30),
        requests.post(action, data=good, headers={"Origin": "https://evil.example"}, timeout=30),
        requests.post(action, data=good, headers={"Referer": "https://evil.example/x"}, timeout=30),
        requests.post(action, data=good, headers={**own, "Sec-Fetch-Site": "cross-site"}, timeout=30),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert len(flow.service.poison.list_poison("renewal-jobs")) == 1  # nothing moved
    # GET on the replay route changes nothing either
    assert requests.get(action, timeout=30).status_code == 405

    done = requests.post(action, data=good, headers=own, timeout=30, allow_redirects=False)
    assert done.status_code == 303 and "Replayed%201" in done.headers["Location"]
    assert flow.service.poison.list_poison("renewal-jobs") == []


def test_token_is_bound_to_the_signed_in_principal():
    token = csrf.issue_token(secret="k", now=1_000_000, principal="alice")
    csrf.check_token(token, secret="k", now=1_000_100, principal="alice")
    for kwargs in ({"principal": "bob"}, {"secret": "other"}, {"now": 1_000_000 + csrf.TOKEN_TTL + 1}):
        args = {"secret": "k", "now": 1_000_100, "principal": "alice", **kwargs}
        try:
            csrf.check_token(token, **args)
        except csrf.CsrfRejected:
            continue
        raise AssertionError(f"accepted with {kwargs}")


def test_the_principal_header_is_trusted_only_when_app_service_authentication_is_on():
    """Anyone can send x-ms-client-principal-id; only Easy Auth's front end sets it truthfully, and the
    platform says it is on with WEBSITE_AUTH_ENABLED."""
    from types import SimpleNamespace

    from renewal.operations.dashboard import DashboardRequest, _principal

    forged = DashboardRequest("GET", "https://app/api/ops/dashboard", {"X-MS-CLIENT-PRINCIPAL-ID": "mallory"})
    assert _principal(SimpleNamespace(environ={}), forged) == ""
    assert _principal(SimpleNamespace(environ={"WEBSITE_AUTH_ENABLED": "False"}), forged) == ""
    assert _principal(SimpleNamespace(environ={"WEBSITE_AUTH_ENABLED": "True"}), forged) == "mallory"


def test_a_bad_list_parameter_is_a_400_naming_it_and_an_export_is_an_attachment(flow, dashboard):
    flow.seed("kv-alpha", "web", days_left=60)
    bad = requests.get(dashboard.url("ops/dashboard") + "&size=10000", timeout=30)
    assert bad.status_code == 400 and "size: must be one of 25, 50, 100, 200" in bad.text
    bad = requests.get(dashboard.url("ops/dashboard") + "&format=xlsx", timeout=30)
    assert bad.status_code == 400 and "format:" in bad.text
    export = requests.get(dashboard.url("ops/dashboard") + "&format=csv", timeout=30)
    assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    assert export.headers["Content-Disposition"] == 'attachment; filename="certificates.csv"'
    assert export.text.splitlines()[1].startswith("kv-alpha,web,healthy,")
