"""The ``renewalwindows`` table over Azurite: a window written by one instance is what another loads (whole
vault in one query, or one certificate), replaced by the next answer, and a row this code cannot read is
left out rather than trusted."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from renewal import settings
from renewal.azure.renewal_windows import TableRenewalWindows
from renewal.azure.storage import StorageEndpoints
from renewal.model import RenewalWindow

from .conftest import at


def window(name: str, vault: str = "kv-one", **kw: object) -> RenewalWindow:
    values: dict[str, object] = {
        "vault": vault,
        "name": name,
        "thumbprint": "0f" * 20,
        "issuer": "public-acme",
        "cert_id": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        "checked_at": at(0),
        "recheck_at": at(360),
        "start": at(60 * 24 * 30),
        "end": at(60 * 24 * 32),
        "explanation_url": "https://ca.example.test/why",
        **kw,
    }
    return RenewalWindow(**values)  # type: ignore[arg-type]


def test_windows_are_shared_between_instances_and_replaced_by_the_next_answer(storage: StorageEndpoints) -> None:
    writer, reader = TableRenewalWindows(storage), TableRenewalWindows(storage)
    web, api, other = window("web"), window("api", start=None, end=None, explanation_url=None), window("x", "kv-two")
    for w in (web, api, other):
        writer.keep(w)

    assert reader.load("kv-one") == {"web": web, "api": api}
    assert reader.get("kv-two", "x") == other and reader.get("kv-one", "absent") is None
    assert isinstance(reader.get("kv-one", "web").start, dt.datetime)  # type: ignore[union-attr]

    moved = replace(web, start=at(-120), end=at(-60), checked_at=at(400), recheck_at=at(460), explanation_url=None)
    writer.keep(moved)
    assert reader.get("kv-one", "web") == moved


def test_a_row_that_cannot_be_read_is_left_out(storage: StorageEndpoints) -> None:
    TableRenewalWindows(storage).keep(window("web"))
    storage.table_client(settings.RENEWAL_WINDOWS_TABLE).upsert_entity(
        {"PartitionKey": "kv-one", "RowKey": "broken", "vault": "kv-one", "name": "broken", "thumbprint": "x"}
    )
    assert set(TableRenewalWindows(storage).load("kv-one")) == {"web"}
    assert TableRenewalWindows(storage).get("kv-one", "broken") is None
