"""Key Vault GETs on one asyncio loop of the process, through the SDK's async pipeline and aiohttp.

A scan reads thousands of certificates from 32 threads. Through requests each GET costs about 1.3 ms of
client CPU, and the threads contend for the GIL; the same GET through azure-core's aiohttp transport costs
about 0.6 ms (measured against the emulator, 4,000 GETs, 32 at once). The callers stay synchronous: a thread
hands its GET to the loop and waits for the answer, so the store's error mapping, its 429 backoff and every
caller are unchanged. Writes (create, merge, tags, policy) stay on the requests pipeline: they are few.

The loop is one daemon thread, started on the first read. Each vault gets its own aiohttp session (its
connection pool, with the configured CA bundle verified on every connection); a session is closed when its
reader is collected, and the rest at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import ssl
import threading
import weakref
from typing import Any

_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's Key Vault I/O loop, started on first use."""
    global _LOOP
    with _LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="keyvault-io", daemon=True).start()
            atexit.register(_close_sessions, loop)
            _LOOP = loop
        return _LOOP


_READERS: weakref.WeakSet[VaultReader] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has no loop thread: its reads would wait forever on the parent's loop. It starts its own
    loop on its next read, and every reader opens a new session there (the parent's stay the parent's)."""
    global _LOOP
    _LOOP = None
    for reader in list(_READERS):
        reader._client, reader.session = None, None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_sessions(loop: asyncio.AbstractEventLoop) -> None:
    async def close_all() -> None:
        sessions = [r.session for r in list(_READERS) if r.session is not None]
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001, S110 - at exit, a session that will not close is dropped with the process
            pass


def _close_later(loop: asyncio.AbstractEventLoop, session: Any) -> None:
    """A collected reader's session, closed on the loop (aiohttp complains of a session dropped open)."""
    if loop.is_running() and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(session.close()))
        except RuntimeError:
            pass  # the loop stopped in between: the process is ending


def tls_context(verify: str | bool) -> ssl.SSLContext:
    """Verification as the requests pipeline does it: a CA bundle file or directory, or the public roots
    requests uses."""
    if verify is False:
        raise ValueError("TLS verification cannot be turned off for Key Vault")
    if verify is True:
        import certifi

        verify = certifi.where()
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    if not os.path.isfile(verify):
        raise OSError(f"the Key Vault CA bundle {verify!r} does not exist")  # as requests says it
    return ssl.create_default_context(cafile=verify)


class AsyncCredential:
    """A synchronous azure-core credential, for the async pipeline: a token read (cached by the credential,
    slow only when it fetches a new one) runs on a worker thread so the loop never waits on it."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> AsyncCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class VaultReader:
    """GETs of one vault, sent on the I/O loop. ``get_json`` raises what the synchronous pipeline raises
    (ResourceNotFoundError on 404, HttpResponseError, ServiceRequestError, ServiceResponseError)."""

    def __init__(
        self,
        url: str,
        credential: Any,
        *,
        verify: str | bool,
        proxies: dict[str, str],
        connections: int,
        options: dict[str, Any],
    ) -> None:
        self._url = url
        self._credential = AsyncCredential(credential)
        self._verify = verify
        self._proxies = proxies
        self._connections = connections
        self._options = options
        self._client: Any = None
        self.session: Any = None
        """The aiohttp session, once the first read has made it."""
        _READERS.add(self)

    def get_json(self, path: str) -> dict[str, Any]:
        """GET ``path`` (relative to the vault, or an absolute nextLink) and its JSON body."""
        return asyncio.run_coroutine_threadsafe(self._get(path), io_loop()).result()

    async def _get(self, path: str) -> dict[str, Any]:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.core.rest import HttpRequest

        client = self._client or self._open()
        response = await client.send_request(HttpRequest("GET", path))
        if response.status_code == 404:
            raise ResourceNotFoundError(response=response)
        response.raise_for_status()
        return response.json()

    def _open(self) -> Any:
        """The async client, made on the loop (aiohttp binds a session to the loop that makes it)."""
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.keyvault.certificates.aio import CertificateClient

        session = aiohttp.ClientSession(
            # One TLS context, built here: azure-core would build one per request from a path.
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._connections, ssl=tls_context(self._verify)),
            trust_env=False,  # proxies resolved once, as for the requests pipeline (NO_PROXY honoured)
        )
        self.session = session
        weakref.finalize(self, _close_later, asyncio.get_running_loop(), session)
        self._client = CertificateClient(
            self._url,
            self._credential,
            transport=AioHttpTransport(session=session, session_owner=False),
            proxies=self._proxies or None,
            **self._options,
        )
        return self._client
