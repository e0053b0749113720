"""pebble (ACME test CA) and pebble-challtestsrv (its mock DNS) on free loopback ports, outside pytest.

``running_pebble(workdir)`` starts both and yields a :class:`PebbleServer` with ``.directory_url``,
``.ca_bundle`` (the listener's TLS CA file), ``.trust_anchor_pem`` (pebble's root, regenerated on
every start), ``.alternate_root_pems`` and ``issuer_section(name)``: a complete ``type: acme``
registry section that validates with dns-01 through challtestsrv, which answers for any name
(``*.example.test``, ``*.contoso.test``, ...). The test fixtures in ``tests/servers/pebble.py`` and
``make demo DEMO_ARGS=--acme`` use the same launcher. Binaries come from the Debian ``pebble`` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.processes import free_port, port_open, stop_process, wait_until

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
EAB_EXAMPLE = Path("/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json")
# Fallback if the doc example is absent (same values as the Debian example file).
EAB_KEYS = {
    "kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    "kid-2": "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
}
DOMAIN = "example.test"


class PebbleNotInstalledError(RuntimeError):
    """pebble or pebble-challtestsrv is missing (``apt-get install pebble``)."""


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP (the mock DNS listens on both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP+TCP port")


def write_tls_listener(directory: Path) -> Path:
    """A throwaway CA and a localhost/127.0.0.1 server cert for pebble's HTTPS listeners, as
    ``tlsca.pem``, ``cert.pem`` and ``key.pem`` in ``directory``; returns the CA bundle's path."""
    from emulator.crypto import make_tls_material

    ca, cert, key = make_tls_material(directory)
    for made, wanted in ((ca, "tlsca.pem"), (cert, "cert.pem"), (key, "key.pem")):
        made.replace(directory / wanted)
    return directory / "tlsca.pem"


def eab_keys() -> dict[str, str]:
    """The External Account Binding keys of the Debian example config (``kid-1``/``kid-2``)."""
    try:
        return dict(json.loads(EAB_EXAMPLE.read_text())["pebble"]["externalAccountMACKeys"])
    except (OSError, KeyError, ValueError):
        return dict(EAB_KEYS)


@dataclass
class ChallTestSrv:
    dns_port: int
    management_port: int
    log: Path

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def txt(self, fqdn: str) -> list[str]:
        """TXT values currently served for ``fqdn`` (asked over real DNS)."""
        import dns.message
        import dns.query
        import dns.rdatatype

        query = dns.message.make_query(fqdn.rstrip(".") + ".", dns.rdatatype.TXT)
        answer = dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=2)
        return [b"".join(r.strings).decode() for rrset in answer.answer for r in rrset]


@dataclass
class PebbleServer:
    port: int
    management_port: int
    ca_bundle: str
    workdir: Path
    challtestsrv: ChallTestSrv
    eab_keys: dict[str, str] = field(default_factory=dict)
    trust_anchor_pem: str = ""
    alternate_root_pems: list[str] = field(default_factory=list)

    domain = DOMAIN

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    def intermediate_pem(self, index: int = 0) -> str:
        import requests

        return requests.get(f"{self.management_url}/intermediates/{index}", verify=self.ca_bundle, timeout=5).text

    def issuer_section(self, name: str, **overrides: Any) -> dict[str, Any]:
        """A complete registry section (``type: acme``) validating DNS names with dns-01 via challtestsrv.

        Secrets are file references in this server's work dir, so a plain ``DictSecretResolver()``
        resolves them; the account key file is created by the client on first use. The trust anchor
        is pebble's root of this run, so the flow verifies issued chains against it.
        """
        anchor = self.workdir / "pebble-root.pem"
        if self.trust_anchor_pem and not anchor.exists():
            anchor.write_text(self.trust_anchor_pem)
        section: dict[str, Any] = {
            "name": name,
            "type": "acme",
            "directory_url": self.directory_url,
            "ca_bundle": self.ca_bundle,
            "account_key": {"file": str(self.workdir / f"account-{name}.pem")},
            "contact_email": "pki@example.test",
            "dns": {"provider": "challtestsrv", "url": self.challtestsrv.management_url},
            "propagation": {"nameservers": [self.challtestsrv.nameserver], "timeout_seconds": 20},
            "validation_timeout_seconds": 30,
            "finalize_wait_seconds": 10,
        }
        if self.trust_anchor_pem:
            section["trust_anchors"] = [str(anchor)]
        if self.eab_keys:
            kid, key = next(iter(self.eab_keys.items()))
            key_file = self.workdir / f"eab-{kid}.key"
            key_file.write_text(key)
            key_file.chmod(0o600)
            section["eab_kid"] = kid
            section["eab_hmac_key"] = {"file": str(key_file)}
        section.update(overrides)
        return section


