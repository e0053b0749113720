"""Key Vault reads on the process's I/O loop (aiohttp, the SDK's async pipeline), against the emulator.

What the loop must keep of the requests pipeline it replaces for GETs: the same answers, the same errors
(404, 5xx, 429 backoff), TLS verified against the configured bundle, the environment's proxy, many threads at
once each getting its own answer, and no session left open when a store goes away.
"""

from __future__ import annotations

import gc
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from emulator.testing import running_emulator
from renewal.azure.keyvault import KeyVaultCertificateStore, StaticTokenCredential, open_store
from renewal.errors import CertificateGone, KeyVaultThrottled, StoreUnavailable

VAULT = "kv-reads"


@pytest.fixture(scope="module")
def kv():
    with running_emulator([VAULT], throttling=False) as handle:
        handle.admin.seed(VAULT, certificates=[{"name": f"c{i}", "tags": {"n": str(i)}} for i in range(40)])
        yield handle


@pytest.fixture(autouse=True)
def _calm(kv):
    yield
    kv.admin.set_knobs(fail_next={}, fault_status=503)


def _store(kv, **options):
    return open_store(VAULT, kv.vault_urls[VAULT], StaticTokenCredential(), connection_verify=kv.ca_bundle, **options)


class _Spy:
    """Counts the reads that went through the loop (and lets them through)."""

    def __init__(self, store):
        self.calls, self._get = 0, store._reader.get_json
        store._reader.get_json = self

    def __call__(self, path):
        self.calls += 1
        return self._get(path)


def test_reads_on_the_loop_answer_as_the_client_s_own_pipeline(kv):
    store = _store(kv)
    spy = _Spy(store)
    direct = KeyVaultCertificateStore(VAULT, store._client)  # the same client, GETs on its requests pipeline
    for name in ("c0", "c7", "c39"):
        assert store.get_current(name) == direct.get_current(name)
        assert store.get_policy(name) == direct.get_policy(name)
    assert list(store.list_certificates()) == list(direct.list_certificates())
    assert spy.calls >= 7
    assert store.get_current("absent") is None
    with pytest.raises(CertificateGone):
        store.get_policy("absent")


def test_thirty_two_threads_each_get_their_own_certificate(kv):
    store = _store(kv)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: store.get_current(f"c{i % 40}"), range(400)))
    assert [a.tags["n"] for a in answers] == [str(i % 40) for i in range(400)]


def test_a_5xx_is_retried_by_the_pipeline_and_one_that_outlives_it_is_store_unavailable(kv):
    kv.admin.set_knobs(fail_next={"get_certificate": 1}, fault_status=503)
    assert _store(kv, retry_backoff_factor=0.0).get_current("c1").tags == {"n": "1"}
    kv.admin.set_knobs(fail_next={"get_certificate": 1}, fault_status=500)
    with pytest.raises(StoreUnavailable, match="answered 500"):
        _store(kv, retry_total=0).get_current("c1")


def test_a_429_is_backed_off_by_the_store_and_throttled_once_it_outlives_the_retries(kv):
    slept: list[float] = []
    kv.admin.set_knobs(fail_next={"get_certificate": 1}, fault_status=429)
    store = _store(kv, retry_total=0, throttle_retries=2, sleep=slept.append)
    assert store.get_current("c2").tags == {"n": "2"}
    assert len(slept) == 1
    kv.admin.set_knobs(fail_next={"get_certificate": 3}, fault_status=429)
    with pytest.raises(KeyVaultThrottled):
        store.get_current("c2")


def test_a_vault_whose_certificate_the_bundle_does_not_sign_is_never_read(kv, tmp_path):
    from ca_clients.local import create_ca_files

    other = create_ca_files(tmp_path / "other-ca")
    kv.admin.reset_counters()
    store = open_store(VAULT, kv.vault_urls[VAULT], StaticTokenCredential(), connection_verify=str(other["root"]))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.get_current("c3")
    assert kv.admin.counters(VAULT).get("get_certificate", 0) == 0


def test_a_missing_bundle_is_named(kv, tmp_path):
    store = open_store(VAULT, kv.vault_urls[VAULT], StaticTokenCredential(), connection_verify=str(tmp_path / "no.pem"))
    with pytest.raises(OSError, match=r"no\.pem"):
        store.get_current("c3")


class _ConnectProxy:
    """An HTTP CONNECT proxy on loopback that counts the tunnels it opens."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        target = head.split(b" ")[1].decode()
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pair = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [], 10)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._server.close()


def test_reads_and_writes_go_through_the_environment_s_proxy(kv, monkeypatch):
    proxy = _ConnectProxy()
    try:
        for variable in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        store = _store(kv)
        assert store.get_current("c4").tags == {"n": "4"}  # a GET, on the loop
        reads = len(proxy.tunnels)
        store.update_tags("c4", store.get_current("c4").version, {"n": "4", "seen": "yes"})  # a write, requests
        assert reads >= 1 and len(proxy.tunnels) > reads
        host = kv.vault_urls[VAULT].split("//")[1].rstrip("/")
        assert set(proxy.tunnels) == {host}
    finally:
        proxy.close()


def test_a_collected_store_s_session_is_closed(kv):
    store = _store(kv)
    store.get_current("c5")
    session = store._reader.session
    assert not session.closed
    del store
    gc.collect()
    deadline = time.monotonic() + 5
    while not session.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.closed


def test_a_forked_child_reads_on_a_loop_of_its_own(kv):
    """A child forked after the parent's first read has no loop thread: without a loop of its own its reads
    would wait forever."""
    import os

    store = _store(kv)
    assert store.get_current("c6").tags == {"n": "6"}
    pid = os.fork()
    if pid == 0:  # the child: a read, with a watchdog so that a hang fails the test rather than stalling it
        threading.Timer(20, lambda: os._exit(3)).start()
        try:
            os._exit(0 if store.get_current("c7").tags == {"n": "7"} else 1)
        except BaseException:  # noqa: BLE001 - any failure is the child's exit status
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_current("c8").tags == {"n": "8"}  # the parent's loop goes on
