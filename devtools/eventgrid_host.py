"""A loopback stand-in for the Functions host's Event Grid webhook
(``/runtime/webhooks/eventgrid?functionName=...``): answers the validation handshake, turns each
delivered event into an ``azure.functions.EventGridEvent`` and calls the function like the host does.
A handler exception answers 500, so the sender (Event Grid, or the emulator) retries."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def to_function_event(event: dict[str, Any]) -> Any:
    import azure.functions as func

    cloud = "specversion" in event
    when = event.get("time" if cloud else "eventTime")
    try:
        event_time = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None
    except ValueError:
        event_time = None
    return func.EventGridEvent(
        id=event.get("id"),
        data=event.get("data"),
        topic=event.get("source" if cloud else "topic"),
        subject=event.get("subject"),
        event_type=event.get("type" if cloud else "eventType"),
        event_time=event_time,
        data_version=event.get("dataVersion", "1"),
    )


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
