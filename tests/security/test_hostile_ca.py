"""A hostile CA, end to end: a real HTTPS server speaking CFSSL answers the service's CSR with a chain the
test chose; the job runs through ``renewal_worker`` against the Key Vault emulator and Azurite. Every
hostile chain is refused with its reason in the ledger and the log, and the old version stays current;
the honest chain is merged even with ``REQUESTS_CA_BUNDLE`` pointing at another CA (requests lets that
variable override a Session's own bundle)."""

from __future__ import annotations

import logging

import pytest

import function_app
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.model import AttemptState
from renewal.service import RenewalService
from tests.flow.conftest import make_config
from tests.hostile_chains import HOSTILE, hierarchy

from .hostile_cfssl import hostile_cfssl

# The CA client itself stops these before verification (a leaf without a requested SAN is the CA refusing;
# a bundle without the issuing CA is a CFSSL answer worth a retry); never merged either way.
CHECKED_BY_THE_CLIENT = {"missing-san": AttemptState.FAILED, "missing-intermediate": AttemptState.RETRYING}


@pytest.fixture(scope="module")
def pki():
    return hierarchy("Hostile CFSSL")


@pytest.fixture
def hostile(flow, pki, tmp_path):
    with hostile_cfssl(tmp_path, pki) as ca:
        other = hierarchy("Another Configured Issuer")
        document = make_config(flow.kv, flow.ca_paths, None)
        document["issuers"] += [
            ca.section("hostile"),
            {**ca.section("other-issuer"), "trust_anchors": [other.root.cert.public_bytes(_pem()).decode()]},
        ]
        document["routes"] = [{"issuer": "hostile", "match": "*"}, *document.get("routes", [])]
        flow.service = RenewalService(
            parse_config(document),
            environ=flow.environ,
            storage=flow.storage,
            clock=flow.service.clock,
            keyvault_options={"sleep": lambda _s: None},
        )
        function_app._service = flow.service
        ca.other = other  # type: ignore[attr-defined]
        yield ca
        function_app._service = None


def _pem():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def renew(flow) -> None:
    flow.service.force_renewal("kv-alpha", "web")
    QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker, max_dequeue_count=1).run_until_idle(
        timeout=60
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_chain_is_refused_and_the_live_version_stays(flow, hostile, case, caplog):
    caplog.set_level(logging.INFO, logger="renewal")
    check, answer = HOSTILE[case]
    flow.seed("kv-alpha", "web", days_left=5)
    before = flow.current("web").properties.version
    hostile.answer = answer
    renew(flow)
    assert hostile.signed >= 1, "the CA was asked"
    assert flow.current("web").properties.version == before
    assert flow.kv.admin.counters().get("merge", 0) == 0
    (row,) = flow.service.ledger.history("kv-alpha", "web")
    if case in CHECKED_BY_THE_CLIENT:
        assert row.state is CHECKED_BY_THE_CLIENT[case] and row.error, row
        return
    assert row.state is AttemptState.REJECTED, row
    assert f"{check}:" in (row.error or ""), row.error
    failed = [r.getMessage() for r in caplog.records if "renewal.failed" in r.getMessage()]
    assert any(f'"check": "{check}"' in m for m in failed), failed


def test_a_chain_that_leads_to_another_configured_issuers_anchor_is_refused(flow, hostile):
    flow.seed("kv-alpha", "web", days_left=5)
    before = flow.current("web").properties.version
    hostile.answer = lambda _h, csr: hostile.other.honest(csr)
    renew(flow)
    assert flow.current("web").properties.version == before
    (row,) = flow.service.ledger.history("kv-alpha", "web")
    assert row.state is AttemptState.REJECTED and "path:" in (row.error or "")


def test_the_honest_chain_is_merged_whatever_requests_ca_bundle_says(flow, hostile, monkeypatch, tmp_path):
    from emulator.crypto import make_tls_material

    elsewhere, _cert, _key = make_tls_material(tmp_path / "elsewhere")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(elsewhere))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(elsewhere))
    flow.seed("kv-alpha", "web", days_left=5)
    before = flow.current("web").properties.version
    renew(flow)
    after = flow.current("web").properties.version
    assert after != before
    (row,) = flow.service.ledger.history("kv-alpha", "web")
    assert row.state is AttemptState.NOTIFIED and row.new_version == after
