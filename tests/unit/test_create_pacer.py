"""The per-vault create pacer keeps certificate creates inside Key Vault's sliding window (20 per 10 s)."""

from __future__ import annotations

from renewal.azure.keyvault import CreatePacer, create_pacer_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_window_waits_for_its_oldest_slot():
    clock = FakeClock()
    pacer = CreatePacer(20, 10.0, margin_seconds=0.25, clock=clock)
    assert [pacer.reserve() for _ in range(20)] == [0.0] * 20
    assert pacer.reserve() == 10.25  # the 21st create goes when the first leaves the window
    clock.now += 3
    assert pacer.reserve() == 7.25  # the 22nd waits behind the 21st, for the second slot


def test_slots_never_exceed_the_limit_in_any_window():
    clock = FakeClock()
    pacer = CreatePacer(20, 10.0, margin_seconds=0.25, clock=clock)
    sends = []
    for i in range(100):
        clock.now = 100.0 + i * 0.05  # 16 workers asking far faster than the limit
        sends.append(clock.now + pacer.reserve())
    assert sends == sorted(sends)
    for i, start in enumerate(sends):
        assert sum(1 for s in sends[i:] if s < start + 10.0) <= 20
    assert sends[-1] - sends[19] <= 4 * 10.25 + 1e-9  # 100 creates: five windows, no idle gaps


def test_a_window_with_room_does_not_wait():
    clock = FakeClock()
    pacer = CreatePacer(20, 10.0, clock=clock)
    for _ in range(20):
        pacer.reserve()
    clock.now += 11
    assert pacer.reserve() == 0.0


def test_one_pacer_per_vault_in_the_process():
    assert create_pacer_for("https://kv-one.vault.azure.net/") is create_pacer_for("https://KV-ONE.vault.azure.net")
    assert create_pacer_for("https://kv-one.vault.azure.net") is not create_pacer_for("https://kv-two.vault.azure.net")
