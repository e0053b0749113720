"""The ACME client's RFC 9773 (ARI) parts against real pebble behind our ARI proxy (tests/servers/ari_proxy.py:
Debian's pebble 2.4 has no renewalInfo, so the proxy serves it, sees the new orders' ``replaces`` and can
refuse them the way the RFC says a CA does)."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import uuid
from typing import Any

import pytest

from ca_clients import ClientContext, RenewalInfoProvider
from ca_clients.ari import ari_cert_id
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request


def unique() -> str:
    return f"ari-{uuid.uuid4().hex[:8]}.example.test"


def build(section: dict[str, Any]) -> Any:
    return build_client(section, ClientContext(secrets=DictSecretResolver(), timeout_seconds=10))


def issue(client: Any, **kw: Any) -> Any:
    name = unique()
    return client.sign(sign_request(make_csr(name)[0], **kw)).leaf


def test_the_window_of_a_certificate_the_ca_issued(pebble_ari) -> None:
    client = build(pebble_ari.issuer_section("ari-window"))
    assert isinstance(client, RenewalInfoProvider) and client.offers_renewal_info()
    leaf = issue(client)
    cert_id = ari_cert_id(leaf)
    pebble_ari.explanation_url = "https://ca.example.test/ari"

    info = client.renewal_info(leaf)
    assert info is not None and info.cert_id == cert_id
    assert (info.start, info.end) == pebble_ari.window_of(cert_id)
    assert info.retry_after == dt.timedelta(hours=6) and info.explanation_url == "https://ca.example.test/ari"
    assert pebble_ari.renewal_info_requests == [cert_id]

    # By identifier alone (what the sweep keeps), a moved window, and Retry-After absent or as a date.
    pebble_ari.set_window(cert_id, dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 2, tzinfo=dt.UTC))
    pebble_ari.retry_after = None
    moved = client.renewal_info(cert_id)
    assert moved is not None and moved.end == dt.datetime(2020, 1, 2, tzinfo=dt.UTC) and moved.retry_after is None
    in_two_hours = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    pebble_ari.retry_after = email.utils.format_datetime(in_two_hours, usegmt=True)
    dated = client.renewal_info(cert_id)
    assert dated is not None and dated.retry_after is not None
    assert abs(dated.retry_after - dt.timedelta(hours=2)) < dt.timedelta(minutes=1)

    assert client.renewal_info("AAAA.AQ") is None  # a certificate the CA does not know: 404


def test_a_new_order_names_the_certificate_it_replaces(pebble_ari) -> None:
    client = build(pebble_ari.issuer_section("ari-replaces"))
    old = issue(client)
    new = issue(client, replaces=ari_cert_id(old))
    assert pebble_ari.replaces_sent() == [None, ari_cert_id(old)]
    assert new.serial_number != old.serial_number


@pytest.mark.parametrize("refusal", ["alreadyReplaced", "malformed"])
def test_a_refused_replaces_is_ordered_again_without_it(pebble_ari, refusal, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ca_clients.acme")
    client = build(pebble_ari.issuer_section(f"ari-{refusal.lower()}"))
    old = issue(client)
    pebble_ari.refuse_replaces = refusal

    new = issue(client, replaces=ari_cert_id(old))

    assert new is not None and pebble_ari.replaces_sent() == [None, ari_cert_id(old), None]
    refused = [r for r in caplog.records if getattr(r, "event", "") == "acme.order.replaces_refused"]
    assert len(refused) == 1 and refused[0].reason == refusal


def test_no_replaces_and_no_window_when_ari_is_turned_off(pebble_ari) -> None:
    client = build(pebble_ari.issuer_section("ari-off", renewal_info=False))
    old = issue(client)
    issue(client, replaces=ari_cert_id(old))
    assert not client.offers_renewal_info() and client.renewal_info(old) is None
    assert pebble_ari.replaces_sent() == [None, None] and pebble_ari.renewal_info_requests == []


def test_a_ca_without_renewal_info_gets_no_replaces(pebble) -> None:
    """Plain pebble (no renewalInfo in its directory): RFC 9773 §5 says not to send ``replaces`` at all."""
    client = build(pebble.issuer_section("plain-pebble"))
    old = issue(client)
    assert not client.offers_renewal_info() and client.renewal_info(old) is None
    assert issue(client, replaces=ari_cert_id(old)) is not None
