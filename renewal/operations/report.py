"""The operator's estate report: inventory + compliance findings, as JSON, a table or one
self-contained HTML page (inline CSS, no scripts, fonts or links to anything outside the file)."""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from renewal.operations.compliance import Finding, has_errors, rules_for
from renewal.operations.inventory import Inventory, InventoryEntry, build_inventory

if TYPE_CHECKING:
    from renewal.service import RenewalService

SCHEMA_VERSION = 1


@dataclass
class EstateReport:
    inventory: Inventory
    findings: list[Finding]
    elapsed_seconds: float = 0.0
    by_certificate: dict[str, list[Finding]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for finding in self.findings:
            self.by_certificate.setdefault(finding.certificate, []).append(finding)

    @property
    def failed(self) -> bool:
        return has_errors(self.findings) or bool(self.inventory.errors)

    def summary(self) -> dict[str, Any]:
        severities = Counter(f.severity for f in self.findings)
        return {
            "certificates": len(self.inventory.entries),
            "due": sum(1 for e in self.inventory.entries if e.decision.due),
            "errors": severities.get("error", 0),
            "warnings": severities.get("warning", 0),
            "rules": dict(sorted(Counter(f.rule for f in self.findings).items())),
            "certificate_reads": self.inventory.certificate_reads,
            "kept_versions_reused": self.inventory.kept_reused,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "generated_at": self.inventory.generated_at.isoformat(),
            "summary": self.summary(),
            "certificates": [
                e.to_dict() | {"findings": [f.to_dict() for f in self.by_certificate.get(e.key, [])]}
                for e in self.inventory.entries
            ],
            "findings": [f.to_dict() for f in self.findings],
            "errors": list(self.inventory.errors),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_html(self) -> str:
        return render_html(self)


def build_report(
    service: RenewalService,
    *,
    vaults: list[str] | None = None,
    max_workers: int = 32,
    progress: Any = None,
    refresh: bool = False,
) -> EstateReport:
    started = time.monotonic()
    rules = rules_for(service)
    found: dict[str, list[Finding]] = {}

    def inspect(entry: InventoryEntry) -> None:  # on the scan's threads, while others wait on Key Vault
        found[entry.key] = rules.check(entry)

    inventory = build_inventory(
        service, vaults=vaults, max_workers=max_workers, progress=progress, refresh=refresh, on_entry=inspect
    )
    findings = [f for entry in inventory.entries for f in found.get(entry.key, ())]
    return EstateReport(inventory, findings, elapsed_seconds=time.monotonic() - started)


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value else "-"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1b1b1b}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr.error td{background:#fde8e8}tr.warning td{background:#fff6dc}
.sev-error{color:#a00;font-weight:600}.sev-warning{color:#8a5a00;font-weight:600}
.summary span{display:inline-block;margin-right:1.5rem}
"""


def render_html(report: EstateReport) -> str:
    esc = html.escape
    summary = report.summary()
    rows = []
    for entry in report.inventory.entries:
        findings = report.by_certificate.get(entry.key, [])
        worst = "error" if any(f.severity == "error" for f in findings) else ("warning" if findings else "")
        last = entry.last_renewal
        items = "".join(f'<div class="sev-{esc(f.severity)}">{esc(f.rule)}: {esc(f.message)}</div>' for f in findings)
        rows.append(
            f'<tr class="{worst}"><td>{esc(entry.vault)}</td><td>{esc(entry.name)}</td>'
            f"<td>{esc(entry.issuer or entry.route_problem or '-')}</td><td>{esc(_when(entry.expires_on))}</td>"
            f"<td>{esc(_when(entry.decision.renew_at))}</td><td>{esc(entry.decision.reason)}</td>"
            f"<td>{esc(f'{last.state} {_when(last.updated_at)}' if last else '-')}</td><td>{items}</td></tr>"
        )
    errors = "".join(f"<li>{esc(e)}</li>" for e in report.inventory.errors)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Certificate estate {esc(_when(report.inventory.generated_at))}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Certificate estate at {esc(_when(report.inventory.generated_at))}</h1>"
        '<p class="summary">'
        f"<span>certificates: {summary['certificates']}</span><span>due: {summary['due']}</span>"
        f'<span class="sev-error">errors: {summary["errors"]}</span>'
        f'<span class="sev-warning">warnings: {summary["warnings"]}</span></p>'
        + (f"<h2>Problems reading the estate</h2><ul>{errors}</ul>" if errors else "")
        + "<table><thead><tr><th>vault</th><th>certificate</th><th>issuer</th><th>expires</th>"
        "<th>renew at</th><th>why</th><th>last renewal</th><th>findings</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )
