"""The overview list's query: parameters as an attacker or a typo would write them, filters, sort, paging, export."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from renewal.errors import Rejected
from renewal.flow.due import DueDecision
from renewal.operations.compliance import Finding
from renewal.operations.dashboard.estate import CertificateRow
from renewal.operations.dashboard.listing import CertificateQuery, select, to_csv, to_json
from renewal.operations.inventory import InventoryEntry

NOW = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


def row(vault: str, name: str, days: float | None, state: str = "healthy", rule: str | None = None) -> CertificateRow:
    expires = NOW + dt.timedelta(days=days) if days is not None else None
    entry = InventoryEntry(
        vault, name, "v1", True, NOW, expires, {}, "corp", None, DueDecision(False, "why", None, "default"), None, False
    )
    findings = (Finding(rule, "warning", vault, name, "v1", "m"),) if rule else ()
    return CertificateRow(entry, state, findings)


ROWS = [row("kv-a", f"app-{i}", days=i) for i in range(1, 121)] + [
    row("kv-b", "gone", days=-1, state="expired", rule="expired-current"),
    row("kv-b", "-cmd", days=None, rule="unreadable"),
]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "1e9"}, "page"),
        ({"size": "1000"}, "size"),
        ({"state": "<script>"}, "state"),
        ({"sort": "expires_on desc; drop"}, "sort"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params, field):
    with pytest.raises(Rejected) as info:
        CertificateQuery.from_params(params)
    assert info.value.field == field


def test_paging_covers_every_certificate_once_soonest_first_undated_last():
    query = CertificateQuery.from_params({})
    seen = []
    for page in (1, 2, 3):
        found = select(ROWS, CertificateQuery.from_params({"page": str(page)}))
        assert found.pages == 3 and found.total == 122
        seen += [f"{r.vault}/{r.name}" for r in found.rows]
    assert len(seen) == len(set(seen)) == 122
    assert seen[0] == "kv-b/gone" and seen[-1] == "kv-b/-cmd"
    assert select(ROWS, CertificateQuery.from_params({"page": "99"})).page == 3  # past the end: the last page
    assert query.params() == "" and query.params(page=2) == "page=2"


def test_filters_combine_and_search_ignores_case():
    assert [r.name for r in select(ROWS, CertificateQuery.from_params({"q": "APP-11"})).rows] == [
        "app-11",
        *(f"app-{i}" for i in range(110, 120)),
    ]
    assert [r.name for r in select(ROWS, CertificateQuery.from_params({"state": "expired"})).rows] == ["gone"]
    assert select(ROWS, CertificateQuery.from_params({"finding": "warning"})).total == 2
    assert select(ROWS, CertificateQuery.from_params({"finding": "unreadable"})).total == 1
    assert select(ROWS, CertificateQuery.from_params({"finding": "none", "vault": "kv-b"})).total == 0
    latest = select(ROWS, CertificateQuery.from_params({"sort": "-expiry", "size": "25"}))
    assert latest.rows[0].name == "app-120" and len(latest.rows) == 25


def test_exports_carry_the_filtered_rows_and_defuse_spreadsheet_formulas():
    rows = select(ROWS, CertificateQuery.from_params({"vault": "kv-b"}), paged=False).rows
    text = to_csv(rows)
    assert text.splitlines()[0] == "vault,name,state,version,expires_on,renew_at,why,issuer,last_outcome,findings"
    assert "kv-b,'-cmd," in text  # a leading - would be read as a formula
    assert [c["name"] for c in json.loads(to_json(rows))["certificates"]] == ["gone", "-cmd"]
