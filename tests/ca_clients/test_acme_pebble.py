"""The ACME client against real pebble servers, with dns-01 answered by pebble-challtestsrv."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import PolicyBuilder, Store

from ca_clients import ClientContext, IssuancePending, PermanentCAError, TransientCAError
from ca_clients.acme import AcmeClient
from ca_clients.acme_dns import ChallTestSrvSolver, PropagationChecker, PropagationConfig, challenge_fqdn
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request
from tests.servers import free_port


def unique(label: str = "app") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}.example.test"


def build(section: dict[str, Any], **extra: Any):
    return build_client(section, ClientContext(secrets=DictSecretResolver(), timeout_seconds=10, extra=extra))


def spki(obj: Any) -> bytes:
    return obj.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def assert_chains_to(chain, root_pem: str, name: str) -> None:
    root = x509.load_pem_x509_certificate(root_pem.encode())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
    path = verifier.verify(chain.leaf, list(chain.intermediates))
    assert path[-1] == root


@pytest.mark.parametrize("key_spec", ["RSA-2048", "EC-P256"])
def test_issues_with_real_dns01_and_cleans_up(pebble, key_spec: str) -> None:
    name = unique()
    csr, key = make_csr(name, key=make_key(key_spec), dns=[name, f"www.{name}"])
    client = build(pebble.issuer_section(f"pebble-{key_spec.lower()}"))

    chain = client.sign(sign_request(csr))

    assert spki(chain.leaf) == spki(key)
    sans = chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {name, f"www.{name}"}
    assert chain.issuer_name == f"pebble-{key_spec.lower()}"
    assert_chains_to(chain, pebble.trust_anchor_pem, name)
    for fqdn in (challenge_fqdn(name), challenge_fqdn(f"www.{name}")):
        assert pebble.challtestsrv.txt(fqdn) == []


def test_wildcard_and_base_name_share_one_txt_name(pebble) -> None:
    base = unique("wild")
    csr, key = make_csr(base, dns=[base, f"*.{base}"])
    chain = build(pebble.issuer_section("pebble-wild")).sign(sign_request(csr))
    assert spki(chain.leaf) == spki(key)
    assert pebble.challtestsrv.txt(challenge_fqdn(base)) == []


def test_account_key_created_once_and_account_reused(pebble, caplog: pytest.LogCaptureFixture) -> None:
    section = pebble.issuer_section(f"reuse-{uuid.uuid4().hex[:6]}")
    key_path = Path(section["account_key"]["file"])
    assert not key_path.exists()
    caplog.set_level(logging.INFO, logger="ca_clients.acme")

    first = build(section)
    assert key_path.exists() and (os.stat(key_path).st_mode & 0o777) == 0o600
    key_pem = key_path.read_text()
    first.sign(sign_request(make_csr(unique())[0]))
    first.sign(sign_request(make_csr(unique())[0]))
    second = build(section)
    second.sign(sign_request(make_csr(unique())[0]))

    assert key_path.read_text() == key_pem
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("acme.account.registered") == 1
    assert events.count("acme.account.found") == 1
    assert first.inner.account_url == second.inner.account_url


def test_processing_order_becomes_pending_then_resumes_without_new_order(
    pebble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ca_clients.acme")
    section = pebble.issuer_section("pebble-pending", finalize_wait_seconds=0)
    name = unique()
    csr, key = make_csr(name)

    with pytest.raises(IssuancePending) as pending:
        build(section).sign(sign_request(csr))
    ticket = pending.value.ticket
    assert set(ticket) == {"order_url", "csr_sha256"} and ticket["order_url"].startswith("https://127.0.0.1:")
    assert pending.value.retry_after.total_seconds() >= 1

    resumed = build({**section, "finalize_wait_seconds": 5})
    chain = resumed.sign(sign_request(csr, ticket=ticket))

    assert spki(chain.leaf) == spki(key)
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("acme.order.created") == 1
    assert events.count("acme.order.resumed") == 1

    # A ticket from another CSR (a newer pending version) is not reused: a fresh order follows.
    other_csr, other_key = make_csr(name)
    chain = resumed.sign(sign_request(other_csr, ticket=ticket))
    assert spki(chain.leaf) == spki(other_key)
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("acme.order.created") == 2


def test_a_ticket_pointing_elsewhere_or_without_the_csr_hash_gets_no_signed_request(
    pebble, caplog: pytest.LogCaptureFixture
) -> None:
    """A resume ticket is the CA's answer kept by the service; one that sends signed requests to another
    origin, or that does not name the CSR it belongs to, is never followed: a fresh order is placed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_GET = do_HEAD = do_POST  # noqa: N815 - http.server dispatches on these names

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    caplog.set_level(logging.INFO, logger="ca_clients.acme")
    try:
        client = build(pebble.issuer_section("pebble-tickets", finalize_wait_seconds=5))
        csr, key = make_csr(unique())
        digest = hashlib.sha256(csr).hexdigest()
        elsewhere = {"order_url": f"https://127.0.0.1:{server.server_address[1]}/order/1", "csr_sha256": digest}
        assert spki(client.sign(sign_request(csr, ticket=elsewhere)).leaf) == spki(key)
        assert hits == []
        orphan = {"order_url": pebble.directory_url.rsplit("/", 1)[0] + "/my-order/1"}  # no CSR hash
        assert spki(client.sign(sign_request(csr, ticket=orphan)).leaf) == spki(key)
    finally:
        server.shutdown()
        server.server_close()
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("acme.order.ticket_foreign_origin") == 1
    assert events.count("acme.order.ticket_other_csr") == 1
    assert events.count("acme.order.created") == 2 and events.count("acme.order.resumed") == 0


