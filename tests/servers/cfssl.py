"""``cfssl serve`` with a root + issuing CA made by the cfssl CLI (session fixture ``cfssl_server``;
``running_cfssl(tmp)`` is the same server as a plain context manager).

Profiles: ``server`` needs the HMAC key ``primary`` (``/authsign``); ``open`` signs on ``/sign``
without authentication; ``restricted`` (open) refuses names outside ``example.test``. All accept
RSA 2048-4096 and EC P-256/P-384 CSRs and copy DNS, IP and e-mail SANs from the CSR.

What the CA cannot do (Debian's cfssl 1.2.0, a 2016 snapshot): it drops URI SANs (its signer copies
only DNS, IP and e-mail names), ignores ``"bundle": true`` on ``/sign`` (the client fetches the chain
via ``/info`` or ``/bundle``), and silently signs with the default profile when asked for an unknown
one. ``server`` and ``open`` check no names: any CSR with a supported key is signed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import stop_process
from tests.servers import free_port, unavailable, wait_until

ROOT_CSR = {"CN": "Renewal Test CFSSL Root CA", "key": {"algo": "ecdsa", "size": 384}, "ca": {"expiry": "87600h"}}
INT_CSR = {"CN": "Renewal Test CFSSL Issuing CA", "key": {"algo": "ecdsa", "size": 256}}
ROOT_CONFIG = {
    "signing": {
        "default": {"expiry": "8760h"},
        "profiles": {
            "intermediate": {
                "expiry": "43800h",
                "usages": ["cert sign", "crl sign"],
                "ca_constraint": {"is_ca": True, "max_path_len": 0, "max_path_len_zero": True},
            }
        },
    }
}


NAME_POLICY = r"^([a-z0-9-]+\.)*example\.test$"
INT_SIGN = ["-profile", "intermediate", "int.csr"]
SERVE_ARGS = ["-ca", "int.pem", "-ca-key", "int-key.pem", "-config", "serve-config.json"]
SERVE_ARGS += ["-int-bundle", "int.pem", "-ca-bundle", "root.pem", "-loglevel", "2"]


def serve_config(hmac_key_hex: str) -> dict[str, Any]:
    leaf_usages = ["digital signature", "key encipherment", "server auth", "client auth"]
    return {
        "signing": {
            "default": {"expiry": "2160h", "usages": leaf_usages},
            "profiles": {
                "server": {"expiry": "2160h", "usages": leaf_usages, "auth_key": "primary"},
                "open": {"expiry": "720h", "usages": leaf_usages},
                # Names outside example.test violate this profile's policy (for refusal tests).
                "restricted": {"expiry": "720h", "usages": leaf_usages, "name_whitelist": NAME_POLICY},
            },
        },
        "auth_keys": {"primary": {"type": "standard", "key": hmac_key_hex}},
    }


@dataclass
class CfsslServer:
    base_url: str
    root_pem: str
    issuing_pem: str
    hmac_key_hex: str
    tmp: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def trust_anchor_pem(self) -> str:
        return self.root_pem

    def secret_file(self, label: str, value: str) -> dict[str, str]:
        path = self.tmp / f"{label}-{secrets.token_hex(4)}"
        path.write_text(value)
        path.chmod(0o600)
        return {"file": str(path)}

    def issuer_section(self, name: str, *, authenticated: bool = True, **overrides: Any) -> dict:
        """A complete ``type: cfssl`` registry section; the HMAC key is a ``{"file": ...}`` reference."""
        section: dict[str, Any] = {
            "name": name,
            "type": "cfssl",
            "url": self.base_url,
            "profile": "server" if authenticated else "open",
            "chain_source": "bundle",
            "trust_anchors": [self.root_pem],
            "timeout_seconds": 10,
        }
        if authenticated:
            section["auth_key"] = self.secret_file("hmac", self.hmac_key_hex + "\n")
        section.update(overrides)
        return section


def _run(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, check=True, timeout=60).stdout


def _make_cas(cfssl: str, cfssljson: str, tmp: Path) -> None:
    (tmp / "root-csr.json").write_text(json.dumps(ROOT_CSR))
    (tmp / "int-csr.json").write_text(json.dumps(INT_CSR))
    (tmp / "root-config.json").write_text(json.dumps(ROOT_CONFIG))
    _run([cfssljson, "-bare", "root"], tmp, _run([cfssl, "gencert", "-initca", "root-csr.json"], tmp))
    _run([cfssljson, "-bare", "int"], tmp, _run([cfssl, "genkey", "int-csr.json"], tmp))
    signed = _run(
        [cfssl, "sign", "-ca", "root.pem", "-ca-key", "root-key.pem", "-config", "root-config.json", *INT_SIGN],
        tmp,
    )
    _run([cfssljson, "-bare", "int"], tmp, signed)


def _start(cfssl: str, tmp: Path, port: int) -> subprocess.Popen:
    log = (tmp / f"serve-{port}.log").open("wb")
    return subprocess.Popen(
        [cfssl, "serve", "-address", "127.0.0.1", "-port", str(port), *SERVE_ARGS],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


class CfsslNotInstalledError(RuntimeError):
    """``cfssl``/``cfssljson`` are not on PATH."""


class CfsslStartError(RuntimeError):
    """``cfssl serve`` did not start on any of the ports tried."""


def cfssl_binaries() -> tuple[str, str]:
    """Paths of ``cfssl`` and ``cfssljson``; raises :class:`CfsslNotInstalledError` if either is missing."""
    cfssl, cfssljson = shutil.which("cfssl"), shutil.which("cfssljson")
    if not cfssl or not cfssljson:
        raise CfsslNotInstalledError("cfssl/cfssljson not on PATH (apt-get install golang-cfssl)")
    return cfssl, cfssljson


@contextlib.contextmanager
def running_cfssl(tmp: Path, binaries: tuple[str, str] | None = None) -> Iterator[CfsslServer]:
    """``cfssl serve`` on a free loopback port with the CAs and profiles above, state under ``tmp``.

    Plain context manager (no pytest), shared by the ``cfssl_server`` fixture and the benchmarks.
    """
    cfssl, cfssljson = binaries or cfssl_binaries()
    _make_cas(cfssl, cfssljson, tmp)
    hmac_key = secrets.token_hex(16)
    (tmp / "serve-config.json").write_text(json.dumps(serve_config(hmac_key)))

    import requests

    process: subprocess.Popen | None = None
    base_url = ""
    # cfssl cannot report a port it chose, so take a free one and retry if another process won it.
    for _ in range(5):
        port = free_port()
        process = _start(cfssl, tmp, port)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                lambda p=process, u=base_url: (
                    p.poll() is None
                    and requests.post(f"{u}/api/v1/cfssl/info", json={"label": ""}, timeout=1).status_code == 200
                ),
                timeout=15,
                what="cfssl serve",
            )
            break
        except TimeoutError:
            process.kill()
            process.wait()
            process = None
    if process is None:
        raise CfsslStartError(f"cfssl serve did not start; see logs in {tmp}")
    server = CfsslServer(
        base_url=base_url,
        root_pem=(tmp / "root.pem").read_text(),
        issuing_pem=(tmp / "int.pem").read_text(),
        hmac_key_hex=hmac_key,
        tmp=tmp,
        process=process,
    )
    try:
        yield server
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def cfssl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    try:
        binaries = cfssl_binaries()
    except CfsslNotInstalledError as exc:
        unavailable("CFSSL", str(exc))
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_cfssl(tmp_path_factory.mktemp("cfssl"), binaries))
        except CfsslStartError as exc:
            pytest.fail(str(exc))
        yield server
