"""Failover between configured issuers, wired by ``build_issuers`` from real sections."""

from __future__ import annotations

import datetime as dt

import pytest

from ca_clients import ClientContext, IssuancePending, IssuedChain, PermanentCAError, TransientCAError
from ca_clients.failover import FailoverClient, build_issuers
from ca_clients.local import create_ca_files
from ca_clients.registry import IssuerConfigError
from tests.ca_support import DictSecretResolver, make_csr, sign_request
from tests.servers import free_port


@pytest.fixture(scope="module")
def local_section(tmp_path_factory):
    paths = create_ca_files(tmp_path_factory.mktemp("failover-local"))

    def section(name: str, **extra) -> dict:
        return {
            "name": name,
            "type": "local",
            "ca_certificate": str(paths["ca_certificate"]),
            "ca_key": {"file": str(paths["ca_key"])},
            "chain": str(paths["chain"]),
        } | extra

    return section


def _ctx() -> ClientContext:
    return ClientContext(secrets=DictSecretResolver())


def _down(name: str, **extra) -> dict:
    """An EST issuer whose server is not listening."""
    return {"name": name, "type": "est", "url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 2} | extra


def test_transient_moves_to_the_fallback(local_section):
    issuers = build_issuers([_down("primary", fallbacks=["backup"]), local_section("backup")], _ctx())
    csr, _ = make_csr("app.example.test")
    chain = issuers["primary"].sign(sign_request(csr))
    assert chain.issuer_name == "backup"
    assert isinstance(issuers["primary"], FailoverClient)
    assert not isinstance(issuers["backup"], FailoverClient)


def test_permanent_does_not_fail_over(est_server, local_section):
    primary = est_server.issuer_section("primary", mode="error", error_status=400, error_text="CSR refused") | {
        "fallbacks": ["backup"]
    }
    issuers = build_issuers([primary, local_section("backup")], _ctx())
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError, match="CSR refused"):
        issuers["primary"].sign(sign_request(csr))


def test_every_issuer_down_is_transient_naming_each(est_server):
    failing = est_server.issuer_section("c", mode="error", error_status=503, error_text="maintenance")
    sections = [_down("a", fallbacks=["b"]), _down("b", fallbacks=["c"]), failing]
    issuers = build_issuers(sections, _ctx())
    csr, _ = make_csr("app.example.test")
    with pytest.raises(TransientCAError) as err:
        issuers["a"].sign(sign_request(csr))
    for name in ("a:", "b:", "c:", "maintenance"):
        assert name in err.value.message


def test_pending_ticket_resumes_at_the_same_issuer(est_server, adcs_server):
    # The primary is down, the AD CS fallback holds the request pending approval.
    adcs = adcs_server.issuer_section("adcs-backup", template="PendingApproval")
    est = est_server.issuer_section("est-last")
    issuers = build_issuers([_down("primary", fallbacks=["adcs-backup", "est-last"]), adcs, est], _ctx())
    csr, _ = make_csr("pending.app.example.test")
    with pytest.raises(IssuancePending) as pending:
        issuers["primary"].sign(sign_request(csr))
    ticket = pending.value.ticket
    assert ticket["issuer"] == "adcs-backup"
    assert "req_id" in ticket["ticket"]
    posts_before = sum(1 for m, p, _ in adcs_server.log if m == "POST")
    # Still pending: the resume polls AD CS and does not submit to EST.
    with pytest.raises(IssuancePending) as again:
        issuers["primary"].sign(sign_request(csr, ticket=ticket))
    assert again.value.ticket == ticket
    adcs_server.approve(ticket["ticket"]["req_id"])
    chain = issuers["primary"].sign(sign_request(csr, ticket=ticket))
    assert chain.issuer_name == "adcs-backup"
    assert sum(1 for m, p, _ in adcs_server.log if m == "POST") == posts_before
    assert est_server.requests_for(est["label"]) == []


def test_resume_at_an_unreachable_owner_stays_there(local_section):
    issuers = build_issuers([_down("primary", fallbacks=["backup"]), local_section("backup")], _ctx())
    csr, _ = make_csr("app.example.test")
    with pytest.raises(TransientCAError):
        issuers["primary"].sign(sign_request(csr, ticket={"issuer": "primary", "ticket": {"attempts": 1}}))
    with pytest.raises(PermanentCAError, match="no longer"):
        issuers["primary"].sign(sign_request(csr, ticket={"issuer": "gone", "ticket": {}}))