def test_preferred_chain_selects_alternate_root(pebble) -> None:
    alt_root = x509.load_pem_x509_certificate(pebble.alternate_root_pems[0].encode())
    wanted = alt_root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    name = unique()
    section = pebble.issuer_section("pebble-alt", preferred_chain=wanted)
    chain = build(section).sign(sign_request(make_csr(name)[0]))
    assert chain.certificates[-1].issuer == alt_root.subject
    assert_chains_to(chain, pebble.alternate_root_pems[0], name)

    default = build(pebble.issuer_section("pebble-alt-default")).sign(sign_request(make_csr(unique())[0]))
    assert default.certificates[-1].issuer != alt_root.subject


def test_txt_removed_when_propagation_times_out(pebble) -> None:
    dead_dns = f"127.0.0.1:{free_port()}"
    section = pebble.issuer_section(
        "pebble-noprop", propagation={"nameservers": [dead_dns], "timeout_seconds": 0.3, "interval_seconds": 0.1}
    )
    name = unique()
    with pytest.raises(TransientCAError, match="not visible"):
        build(section).sign(sign_request(make_csr(name)[0]))
    assert pebble.challtestsrv.txt(challenge_fqdn(name)) == []


class WrongValueSolver(ChallTestSrvSolver):
    def present(self, domain: str, validation: str) -> None:
        super().present(domain, "not-the-" + validation)


class TrustingPropagation(PropagationChecker):
    def wait(self, fqdn: str, value: str) -> None:
        return None


def test_failed_validation_is_permanent_with_the_cas_detail(pebble) -> None:
    name = unique()
    client = build(
        pebble.issuer_section("pebble-wrong"), dns_solver=WrongValueSolver(pebble.challtestsrv.management_url)
    )
    inner: AcmeClient = client.inner
    inner.propagation = TrustingPropagation(PropagationConfig())
    with pytest.raises(PermanentCAError) as failure:
        client.sign(sign_request(make_csr(name)[0]))
    assert "ACME order invalid" in failure.value.message
    assert name in failure.value.message
    assert pebble.challtestsrv.txt(challenge_fqdn(name)) == []


