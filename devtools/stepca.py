"""A local smallstep step-ca (built from Debian's packages by tools/build-stepca.sh) for tests, benchmarks
and the demo: a root and an issuing CA made with ``cryptography``, an ACME provisioner whose dns-01
checks ask pebble-challtestsrv, and a JWK provisioner whose private key the service holds."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.pebble import ChallTestSrv
from devtools.processes import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[1]
STEP_CA = Path(os.environ.get("RENEWAL_STEP_CA", ROOT / ".tools" / "step-ca" / "step-ca"))
JWK_PROVISIONER = "renewal"


class StepCANotBuiltError(RuntimeError):
    """tools/build-stepca.sh has not built step-ca on this machine."""


@dataclass
class StepCA:
    url: str
    workdir: Path
    root_pem: str
    ca_bundle: str
    """The root, as a file: it verifies step-ca's TLS and is the trust anchor of what it issues."""
    provisioner_key_file: Path
    challtestsrv: ChallTestSrv
    process: subprocess.Popen[bytes] | None = None

    @property
    def trust_anchor_pem(self) -> str:
        return self.root_pem

    @property
    def acme_directory_url(self) -> str:
        return f"{self.url}/acme/acme/directory"

    def jwk_section(self, name: str, **overrides: Any) -> dict[str, Any]:
        """A ``type: stepca`` issuer section using the JWK provisioner."""
        return {
            "name": name,
            "type": "stepca",
            "url": self.url,
            "provisioner": JWK_PROVISIONER,
            "provisioner_key": {"file": str(self.provisioner_key_file)},
            "ca_bundle": self.ca_bundle,
            "trust_anchors": [self.ca_bundle],
            "timeout_seconds": 10,
            **overrides,
        }

    def issuer_section(self, name: str, **overrides: Any) -> dict[str, Any]:
        return self.jwk_section(name, **overrides)

    def acme_section(self, name: str, **overrides: Any) -> dict[str, Any]:
        """A ``type: acme`` issuer section against step-ca's ACME provisioner, dns-01 via challtestsrv."""
        return {
            "name": name,
            "type": "acme",
            "directory_url": self.acme_directory_url,
            "ca_bundle": self.ca_bundle,
            "trust_anchors": [self.ca_bundle],
            "account_key": {"file": str(self.workdir / f"account-{name}.pem")},
            "dns": {"provider": "challtestsrv", "url": self.challtestsrv.management_url},
            "propagation": {"nameservers": [self.challtestsrv.nameserver], "timeout_seconds": 20},
            "validation_timeout_seconds": 30,
            "finalize_wait_seconds": 10,
            **overrides,
        }


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str, key: Any, issuer: tuple[x509.Certificate, Any] | None, path_length: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The provisioner's public JWK as step-ca's ca.json holds it, kid = RFC 7638 thumbprint."""
    import josepy as jose

    jwk = jose.JWKEC(key=key.public_key())
    kid = jose.b64.b64encode(jwk.thumbprint()).decode()
    return {**jwk.to_json(), "use": "sig", "alg": "ES256", "kid": kid}


def _write_pki(workdir: Path) -> tuple[Path, Path, Path, Path]:
    pem = serialization.Encoding.PEM
    root_key, issuing_key, provisioner_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("Renewal step-ca Root", root_key, None, 1)
    issuing = _ca("Renewal step-ca Issuing CA", issuing_key, (root, root_key), 0)
    paths = (workdir / "root_ca.crt", workdir / "intermediate_ca.crt", workdir / "intermediate_ca_key", workdir)
    paths[0].write_bytes(root.public_bytes(pem))
    paths[1].write_bytes(issuing.public_bytes(pem))
    plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    paths[2].write_bytes(issuing_key.private_bytes(pem, *plain))
    provisioner_file = workdir / "provisioner.key"
    provisioner_file.write_bytes(provisioner_key.private_bytes(pem, *plain))
    provisioner_file.chmod(0o600)
    (workdir / "provisioner.jwk.json").write_text(json.dumps(public_jwk(provisioner_key)))
    return paths[0], paths[1], paths[2], provisioner_file


@contextmanager
def running_stepca(workdir: str | os.PathLike[str], challtestsrv: ChallTestSrv) -> Iterator[StepCA]:
    if not STEP_CA.is_file():
        raise StepCANotBuiltError(f"{STEP_CA} does not exist (tools/build-stepca.sh builds it)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root, issuing, issuing_key, provisioner_key = _write_pki(workdir)
    port = free_port()
    config = {
        "root": str(root),
        "crt": str(issuing),
        "key": str(issuing_key),
        "address": f"127.0.0.1:{port}",
        "dnsNames": ["127.0.0.1", "localhost"],
        "logger": {"format": "text"},
        "db": {"type": "badgerv2", "dataSource": str(workdir / "db")},
        "authority": {
            # Lifetimes like a private CA's TLS profile: 90 days by default, at most a year.
            "claims": {
                "minTLSCertDuration": "5m",
                "maxTLSCertDuration": "8760h",
                "defaultTLSCertDuration": "2160h",
            },
            "provisioners": [
                {"type": "ACME", "name": "acme"},
                {
                    "type": "JWK",
                    "name": JWK_PROVISIONER,
                    "key": json.loads((workdir / "provisioner.jwk.json").read_text()),
                },
            ],
        },
        "tls": {"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": False},
    }
    (workdir / "ca.json").write_text(json.dumps(config, indent=2))
    log = (workdir / "step-ca.log").open("wb")
    process = subprocess.Popen(
        [str(STEP_CA), str(workdir / "ca.json"), "--resolver", challtestsrv.nameserver],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = StepCA(
        url=f"https://127.0.0.1:{port}",
        workdir=workdir,
        root_pem=root.read_text(),
        ca_bundle=str(root),
        provisioner_key_file=provisioner_key,
        challtestsrv=challtestsrv,
        process=process,
    )
    try:
        wait_until(lambda: process.poll() is not None or port_open(port), timeout=30, what="step-ca")
        if process.poll() is not None:
            raise RuntimeError(f"step-ca exited: {(workdir / 'step-ca.log').read_text()[-2000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
