"""Cold start: what ``import function_app`` costs beyond ``import azure.functions`` alone.

Each sample is a fresh interpreter that times one import with ``time.perf_counter`` (so interpreter start-up
is excluded from both); the two kinds run interleaved, 10 of each by default, and the medians are compared.
Target: function_app at most 60 ms more than azure.functions alone (heavy SDKs are imported inside the
functions, so the indexer's import stays cheap on the Consumption plan).

Usage: ``python benchmarks/cold_start.py [--runs 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, verdict

NAME = "cold_start"
TARGET_MS = 60.0
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def sample(module: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1]) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    sample("function_app")  # warm the OS file cache and the bytecode caches once, for both kinds
    base, app = [], []
    for _ in range(args.runs):
        base.append(sample("azure.functions"))
        app.append(sample("function_app"))
    base_ms, app_ms = statistics.median(base), statistics.median(app)
    extra = app_ms - base_ms
    print(f"import azure.functions: median {base_ms:.1f} ms of {[round(x, 1) for x in base]}")
    print(f"import function_app:    median {app_ms:.1f} ms of {[round(x, 1) for x in app]}")
    verdict(NAME, f"+{extra:.1f} ms ({app_ms:.1f} vs {base_ms:.1f} ms)", extra, TARGET_MS, f"<= +{TARGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
