"""ARI (RFC 9773) end to end: the Key Vault emulator, Azurite (the renewalwindows table, the jobs queue), the
renewal worker, and real pebble behind our ARI proxy (tests/servers/ari_proxy.py: Debian's pebble 2.4 has
no renewalInfo, the proxy serves it as the RFC says and sees every new order's ``replaces``).

One certificate's life: renewed by its policy first (the emulator's certificate is unknown to the CA: no
``replaces``); then the CA's window decides ("ARI window", kept until Retry-After: later sweeps neither read
the certificate nor ask the CA); the CA moves the window to "now" (a revocation) and the first sweep after
Retry-After renews it, the new order naming the certificate it replaces; a CA that answers
``alreadyReplaced`` gets the order again without it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509

import function_app
from ca_clients.ari import ari_cert_id
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.model import AttemptState
from renewal.service import RenewalService

from .conftest import Flow, make_config


@pytest.fixture
def ari_flow(flow: Flow, hook: Any, pebble_ari: Any) -> Any:
    document = make_config(flow.kv, flow.ca_paths, hook.url, default_issuer="public-acme")
    document["issuers"].append(pebble_ari.issuer_section("public-acme"))
    flow.service = RenewalService(
        parse_config(document),
        environ=flow.environ,
        storage=flow.storage,
        clock=flow.service.clock,
        keyvault_options={"sleep": lambda _s: None},
    )
    function_app._service = flow.service
    try:
        yield flow
    finally:
        function_app._service = None


def now(flow: Flow) -> dt.datetime:
    return flow.service.clock()


def sweep(flow: Flow) -> Any:
    return flow.service.sweep(collect_all=True)


def decision(report: Any, name: str = "web") -> Any:
    (entry,) = [e for e in [*report.due, *report.later] if e.name == name]
    return entry.decision


def work(flow: Flow) -> None:
    stats = QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(timeout=90)
    assert stats.poisoned == 0


def leaf(flow: Flow) -> x509.Certificate:
    return x509.load_der_x509_certificate(flow.current("web").cer)


def test_the_cas_window_decides_and_a_revoked_certificate_is_renewed_at_the_next_sweep(ari_flow, pebble_ari):
    flow = ari_flow
    flow.seed("kv-alpha", "web", days_left=5)
    report = sweep(flow)
    assert decision(report).due and decision(report).trigger == "policy"
    assert report.ari_reads == 1  # read once to name it; the CA does not know the emulator's certificate
    work(flow)
    first = leaf(flow)
    assert first.issuer != first.subject and pebble_ari.replaces_sent() == [None]
    first_id = ari_cert_id(first)

    # The CA's certificate: its window (mid-life) comes before the policy's 30 days before expiry.
    report = sweep(flow)
    ari = decision(report)
    assert ari.trigger == "ari" and not ari.due and ari.reason.startswith("ARI window ")
    start, end = pebble_ari.window_of(first_id)
    assert start <= ari.renew_at <= end
    assert (report.ari_reads, report.ari_checks) == (1, 1) and pebble_ari.renewal_info_requests == [first_id]
    kept = flow.service.renewal_windows.get("kv-alpha", "web")
    assert kept is not None and kept.cert_id == first_id and kept.recheck_at - kept.checked_at == dt.timedelta(hours=6)

    # A mass revocation: the CA moves the window to the past. Until Retry-After passes the kept window stands
    # (no read, no question); the first sweep after it asks, finds the certificate due and renews it.
    pebble_ari.set_window(first_id, now(flow) - dt.timedelta(hours=2), now(flow) - dt.timedelta(hours=1))
    report = sweep(flow)
    assert not decision(report).due and (report.ari_reads, report.ari_checks) == (0, 0)
    flow.kv.admin.advance_clock(seconds=7 * 3600)
    report = sweep(flow)
    revoked = decision(report)
    assert revoked.due and revoked.trigger == "ari" and "renew now" in revoked.reason
    assert (report.ari_reads, report.ari_checks) == (0, 1)  # named by the kept identifier
    work(flow)
    second = leaf(flow)
    assert second.serial_number != first.serial_number
    assert pebble_ari.replaces_sent() == [None, first_id]

    # The CA refuses the replaces this time (alreadyReplaced, 409): the order goes again without it.
    pebble_ari.refuse_replaces = "alreadyReplaced"
    second_id = ari_cert_id(second)
    pebble_ari.set_window(second_id, now(flow) - dt.timedelta(hours=2), now(flow) - dt.timedelta(hours=1))
    report = sweep(flow)
    assert decision(report).due and decision(report).trigger == "ari"
    work(flow)
    third = leaf(flow)
    assert third.serial_number != second.serial_number
    assert pebble_ari.replaces_sent() == [None, first_id, second_id, None]
    rows = flow.service.ledger.history("kv-alpha", "web")
    assert [r.state for r in rows] == [AttemptState.NOTIFIED] * 3  # three renewals, one version each
    assert len(flow.versions("web")) == 4


def test_a_ca_that_fails_its_renewal_info_leaves_the_sweep_to_the_policy(ari_flow, pebble_ari):
    flow = ari_flow
    flow.seed("kv-alpha", "web", days_left=5)
    work_report = sweep(flow)
    assert decision(work_report).due
    work(flow)
    pebble_ari.set_window(ari_cert_id(leaf(flow)), now(flow) - dt.timedelta(hours=2), now(flow))
    pebble_ari.renewal_info_status = 503
    report = sweep(flow)
    assert report.errors == [] and (report.ari_reads, report.ari_checks, report.ari_failures) == (1, 1, 1)
    assert not decision(report).due and decision(report).trigger == "policy-tag"  # the mirrored trigger tag
    kept = flow.service.renewal_windows.get("kv-alpha", "web")  # the first version's, not this one's:
    assert kept is not None and kept.thumbprint != flow.current("web").properties.x509_thumbprint.hex()