def _require(binary: str) -> None:
    if not shutil.which(binary):
        raise PebbleNotInstalledError(f"{binary} not installed (apt-get install pebble)")


@contextlib.contextmanager
def running_challtestsrv(workdir: str | os.PathLike[str]) -> Iterator[ChallTestSrv]:
    """pebble-challtestsrv answering DNS (UDP+TCP) and its management API on free loopback ports."""
    _require(CHALLTESTSRV)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dns_port, mgmt_port = free_udp_tcp_port(), free_port()
    log = workdir / "challtestsrv.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                CHALLTESTSRV,
                "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                "-http01", "", "-https01", "", "-tlsalpn01", "",
                "-dns01", f"127.0.0.1:{dns_port}",
                "-management", f"127.0.0.1:{mgmt_port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(mgmt_port) and port_open(dns_port), timeout=15, what="pebble-challtestsrv")
        yield ChallTestSrv(dns_port, mgmt_port, log)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def running_pebble_server(
    workdir: str | os.PathLike[str], challtestsrv: ChallTestSrv, *, eab_keys: dict[str, str] | None = None
) -> Iterator[PebbleServer]:
    """pebble with validation on, resolving dns-01 through ``challtestsrv``; authz reuse off (every order
    validates), alternate roots on. With ``eab_keys`` External Account Binding is required."""
    _require(PEBBLE)
    workdir = Path(workdir)
    ca_bundle = write_tls_listener(workdir)
    port, mgmt_port = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(workdir / "cert.pem"),
            "privateKey": str(workdir / "key.pem"),
            # Ports pebble would dial for http-01/tls-alpn-01; unused (dns-01 only) but must be set.
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
            "externalAccountMACKeys": eab_keys or {},
            # What public ACME CAs issue (pebble's own default is five years, which no policy allows).
            "certificateValidityPeriod": 90 * 86_400,
        }
    }
    (workdir / "pebble-config.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",  # every order really validates (TXT records are exercised)
        "PEBBLE_ALTERNATE_ROOTS": "1",
    }
    log = workdir / "pebble.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PEBBLE, "-config", str(workdir / "pebble-config.json"), "-dnsserver", challtestsrv.nameserver],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        import requests

        wait_until(lambda: port_open(port) and port_open(mgmt_port), timeout=20, what="pebble")
        server = PebbleServer(port, mgmt_port, str(ca_bundle), workdir, challtestsrv, dict(eab_keys or {}))

        def root(i: int) -> str:
            r = requests.get(f"{server.management_url}/roots/{i}", verify=server.ca_bundle, timeout=5)
            r.raise_for_status()
            return r.text

        server.trust_anchor_pem = root(0)
        server.alternate_root_pems = [root(1)]
        yield server
    finally:
        stop_process(proc)


@contextlib.contextmanager
def running_pebble(workdir: str | os.PathLike[str], *, eab: bool = False) -> Iterator[PebbleServer]:
    """challtestsrv and pebble together, for the demo and benchmarks (state under ``workdir``)."""
    workdir = Path(workdir)
    with running_challtestsrv(workdir / "challtestsrv") as dns:
        pebble_dir = workdir / "pebble"
        pebble_dir.mkdir(parents=True, exist_ok=True)
        with running_pebble_server(pebble_dir, dns, eab_keys=eab_keys() if eab else None) as server:
            yield server
