"""``python -m emulator --vault kv-alpha --vault kv-beta [--port N] [--state FILE]``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .server import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Local Key Vault certificates emulator")
    parser.add_argument("--vault", action="append", default=[], help="vault name (repeat for several vaults)")
    parser.add_argument("--port", type=int, default=0, help="first vault's port; later vaults use the next ports")
    parser.add_argument("--state", type=Path, help="JSON file that keeps vaults across restarts")
    parser.add_argument("--tls-dir", type=Path, help="folder for the CA bundle and server certificate")
    parser.add_argument("--no-throttling", action="store_true", help="disable the per-vault service limits")
    args = parser.parse_args(argv)

    server = EmulatorServer(state_path=args.state, tls_dir=args.tls_dir)
    if args.no_throttling:
        server.core.gate.knobs.throttling = False
    server.start(args.vault or ["kv-emulator"], args.port)
    urls = server.vault_urls()
    admin_url = next(iter(urls.values())) + "_admin"
    for name, url in urls.items():
        print(f"vault {name}: {url}")
    print(f"CA bundle (pass as connection_verify): {server.ca_bundle}")
    print(f"admin API: {admin_url}")
    print("READY " + json.dumps({"vaults": urls, "ca_bundle": str(server.ca_bundle), "admin_url": admin_url}))
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
