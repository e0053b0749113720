"""Web hook and Event Grid targets: the URL is judged as the connection parses it, resolved once, and
reached at the address that was checked, with TLS verified for the name against the configured bundle
(whatever ``REQUESTS_CA_BUNDLE`` says). Every input below once reached a target it must not."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from emulator.crypto import make_tls_material
from renewal.azure.outbound import check_target, post
from renewal.config import parse_config
from renewal.errors import ConfigError, DeliveryRefused


class Listener:
    def __init__(self, host: str = "127.0.0.1", tls: tuple[str, str] | None = None) -> None:
        self.hits: list[dict[str, str]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                listener.hits.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        # urlparse says the host is example.com; urllib3 (what requests connects with) says 127.0.0.1
        ("http://127.0.0.1:{port}\\@example.com/", False),
        ("http://169.254.169.254:80\\@example.com/", True),
        ("http://[::ffff:168.63.129.16]/", True),  # the wire server, IPv4-mapped
        ("http://[::ffff:a9fe:a9fe]/", True),  # 169.254.169.254, IPv4-mapped in hex
        ("http://[::169.254.169.254]/", True),  # IPv4-compatible form
        ("http://[::ffff:127.0.0.1]:{port}/", False),
        ("http://[fe80::1%25eth0]/", True),  # link-local with a zone id
        ("http://2130706433:{port}/", False),  # 127.0.0.1 as one decimal number
        ("http://0x7f.1:{port}/", False),  # 127.0.0.1 in hex and short form
        ("http://0177.0.0.1:{port}/", False),  # 127.0.0.1 in octal
        ("http://0.0.0.0:{port}/", True),
        ("http://user:pass@hook.example/", True),  # credentials in the URL
        ("ftp://hook.example/", True),
    ],
)
def test_a_target_that_reached_where_it_must_not_is_refused(listener, url, allow_private):
    url = url.format(port=listener.port)
    with pytest.raises(DeliveryRefused) as refused:
        target = check_target(url, allow_private=allow_private)
        post(target, data=b"{}", headers={}, timeout=2)
    assert refused.value.field == "url"
    assert listener.hits == []


def test_the_host_is_resolved_once_and_the_checked_address_is_the_one_reached(listener):
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])  # a rebinding resolver: the second answer is hostile
    calls: list[str] = []

    def resolve(host: str) -> list[str]:
        calls.append(host)
        return next(answers)

    target = check_target(f"http://hook.rebind.invalid:{listener.port}/x", allow_private=True, resolve=resolve)
    response = post(target, data=b"{}", headers={}, timeout=5)
    assert response.status_code == 204 and calls == ["hook.rebind.invalid"]
    assert listener.hits[0]["Host"] == f"hook.rebind.invalid:{listener.port}"  # the name, not the address


def test_tls_is_verified_for_the_name_with_the_configured_bundle_not_the_environments(tmp_path, monkeypatch):
    ca, cert, key = make_tls_material(tmp_path / "hook-tls")
    elsewhere, _, _ = make_tls_material(tmp_path / "elsewhere")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(elsewhere))
    server = Listener(tls=(str(cert), str(key)))
    try:
        good = check_target(f"https://localhost:{server.port}/x", allow_private=True, resolve=lambda _h: ["127.0.0.1"])
        assert post(good, data=b"{}", headers={}, timeout=5, verify=str(ca)).status_code == 204
        assert server.hits[0]["Host"] == f"localhost:{server.port}"
        # The certificate names localhost; a target named otherwise is refused although the address is the same.
        other = check_target(
            f"https://hook.other.invalid:{server.port}/", allow_private=True, resolve=lambda _h: ["127.0.0.1"]
        )
        with pytest.raises(requests.exceptions.SSLError):
            post(other, data=b"{}", headers={}, timeout=5, verify=str(ca))
        # And the environment's bundle is not what decides: without ours, the handshake fails.
        with pytest.raises(requests.exceptions.SSLError):
            post(good, data=b"{}", headers={}, timeout=5, verify=str(elsewhere))
    finally:
        server.close()


def test_a_public_name_that_resolves_to_a_private_address_is_refused_without_opt_in():
    with pytest.raises(DeliveryRefused, match="loopback or private"):
        check_target("https://hook.example/x", allow_private=False, resolve=lambda _h: ["10.1.2.3"])
    with pytest.raises(DeliveryRefused, match="metadata"):
        check_target(
            "https://hook.example/x", allow_private=True, resolve=lambda _h: ["20.50.60.70", "169.254.169.254"]
        )
    assert check_target("https://hook.example/x", allow_private=False, resolve=lambda _h: ["20.50.60.70"]).address == (
        "20.50.60.70"
    )


def test_an_event_grid_endpoint_must_be_https_and_is_judged_like_a_web_hook():
    base = {
        "vaults": [{"name": "kv-alpha", "url": "https://kv-alpha.vault.azure.net"}],
        "issuers": [
            {"name": "l", "type": "local", "ca_certificate": "/x", "ca_key": {"file": "/k"}, "trust_anchors": "system"}
        ],
        "default_issuer": "l",
    }
    with pytest.raises(ConfigError, match=r"deployers\[0\]\.eventgrid\.endpoint"):
        parse_config(
            {**base, "deployers": [{"type": "eventgrid", "name": "eg", "endpoint": "http://topic.example/api/events"}]}
        )
    from renewal.azure.deployers import EventGridDeployer

    config = parse_config(
        {**base, "deployers": [{"type": "eventgrid", "name": "eg", "endpoint": "https://169.254.169.254/api/events"}]}
    )
    deployer = EventGridDeployer(config.deployers[0], secrets=None, credential_factory=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(DeliveryRefused) as refused:
        deployer._publisher()
    assert refused.value.field == "endpoint"
