"""Every chain a hostile CA could answer with is refused with the rule it breaks; the honest chain and the
leaves private CAs really issue (client-auth, e-mail SANs) pass when the policy asks for them."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from renewal.errors import ChainRejected
from renewal.flow.verification import verify_chain
from renewal.model import PolicySpec, SubjectAlternativeNames
from tests.ca_support import make_csr
from tests.hostile_chains import HOSTILE, NOW, hierarchy, leaf

POLICY = PolicySpec(
    subject="CN=app.example.test",
    sans=SubjectAlternativeNames(dns_names=("app.example.test", "api.example.test")),
    validity_months=12,
)


@pytest.fixture(scope="module")
def pki():
    return hierarchy()


@pytest.fixture(scope="module")
def request_():
    csr_der, _key = make_csr("app.example.test", dns=["app.example.test", "api.example.test"])
    return csr_der, x509.load_der_x509_csr(csr_der)


def test_the_honest_chain_passes(pki, request_):
    csr_der, csr = request_
    chain = pki.honest(csr)
    verified = verify_chain(chain, csr_der=csr_der, policy=POLICY, now=NOW, trust_anchors=[pki.root.cert])
    assert verified.certificates == tuple(chain)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_chain_is_refused_naming_its_rule(pki, request_, case):
    csr_der, csr = request_
    check, make = HOSTILE[case]
    with pytest.raises(ChainRejected) as refused:
        verify_chain(make(pki, csr), csr_der=csr_der, policy=POLICY, now=NOW, trust_anchors=[pki.root.cert])
    assert refused.value.check == check, refused.value


def test_a_chain_is_checked_against_the_anchors_it_is_given_only(pki, request_):
    csr_der, csr = request_
    elsewhere = hierarchy("Another Issuer")
    with pytest.raises(ChainRejected) as refused:
        verify_chain(pki.honest(csr), csr_der=csr_der, policy=POLICY, now=NOW, trust_anchors=[elsewhere.root.cert])
    assert refused.value.check == "path"


def test_a_client_auth_leaf_with_mail_sans_passes_when_the_policy_asks_for_exactly_that(pki):
    csr_der, _ = make_csr("device-17", dns=[], emails=["device-17@corp.test"])
    csr = x509.load_der_x509_csr(csr_der)
    policy = PolicySpec(
        subject="CN=device-17",
        sans=SubjectAlternativeNames(emails=("device-17@corp.test",)),
        ekus=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,),
        validity_months=12,
    )
    chain = [leaf(csr, pki.issuing, eku=[ExtendedKeyUsageOID.CLIENT_AUTH]), pki.issuing.cert]
    verify_chain(chain, csr_der=csr_der, policy=policy, now=NOW, trust_anchors=[pki.root.cert])
    server = [leaf(csr, pki.issuing, eku=[ExtendedKeyUsageOID.SERVER_AUTH]), pki.issuing.cert]
    with pytest.raises(ChainRejected) as refused:
        verify_chain(server, csr_der=csr_der, policy=policy, now=NOW, trust_anchors=[pki.root.cert])
    assert refused.value.check == "extended-key-usage"


def test_a_server_only_leaf_passes_under_the_default_server_and_client_policy(pki, request_):
    """Public CAs stopped putting clientAuth in TLS leaves; Key Vault's default policy lists both."""
    csr_der, csr = request_
    policy = PolicySpec(subject=POLICY.subject, sans=POLICY.sans)
    verify_chain(pki.honest(csr), csr_der=csr_der, policy=policy, now=NOW, trust_anchors=[pki.root.cert])


def test_usages_a_key_type_cannot_exercise_are_not_held_against_it(pki):
    """Vault/OpenBao roles put keyAgreement in every leaf by default; an RSA key cannot agree keys."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    csr_der, _ = make_csr("app.example.test", key=rsa.generate_private_key(65537, 2048), dns=["app.example.test"])
    csr = x509.load_der_x509_csr(csr_der)
    policy = PolicySpec(
        subject="CN=app.example.test",
        sans=SubjectAlternativeNames(dns_names=("app.example.test",)),
        key_usage=("digitalSignature", "keyEncipherment"),
        validity_months=12,
    )
    agreeing = x509.KeyUsage(True, False, True, False, True, False, False, False, False)
    chain = [leaf(csr, pki.issuing, usage=agreeing), pki.issuing.cert]
    verify_chain(chain, csr_der=csr_der, policy=policy, now=NOW, trust_anchors=[pki.root.cert])
    signing_data = x509.KeyUsage(True, False, True, True, False, False, False, False, False)  # dataEncipherment
    with pytest.raises(ChainRejected) as refused:
        verify_chain(
            [leaf(csr, pki.issuing, usage=signing_data), pki.issuing.cert],
            csr_der=csr_der,
            policy=policy,
            now=NOW,
            trust_anchors=[pki.root.cert],
        )
    assert refused.value.check == "key-usage"
