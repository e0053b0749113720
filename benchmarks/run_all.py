"""``make bench``: run every benchmark script as its own process, echo its output, summarise the verdicts.

Each script prints one or more verdict lines ``<name>: <figure> (target <bound>) PASS|FAIL``. Exits non-zero
if any verdict is FAIL, a script exits non-zero itself, or prints no verdict.

Usage: ``python benchmarks/run_all.py [name ...]`` (names without ``.py``; default: all of them).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "emulator_throughput",
    "keyvault_reads",
    "cold_start",
    "sweep_requests_10k",
    "sweep_scale",
    "renewal_throughput",
    "scale_out",
    "recovery",
    "critical_path",
    "ca_issuance",
    "report_time",
    "simulated_year",
]
TIMEOUT_SECONDS = 1200


def main(argv: list[str]) -> int:
    wanted = argv or [name for name in ORDER if (HERE / f"{name}.py").exists()]
    results: list[tuple[str, str, bool]] = []
    for name in wanted:
        script = HERE / f"{name}.py"
        if not script.exists():
            results.append((name, f"{name}: script not found", False))
            continue
        print(f"=== {name}", flush=True)
        started = time.monotonic()
        lines: list[str] = []
        try:
            proc = subprocess.Popen(
                [sys.executable, str(script)],
                cwd=HERE.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line.rstrip("\n"))
            code = proc.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -1
        verdicts = [line for line in lines if "(target " in line and line.endswith((" PASS", " FAIL"))]
        if not verdicts:
            verdicts.append(f"{name}: no verdict (exit code {code}) FAIL")
        elif code != 0 and all(v.endswith(" PASS") for v in verdicts):  # it failed after its verdicts
            verdicts.append(f"{name}: exit code {code} after its verdicts FAIL")
        for verdict in verdicts:
            results.append((name, verdict, verdict.endswith(" PASS")))
        passed = all(v.endswith(" PASS") for v in verdicts)
        print(f"=== {name}: {'PASS' if passed else 'FAIL'} in {time.monotonic() - started:.0f}s\n", flush=True)
    print("=== summary")
    for _name, verdict, passed in results:
        print(f"{'PASS' if passed else 'FAIL'}  {verdict}")
    failed = sum(1 for *_, passed in results if not passed)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
