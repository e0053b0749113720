"""TableLedger against Azurite's table service."""

from __future__ import annotations

from renewal.azure.ledger import TableLedger, partition_key
from renewal.azure.storage import StorageEndpoints
from renewal.model import AttemptState, LedgerRow
from tests.azure.conftest import at


def row(
    request_id: str,
    state: AttemptState = AttemptState.STARTED,
    *,
    name: str = "web",
    started: int = 0,
    **kwargs: object,
) -> LedgerRow:
    return LedgerRow(
        vault="kv-one",
        name=name,
        request_id=request_id,
        state=state,
        started_at=at(started),
        updated_at=at(started),
        **kwargs,
    )  # type: ignore[arg-type]


def test_upsert_and_get_round_trip_every_field(storage: StorageEndpoints) -> None:
    ledger = TableLedger(storage)
    full = row(
        "req-1",
        AttemptState.FAILED,
        issuer="private-ca",
        old_version="v1",
        new_version="v2",
        attempts=3,
        error="CA said no",
        reason="event",
        extra={"ticket": {"order": "o/1"}, "trigger_id": "evt-1"},
    )
    ledger.upsert(full)
    assert ledger.get("kv-one", "web", "req-1") == full
    assert ledger.get("kv-one", "web", "absent") is None
    # Replace semantics: clearing a field on the row clears it in the table.
    full.state, full.error, full.attempts = AttemptState.NOTIFIED, None, 4
    ledger.upsert(full)
    again = ledger.get("kv-one", "web", "req-1")
    assert again is not None and again.state is AttemptState.NOTIFIED and again.error is None and again.attempts == 4


def test_a_row_with_a_state_this_version_does_not_know_reads_as_abandoned(storage: StorageEndpoints) -> None:
    ledger = TableLedger(storage)
    ledger.upsert(row("req-odd"))
    entity = dict(ledger._table.get_entity(partition_key("kv-one", "web"), "req-odd"))
    ledger._table.upsert_entity({**entity, "state": "merged", "error": "was merging"})
    odd = ledger.get("kv-one", "web", "req-odd")
    assert odd is not None and odd.state is AttemptState.ABANDONED and not odd.state.in_flight
    assert odd.error is not None and "unknown ledger state 'merged'" in odd.error and "was merging" in odd.error


def test_keys_escape_characters_tables_forbid(storage: StorageEndpoints) -> None:
    ledger = TableLedger(storage)
    odd = LedgerRow(vault="kv/a#b", name="we?b\\x|y%z", request_id="id/with#odd?chars", state=AttemptState.STARTED)
    ledger.upsert(odd)
    assert ledger.get("kv/a#b", "we?b\\x|y%z", "id/with#odd?chars") == odd
    key = partition_key("kv/a#b", "we?b\\x|y%z")
    assert not set("/\\#?") & set(key) and key.count("|") == 1


def test_history_is_newest_first_and_per_certificate(storage: StorageEndpoints) -> None:
    ledger = TableLedger(storage)
    for i, request_id in enumerate(["a-old", "c-mid", "b-new"]):
        ledger.upsert(row(request_id, started=i))
    ledger.upsert(row("other", name="api", started=10))
    assert [r.request_id for r in ledger.history("kv-one", "web")] == ["b-new", "c-mid", "a-old"]
    assert [r.request_id for r in ledger.history("kv-one", "api")] == ["other"]
    assert ledger.history("kv-one", "nothing") == []


def test_recent_filters_by_state_and_limits(storage: StorageEndpoints) -> None:
    ledger = TableLedger(storage)
    a = AttemptState
    states = [a.ABANDONED, a.FAILED, a.PENDING_AT_CA, a.FAILED, a.REJECTED, a.ABANDONED]
    for i, state in enumerate(states):
        ledger.upsert(row(f"r{i}", state, name=f"cert-{i}", started=i))
    assert [r.request_id for r in ledger.recent(limit=3)] == ["r5", "r4", "r3"]
    assert [r.request_id for r in ledger.recent(states={a.FAILED, a.REJECTED})] == ["r4", "r3", "r1"]
    assert [r.request_id for r in ledger.recent(states={a.PENDING_AT_CA})] == ["r2"]
    assert ledger.recent(states={a.NOTIFIED}) == []
