"""The overview's certificate list at estate scale: search, filters, sort and paging, all from the URL's
query (so every page is a plain GET an operator can bookmark or share), and the filtered list as CSV or
JSON. Bad parameters are refused with a message naming them, never guessed."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from renewal.errors import Rejected
from renewal.operations.dashboard.estate import SEVERITIES, STATES, CertificateRow

PAGE_SIZES = (25, 50, 100, 200)
SORTS = {"expiry": "expires soonest first", "-expiry": "expires latest first", "name": "vault and name"}
MAX_QUERY = 200
QUERY_PARAMS = ("q", "vault", "state", "issuer", "finding", "sort", "page", "size")


@dataclass(frozen=True)
class CertificateQuery:
    q: str = ""
    """Case-insensitive substring of ``vault/name``."""
    vault: str = ""
    state: str = ""
    issuer: str = ""
    finding: str = ""
    """A severity (error, warning), a rule name, or ``none`` for certificates without findings."""
    sort: str = "expiry"
    page: int = 1
    size: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CertificateQuery:
        def text(name: str) -> str:
            value = (params.get(name) or "").strip()
            if len(value) > MAX_QUERY:
                raise Rejected(name, f"longer than {MAX_QUERY} characters")
            return value

        def number(name: str, default: int) -> int:
            raw = (params.get(name) or "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise Rejected(name, f"must be a whole number of 1 or more, not {raw[:20]!r}")
            return int(raw)

        state, sort, size = text("state"), text("sort") or "expiry", number("size", 50)
        if state and state not in STATES:
            raise Rejected("state", f"{state!r} is not one of {', '.join(STATES)}")
        if sort not in SORTS:
            raise Rejected("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
        if size not in PAGE_SIZES:
            raise Rejected("size", f"must be one of {', '.join(map(str, PAGE_SIZES))}")
        return cls(text("q"), text("vault"), state, text("issuer"), text("finding"), sort, number("page", 1), size)

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.vault or self.state or self.issuer or self.finding)

    def params(self, **changes: object) -> str:
        """This query as URL parameters (defaults left out), with ``changes`` applied."""
        values = {
            "q": self.q,
            "vault": self.vault,
            "state": self.state,
            "issuer": self.issuer,
            "finding": self.finding,
            "sort": "" if self.sort == "expiry" else self.sort,
            "page": "" if self.page == 1 else str(self.page),
            "size": "" if self.size == 50 else str(self.size),
        }
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return urlencode({k: v for k, v in values.items() if v})

    def matches(self, row: CertificateRow) -> bool:
        if self.q and self.q.lower() not in f"{row.vault}/{row.name}".lower():
            return False
        if self.vault and row.vault != self.vault:
            return False
        if self.state and row.state != self.state:
            return False
        if self.issuer and (row.issuer or "") != self.issuer:
            return False
        if self.finding:
            if self.finding == "none":
                return not row.findings
            if self.finding in SEVERITIES:
                return any(f.severity == self.finding for f in row.findings)
            return any(f.rule == self.finding for f in row.findings)
        return True


@dataclass(frozen=True)
class CertificatePage:
    rows: list[CertificateRow]
    total: int
    """Certificates matching the filters (all pages)."""
    page: int
    pages: int


def select(rows: Sequence[CertificateRow], query: CertificateQuery, *, paged: bool = True) -> CertificatePage:
    matching = [r for r in rows if query.matches(r)]
    if query.sort == "name":
        matching.sort(key=lambda r: (r.vault, r.name))
    else:  # certificates without an expiry come last either way
        dated = sorted((r for r in matching if r.expires_on), key=lambda r: (r.expires_on, r.vault, r.name))
        undated = [r for r in matching if not r.expires_on]
        matching = (dated[::-1] if query.sort == "-expiry" else dated) + undated
    pages = max(1, math.ceil(len(matching) / query.size))
    if not paged:
        return CertificatePage(matching, len(matching), 1, 1)
    page = min(query.page, pages)
    start = (page - 1) * query.size
    return CertificatePage(matching[start : start + query.size], len(matching), page, pages)


EXPORT_FIELDS = (
    "vault",
    "name",
    "state",
    "version",
    "expires_on",
    "renew_at",
    "why",
    "issuer",
    "last_outcome",
    "findings",
)


def _record(row: CertificateRow) -> dict[str, str]:
    last = row.last
    return {
        "vault": row.vault,
        "name": row.name,
        "state": row.state,
        "version": row.entry.version or "",
        "expires_on": row.expires_on.isoformat() if row.expires_on else "",
        "renew_at": row.renew_at.isoformat() if row.renew_at else "",
        "why": row.why,
        "issuer": row.issuer or "",
        "last_outcome": last.state if last else "",
        "findings": "; ".join(f"{f.severity}:{f.rule}" for f in row.findings),
    }


def to_csv(rows: Sequence[CertificateRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # A cell starting with = + - @ would be a formula in a spreadsheet: names come from outside.
        writer.writerow({k: ("'" + v if v[:1] in ("=", "+", "-", "@") else v) for k, v in _record(row).items()})
    return out.getvalue()


def to_json(rows: Sequence[CertificateRow]) -> str:
    return json.dumps({"certificates": [_record(r) for r in rows]}, indent=2)
