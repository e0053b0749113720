"""GET throughput of the Key Vault emulator from 8 concurrent SDK clients (server in a subprocess).

Usage: ``python benchmarks/emulator_throughput.py [--clients 8] [--processes 2] [--seconds 10]``.
Each client is its own ``CertificateClient`` (own connection) in its own thread; the threads are
spread over a few processes so the client side's GIL does not cap the figure, without running more
processes than this 2-core machine can schedule well. The last line is
``emulator_get_throughput: <N> req/s (target 400) PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 400.0


def _client(vault_url: str, ca_bundle: str, names: list[str], seconds: float, results: list[int]) -> None:
    from azure.core.pipeline.transport import RequestsTransport
    from azure.keyvault.certificates import CertificateClient

    from emulator.credential import EmulatorCredential

    # use_env_settings=False: requests would otherwise scan the environment for proxies on every call,
    # which costs the client more CPU than the emulator spends answering.
    transport = RequestsTransport(use_env_settings=False, connection_verify=ca_bundle)
    client = CertificateClient(vault_url, EmulatorCredential(), transport=transport, connection_verify=ca_bundle)
    client.get_certificate(names[0])  # challenge round trip and connection set-up happen before timing
    done, i = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.get_certificate(names[i % len(names)])
        done += 1
        i += 1
    results.append(done)


def _process(vault_url: str, ca_bundle: str, names: list[str], seconds: float, clients: int, queue: Any) -> None:
    results: list[int] = []
    threads = [
        threading.Thread(target=_client, args=(vault_url, ca_bundle, names, seconds, results)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(sum(results))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    from emulator.testing import running_emulator

    with running_emulator(["kv-bench"], subprocess_mode=True, throttling=False) as kv:
        names = [f"bench-{i}" for i in range(50)]
        kv.admin.seed("kv-bench", certificates=[{"name": n} for n in names])
        url = kv.vault_urls["kv-bench"]
        queue: multiprocessing.Queue = multiprocessing.Queue()
        per_process = [
            args.clients // args.processes + (i < args.clients % args.processes) for i in range(args.processes)
        ]
        workers = [
            multiprocessing.Process(target=_process, args=(url, kv.ca_bundle, names, args.seconds, n, queue))
            for n in per_process
            if n
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        total = sum(queue.get(timeout=args.seconds + 120) for _ in workers)
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        counted = kv.admin.counters("kv-bench")["get_certificate"]
    rate = total / args.seconds
    print(f"clients: {args.clients} in {len(workers)} processes, window: {args.seconds:.0f}s, wall: {elapsed:.1f}s")
    print(f"GETs: {total}")
    print(f"server-side get_certificate count: {counted}")
    print(f"emulator_get_throughput: {rate:.0f} req/s (target {TARGET:.0f}) {'PASS' if rate >= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
