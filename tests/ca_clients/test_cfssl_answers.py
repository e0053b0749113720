"""CFSSL answer shapes a healthy local server will not produce: 5xx, garbage, dial errors, bad chains.

A small local HTTP server plays CFSSL and answers from a script (JSON sent as ``text/plain``, as
cfssl does for errors); it records the requests so the authsign envelope can be checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request

HMAC_KEY = "00112233445566778899aabbccddeeff"


@dataclass
class FakeCfssl:
    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    script: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)


def _error(code: int, message: str) -> bytes:
    return json.dumps({"success": False, "result": None, "errors": [{"code": code, "message": message}]}).encode()


@pytest.fixture
def fake_cfssl() -> Iterator[FakeCfssl]:
    state = FakeCfssl()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            endpoint = self.path.rsplit("/", 1)[-1]
            state.requests.append((endpoint, body))
            queue = state.script.get(endpoint) or [(404, _error(404, "not scripted"))]
            status, data = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def _client(url: str, **more: Any):
    section = {
        "name": "fake-cf",
        "type": "cfssl",
        "url": url,
        "profile": "server",
        "auth_key": {"setting": "CFSSL_HMAC_KEY"},
        "chain_source": "info",
        **more,
    }
    return build_client(section, ClientContext(secrets=DictSecretResolver({"CFSSL_HMAC_KEY": HMAC_KEY})))


def _sign(url: str, **more: Any):
    csr, _ = make_csr()
    return _client(url, **more).sign(sign_request(csr))


def test_authsign_envelope_is_hmac_of_the_exact_request_bytes(fake_cfssl):
    fake_cfssl.script["authsign"] = [(400, _error(400, "invalid token"))]
    with pytest.raises(PermanentCAError, match=r"invalid token \(code 400\)"):
        _sign(fake_cfssl.url, label="primary-ca")
    endpoint, body = fake_cfssl.requests[0]
    assert endpoint == "authsign" and set(body) == {"token", "request"}
    inner = base64.b64decode(body["request"])
    expected = hmac.new(bytes.fromhex(HMAC_KEY), inner, hashlib.sha256).digest()
    assert base64.b64decode(body["token"]) == expected
    request = json.loads(inner)
    assert request["profile"] == "server" and request["label"] == "primary-ca"
    assert request["certificate_request"].startswith("-----BEGIN CERTIFICATE REQUEST-----")


@pytest.mark.parametrize(
    ("status", "data", "error", "words"),
    [
        (400, _error(9002, "CSR Decode failed"), PermanentCAError, r"CSR Decode failed \(code 9002\)"),
        (400, _error(400, "authentication required"), PermanentCAError, "authentication required"),
        (400, _error(5300, "Policy violation request"), PermanentCAError, "Policy violation"),
        (400, _error(6000, "Failed dialing remote"), TransientCAError, "Failed dialing remote"),
        (500, _error(500, "internal failure"), TransientCAError, "internal failure"),
        (503, b"", TransientCAError, "non-JSON body"),
        (502, b"<html><body>Bad Gateway</body></html>", TransientCAError, r"HTTP 502 with a non-JSON body"),
        (200, b"OK", TransientCAError, r"HTTP 200 with a non-JSON body"),
        (429, json.dumps({"success": False, "errors": []}).encode(), TransientCAError, "HTTP 429"),
    ],
)
def test_error_answers_map_to_outcomes(fake_cfssl, status, data, error, words):
    fake_cfssl.script["authsign"] = [(status, data)]
    with pytest.raises(error, match=words) as info:
        _sign(fake_cfssl.url)
    assert info.value.issuer == "fake-cf"
    assert HMAC_KEY not in str(info.value)


def _ok(result: dict[str, Any]) -> bytes:
    return json.dumps({"success": True, "result": result, "errors": [], "messages": []}).encode()


def test_chain_failures_after_signing_are_transient(fake_cfssl):
    from tests.ca_clients.test_vault_recorder import FakeVault

    csr, _ = make_csr()
    issued = FakeVault()._issue(sign_request(csr).csr_pem.decode())  # a real leaf from a throwaway CA
    fake_cfssl.script["authsign"] = [(200, _ok({"certificate": issued["certificate"]}))]
    fake_cfssl.script["info"] = [(500, _error(500, "info broke"))]
    client = _client(fake_cfssl.url)
    with pytest.raises(TransientCAError, match="info broke"):
        client.sign(sign_request(csr))
    fake_cfssl.script["info"] = [(200, _ok({"certificate": ""}))]
    with pytest.raises(TransientCAError, match="no issuing CA"):
        client.sign(sign_request(csr))
    fake_cfssl.script["info"] = [(200, _ok({"certificate": issued["issuing_ca"]}))]
    chain = client.sign(sign_request(csr))
    assert len(chain.certificates) == 2


def test_success_without_certificate_is_transient(fake_cfssl):
    fake_cfssl.script["authsign"] = [(200, _ok({}))]
    with pytest.raises(TransientCAError, match="without a certificate"):
        _sign(fake_cfssl.url)