def test_propagation_waits_for_the_value_on_the_nameserver(challtestsrv) -> None:
    fqdn = challenge_fqdn(unique("prop"))
    solver = ChallTestSrvSolver(challtestsrv.management_url)
    config = PropagationConfig(nameservers=[challtestsrv.nameserver], timeout_seconds=5, interval_seconds=1)
    now = [0.0]
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the record appears while the checker "sleeps"
        polls.append(seconds)
        now[0] += seconds
        solver.present(fqdn.removeprefix("_acme-challenge."), "expected-value")

    checker = PropagationChecker(config, sleep=sleep, clock=lambda: now[0])
    checker.wait(fqdn, "expected-value")
    assert polls == [1]
    assert checker.serves(("127.0.0.1", challtestsrv.dns_port), fqdn, "expected-value")
    assert not checker.serves(("127.0.0.1", challtestsrv.dns_port), fqdn, "other-value")

    solver.cleanup(fqdn.removeprefix("_acme-challenge."), "expected-value")
    now[0] = 0.0
    silent = PropagationChecker(config, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    with pytest.raises(TransientCAError, match="not visible"):
        silent.wait(fqdn, "expected-value")


def test_unreachable_directory_is_transient(tmp_path: Path) -> None:
    section = {
        "name": "nowhere",
        "type": "acme",
        "directory_url": f"https://127.0.0.1:{free_port()}/dir",
        "account_key": {"file": str(tmp_path / "account.pem")},
    }
    with pytest.raises(TransientCAError, match="unreachable"):
        build(section).sign(sign_request(make_csr(unique())[0]))


def test_identifier_the_ca_rejects_is_permanent(pebble) -> None:
    csr, _ = make_csr("bad_name.example.test")
    with pytest.raises(PermanentCAError) as failure:
        build(pebble.issuer_section("pebble-bad")).sign(sign_request(csr))
    assert "malformed" in failure.value.message or "rejectedIdentifier" in failure.value.message


@pytest.mark.parametrize(
    "kwargs",
    [{"ips": ["10.0.0.1"]}, {"emails": ["pki@example.test"]}, {"uris": ["spiffe://example.test/app"]}],
)
def test_non_dns_sans_are_refused_before_any_order(pebble, kwargs: dict[str, list[str]]) -> None:
    name = unique()
    csr, _ = make_csr(name, **kwargs)
    with pytest.raises(PermanentCAError, match="DNS names only"):
        build(pebble.issuer_section("pebble-sans")).sign(sign_request(csr))


def test_unparseable_csr_is_permanent(pebble) -> None:
    with pytest.raises(PermanentCAError, match="CSR"):
        build(pebble.issuer_section("pebble-garbage")).sign(sign_request(b"\x30\x03\x02\x01\x00"))


# --- External Account Binding -------------------------------------------------------------------


def test_eab_registration_and_issuance(pebble_eab) -> None:
    name = unique()
    csr, key = make_csr(name)
    chain = build(pebble_eab.issuer_section(f"eab-{uuid.uuid4().hex[:6]}")).sign(sign_request(csr))
    assert spki(chain.leaf) == spki(key)
    assert_chains_to(chain, pebble_eab.trust_anchor_pem, name)


def test_eab_with_wrong_mac_key_is_permanent(pebble_eab, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("A" * 64)
    section = pebble_eab.issuer_section(f"eab-bad-{uuid.uuid4().hex[:6]}", eab_hmac_key={"file": str(wrong)})
    with pytest.raises(PermanentCAError, match=r"unauthorized|malformed"):
        build(section).sign(sign_request(make_csr(unique())[0]))


def test_eab_required_but_not_configured_is_permanent(pebble_eab) -> None:
    section = pebble_eab.issuer_section(f"eab-none-{uuid.uuid4().hex[:6]}")
    del section["eab_kid"], section["eab_hmac_key"]
    with pytest.raises(PermanentCAError, match="externalAccountRequired"):
        build(section).sign(sign_request(make_csr(unique())[0]))


def test_no_secret_in_logs_or_errors(pebble_eab, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    section = pebble_eab.issuer_section(f"eab-secret-{uuid.uuid4().hex[:6]}")
    eab_key = Path(section["eab_hmac_key"]["file"]).read_text().strip()
    texts: list[str] = []

    client = build(section)
    client.sign(sign_request(make_csr(unique())[0]))
    wrong = tmp_path / "wrong.key"
    wrong_key = "B" * 64
    wrong.write_text(wrong_key)
    bad = {**section, "name": "eab-secret-bad", "account_key": {"file": str(tmp_path / "other.pem")}}
    bad["eab_hmac_key"] = {"file": str(wrong)}
    with pytest.raises(PermanentCAError) as failure:
        build(bad).sign(sign_request(make_csr(unique())[0]))
    texts.append(str(failure.value))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWFjY291bnQta2V5LW1hdGVyaWFs\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PermanentCAError) as broken:
        build({**section, "name": "eab-secret-garbage", "account_key": {"file": str(garbage)}})
    texts.append(str(broken.value))

    account_pem = Path(section["account_key"]["file"]).read_text()
    account_body = "".join(account_pem.strip().splitlines()[1:-1])
    private_d = client.inner._jwk.to_json().get("d")  # the JWK's private scalar, base64url
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert any("acme.account.registered" in t for t in texts)  # the logs were really captured
    blob = "\n".join(texts)
    for secret in (eab_key, wrong_key, account_body, private_d, "c2VjcmV0LWFjY291bnQta2V5LW1hdGVyaWFs"):
        assert secret and secret not in blob
    for line in account_pem.strip().splitlines()[1:-1]:
        assert line not in blob
