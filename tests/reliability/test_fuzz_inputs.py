"""Property-based fuzzing of every outside input (promise 5): Event Grid / CloudEvents payloads, queue
messages, admin HTTP requests and config documents. Only the documented rejection types come out, every
rejection names its field, and nothing happens for a vault that is not configured (nothing enqueued, no
emulator counter moves). Case counts are printed at the end of the module."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import function_app
from devtools import host
from renewal.config import parse_config
from renewal.errors import ConfigError, EventRejected, JobRejected, RenewalFailed
from renewal.flow.events import CertificateEvent, EventIgnored, parse_event
from renewal.model import parse_job

from .conftest import make_config

CASES: Counter[str] = Counter()
CONFIGURED = {"kv-alpha": "https://kv-alpha.vault.azure.net", "kv-beta": "https://kv-beta.vault.azure.net"}
FIELD = re.compile(r'^(?:"(?:[^"\\]|\\.)*"|[^:"])+: ')  # a field name (odd keys quoted), then ": "

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
vault_names = st.sampled_from(["kv-alpha", "kv-beta", "kv-gamma", "KV-ALPHA", "x", "", "kv alpha", "kv-alpha/.."])
cert_names = st.sampled_from(["web", "a" * 128, "", "../etc", "web/x", "wéb", "web?x=1", "web%2f"]) | st.text(
    max_size=20
)
event_types = st.sampled_from(
    [
        "Microsoft.KeyVault.CertificateNearExpiry",
        "Microsoft.KeyVault.CertificateExpired",
        "Microsoft.KeyVault.SecretNearExpiry",
        "",
    ]
) | st.text(max_size=10)


@st.composite
def events(draw: Any) -> Any:
    vault = draw(vault_names)
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "VaultName": st.just(vault) | json_leaf,
                "ObjectName": cert_names | json_leaf,
                "ObjectType": st.sampled_from(["Certificate", "Secret", "certificate"]) | json_leaf,
                "Version": st.sampled_from(["abc123", "", "v/1"]) | json_leaf,
                "NBF": json_leaf,
                "EXP": json_leaf | st.sampled_from(["1e400", "-1", "nan"]),
                "Id": json_leaf
                | st.sampled_from([f"https://{vault}.vault.azure.net/certificates/web", "https://evil/x"]),
            },
        )
    )
    topic = draw(st.sampled_from([f"/subscriptions/s/providers/Microsoft.KeyVault/vaults/{vault}", "", "/x"]))
    if draw(st.booleans()):
        base = {"specversion": "1.0", "type": draw(event_types), "source": topic, "id": draw(st.text(max_size=8))}
    else:
        base = {"eventType": draw(event_types), "topic": topic, "id": draw(st.text(max_size=8)), "subject": "x"}
    base["data"] = data if draw(st.integers(0, 9)) else draw(json_value)
    if draw(st.integers(0, 9)) == 0:
        base.pop(draw(st.sampled_from(sorted(base))))
    return base if draw(st.integers(0, 19)) else draw(json_value)


def names_field(exc: Exception) -> None:
    assert FIELD.match(str(exc)), f"rejection does not name its field: {exc!r}"


@settings(settings.get_profile("reliability"))
@given(event=events())
def test_parse_event_accepts_ignores_or_rejects_naming_the_field(event):
    CASES["parse_event"] += 1
    try:
        result = parse_event(event, configured_vaults=CONFIGURED)
    except EventRejected as exc:
        assert exc.field and str(exc).startswith(exc.field + ": ")
        return
    assert isinstance(result, CertificateEvent | EventIgnored)
    if isinstance(result, CertificateEvent):
        assert result.vault in CONFIGURED


class RecordingJobs:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def enqueue(self, job: Any, *, delay: Any = None) -> None:
        self.jobs.append(job)


@pytest.fixture
def quiet_service(flow):
    """The flow service with its jobs queue recorded in memory; the admin bindings see it."""
    recorder = RecordingJobs()
    flow.service.__dict__["jobs"] = recorder
    function_app._service = flow.service
    flow.kv.admin.reset_counters()
    yield flow, recorder
    function_app._service = None


def test_handle_event_never_raises_and_never_acts_on_another_vault(quiet_service):
    flow, recorder = quiet_service

    @settings(settings.get_profile("reliability"))
    @given(event=events())
    def prop(event):
        CASES["handle_event"] += 1
        before = len(recorder.jobs)
        result = flow.service.handle_event(event)
        assert result.status in ("enqueued", "ignored", "rejected")
        if result.status == "rejected":
            names_field(Exception(result.detail))
        if result.status == "enqueued":
            assert recorder.jobs[-1].vault in CONFIGURED
        else:
            assert len(recorder.jobs) == before

    prop()
    assert sum(flow.kv.admin.counters().values()) == 0  # events are judged without touching Key Vault


job_bodies = (
    st.binary(max_size=60)
    | st.text(max_size=60).map(str.encode)
    | json_value.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {"vault": st.sampled_from(["kv-gamma", "nope", "", "kv-alpha "]) | json_leaf, "name": cert_names | json_leaf},
        optional={
            "reason": st.sampled_from(["event", "sweep", "operator", "replay", "pending-followup", "x"]) | json_leaf,
            "force": json_leaf,
            "pending_polls": json_leaf,
            "ticket": json_value,
            "version": json_leaf,
            "enqueued_at": json_leaf | st.sampled_from(["2026-01-01T00:00:00Z", "not a date"]),
        },
    ).map(lambda d: json.dumps(d).encode())
)


@settings(settings.get_profile("reliability"))
@given(body=job_bodies)
def test_parse_job_only_rejects_with_a_field(body):
    CASES["parse_job"] += 1
    try:
        job = parse_job(body)
    except JobRejected as exc:
        names_field(exc)
        return
    assert job.vault and job.name and job.reason


def test_queue_bindings_take_any_body(quiet_service):
    flow, recorder = quiet_service

    @settings(settings.get_profile("reliability"))
    @given(body=job_bodies, notice=st.booleans())
    def prop(body, notice):
        CASES["renewal_worker+deploy_notifier"] += 1
        msg = host.queue_message(body, message_id="m", dequeue_count=1)
        try:
            (function_app.deploy_notifier if notice else function_app.renewal_worker)(msg)
        except JobRejected as exc:
            names_field(exc)
        except RenewalFailed as exc:  # a well-formed job for a vault that is not configured
            assert exc.permanent and str(exc).startswith("vault: ")

    prop()
    assert sum(flow.kv.admin.counters().values()) == 0 and not recorder.jobs


def http_request(method: str, route: str, body: bytes, params: dict, route_params: dict) -> func.HttpRequest:
    return host.http_request(
        method, f"http://localhost/api/{route}", body=body, query=params, route_params=route_params
    )


def test_admin_routes_answer_every_request(quiet_service):
    flow, recorder = quiet_service
    flow.seed("kv-alpha", "web", days_left=60)
    flow.kv.admin.reset_counters()
    bodies = st.binary(max_size=40) | json_value.map(lambda v: json.dumps(v).encode())
    params = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)

    @settings(settings.get_profile("reliability-io"))
    @given(
        which=st.sampled_from(["force", "replay", "failures", "status"]),
        body=bodies,
        params=params,
        vault=vault_names | st.text(max_size=10),
        name=cert_names,
    )
    def prop(which, body, params, vault, name):
        CASES["ops_* routes"] += 1
        enqueued, counted = len(recorder.jobs), sum(flow.kv.admin.counters().values())
        if which == "force":
            response = function_app.ops_force_renewal(
                http_request("POST", "ops/renew", body, params, {"vault": vault, "name": name})
            )
            if vault not in CONFIGURED:
                assert response.status_code == 404 and len(recorder.jobs) == enqueued
                assert sum(flow.kv.admin.counters().values()) == counted  # nothing asked of Key Vault
        elif which == "replay":
            response = function_app.ops_replay(http_request("POST", "ops/replay", body, params, {}))
        elif which == "failures":
            response = function_app.ops_failures(http_request("GET", "ops/failures", body, params, {}))
        else:
            response = function_app.ops_status(http_request("GET", "ops/status", body, params, {}))
        assert response.status_code in (200, 202, 400, 404), response.get_body()
        payload = json.loads(response.get_body())
        if response.status_code in (400, 404):
            names_field(Exception(payload["error"]))

    prop()


def test_config_documents_fail_with_every_problem_naming_its_field(flow):
    valid = make_config(flow.kv, flow.ca_paths, "https://hooks.example.test/x")

    @st.composite
    def documents(draw: Any) -> Any:
        doc = json.loads(json.dumps(valid))
        for _ in range(draw(st.integers(0, 4))):
            section = draw(st.sampled_from(sorted(doc)))
            target = doc[section]
            if isinstance(target, list) and target and draw(st.booleans()):
                item = target[draw(st.integers(0, len(target) - 1))]
                if isinstance(item, dict) and item:
                    key = draw(st.sampled_from(sorted(item)))
                    item[key] = draw(json_value)
                    continue
            doc[section] = draw(json_value)
        if draw(st.integers(0, 9)) == 0:
            doc[draw(st.text(max_size=8))] = draw(json_value)
        return doc if draw(st.integers(0, 9)) else draw(json_value)

    @settings(settings.get_profile("reliability"))
    @given(document=documents() | st.text(max_size=50))
    def prop(document):
        CASES["parse_config"] += 1
        try:
            parse_config(document if isinstance(document, str | dict) else json.dumps(document))
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                names_field(Exception(problem))

    prop()


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print("\nfuzz cases run: " + ", ".join(f"{k}={v}" for k, v in sorted(CASES.items())))
