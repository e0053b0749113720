"""Every instrument in renewal.metrics records real values from real renewals (emulator, Azurite,
local CA), read back with the OpenTelemetry SDK's InMemoryMetricReader."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import function_app
from devtools.pump import QueuePump
from renewal import metrics, settings


@pytest.fixture
def reader(flow):
    metrics.reset()
    reader = InMemoryMetricReader()
    metrics.use_meter_provider(MeterProvider(metric_readers=[reader]))
    metrics.watch_service(flow.service.poison)
    function_app._service = flow.service
    yield reader
    function_app._service = None
    metrics.reset()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by(points_: list[Any], **attrs: str) -> list[Any]:
    return [p for p in points_ if all(p.attributes.get(k) == v for k, v in attrs.items())]


def run_jobs(flow):
    return QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(
        timeout=90, wait_for_delayed=True
    )


def test_every_instrument_records_a_real_renewal_and_a_real_failure(flow, reader):
    flow.seed("kv-alpha", "web", days_left=10)
    flow.seed("kv-alpha", "healthy", days_left=80)
    flow.seed("kv-alpha", "partner-api", days_left=3)
    report = flow.service.sweep()  # enqueues web and partner-api, feeds the certificate gauges
    assert len(report.due) == 2
    stats = run_jobs(flow)
    assert stats.poisoned == 1  # partner-api: PARTNER_CA_KEY is missing
    web = flow.current("web")

    found = points(reader)
    expiry = by(found[metrics.EXPIRATION], vault="kv-alpha", certificate="healthy", issuer="corp-local")
    assert expiry[0].value == pytest.approx(flow.current("healthy").properties.expires_on.timestamp())
    renew_at = by(found[metrics.RENEWAL_AT], certificate="healthy")[0].value
    assert renew_at < expiry[0].value
    ready = {p.attributes["certificate"]: p.value for p in found[metrics.READY]}
    assert ready == {"healthy": 1, "web": 0, "partner-api": 0}  # web and partner-api were past renew-at
    assert by(found[metrics.EXPIRATION], certificate="partner-api")[0].attributes["issuer"] == "partner-ca"

    renewals = {(p.attributes["outcome"], p.attributes["issuer"]): p.value for p in found[metrics.RENEWALS]}
    assert renewals == {("renewed", "corp-local"): 1, ("failed", "partner-ca"): settings.MAX_DEQUEUE_COUNT}
    ca = by(found[metrics.CA_DURATION], issuer="corp-local", outcome="issued")
    assert ca[0].count == 1 and ca[0].sum > 0
    merged = by(found[metrics.EVENT_TO_MERGE], issuer="corp-local")
    assert merged[0].count == 1 and merged[0].sum >= 0
    depth = {p.attributes["queue"]: p.value for p in found[metrics.POISON_DEPTH]}
    assert depth == {"renewal-jobs-poison": 1, "deployments-poison": 0}

    # The next sweep sees the new version: expiry moves, ready flips.
    flow.service.sweep(dry_run=True)
    found = points(reader)
    web_expiry = by(found[metrics.EXPIRATION], certificate="web")[0].value
    assert web_expiry == pytest.approx(web.properties.expires_on.timestamp())
    assert by(found[metrics.READY], certificate="web")[0].value == 1


def test_metrics_are_no_op_without_a_configured_provider(flow):
    metrics.reset()
    metrics.renewal_finished("renewed", "corp-local")  # the API's proxy meter: nothing raised, nothing kept
    assert metrics.configure({}) == "none"
    assert metrics.configure({"RENEWAL_METRICS_EXPORTER": "none"}) == "none"


def test_importing_function_app_does_not_import_opentelemetry():
    code = "import sys, function_app; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
