"""Issuance time of each CA client against a local server: median and p90 of N signs per key type.

Clients and servers (each started on free loopback ports, stopped after its rows):

- ``local``: ``ca_clients.local`` with a root + issuing CA from ``create_ca_files`` (no server);
- ``acme``: pebble with real dns-01 through pebble-challtestsrv (``devtools.pebble.running_pebble``);
  authz reuse is off, so every order validates;
- ``vault``: an OpenBao dev server, AppRole login, ``pki_int/sign/web`` (``tests.servers.openbao``);
- ``cfssl``: ``cfssl serve``, HMAC-authenticated ``/authsign``, chain from ``/bundle``
  (``tests.servers.cfssl``);
- ``est``: the RFC 7030 test server, HTTP Basic (``tests.servers.est_server``);
- ``adcs``: the certsrv test server, Basic (``tests.servers.adcs_server``).

Per client: one client built from its registry section (``build_client``), one sign not counted (login,
account lookup, connection set-up, as in a long-lived host), then N signs of a fresh EC P-256 CSR for
``app.example.test``, then the same for RSA-2048. CSRs are made before the clock starts; each leaf's key is
checked against its CSR after it stops. A client whose server binary is missing is reported as skipped.

Target: every measured median under 1 s. Last line:
``ca_issuance: slowest median <X> ms (<client>) (target 1000) PASS|FAIL``.

Usage: ``python benchmarks/ca_issuance.py [--samples 15] [--clients local,acme,vault,cfssl,est,adcs,stepca]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAME = "ca_issuance"
TARGET_MS = 1000.0
HOST = "app.example.test"
KEYS = ("EC-P256", "RSA-2048")
CLIENTS = ("local", "acme", "vault", "cfssl", "est", "adcs", "stepca")


class NotInstalled(Exception):
    """The server this client needs is not installed here; the row is reported as skipped."""


@dataclass
class Row:
    client: str
    key: str
    timings_ms: list[float] | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.timings_ms or [0.0])

    @property
    def p90(self) -> float:
        values = self.timings_ms or [0.0]
        if len(values) < 2:
            return values[0]
        return statistics.quantiles(values, n=10, method="inclusive")[8]


# -- servers -> issuer sections --------------------------------------------------------------------


@contextlib.contextmanager
def local_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from ca_clients.local import create_ca_files

    ca = create_ca_files(workdir / "local")
    yield {
        "name": "bench-local",
        "type": "local",
        "ca_certificate": str(ca["ca_certificate"]),
        "ca_key": {"file": str(ca["ca_key"])},
        "chain": str(ca["chain"]),
        "trust_anchors": [str(ca["root"])],
    }


@contextlib.contextmanager
def acme_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from devtools.pebble import PebbleNotInstalledError, running_pebble

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_pebble(workdir / "acme"))
        except PebbleNotInstalledError as exc:
            raise NotInstalled(str(exc)) from exc
        yield server.issuer_section("bench-acme")


@contextlib.contextmanager
def vault_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.openbao import OpenBaoNotInstalledError, openbao_binary, running_openbao

    try:
        binary = openbao_binary()
    except OpenBaoNotInstalledError as exc:
        raise NotInstalled(f"OpenBao not installed: {exc}") from exc
    (workdir / "vault").mkdir()
    with running_openbao(workdir / "vault", binary) as server:
        yield server.issuer_section("bench-vault")


@contextlib.contextmanager
def cfssl_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.cfssl import CfsslNotInstalledError, cfssl_binaries, running_cfssl

    try:
        binaries = cfssl_binaries()
    except CfsslNotInstalledError as exc:
        raise NotInstalled(f"cfssl not installed: {exc}") from exc
    (workdir / "cfssl").mkdir()
    with running_cfssl(workdir / "cfssl", binaries) as server:
        yield server.issuer_section("bench-cfssl")


@contextlib.contextmanager
def est_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.est_server import ESTServer

    (workdir / "est").mkdir()
    server = ESTServer(workdir / "est")
    try:
        yield server.issuer_section("bench-est")
    finally:
        server.close()


@contextlib.contextmanager
def adcs_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.adcs_server import ADCSServer

    (workdir / "adcs").mkdir()
    server = ADCSServer(workdir / "adcs")
    try:
        yield server.issuer_section("bench-adcs")
    finally:
        server.close()


@contextlib.contextmanager
def stepca_section(workdir: Path) -> Iterator[dict[str, Any]]:
    from devtools.pebble import PebbleNotInstalledError, running_challtestsrv
    from devtools.stepca import StepCANotBuiltError, running_stepca

    with contextlib.ExitStack() as stack:
        try:
            dns = stack.enter_context(running_challtestsrv(workdir / "stepca-dns"))
            server = stack.enter_context(running_stepca(workdir / "stepca", dns))
        except (PebbleNotInstalledError, StepCANotBuiltError) as exc:
            raise NotInstalled(str(exc)) from exc
        yield server.jwk_section("bench-stepca")


SECTIONS: dict[str, Callable[[Path], contextlib.AbstractContextManager[dict[str, Any]]]] = {
    "local": local_section,
    "acme": acme_section,
    "vault": vault_section,
    "cfssl": cfssl_section,
    "est": est_section,
    "adcs": adcs_section,
    "stepca": stepca_section,
}


# -- measuring -------------------------------------------------------------------------------------


def fresh_csr(key_spec: str) -> bytes:
    from tests.ca_support import make_csr, make_key

    csr_der, _key = make_csr(HOST, key=make_key(key_spec))
    return csr_der


def sign_once(client: Any, csr_der: bytes, index: int) -> float:
    """Milliseconds for one sign; the leaf must carry the CSR's key (checked off the clock)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tests.ca_support import sign_request

    request = sign_request(csr_der, request_id=f"bench-{index}")
    started = time.perf_counter()
    chain = client.sign(request)
    elapsed = (time.perf_counter() - started) * 1000
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    if chain.certificates[0].public_key().public_bytes(*spki) != x509.load_der_x509_csr(
        csr_der
    ).public_key().public_bytes(*spki):
        raise AssertionError("the issued leaf does not carry the CSR's public key")
    return elapsed


