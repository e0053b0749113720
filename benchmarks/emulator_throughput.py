"""GET throughput of the Key Vault emulator from 8 concurrent SDK clients (server in a subprocess).

Usage: ``python benchmarks/emulator_throughput.py [--clients 8] [--seconds 10]``. The last line is
``emulator_get_throughput: <N> req/s (target 400) PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 400.0


def _client(vault_url: str, ca_bundle: str, names: list[str], seconds: float, queue: multiprocessing.Queue) -> None:
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
    queue.put(done)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    from emulator.testing import running_emulator

    with running_emulator(["kv-bench"], subprocess_mode=True, throttling=False) as kv:
        names = [f"bench-{i}" for i in range(50)]
        kv.admin.seed("kv-bench", certificates=[{"name": n} for n in names])
        url = kv.vault_urls["kv-bench"]
        # Each SDK client runs in its own process so the client side's GIL does not cap the figure.
        queue: multiprocessing.Queue = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=_client, args=(url, kv.ca_bundle, names, args.seconds, queue))
            for _ in range(args.clients)
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
    print(f"clients: {args.clients}, window: {args.seconds:.0f}s, wall: {elapsed:.1f}s, GETs: {total}")
    print(f"server-side get_certificate count: {counted}")
    print(f"emulator_get_throughput: {rate:.0f} req/s (target {TARGET:.0f}) {'PASS' if rate >= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
