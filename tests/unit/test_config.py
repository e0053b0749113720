import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from renewal.config import load_config, parse_config
from renewal.errors import ConfigError, NoRoute
from renewal.flow.routing import route_issuer
from tests.hostile_chains import authority, hierarchy

ROOT_PEM = authority("Config Test Root").cert.public_bytes(Encoding.PEM).decode()
LOCAL = {
    "name": "corp",
    "type": "local",
    "ca_certificate": "/x.pem",
    "ca_key": {"file": "/x.key"},
    "trust_anchors": [ROOT_PEM],
}


def doc(**overrides):
    base = {
        "vaults": [{"name": "kv-alpha", "url": "https://kv-alpha.vault.azure.net"}],
        "issuers": [LOCAL],
        "default_issuer": "corp",
    }
    base.update(overrides)
    return base


def test_valid_document():
    config = parse_config(json.dumps(doc()))
    assert config.vault("kv-alpha").url == "https://kv-alpha.vault.azure.net"


def test_every_problem_is_listed_with_its_field():
    bad = doc(
        vaults=[
            {"name": "kv_bad", "url": "http://x"},
            {"name": "kv-alpha", "url": "https://a.vault.azure.net"},
            {"name": "kv-alpha", "url": "https://b.vault.azure.net"},
        ],
        issuers=[LOCAL, {"name": "x", "type": "nope"}, {"name": "corp2", "type": "local", "ca_key": "literal-key"}],
        routes=[{"issuer": "missing", "match": "web-*"}],
        deployers=[{"type": "webhook", "name": "h", "url": "https://h.example", "signing_key": "plain"}],
        default_issuer="ghost",
    )
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    text = "\n".join(info.value.problems)
    for expected in (
        "vaults[0].name",
        "vaults[0].url",
        "vault name 'kv-alpha' appears more than once",
        "issuers[1].type",
        "issuers[2].ca_key",
        "issuers[2].ca_certificate",
        "routes[0].issuer",
        "default_issuer",
        "deployers[0]",
    ):
        assert expected in text, expected
    assert "literal-key" not in text, "a secret-looking literal must not be echoed"


def test_configuration_vault_must_not_be_a_certificate_vault():
    with pytest.raises(ConfigError, match="configuration vault must not also be a certificate vault"):
        parse_config(doc(configuration_vault="https://kv-alpha.vault.azure.net"))


def test_bad_json_and_missing_settings():
    with pytest.raises(ConfigError, match="RENEWAL_CONFIG: not valid JSON"):
        load_config({"RENEWAL_CONFIG": "{nope"})
    with pytest.raises(ConfigError, match="neither is set"):
        load_config({})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"RENEWAL_CONFIG_PATH": "/does/not/exist.json"})


def test_routing_order():
    config = parse_config(
        doc(
            issuers=[LOCAL, {**LOCAL, "name": "acme"}, {**LOCAL, "name": "vaultpki"}],
            routes=[{"issuer": "acme", "match": "web-*"}, {"issuer": "vaultpki", "vault": "kv-alpha", "match": "db-*"}],
        )
    )
    assert route_issuer(config, "kv-alpha", "web-1", {}) == "acme"
    assert route_issuer(config, "kv-alpha", "db-1", {}) == "vaultpki"
    assert route_issuer(config, "kv-alpha", "other", {}) == "corp"
    assert route_issuer(config, "kv-alpha", "web-1", {"renewal-issuer": "vaultpki"}) == "vaultpki"
    with pytest.raises(NoRoute) as info:
        route_issuer(config, "kv-alpha", "web-1", {"renewal-issuer": "ghost"})
    assert info.value.field == "tags.renewal-issuer"


@pytest.mark.parametrize(
    ("anchors", "complaint"),
    [
        (None, "trust_anchors: required"),
        ([], "trust_anchors: required"),
        ("/etc/ssl/corp-root.pem", "must be a list"),  # a string is not a list of one-character paths
        (["/nonexistent/root.pem"], "trust_anchors[0]: cannot read"),
        (["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"], "trust_anchors[0]: not PEM"),
        ([42], "trust_anchors[0]: must be PEM text"),
        ("leaf", "trust_anchors[0]: 'CN=app.example.test' is not a CA certificate"),
    ],
)
def test_trust_anchors_are_required_and_checked_at_load(anchors, complaint):
    if anchors == "leaf":
        pki = hierarchy()
        from cryptography import x509

        from tests.ca_support import make_csr

        csr_der, _ = make_csr("app.example.test")
        anchors = [pki.honest(x509.load_der_x509_csr(csr_der))[0].public_bytes(Encoding.PEM).decode()]
    section = {k: v for k, v in LOCAL.items() if k != "trust_anchors"}
    if anchors is not None:
        section["trust_anchors"] = anchors
    with pytest.raises(ConfigError) as info:
        parse_config(doc(issuers=[section]))
    assert any(complaint in p for p in info.value.problems), info.value.problems
    assert all(p.startswith("issuers[0].trust_anchors") for p in info.value.problems), info.value.problems


def test_the_system_store_is_an_explicit_choice_for_a_public_ca():
    config = parse_config(doc(issuers=[{**LOCAL, "trust_anchors": "system"}]))
    assert config.issuers[0]["trust_anchors"] == "system"
