"""A loopback stand-in for the Functions host's Event Grid webhook
(``/runtime/webhooks/eventgrid?functionName=...``): answers the validation handshake, turns each
delivered event into what ``azure.functions``' converter makes of it and calls the function like the host does.
A handler exception answers 500, so the sender (Event Grid, or the emulator) retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.host import event_grid_event


def to_function_event(event: dict[str, Any]) -> Any:
    """What the Python worker hands the function for one delivered event (see devtools.host)."""
    return event_grid_event(event)


@contextmanager
def eventgrid_webhook(function: Callable[[Any], None]) -> Iterator[tuple[str, list[str]]]:
    """Yields (url, log) where log records one line per delivery for the demo's narration."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_OPTIONS(self) -> None:
            self.send_response(200)
            self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", "*"))
            self.end_headers()

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"[]")
            events = body if isinstance(body, list) else [body]
            if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                code = events[0]["data"]["validationCode"]
                return self._reply(200, {"validationResponse": code})
            try:
                for event in events:
                    function(to_function_event(event))
                    seen.append(f"{event.get('eventType') or event.get('type')} {event.get('subject')}")
            except Exception as exc:  # noqa: BLE001 - the host answers 500 and Event Grid retries
                return self._reply(500, {"error": str(exc)})
            return self._reply(200, {})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"http://127.0.0.1:{server.server_address[1]}/runtime/webhooks/eventgrid?functionName=on_certificate_event",
            seen,
        )
    finally:
        server.shutdown()
        server.server_close()
