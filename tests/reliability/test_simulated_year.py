"""The short variant of ``benchmarks/simulated_year.py`` (issue 16): 100 certificates over 3 vaults for 120
simulated days, with every kind of change and fault of the full year (a CA outage with failover, a vault's
Event Grid subscription off for a week, 5 % of events lost, Key Vault 429 storms and 5xx bursts, workers
killed at crash points, a mass revocation through ARI, a misconfigured issuer replayed by the operator, a
policy edited in place, certificates added, deleted and arriving expired), driven through the real functions
on one simulated clock. It asserts the benchmark's targets, one test per printed verdict.

It needs the Key Vault emulator only (started here, in its own process); both CAs run in this process on the
simulated clock (the module docstring of the benchmark says why pebble cannot). About 15 s here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from benchmarks.simulated_year import PUBLIC, YearResult, figures, simulate, spec_for

VERDICTS = (
    "lapses",
    "renewals outside their window",
    "mass revocation",
    "versions per renewal",
    "CA submissions per renewal",
    "failures left unreplayed",
    "wall time",
)


@pytest.fixture(scope="module")
def year() -> YearResult:
    started = time.perf_counter()
    result = figures(simulate(spec_for(100, 120)))
    result.measured_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return result


def _line(result: YearResult, name: str) -> str:
    lines = [line for line in result.lines if line.startswith(f"simulated_year {name}:") and "(target " in line]
    assert len(lines) == 1, result.lines
    return lines[0]


@pytest.mark.parametrize("name", VERDICTS)
def test_each_target_of_the_year_is_met(year: YearResult, name: str) -> None:
    line = _line(year, name)
    assert line.endswith(" PASS"), "\n".join(year.lines)


def test_every_kind_of_fault_happened_and_was_recovered(year: YearResult) -> None:
    world: Any = year.world
    kinds = {band.kind for band in world.faults}
    assert {"CA outage", "events off", "kv-429", "kv-5xx", "mass revocation", "issuer misconfigured"} <= kinds
    assert world.unreachable[PUBLIC] > 0, "the ACME CA was never found down"
    assert world.issued["corp-local"] > 0
    assert world.events["lost"] > 0 and world.events["delivered"] > 0
    assert sum(world.kills.values()) > 0, "no worker was killed"
    assert world.refusals[PUBLIC] > 0, "the misconfigured issuer refused nothing"
    assert any("fixing the issuer" in replay["why"] and replay["jobs"] > 0 for replay in year.replays)
    assert len(world.revoked) >= 10
    assert world.replaces_sent > 0, "no new order named the certificate it replaces (RFC 9773)"
    assert year.poisoned > 0 and year.poison_left == 0
    assert not year.policy_mismatches, year.policy_mismatches[:5]


def test_the_short_year_fits_the_ci_budget(year: YearResult) -> None:
    assert year.measured_seconds < 120  # type: ignore[attr-defined]


def test_a_policy_edited_in_place_is_followed(year: YearResult) -> None:
    assert _line(year, "policy edited in place").endswith(" PASS"), "\n".join(year.lines)
