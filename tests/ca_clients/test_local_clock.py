"""The local CA keeps the host's clock (``context.extra["now"]``, as EST does): a simulation that moves the
clock gets leaves dated in its own time, for the policy's validity."""

from __future__ import annotations

import datetime as dt

from ca_clients import ClientContext
from ca_clients.local import create_ca_files
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request


def _section(tmp_path) -> dict:
    paths = create_ca_files(tmp_path / "ca")
    return {
        "name": "corp-local",
        "type": "local",
        "ca_certificate": str(paths["ca_certificate"]),
        "ca_key": {"file": str(paths["ca_key"])},
        "chain": str(paths["chain"]),
    }


def test_the_leaf_is_dated_by_the_clock_it_is_given(tmp_path):
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=200)
    client = build_client(_section(tmp_path), ClientContext(secrets=DictSecretResolver(), extra={"now": lambda: later}))
    csr, _ = make_csr("app.example.test")
    leaf = client.sign(sign_request(csr, validity=dt.timedelta(days=47))).leaf
    assert leaf.not_valid_before_utc == later - dt.timedelta(minutes=5)
    assert leaf.not_valid_after_utc == later + dt.timedelta(days=47)


def test_without_a_clock_it_keeps_real_time(tmp_path):
    client = build_client(_section(tmp_path), ClientContext(secrets=DictSecretResolver()))
    csr, _ = make_csr("app.example.test")
    before = dt.datetime.now(dt.UTC)
    leaf = client.sign(sign_request(csr, validity=dt.timedelta(days=100))).leaf
    assert before - dt.timedelta(minutes=6) <= leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=100, minutes=5)
