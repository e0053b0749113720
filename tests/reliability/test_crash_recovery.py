"""Crash recovery: a worker process is SIGKILLed after each orchestrator step, a fresh worker runs the
job again, and every certificate converges to exactly one new version and one notice, with no pending
operation left behind (promises 1-3). See worker.py for the crash points and the time scaling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from renewal import settings
from renewal.flow.sweep import IN_FLIGHT_STATES

from .conftest import LONG, make_config
from .worker import CRASH_POINTS

ROOT = Path(__file__).resolve().parents[2]
CLAIM_TTL = 30  # the config minimum; the emulator clock is moved past it before the second run
RUNS_PER_POINT = 3 if LONG else 1
RESULTS: list[tuple[str, int, str]] = []


def worker_spec(flow: Any, azurite: Any, tmp_path: Path) -> Path:
    document = make_config(flow.kv, flow.ca_paths, None, defaults={"claim_ttl_seconds": CLAIM_TTL})
    spec = {
        "config": document,
        "environ": flow.environ,
        "storage_env": azurite.env(),
        "admin_url": flow.kv.admin.url,
        "ca_bundle": flow.kv.ca_bundle,
        "in_flight_visibility": 3,
        "timeout": 60,
    }
    path = tmp_path / "worker-spec.json"
    path.write_text(json.dumps(spec, default=str))
    return path


def run_worker(spec: Path, crash_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RENEWAL_WORKER_SPEC": str(spec), "RENEWAL_CRASH_AT": crash_at or ""}
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def notices(flow: Any) -> list[dict]:
    client = flow.storage.queue_client(settings.DEPLOYMENTS_QUEUE)
    return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]


@pytest.mark.parametrize("run", range(RUNS_PER_POINT))
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_a_killed_worker_is_recovered_by_the_next_one(flow, azurite, tmp_path, crash_at, run):
    flow.seed("kv-alpha", "web", days_left=10)
    flow.seed("kv-beta", "api", days_left=10)
    before = {("kv-alpha", "web"): flow.current("web").properties.version}
    before[("kv-beta", "api")] = flow.current("api", "kv-beta").properties.version
    flow.service.force_renewal("kv-alpha", "web")
    flow.service.force_renewal("kv-beta", "api")
    spec = worker_spec(flow, azurite, tmp_path)

    crashed = run_worker(spec, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert f"CRASH {crash_at}" in crashed.stdout
    if crash_at in ("after-create", "after-csr", "after-ca"):
        # Nothing merged yet: the live version is untouched (promise 2).
        assert flow.versions("web") == [before[("kv-alpha", "web")]]

    flow.kv.admin.advance_clock(seconds=CLAIM_TTL + 1)  # the dead worker's claim lapses
    recovered = run_worker(spec, None)
    assert recovered.returncode == 0, recovered.stderr[-3000:]

    # A sweep afterwards (the nightly safety net) finds nothing left to do.
    report = flow.service.sweep()
    assert report.stale_resumed == 0 and not report.due and not report.errors
    recovered_sweep = run_worker(spec, None)
    assert recovered_sweep.returncode == 0, recovered_sweep.stderr[-3000:]

    for vault, name in before:
        versions = flow.versions(name, vault)
        assert len(versions) == 2, (vault, name, versions)  # exactly one new version
        assert flow.current(name, vault).properties.version != before[(vault, name)]
        pending = flow.service.stores[vault].get_pending(name)
        assert pending is None or not pending.in_progress  # no pending operation left behind
        rows = flow.service.ledger.history(vault, name)
        assert not [r for r in rows if r.state in IN_FLIGHT_STATES], rows
        assert [r.state for r in rows].count("notified") == 1, rows
    sent = notices(flow)
    assert sorted((n["vault"], n["name"]) for n in sent) == [("kv-alpha", "web"), ("kv-beta", "api")], sent
    assert flow.kv.admin.counters().get("merge") == 2
    assert not flow.service.poison.list_poison(settings.JOBS_QUEUE)
    RESULTS.append((crash_at, run, "converged"))


def test_a_lost_job_after_merge_is_finished_by_the_sweep(flow, azurite, tmp_path):
    """The worker died before its notice and the message is gone too (e.g. poisoned and purged): the
    nightly sweep re-drives the stale in-flight ledger row and the notice is sent exactly once."""
    flow.seed("kv-alpha", "web", days_left=10)
    flow.service.force_renewal("kv-alpha", "web")
    spec = worker_spec(flow, azurite, tmp_path)
    assert run_worker(spec, "before-notice").returncode == -signal.SIGKILL
    flow.storage.queue_client(settings.JOBS_QUEUE).clear_messages()  # the job message is lost
    # In flight: nothing is written between merge and notice.
    assert [r.state for r in flow.service.ledger.history("kv-alpha", "web")] == ["submitted"]

    hours = flow.service.config.defaults.stale_pending_after_hours
    flow.kv.admin.advance_clock(seconds=hours * 3600 + 60)
    report = flow.service.sweep()
    assert report.stale_resumed == 1 and not report.due
    assert run_worker(spec, None).returncode == 0
    assert [r.state for r in flow.service.ledger.history("kv-alpha", "web")] == ["notified"]
    assert [(n["vault"], n["name"]) for n in notices(flow)] == [("kv-alpha", "web")]
    assert len(flow.versions("web")) == 2
    RESULTS.append(("before-notice+lost-message", 0, "converged via sweep"))
