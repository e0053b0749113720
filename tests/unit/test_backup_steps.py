"""The backup step's decisions over in-memory ports: what is filed under which version, what is skipped, and
what is refused so the queue retries (the real adapters are exercised in tests/flow/test_disaster_recovery)."""

from __future__ import annotations

import datetime as dt

import pytest

from renewal.errors import BackupRaced, StoreUnavailable
from renewal.flow.backup import back_up, back_up_estate
from renewal.model import PolicySpec
from tests.memory_ports import MemoryArchive, MemoryStore

NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
POLICY = PolicySpec(subject="CN=web.example.test")


def clock() -> dt.datetime:
    return NOW


def store_with(*names: str) -> MemoryStore:
    store = MemoryStore("kv-a")
    for name in names:
        store.seed(name, POLICY, not_before=NOW - dt.timedelta(days=30), expires_on=NOW + dt.timedelta(days=60))
    return store


def test_the_current_version_is_filed_once_with_its_thumbprint():
    store, archive = store_with("web"), MemoryArchive()
    version = store.get_current("web").version
    entry = back_up(store, archive, "web", version, clock=clock)
    assert entry is not None and entry.blob_name == f"kv-a/web/{version}.kvbackup"
    assert len(entry.thumbprint) == 40 and entry.backed_up_at == NOW
    assert back_up(store, archive, "web", version, clock=clock) == entry
    assert store.calls.count("backup") == 1  # the second call found it in the archive


def test_a_version_that_is_no_longer_current_is_left_to_its_successor():
    store, archive = store_with("web"), MemoryArchive()
    old = store.get_current("web").version
    store.seed("web", POLICY, not_before=NOW, expires_on=NOW + dt.timedelta(days=90))
    assert back_up(store, archive, "web", old, clock=clock) is None
    assert "backup" not in store.calls and not archive.blobs


def test_a_certificate_that_changes_during_its_backup_is_refused_for_a_retry():
    store, archive = store_with("web"), MemoryArchive()
    version = store.get_current("web").version
    store.on_backup = lambda name: store.seed(name, POLICY, not_before=NOW, expires_on=NOW + dt.timedelta(days=90))
    with pytest.raises(BackupRaced):
        back_up(store, archive, "web", version, clock=clock)
    assert not archive.blobs  # nothing filed under the wrong version


def test_a_key_vault_failure_reaches_the_caller():
    store, archive = store_with("web"), MemoryArchive()
    store.fail["backup"] = StoreUnavailable("503")
    with pytest.raises(StoreUnavailable):
        back_up(store, archive, "web", store.get_current("web").version, clock=clock)


def test_the_estate_backup_skips_what_is_archived_and_reports_what_failed():
    store, archive = store_with("a", "b", "c"), MemoryArchive()
    back_up(store, archive, "a", store.get_current("a").version, clock=clock)
    store.fail["backup"] = StoreUnavailable("503")
    report = back_up_estate({"kv-a": store}, archive, clock=clock)
    assert report.already == 1 and len(report.backed_up) == 1 and len(report.errors) == 1
    assert report.oldest_missing_hours == pytest.approx(30 * 24)  # the failed one's version is 30 days old
    again = back_up_estate({"kv-a": store}, archive, clock=clock)
    assert again.already == 2 and len(again.backed_up) == 1 and not again.errors
    assert again.oldest_missing_hours == 0


def test_a_version_the_caller_just_read_is_not_read_again():
    store, archive = store_with("web"), MemoryArchive()
    current = store.get_current("web")
    store.calls.clear()
    assert back_up(store, archive, "web", current.version, clock=clock, current=current) is not None
    assert store.calls == ["backup", "get_current"]  # the backup, and the read that proves nothing changed
