"""Renewal through a real step-ca, end to end: the Key Vault emulator's near-expiry certificate, the job
through renewal_worker, step-ca's answer verified against its root, merged, and the notice sent. Once with
the native JWK provisioner, once with step-ca's ACME provisioner (dns-01 through challtestsrv)."""

from __future__ import annotations

import pytest
from cryptography import x509

import function_app
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.model import AttemptState
from renewal.service import RenewalService

from .conftest import make_config


@pytest.mark.parametrize("provisioner", ["jwk", "acme"])
def test_a_certificate_renews_through_step_ca(flow, hook, stepca, provisioner):
    section = stepca.jwk_section("step") if provisioner == "jwk" else stepca.acme_section("step")
    document = make_config(flow.kv, flow.ca_paths, hook.url, default_issuer="step")
    document["issuers"].append(section)
    flow.service = RenewalService(
        parse_config(document),
        environ=flow.environ,
        storage=flow.storage,
        clock=flow.service.clock,
        keyvault_options={"sleep": lambda _s: None},
    )
    function_app._service = flow.service
    try:
        flow.seed("kv-alpha", "web", days_left=5)
        old = flow.current("web").properties.version
        flow.service.handle_event(flow.event("kv-alpha", "web", old))
        stats = QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(timeout=90)
        assert stats.processed == 1 and stats.poisoned == 0
        new = flow.current("web")
        assert new.properties.version != old
        leaf = x509.load_der_x509_certificate(new.cer)
        assert leaf.issuer.rfc4514_string() == "CN=Renewal step-ca Issuing CA"
        (row,) = flow.service.ledger.history("kv-alpha", "web")
        assert row.state is AttemptState.NOTIFIED and row.issuer == "step"
    finally:
        function_app._service = None
