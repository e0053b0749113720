import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ca_clients import ClientContext
from ca_clients.local import create_ca_files
from ca_clients.registry import build_client
from renewal.errors import ChainRejected
from renewal.flow.verification import verify_chain
from renewal.model import PolicySpec, SubjectAlternativeNames
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request


def now() -> dt.datetime:
    # Taken per check, never at import: the local CA backdates a leaf by only five minutes, and a
    # full run reaches this module more than five minutes after collection.
    return dt.datetime.now(dt.UTC)


POLICY = PolicySpec(subject="CN=app.example.test", sans=SubjectAlternativeNames(dns_names=("app.example.test",)))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    paths = create_ca_files(tmp_path_factory.mktemp("ca"))
    section = {
        "name": "local",
        "type": "local",
        "ca_certificate": str(paths["ca_certificate"]),
        "ca_key": {"file": str(paths["ca_key"])},
        "chain": str(paths["chain"]),
    }
    client = build_client(section, ClientContext(secrets=DictSecretResolver()))
    root = x509.load_pem_x509_certificate(paths["root"].read_bytes())
    return client, root


def issue(ca, **csr_kw):
    client, _ = ca
    csr, _key = make_csr("app.example.test", **csr_kw)
    return csr, list(client.sign(sign_request(csr)).certificates)


def test_good_chain_passes_with_trust_anchor(ca):
    csr, chain = issue(ca)
    verified = verify_chain(chain, csr_der=csr, policy=POLICY, now=now(), trust_anchors=[ca[1]])
    assert verified.leaf == chain[0]


def test_certificate_for_another_key_is_rejected(ca):
    _csr, chain = issue(ca)
    other_csr, _ = make_csr("app.example.test", key=make_key("EC-P256"))
    with pytest.raises(ChainRejected) as info:
        verify_chain(chain, csr_der=other_csr, policy=POLICY, now=now(), trust_anchors=[ca[1]])
    assert info.value.check == "key"


def test_other_sans_are_rejected(ca):
    csr, chain = issue(ca, dns=["app.example.test", "evil.example.test"])
    with pytest.raises(ChainRejected, match=r"evil\.example\.test"):
        verify_chain(chain, csr_der=csr, policy=POLICY, now=now(), trust_anchors=[ca[1]])
    policy_with_more = PolicySpec(
        subject="CN=app.example.test", sans=SubjectAlternativeNames(dns_names=("app.example.test", "api.example.test"))
    )
    csr2, chain2 = issue(ca)
    with pytest.raises(ChainRejected, match="lacks"):
        verify_chain(chain2, csr_der=csr2, policy=policy_with_more, now=now(), trust_anchors=[ca[1]])


def test_subject_mismatch_is_rejected(ca):
    csr, chain = issue(ca)
    with pytest.raises(ChainRejected) as info:
        verify_chain(
            chain, csr_der=csr, policy=PolicySpec(subject="CN=other.example.test"), now=now(), trust_anchors=[ca[1]]
        )
    assert info.value.check == "subject"


def test_expired_and_not_yet_valid_are_rejected(ca):
    csr, chain = issue(ca)
    with pytest.raises(ChainRejected, match="expired"):
        verify_chain(chain, csr_der=csr, policy=POLICY, now=now() + dt.timedelta(days=400), trust_anchors=[ca[1]])
    with pytest.raises(ChainRejected, match="not valid until"):
        verify_chain(chain, csr_der=csr, policy=POLICY, now=now() - dt.timedelta(days=2), trust_anchors=[ca[1]])


def test_a_chain_out_of_order_is_merged_in_path_order_and_a_foreign_anchor_is_rejected(ca):
    csr, chain = issue(ca)
    shuffled = verify_chain(
        [chain[0], chain[2], chain[1]], csr_der=csr, policy=POLICY, now=now(), trust_anchors=[ca[1]]
    )
    assert shuffled.certificates == tuple(chain)
    other_root_key = make_key("EC-P256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other Root")])
    other_root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other_root_key.public_key())
        .serial_number(1)
        .not_valid_before(now() - dt.timedelta(days=1))
        .not_valid_after(now() + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(other_root_key, hashes.SHA256())
    )
    with pytest.raises(ChainRejected) as info:
        verify_chain(chain, csr_der=csr, policy=POLICY, now=now(), trust_anchors=[other_root])
    assert info.value.check == "path"


def test_without_an_anchor_nothing_is_trusted_and_a_missing_intermediate_breaks_the_path(ca):
    csr, chain = issue(ca)
    with pytest.raises(ChainRejected) as info:
        verify_chain(chain, csr_der=csr, policy=POLICY, now=now())
    assert info.value.check == "trust"
    with pytest.raises(ChainRejected) as info:
        verify_chain(chain[:1], csr_der=csr, policy=POLICY, now=now(), trust_anchors=[ca[1]])
    assert info.value.check == "path"
