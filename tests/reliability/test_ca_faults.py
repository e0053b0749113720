"""CA faults through tests/reliability/faultproxy.py in front of the real CA servers (cfssl, OpenBao,
pebble), run through the orchestrator: transient faults are retried (ledger ``retrying``, the queue
retries), permanent ones are recorded (``failed`` / ``rejected``), and nothing wrong is merged. After each
fault the proxy passes again and the same certificate renews exactly once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509

from renewal.config import parse_config
from renewal.errors import RenewalFailed
from renewal.service import RenewalService

from .conftest import make_config
from .faultproxy import FaultProxy

TRANSIENT, REJECTED, RENEWED, EITHER = "transient", "rejected", "renewed", "rejected-or-renewed-correctly"
# mode -> expected outcome of the first run
EXPECTED = {
    "reset": TRANSIENT,
    "hang": TRANSIENT,
    "5xx": TRANSIENT,
    "truncate": TRANSIENT,
    "slow": RENEWED,
    "wrong-order": EITHER,
    "other-csr": REJECTED,
}
SERVER_MODES = {
    "cfssl": ["reset", "hang", "5xx", "truncate", "slow", "wrong-order", "other-csr"],
    "openbao": ["reset", "hang", "5xx", "truncate", "slow", "wrong-order", "other-csr"],
    "pebble": ["reset", "hang", "slow"],  # TLS: TCP-level faults only (on the directory request)
}
OBSERVED: list[tuple[str, str, str, str]] = []


def service_for(flow: Any, section: dict[str, Any]) -> RenewalService:
    document = make_config(flow.kv, flow.ca_paths, None, issuers=[section], default_issuer=section["name"], routes=[])
    return RenewalService(
        parse_config(document),
        environ=flow.environ,
        storage=flow.storage,
        clock=lambda: dt.datetime.fromtimestamp(flow.kv.admin.now(), dt.UTC),
        keyvault_options={"sleep": lambda _s: None},
    )


def section_through_proxy(server: str, request: Any) -> tuple[dict[str, Any], FaultProxy]:
    if server == "cfssl":
        ca = request.getfixturevalue("cfssl_server")
        proxy = FaultProxy(ca.base_url)
        return ca.issuer_section("ca", url=proxy.url(), timeout_seconds=2), proxy
    if server == "openbao":
        ca = request.getfixturevalue("openbao")
        proxy = FaultProxy(ca.addr)
        return ca.issuer_section("ca", url=proxy.url(), timeout_seconds=2), proxy
    ca = request.getfixturevalue("pebble")
    proxy = FaultProxy(ca.directory_url)
    section = ca.issuer_section("ca", directory_url=proxy.url(ca.directory_url))
    section["timeout_seconds"] = 2
    return section, proxy


@pytest.mark.parametrize(
    ("server", "mode"), [(server, mode) for server, modes in SERVER_MODES.items() for mode in modes]
)
def test_ca_fault_maps_to_the_right_outcome_and_nothing_wrong_is_merged(flow, request, server, mode):
    section, proxy = section_through_proxy(server, request)
    try:
        service = service_for(flow, section)
        flow.seed("kv-alpha", "web", days_left=10)
        before = flow.current("web").properties.version
        if mode == "other-csr":
            # The CA first answers another certificate's request; that answer is what it repeats later.
            flow.seed("kv-alpha", "other", days_left=10)
            proxy.mode = "record"
            service.force_renewal("kv-alpha", "other")
            assert service.run_job(job_for(service, "other")).status == "renewed"
        merges_before = flow.kv.admin.counters()["merge"]
        proxy.mode = mode
        outcome = first_run(service, job_for(service, "web"))
        rows = service.ledger.history("kv-alpha", "web")
        expected = EXPECTED[mode]
        if outcome == "renewed":
            assert expected in (RENEWED, EITHER), (mode, rows)
            assert_merged_chain_is_right(flow, "web")
        else:
            assert flow.versions("web") == [before]  # the live version is untouched
            assert flow.kv.admin.counters()["merge"] == merges_before  # nothing merged
            if outcome == TRANSIENT:
                assert expected == TRANSIENT, (mode, rows)
                assert rows[0].state == "retrying"
            else:
                assert expected in (REJECTED, EITHER), (mode, outcome, rows)
                assert rows[0].state in ("rejected", "failed") and rows[0].error
        OBSERVED.append((server, mode, outcome, rows[0].state if rows else "-"))

        proxy.mode = "pass"  # the fault is fixed: the same certificate renews exactly once
        if outcome != "renewed":
            service.reset_issuers()
            assert service.run_job(job_for(service, "web")).status == "renewed"
        versions = flow.versions("web")
        assert len(versions) == 2 and before in versions
        assert_merged_chain_is_right(flow, "web")
        print(f"{server} {mode}: {outcome} (ledger {OBSERVED[-1][3]})")
    finally:
        proxy.close()


def job_for(service: RenewalService, name: str) -> Any:
    from renewal.model import RenewalJob

    return RenewalJob(vault="kv-alpha", name=name, reason="operator", force=True)


def first_run(service: RenewalService, job: Any) -> str:
    try:
        outcome = service.run_job(job)
    except RenewalFailed as exc:
        return REJECTED if exc.permanent else TRANSIENT
    assert outcome.status == "renewed", outcome
    return RENEWED


def assert_merged_chain_is_right(flow: Any, name: str) -> None:
    """The live leaf carries the policy's names and is valid now; Key Vault checked its key at merge."""
    leaf = x509.load_der_x509_certificate(bytes(flow.current(name).cer))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [f"{name}.example.test"]
    now = dt.datetime.fromtimestamp(flow.kv.admin.now(), dt.UTC)
    assert leaf.not_valid_before_utc <= now + dt.timedelta(minutes=5) < leaf.not_valid_after_utc
    try:
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        pass
