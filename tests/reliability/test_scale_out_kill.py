"""Scale-out under a dying instance: three worker processes (each its own queue pump, clients and create
budget, as separate Function instances are) drain one sweep's jobs for two vaults; one is SIGKILLed while
renewals are still under way, and the other two finish every certificate, each renewed exactly once,
nothing poisoned (issue 19). ``benchmarks/scale_out.py --kill-one`` is the same run at the create limit.

Time scaling as in worker.py: a fetched message is hidden for ``in_flight_visibility`` seconds (the host:
10 minutes, renewed while the function runs), the dead worker's claims lapse after the config's minimum TTL
of 30 s on the emulator's clock, which runs in real time here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from renewal import settings
from renewal.flow.sweep import IN_FLIGHT_STATES

from .conftest import make_config, policy_wire

ROOT = Path(__file__).resolve().parents[2]
VAULTS = ("kv-alpha", "kv-beta")
PER_VAULT = 24  # more than one create window (20), so the sweep spreads the rest
WORKERS = 3
DAY = 86_400


def spec_file(flow: Any, azurite: Any, tmp_path: Path) -> Path:
    defaults = {"claim_ttl_seconds": 30, "requeue_delay_seconds": 2}
    spec = {
        "config": make_config(flow.kv, flow.ca_paths, None, defaults=defaults),
        "environ": flow.environ,
        "storage_env": azurite.env(),
        "admin_url": flow.kv.admin.url,
        "ca_bundle": flow.kv.ca_bundle,
        "in_flight_visibility": 10,
        "timeout": 150,
    }
    path = tmp_path / "worker-spec.json"
    path.write_text(json.dumps(spec, default=str))
    return path


def test_one_of_three_workers_killed_mid_run_the_others_renew_every_certificate(flow, azurite, tmp_path):
    now = flow.now()
    for vault in VAULTS:
        flow.kv.admin.seed(
            vault,
            count=PER_VAULT,
            prefix="app",
            not_before=now - 80 * DAY,
            expires=now + 10 * DAY,
            policy=policy_wire("app.example.test", trigger={"days_before_expiry": 30}),
        )
    before = {v: {c.name: c.version for c in flow.service.stores[v].list_certificates()} for v in VAULTS}
    assert sum(len(names) for names in before.values()) == 2 * PER_VAULT
    report = flow.service.sweep()
    assert len(report.due) == 2 * PER_VAULT and not report.errors

    spec = spec_file(flow, azurite, tmp_path)
    env = {**os.environ, "RENEWAL_WORKER_SPEC": str(spec), "RENEWAL_CRASH_AT": ""}
    command = [sys.executable, "-m", "tests.reliability.worker"]
    procs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    try:
        # Kill the first worker once renewals are flowing but far from done.
        deadline = time.monotonic() + 60
        while (flow.kv.admin.counters().get("merge", 0)) < 6:
            assert time.monotonic() < deadline, "no renewal merged within 60 s"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)
        merged_at_kill = flow.kv.admin.counters().get("merge", 0)
        assert merged_at_kill < 2 * PER_VAULT, "the run ended before the kill: nothing was tested"
        outcomes = [p.communicate(timeout=200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == -signal.SIGKILL
    for proc, (out, err) in zip(procs[1:], outcomes[1:], strict=True):
        assert proc.returncode == 0, err[-3000:]
        stats = json.loads(next(line for line in out.splitlines() if line.startswith("STATS "))[6:])
        assert stats["poisoned"] == 0, stats

    for vault in VAULTS:
        store = flow.service.stores[vault]
        for name, old in before[vault].items():
            versions = flow.versions(name, vault)
            assert len(versions) == 2, (vault, name, versions)  # renewed, exactly once
            assert store.get_current(name).version != old
            rows = flow.service.ledger.history(vault, name)
            assert not [r for r in rows if r.state in IN_FLIGHT_STATES], (vault, name, rows)
    assert flow.kv.admin.counters().get("merge") == 2 * PER_VAULT
    assert not flow.service.poison.list_poison(settings.JOBS_QUEUE)
    jobs = flow.storage.queue_client(settings.JOBS_QUEUE).get_queue_properties()
    assert (jobs.approximate_message_count or 0) == 0
