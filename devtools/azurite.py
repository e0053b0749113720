"""Start Azurite (blob, queue, table) on free loopback ports for local runs and tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import free_port, port_open, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "tools" / "node_modules" / ".bin" / "azurite"

ACCOUNT_NAME = "devstoreaccount1"
# The well-known Azurite/Storage Emulator development key; it is public and only valid against the emulator.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Newest api-version Azurite 3.35 accepts; the SDKs default to a newer one it refuses.
API_VERSION = "2025-11-05"


class AzuriteNotInstalledError(RuntimeError):
    pass


@dataclass(frozen=True)
class AzuriteServer:
    blob_port: int
    queue_port: int
    table_port: int
    location: Path
    pid: int
    host: str = "127.0.0.1"

    def endpoint(self, port: int) -> str:
        return f"http://{self.host}:{port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint(self.blob_port)};"
            f"QueueEndpoint={self.endpoint(self.queue_port)};"
            f"TableEndpoint={self.endpoint(self.table_port)};"
        )

    def env(self) -> dict[str, str]:
        """App settings that point the app (and the CLI) at this Azurite."""
        return {"AzureWebJobsStorage": self.connection_string, "RENEWAL_STORAGE_API_VERSION": API_VERSION}


def azurite_binary() -> Path:
    if not AZURITE_BIN.exists() or shutil.which("node") is None:
        raise AzuriteNotInstalledError(f"Azurite not found at {AZURITE_BIN} (or node missing): run `make tools`")
    return AZURITE_BIN


@contextmanager
def running_azurite(
    location: str | os.PathLike[str] | None = None, *, timeout: float = 30.0
) -> Iterator[AzuriteServer]:
    """Run Azurite until the block exits; data goes to ``location`` (a fresh temporary directory by default)."""
    binary = azurite_binary()
    with tempfile.TemporaryDirectory(prefix="azurite-") as scratch:
        where = Path(location) if location is not None else Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        # A free port found by binding 0 can be taken by someone else before Azurite binds it: retry then.
        last_error = ""
        for _attempt in range(3):
            ports = (free_port(), free_port(), free_port())
            if len(set(ports)) < 3:
                continue
            blob, queue, table = ports
            # --skipApiVersionCheck lets tools with newer SDK defaults in; the app pins its version anyway.
            args = [
                str(binary), "--silent", "--disableTelemetry", "--skipApiVersionCheck",
                "--location", str(where),
                "--blobHost", "127.0.0.1", "--blobPort", str(blob),
                "--queueHost", "127.0.0.1", "--queuePort", str(queue),
                "--tableHost", "127.0.0.1", "--tablePort", str(table),
            ]  # fmt: skip
            log = open(where / "azurite.log", "wb")  # closed after the process stops
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    if all(port_open(p) for p in ports):
                        break
                    time.sleep(0.05)
                if proc.poll() is None and all(port_open(p) for p in ports):
                    try:
                        yield AzuriteServer(blob, queue, table, where, proc.pid)
                    finally:
                        stop_process(proc)
                    return
                last_error = (where / "azurite.log").read_text(errors="replace")[-2000:]
            finally:
                stop_process(proc)
                log.close()
        raise RuntimeError(f"Azurite did not start on free ports: {last_error or 'timed out'}")
