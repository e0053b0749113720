"""BlobClaimStore: one holder per certificate, release hands over, lapsed claims are taken over."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

from renewal.azure.claims import BlobClaimStore
from renewal.azure.storage import StorageEndpoints
from tests.azure.conftest import at

TTL = dt.timedelta(minutes=10)


def crash_while_holding(store: BlobClaimStore, vault: str = "kv-one", name: str = "web") -> bool:
    """Take the claim and never release it, as a worker that died mid-renewal."""
    return store.acquire(vault, name, ttl=TTL) is not None


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def race(storage: StorageEndpoints, claimants: int, vault: str = "kv-one", name: str = "web") -> list[bool]:
    """``claimants`` workers claim at once; every claim is held until all have tried."""
    all_tried = threading.Barrier(claimants, timeout=30)
    start = threading.Barrier(claimants, timeout=30)

    def attempt(i: int) -> bool:
        store = BlobClaimStore(storage, holder=f"worker-{i}")
        start.wait()
        with store.claim(vault, name, ttl=TTL) as held:
            all_tried.wait()
            return held

    with ThreadPoolExecutor(claimants) as pool:
        return list(pool.map(attempt, range(claimants)))


def test_exactly_one_of_20_concurrent_claimants_wins(storage: StorageEndpoints) -> None:
    assert race(storage, 20).count(True) == 1  # the blob does not exist yet: creation races too
    assert race(storage, 20).count(True) == 1  # an existing, released blob


def test_release_lets_the_next_claimant_win(storage: StorageEndpoints) -> None:
    first, second = BlobClaimStore(storage, holder="a"), BlobClaimStore(storage, holder="b")
    with first.claim("kv-one", "web", ttl=TTL) as held:
        assert held
        assert first.holder_of("kv-one", "web") is not None
        assert first.holder_of("kv-one", "web")[0] == "a"  # type: ignore[index]
        with second.claim("kv-one", "web", ttl=TTL) as other:
            assert not other
        with second.claim("kv-one", "api", ttl=TTL) as unrelated:
            assert unrelated  # claims are per certificate
    assert first.holder_of("kv-one", "web") is None
    with second.claim("kv-one", "web", ttl=TTL) as held:
        assert held


def test_a_crashed_holders_claim_lapses_and_is_taken_over(storage: StorageEndpoints) -> None:
    clock = Clock(at(0))
    crashed = BlobClaimStore(storage, holder="crashed", clock=clock)
    assert crash_while_holding(crashed) is True

    rival = BlobClaimStore(storage, holder="rival", clock=clock)
    clock.now = at(9)  # still live
    with rival.claim("kv-one", "web", ttl=TTL) as held:
        assert not held
    clock.now = at(11)  # expired
    with rival.claim("kv-one", "web", ttl=TTL) as held:
        assert held
        assert rival.holder_of("kv-one", "web")[0] == "rival"  # type: ignore[index]
        # The new holder's claim is live in turn: a third claimant is refused.
        with BlobClaimStore(storage, holder="third", clock=clock).claim("kv-one", "web", ttl=TTL) as third:
            assert not third


def test_lapsed_claim_taken_over_by_exactly_one_of_many(storage: StorageEndpoints) -> None:
    clock = Clock(at(0))
    assert crash_while_holding(BlobClaimStore(storage, holder="crashed", clock=clock))
    clock.now = at(60)
    claimants = 12
    start, all_tried = threading.Barrier(claimants, timeout=30), threading.Barrier(claimants, timeout=30)

    def attempt(i: int) -> bool:
        store = BlobClaimStore(storage, holder=f"w{i}", clock=clock)
        start.wait()
        with store.claim("kv-one", "web", ttl=TTL) as held:
            all_tried.wait()
            return held

    with ThreadPoolExecutor(claimants) as pool:
        assert list(pool.map(attempt, range(claimants))).count(True) == 1


def test_release_after_takeover_does_not_disturb_the_new_holder(storage: StorageEndpoints) -> None:
    clock = Clock(at(0))
    slow = BlobClaimStore(storage, holder="slow", clock=clock)
    with slow.claim("kv-one", "web", ttl=TTL) as held:
        assert held
        clock.now = at(30)  # the slow worker outlived its ttl
        fast = BlobClaimStore(storage, holder="fast", clock=clock)
        fast_claim = fast.acquire("kv-one", "web", ttl=TTL)
        assert fast_claim is not None
    # The slow worker's release failed quietly; the fast one still holds the claim.
    assert fast.holder_of("kv-one", "web")[0] == "fast"  # type: ignore[index]
    fast.release(fast_claim)
    assert fast.holder_of("kv-one", "web") is None
