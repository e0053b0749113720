"""Queue semantics: a failing job is delivered MAX_DEQUEUE_COUNT times, then poisoned with its reason in
the ledger; once the cause is fixed, replaying 100 poisoned jobs renews all 100, each exactly once."""

from __future__ import annotations

import function_app
from devtools.pump import QueuePump
from renewal import settings

from .conftest import LONG

FLEET = 100


def pump(flow, concurrency=8):
    return QueuePump(
        flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=concurrency
    ).run_until_idle(timeout=300, wait_for_delayed=True)


def test_poisoned_jobs_replay_to_exactly_one_renewal_each(flow):
    function_app._service = flow.service
    try:
        flow.kv.admin.set_knobs(throttling=False)
        names = [f"partner-{i:03d}" for i in range(FLEET)]  # routed to partner-ca, whose key setting is missing
        for vault in ("kv-alpha", "kv-beta"):
            now = flow.now()
            flow.kv.admin.seed(
                vault,
                certificates=[{"name": n} for n in names[: FLEET // 2] if vault == "kv-alpha"]
                + [{"name": n} for n in names[FLEET // 2 :] if vault == "kv-beta"],
                not_before=int(now - 80 * 86_400),
                expires=int(now + 10 * 86_400),
            )
        where = {n: ("kv-alpha" if i < FLEET // 2 else "kv-beta") for i, n in enumerate(names)}
        before = {n: flow.current(n, where[n]).properties.version for n in names}
        report = flow.service.sweep()
        assert len(report.due) == FLEET

        stats = pump(flow)
        assert stats.poisoned == FLEET and stats.failed == FLEET * settings.MAX_DEQUEUE_COUNT
        failures = flow.service.failures()
        assert sorted(f.name for f in failures.jobs) == names
        assert all("PARTNER_CA_KEY" in f.reason for f in failures.jobs)  # the reason, from the ledger
        assert flow.kv.admin.counters()["merge"] == 0

        flow.service.environ["PARTNER_CA_KEY"] = flow.ca_paths["ca_key"].read_text()  # the fix
        flow.service.reset_issuers()
        assert flow.service.replay().jobs == FLEET
        stats = pump(flow)
        assert stats.poisoned == 0 and stats.processed == FLEET
        assert flow.kv.admin.counters()["merge"] == FLEET
        assert flow.kv.admin.counters()["create"] == FLEET  # the pending operations of the failed runs resumed
        for n in names:
            versions = flow.versions(n, where[n])
            assert len(versions) == 2 and before[n] in versions
            assert [r.state for r in flow.service.ledger.history(where[n], n)].count("notified") == 1
        notices = flow.storage.queue_client(settings.DEPLOYMENTS_QUEUE).get_queue_properties()
        assert notices.approximate_message_count == FLEET
        assert flow.service.failures().total == 0
        if LONG:  # a second replay and sweep change nothing
            assert flow.service.replay().jobs == 0
            assert not flow.service.sweep().due
    finally:
        function_app._service = None
