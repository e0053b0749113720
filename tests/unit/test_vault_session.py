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
