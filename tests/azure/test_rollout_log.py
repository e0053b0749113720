"""The ``rollouts`` table over Azurite: one row per deployer target and version, replaced at each pass; keys
survive names and resource ids with characters table keys refuse."""

from __future__ import annotations

from renewal.azure.rollout_log import TableRolloutLog
from renewal.azure.storage import StorageEndpoints
from renewal.model import RolloutOutcome, RolloutRecord, RolloutState

from .conftest import at

GW = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/" + "g" * 300


def record(state: RolloutState, *, previous: RolloutRecord | None = None, minute: int = 0, **kw: object):
    outcome = RolloutOutcome("edge/#1?", kw.pop("target", GW), state, **kw)  # type: ignore[arg-type]
    return RolloutRecord.after(previous, outcome, vault="kv/one", name="web#1", version="v1", now=at(minute))


def test_a_target_row_is_replaced_at_each_pass_and_its_clock_runs_while_in_progress(storage: StorageEndpoints):
    writer, reader = TableRolloutLog(storage), TableRolloutLog(storage)
    first = record(RolloutState.IN_PROGRESS, detail="started", operation="https://arm/op/1", check_after_seconds=60)
    writer.record(first)
    assert reader.of_version("kv/one", "web#1", "v1") == {("edge/#1?", GW): first}
    assert reader.unsettled() == [first]

    second = record(RolloutState.DONE, previous=first, minute=5, thumbprint="AB" * 20, detail="bound")
    writer.record(second)
    kept = reader.of_version("kv/one", "web#1", "v1")[("edge/#1?", GW)]
    assert kept == second
    assert (kept.started_at, kept.attempts, kept.operation) == (at(0), 2, None)
    assert reader.unsettled() == []
    assert reader.of_version("kv/one", "web#1", "v2") == {}


def test_history_lists_every_version_newest_first_and_a_re_drive_restarts_the_clock(storage: StorageEndpoints):
    log = TableRolloutLog(storage)
    failed = record(RolloutState.FAILED, detail="HTTP 403 LinkedAuthorizationFailed")
    log.record(failed)
    retried = record(RolloutState.IN_PROGRESS, previous=failed, minute=90, operation="https://arm/op/2")
    log.record(retried)
    assert retried.started_at == at(90) and retried.attempts == 2
    other = RolloutRecord.after(
        None, RolloutOutcome("hook", "hook", RolloutState.DONE), vault="kv/one", name="web#1", version="v0", now=at(-9)
    )
    log.record(other)
    assert [r.version for r in log.history("kv/one", "web#1")] == ["v1", "v0"]
    assert log.history("kv/one", "other") == []
