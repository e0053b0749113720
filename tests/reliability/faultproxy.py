"""A fault-injecting loopback proxy in front of a real CA server.

TCP-level modes work for any protocol, TLS included (pebble's ACME over HTTPS):
``pass`` relays bytes; ``reset`` accepts and answers with a TCP RST; ``hang`` accepts and never answers
(the client's timeout must fire); ``slow`` relays with a delay before every chunk of the answer.

HTTP-level modes need plain HTTP (cfssl, OpenBao): each request is forwarded with ``Connection: close``,
the whole answer read and then altered: ``record`` passes it unchanged and remembers sign answers;
``5xx`` answers 503 without asking the CA; ``truncate`` sends
half the body under the full Content-Length and closes; ``wrong-order`` reverses every PEM bundle and
every list of PEM certificates in a JSON answer; ``other-csr`` answers a sign request with the answer the
CA gave to an earlier, different sign request (a real chain, for another CSR's key).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

TCP_MODES = ("pass", "reset", "hang", "slow")
HTTP_MODES = ("record", "5xx", "truncate", "wrong-order", "other-csr")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


class FaultProxy:
    def __init__(self, upstream_url: str, *, slow_seconds: float = 0.2, sign_marker: str = "sign") -> None:
        parsed = urlparse(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80))
        self.upstream_url = upstream_url
        self.mode = "pass"
        self.slow_seconds = slow_seconds
        self.sign_marker = sign_marker
        self.connections: Counter[str] = Counter()
        self._recorded: dict[str, tuple[bytes, bytes]] = {}  # path -> (request body, raw answer)
        self._hung: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def url(self, original: str | None = None) -> str:
        """``original`` (default: the upstream URL) with its host and port pointing at the proxy."""
        parsed = urlparse(original or self.upstream_url)
        return parsed._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in self._hung:
            with contextlib.suppress(OSError):
                sock.close()

    # -- plumbing -------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            mode = self.mode
            self.connections[mode] += 1
            threading.Thread(target=self._handle, args=(client, mode), daemon=True).start()

    def _handle(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            elif mode == "hang":
                self._hung.append(client)
            elif mode in ("pass", "slow"):
                self._relay(client, delay=self.slow_seconds if mode == "slow" else 0.0)
            else:
                self._http(client, mode)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()

    def _relay(self, client: socket.socket, *, delay: float) -> None:
        upstream = socket.create_connection(self.upstream, timeout=30)

        def pump(src: socket.socket, dst: socket.socket, pause: float) -> None:
            try:
                while chunk := src.recv(65536):
                    if pause:
                        time.sleep(pause)
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(client, upstream, 0.0), daemon=True).start()
        pump(upstream, client, delay)
        client.close()
        upstream.close()

    @staticmethod
    def _read_message(sock: socket.socket, *, until_close: bool) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if until_close:
            while chunk := sock.recv(65536):
                body += chunk
        else:
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        return head, body

    def _http(self, client: socket.socket, mode: str) -> None:
        head, body = self._read_message(client, until_close=False)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        path = request_line.split(" ")[1] if " " in request_line else "/"
        if mode == "5xx":
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
            return
        is_sign = self.sign_marker in path
        if mode == "other-csr" and is_sign and path in self._recorded and self._recorded[path][0] != body:
            client.sendall(self._recorded[path][1])
            client.close()
            return
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:"))]
        forwarded = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        upstream = socket.create_connection(self.upstream, timeout=30)
        upstream.sendall(forwarded)
        rhead, rbody = self._read_message(upstream, until_close=True)
        upstream.close()
        if re.search(rb"(?im)^transfer-encoding:\s*chunked", rhead):
            rbody = _dechunk(rbody)
        if mode == "wrong-order":
            rbody = _reverse_chains(rbody)
        header_lines = [
            line
            for line in rhead.split(b"\r\n")
            if not line.lower().startswith((b"content-length:", b"transfer-encoding:", b"connection:"))
        ]
        full_head = b"\r\n".join([*header_lines, f"Content-Length: {len(rbody)}".encode(), b"Connection: close"])
        answer = full_head + b"\r\n\r\n" + rbody
        if is_sign and b" 200 " in rhead.split(b"\r\n", 1)[0] + b" ":
            self._recorded.setdefault(path, (body, answer))
        if mode == "truncate":
            client.sendall(full_head + b"\r\n\r\n" + rbody[: len(rbody) // 2])
        else:
            client.sendall(answer)
        client.close()


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def _reverse_chains(body: bytes) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError:
        return body

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            certs = PEM.findall(value)
            if len(certs) >= 2:
                return "".join(c if c.endswith("\n") else c + "\n" for c in reversed(certs))
            return value
        if isinstance(value, list):
            items = [walk(v) for v in value]
            if len(items) >= 2 and all(isinstance(v, str) and PEM.search(v) for v in items):
                items.reverse()
            return items
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return json.dumps(walk(doc)).encode()