def measure(name: str, workdir: Path, samples: int) -> list[Row]:
    from ca_clients import ClientContext
    from ca_clients.registry import build_client
    from tests.ca_support import DictSecretResolver

    try:
        with SECTIONS[name](workdir) as section:
            client = build_client(section, ClientContext(secrets=DictSecretResolver(), timeout_seconds=30))
            rows = []
            for key_spec in KEYS:
                csrs = [fresh_csr(key_spec) for _ in range(samples + 1)]
                sign_once(client, csrs[0], 0)  # warm-up, not counted
                timings = [sign_once(client, csr, i) for i, csr in enumerate(csrs[1:], 1)]
                rows.append(Row(name, key_spec, timings))
            return rows
    except NotInstalled as exc:
        return [Row(name, key_spec, note=f"skipped ({exc})") for key_spec in KEYS]
    except Exception as exc:  # noqa: BLE001 - report the client as failed and carry on with the others
        traceback.print_exc()
        return [Row(name, key_spec, note=f"error: {type(exc).__name__}: {exc}") for key_spec in KEYS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=15, help="counted signs per client and key (default 15)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of " + ",".join(CLIENTS))
    args = parser.parse_args(argv)
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CLIENTS))
    if unknown or args.samples < 1:
        parser.error(f"unknown clients {unknown}" if unknown else "--samples must be at least 1")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ca-issuance-") as tmp:
        for name in wanted:
            workdir = Path(tmp) / name
            workdir.mkdir()
            print(f"{NAME}: measuring {name} ...", flush=True)
            rows += measure(name, workdir, args.samples)

    print()
    print(f"{'client':<7} {'key':<9} {'median ms':>10} {'p90 ms':>8} {'n':>3}")
    for row in rows:
        if row.timings_ms is None:
            print(f"{row.client:<7} {row.key:<9} {row.note}")
        else:
            n = len(row.timings_ms)
            print(f"{row.client:<7} {row.key:<9} {row.median:>10.1f} {row.p90:>8.1f} {n:>3}")
    print()

    measured = [row for row in rows if row.timings_ms]
    errors = [row for row in rows if row.note.startswith("error")]
    if not measured:
        print(f"{NAME}: slowest median n/a (no client measured) (target {TARGET_MS:.0f}) FAIL", flush=True)
        return 1
    slowest = max(measured, key=lambda row: row.median)
    ok = slowest.median < TARGET_MS and not errors
    print(f"{NAME}: ratio to bound {slowest.median / TARGET_MS:.3f} ({slowest.client} {slowest.key})")
    if errors:
        print(f"{NAME}: {len(errors)} row(s) failed: " + ", ".join(f"{r.client} {r.key}" for r in errors))
    print(
        f"{NAME}: slowest median {slowest.median:.1f} ms ({slowest.client}) (target {TARGET_MS:.0f}) "
        f"{'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
