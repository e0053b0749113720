"""The Key Vault client's requests session: the environment's proxy settings resolved once per vault."""

from __future__ import annotations

from renewal.azure.keyvault import _environment_ca_bundle, vault_session


def test_a_proxy_from_the_environment_is_kept_and_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "kv-private.vault.azure.net")
    public = vault_session("https://kv-public.vault.azure.net/")
    assert public.proxies.get("https") == "http://proxy.corp.example:3128"
    assert public.trust_env is False  # nothing re-read from the environment on each request
    assert vault_session("https://kv-private.vault.azure.net/").proxies == {}


def test_without_a_configured_bundle_the_environment_s_is_used(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    assert _environment_ca_bundle() == "/etc/corp/ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert _environment_ca_bundle() is True


def test_a_scan_s_writers_keep_their_connections(caplog):
    """32 threads writing to one vault at once (a sweep's renewal workers) reuse their connections: with
    requests' own pool of 10, urllib3 closed most of them after each request and the next paid a TLS
    handshake. (Reads go through the I/O loop's own pool: tests/azure/test_keyvault_reads.py.)"""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from emulator.testing import running_emulator
    from renewal.azure.keyvault import StaticTokenCredential, open_store

    with running_emulator(["kv-pool"], throttling=False) as kv:
        kv.admin.seed("kv-pool", certificates=[{"name": f"c{i}"} for i in range(64)])
        store = open_store("kv-pool", kv.vault_urls["kv-pool"], StaticTokenCredential(), connection_verify=kv.ca_bundle)
        versions = {f"c{i}": store.get_current(f"c{i}").version for i in range(64)}
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            with ThreadPoolExecutor(32) as pool:
                for round_ in range(3):
                    tag = {"round": str(round_)}
                    list(pool.map(lambda name, tag=tag: store.update_tags(name, versions[name], tag), versions))
        assert store.get_current("c63").tags == {"round": "2"}
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_the_reads_take_the_proxy_requests_would_take(monkeypatch):
    from renewal.azure.keyvault import _proxy_as_requests_picks_it

    url = "https://kv-public.vault.azure.net/"
    for variable in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ALL_PROXY", "http://all.corp.example:8080")
    assert _proxy_as_requests_picks_it(url, vault_session(url).proxies) == {"https": "http://all.corp.example:8080"}
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    assert _proxy_as_requests_picks_it(url, vault_session(url).proxies) == {"https": "http://proxy.corp.example:3128"}
    monkeypatch.setenv("NO_PROXY", "vault.azure.net")
    assert _proxy_as_requests_picks_it(url, vault_session(url).proxies) == {}