def test_pending_from_the_primary_is_tagged(est_server):
    section = est_server.issuer_section("est", mode="pending", pending_times=1, retry_after="5") | {
        "fallbacks": ["other"]
    }
    issuers = build_issuers([section, _down("other")], _ctx())
    csr, _ = make_csr("app.example.test")
    with pytest.raises(IssuancePending) as pending:
        issuers["est"].sign(sign_request(csr))
    assert pending.value.ticket["issuer"] == "est"
    assert pending.value.retry_after == dt.timedelta(seconds=5)
    assert issuers["est"].sign(sign_request(csr, ticket=pending.value.ticket)).issuer_name == "est"


def test_transitive_order_each_issuer_once(local_section):
    sections = [
        _down("a", fallbacks=["b", "c"]),
        _down("b", fallbacks=["c"]),
        _down("c", fallbacks=["d"]),
        local_section("d"),
    ]
    issuers = build_issuers(sections, _ctx())
    assert [m.name for m in issuers["a"].members] == ["a", "b", "c", "d"]
    csr, _ = make_csr("app.example.test")
    assert issuers["a"].sign(sign_request(csr)).issuer_name == "d"


def test_unknown_fallback_names_the_field(local_section):
    with pytest.raises(IssuerConfigError) as err:
        build_issuers([local_section("a"), local_section("b", fallbacks=["a", "nope"])], _ctx())
    assert [p.field for p in err.value.problems] == ["issuers[1].fallbacks[1]"]
    assert "nope" in str(err.value)


def test_cycles_are_refused(local_section):
    sections = [
        local_section("a", fallbacks=["b"]),
        local_section("b", fallbacks=["c"]),
        local_section("c", fallbacks=["a"]),
    ]
    with pytest.raises(IssuerConfigError, match="cycle") as err:
        build_issuers(sections, _ctx())
    assert err.value.problems[0].field == "issuers[2].fallbacks[0]"
    with pytest.raises(IssuerConfigError, match="itself"):
        build_issuers([local_section("a", fallbacks=["a"])], _ctx())


def test_all_problems_reported_together(local_section):
    sections = [
        local_section("a", fallbacks=["zzz"]),
        {"name": "a", "type": "est"},
        {"name": "c", "type": "nope"},
    ]
    with pytest.raises(IssuerConfigError) as err:
        build_issuers(sections, _ctx())
    fields = {p.field for p in err.value.problems}
    assert {"issuers[0].fallbacks[0]", "issuers[1].name", "issuers[1].url", "issuers[2].type"} <= fields


class _Member:
    """A CA client that records what it was asked; ``down`` makes it answer TransientCAError."""

    def __init__(self, name: str, *, down: bool = False, window: object = None) -> None:
        self.name, self.down, self.window = name, down, window
        self.replaces: list[str | None] = []

    def sign(self, request):
        from tests.hostile_chains import hierarchy

        self.replaces.append(request.replaces)
        if self.down:
            raise TransientCAError("503", issuer=self.name)
        return IssuedChain(tuple(hierarchy("Member").honest(request.csr)), issuer_name=self.name)

    def offers_renewal_info(self) -> bool:
        return self.window is not None

    def renewal_info(self, certificate):
        return self.window


def test_only_the_primary_is_told_of_the_certificate_a_request_replaces():
    """The certificate being replaced is the primary CA's: a fallback CA does not know it (RFC 9773 §5)."""
    primary, backup = _Member("primary", down=True, window="primary's window"), _Member("backup")
    client = FailoverClient(primary, [backup])
    csr, _ = make_csr("app.example.test")
    assert client.sign(sign_request(csr, replaces="aYhb.AIdl")).issuer_name == "backup"
    assert (primary.replaces, backup.replaces) == (["aYhb.AIdl"], [None])
    # Renewal information is the primary's too (the CA the certificate is routed to).
    assert client.offers_renewal_info() and client.renewal_info("aYhb.AIdl") == "primary's window"
    assert not FailoverClient(backup, [primary]).offers_renewal_info()
