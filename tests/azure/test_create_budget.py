"""The per-vault create budget over Azurite's table service: pacers of separate instances (separate
objects, as separate processes would hold) never schedule more creates into any window than the limit."""

from __future__ import annotations

import threading
import time

from renewal.azure.create_budget import TableCreatePacer
from renewal.azure.storage import StorageEndpoints


def _starts(pacers: list[TableCreatePacer], per_pacer: int) -> list[float]:
    starts: list[float] = []
    lock = threading.Lock()

    def take(pacer: TableCreatePacer) -> None:
        for _ in range(per_pacer):
            wait = pacer.reserve()
            with lock:
                starts.append(time.time() + wait)

    threads = [threading.Thread(target=take, args=(p,)) for p in pacers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(starts)


def test_instances_share_one_budget_and_no_window_holds_more_than_the_limit(storage: StorageEndpoints) -> None:
    limit, window = 5, 1.0
    pacers = [
        TableCreatePacer(storage, "kv-shared", limit=limit, window_seconds=window, margin_seconds=0) for _ in range(3)
    ]
    starts = _starts(pacers, per_pacer=5)  # 3 instances x 2 workers x 5 creates = 30
    assert len(starts) == 30
    tolerance = 0.05  # the time between a reserve() returning and the start being computed here
    for i in range(len(starts) - limit):
        assert starts[i + limit] - starts[i] >= window - tolerance, (i, starts[i : i + limit + 1])
    # 30 creates at 5 per second take at least 5 s of schedule: the budget paced them, it did not drop them.
    assert starts[-1] - starts[0] >= (30 / limit - 1) * window - tolerance
    transactions = sum(p.transactions for p in pacers)
    assert 60 <= transactions, transactions  # at least a read and a write per create


def test_vaults_have_separate_budgets(storage: StorageEndpoints) -> None:
    a = TableCreatePacer(storage, "kv-a", limit=2, window_seconds=30, margin_seconds=0)
    b = TableCreatePacer(storage, "kv-b", limit=2, window_seconds=30, margin_seconds=0)
    assert [a.reserve(), a.reserve()] == [0.0, 0.0] and a.reserve() > 25
    assert b.reserve() == 0.0
