"""The composition root without a storage account (a CLI pointed at Key Vault only)."""

from __future__ import annotations

from renewal.azure.keyvault import CreatePacer
from renewal.config import parse_config
from renewal.service import RenewalService
from tests.flow.conftest import make_config


class _Vaults:
    vault_urls = {"kv-alpha": "https://kv-alpha.vault.azure.net"}


def test_without_storage_the_stores_pace_creates_in_process_and_optional_tables_are_off(tmp_path):
    from ca_clients.local import create_ca_files

    config = parse_config(make_config(_Vaults(), create_ca_files(tmp_path / "ca"), None))
    service = RenewalService(
        config, environ={"RENEWAL_KEYVAULT_CREDENTIAL": "emulator", "RENEWAL_KEYVAULT_CA_BUNDLE": str(tmp_path)}
    )
    store = service.stores["kv-alpha"]
    assert isinstance(store._create_pacer, CreatePacer)  # not the Table-storage budget
    assert service.version_facts is None and service.renewal_windows is None and service.backups is None
