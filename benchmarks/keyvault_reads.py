"""Client CPU of a Key Vault GET: on the I/O loop (aiohttp, the SDK's async pipeline) against the requests
pipeline the loop replaced for reads, and what the loop costs a fresh process's first read.

The emulator runs in its own process with 20 ms per request (as in every benchmark), throttling off. The same
store reads the same certificates both ways in one run, 32 threads at once as a report's readers do (for the
requests pipeline the store's reader is set aside, so its GETs go through the client's own pipeline); process
CPU time per GET is the figure. Then each way's first and second read in fresh interpreters (medians).

Target: a GET on the loop costs at most 0.75 x the client CPU of one through requests.

Usage: ``python benchmarks/keyvault_reads.py [--reads 4000] [--rounds 2] [--fresh 6]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, seed_in_bulk, verdict

VAULT = "kv-reads"
FIRST_READ = r"""
import json, sys, time
from renewal.azure.keyvault import StaticTokenCredential, open_store
store = open_store("kv-reads", sys.argv[1], StaticTokenCredential(), connection_verify=sys.argv[2])
if sys.argv[3] == "requests":
    store._reader = None
started = time.perf_counter()
store.get_current("cert-0")
first = time.perf_counter()
store.get_current("cert-1")
print(json.dumps([first - started, time.perf_counter() - first]))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fresh", type=int, default=6, help="fresh processes per way for the first read")
    args = parser.parse_args()

    from emulator.testing import running_emulator
    from renewal.azure.keyvault import StaticTokenCredential, open_store

    with running_emulator([VAULT], subprocess_mode=True, throttling=False) as kv:
        kv.admin.set_knobs(throttling=False, latency_ms=20.0)
        now = int(kv.admin.now())
        seed_in_bulk(
            kv,
            VAULT,
            args.reads,
            not_before=now - 86400,
            expires=now + 60 * 86400,
            policy={
                "issuer": {"name": "Unknown"},
                "key_props": {"kty": "RSA", "key_size": 2048, "exportable": False},
                "x509_props": {"subject": "CN=reads.example.test", "validity_months": 3},
            },
        )
        store = open_store(VAULT, kv.vault_urls[VAULT], StaticTokenCredential(), connection_verify=kv.ca_bundle)
        names = [listing.name for listing in store.list_certificates()]
        reader = store._reader

        def cpu_per_get(way: str) -> float:
            store._reader = reader if way == "loop" else None
            cpu, wall = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                read = sum(1 for current in pool.map(store.get_current, names) if current is not None)
            assert read == len(names), read
            per_get = (time.process_time() - cpu) / len(names)
            print(f"{way}: {per_get * 1000:.3f} ms of client CPU per GET, {len(names)} GETs in "
                  f"{time.perf_counter() - wall:.1f}s")  # fmt: skip
            return per_get

        cpu_per_get("loop")  # warm both: connections, imports, the loop
        cpu_per_get("requests")
        figures: dict[str, list[float]] = {"loop": [], "requests": []}
        for _ in range(args.rounds):
            for way in figures:
                figures[way].append(cpu_per_get(way))

        firsts: dict[str, list[list[float]]] = {"loop": [], "requests": []}
        for _ in range(args.fresh):
            for way in firsts:
                run = subprocess.run(
                    [sys.executable, "-c", FIRST_READ, kv.vault_urls[VAULT], kv.ca_bundle, way],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                firsts[way].append(json.loads(run.stdout.strip().splitlines()[-1]))
        for way, samples in firsts.items():
            first, second = (statistics.median(s[i] for s in samples) * 1000 for i in (0, 1))
            print(f"{way}: a fresh process's first read {first:.0f} ms, its second {second:.1f} ms (medians)")

    loop, requests = statistics.median(figures["loop"]), statistics.median(figures["requests"])
    verdict(
        "keyvault_reads",
        f"{loop * 1000:.3f} ms of client CPU per GET on the loop = {loop / requests:.2f} x "
        f"{requests * 1000:.3f} ms through requests ({len(names)} GETs, 32 threads, medians of {args.rounds})",
        loop / requests,
        0.75,
        "<= 0.75 x the requests pipeline's",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
