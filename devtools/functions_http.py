"""A local stand-in for the Functions host's HTTP trigger, for demos and browser tests (dev only).

It serves every ``httpTrigger`` of a ``func.FunctionApp`` under ``/api/<route>`` the way the host
does: route templates (``{vault}``) become ``route_params``, the query string becomes ``params``,
the request becomes an ``azure.functions.HttpRequest`` and the function's ``HttpResponse`` goes back
on the wire. Auth levels are enforced like the host: a non-anonymous function needs the key, as the
``code`` query parameter or the ``x-functions-key`` header (401 otherwise).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devtools.host import http_request

log = logging.getLogger("devtools.functions_http")
PREFIX = "/api/"


@dataclass(frozen=True)
class HttpRoute:
    name: str
    route: str
    methods: frozenset[str]
    auth_level: str
    pattern: re.Pattern[str]
    function: Callable[[func.HttpRequest], func.HttpResponse]


_indexed: dict[int, list[Any]] = {}


def app_functions(app: func.FunctionApp) -> list[Any]:
    """``app.get_functions()``, once per app: like the host, index once (a second call raises on duplicates)."""
    if id(app) not in _indexed:
        _indexed[id(app)] = app.get_functions()
    return _indexed[id(app)]


def http_routes(app: func.FunctionApp) -> list[HttpRoute]:
    routes = []
    for function in app_functions(app):
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            if binding.get("type") != "httpTrigger":
                continue
            route = binding.get("route") or function.get_function_name()
            regex = re.sub(r"\\\{(\w+)(?::\w+)?\\\}", r"(?P<\1>[^/]+)", re.escape(route))
            routes.append(
                HttpRoute(
                    name=function.get_function_name(),
                    route=route,
                    methods=frozenset(m.upper() for m in binding.get("methods") or ("GET", "POST")),
                    auth_level=str(binding.get("authLevel", "FUNCTION")).upper(),
                    pattern=re.compile(regex + "/?$"),
                    function=function.get_user_function(),
                )
            )
    # literal routes win over templated ones, as in the host
    return sorted(routes, key=lambda r: r.route.count("{"))


class FunctionsHttpServer:
    def __init__(self, app: func.FunctionApp, *, key: str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.routes = http_routes(app)
        self.key = key
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._serve(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug(fmt, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.base_url = f"http://{host}:{self.server.server_address[1]}"

    def url(self, route: str, *, with_key: bool = True) -> str:
        suffix = f"?code={self.key}" if with_key and self.key else ""
        return f"{self.base_url}{PREFIX}{route}{suffix}"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if not parts.path.startswith(PREFIX):
            return self._send(handler, 404, b"not found", {"Content-Type": "text/plain"})
        path = parts.path[len(PREFIX) :]
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matches:
            return self._send(handler, 404, b"no function serves this route", {"Content-Type": "text/plain"})
        allowed = [(r, m) for r, m in matches if handler.command in r.methods]
        if not allowed:
            return self._send(handler, 405, b"method not allowed", {"Content-Type": "text/plain"})
        route, match = allowed[0]
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if route.auth_level != "ANONYMOUS" and self.key is not None:
            given = params.get("code") or handler.headers.get("x-functions-key") or ""
            if not hmac.compare_digest(given.encode(), self.key.encode()):
                return self._send(handler, 401, b"", {})
        request = http_request(
            handler.command,
            f"{self.base_url}{handler.path}",
            headers=dict(handler.headers.items()),
            query=params,
            route_params={k: unquote(v) for k, v in match.groupdict().items()},
            body=body,
        )
        try:
            response = route.function(request)
        except Exception:  # the host answers 500 when a function raises
            log.exception("function %s raised", route.name)
            return self._send(handler, 500, b"function raised; see the log", {"Content-Type": "text/plain"})
        headers = dict(response.headers.items())
        if not any(k.lower() == "content-type" for k in headers) and response.mimetype:
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset or 'utf-8'}"
        self._send(handler, response.status_code, response.get_body() or b"", headers)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def start(self) -> FunctionsHttpServer:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="functions-http").start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(app: func.FunctionApp, *, key: str | None = "", port: int = 0) -> Iterator[FunctionsHttpServer]:
    """Serve ``app``'s HTTP functions on loopback; ``key=""`` makes a random function key, ``None`` none."""
    server = FunctionsHttpServer(app, key=secrets.token_urlsafe(24) if key == "" else key, port=port).start()
    try:
        yield server
    finally:
        server.close()
