"""Server-rendered HTML for the dashboard: no external CSS, fonts or scripts (works offline), inline
CSS only, real links and buttons, labelled landmarks, headings and table semantics, visible focus."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from renewal.model import AttemptState
from renewal.operations.dashboard.estate import (
    SEVERITIES,
    STATES,
    CertificateDetail,
    CertificateRow,
    Estate,
    WeekBucket,
)
from renewal.operations.dashboard.listing import SORTS, CertificateQuery, select

CSS = """
:root{color-scheme:light;--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--panel:#f6f8fa;--expired:#a40e26;--failing:#bc4c00;--renewing:#0550ae;--due:#7d4e00;--healthy:#116329;--exp:#a40e26;--ren:#0550ae}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);background:var(--bg)}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 1rem}
header{border-bottom:1px solid var(--line)}
nav ul{list-style:none;display:flex;gap:1rem;padding:0;margin:.5rem 0}
h1{font-size:1.5rem;margin:.8rem 0 .2rem}
h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
a{color:#0969da}
a:focus-visible,button:focus-visible,summary:focus-visible{outline:3px solid #fb8500;
outline-offset:2px;border-radius:3px}
.skip{position:absolute;left:-999px}
.skip:focus{left:1rem;top:.5rem;background:#fff;padding:.3rem .6rem;z-index:2}
.counts{display:flex;flex-wrap:wrap;gap:.75rem;padding:0;margin:0;list-style:none}
.counts li{border:1px solid var(--line);border-left-width:6px;border-radius:6px;
padding:.5rem .9rem;min-width:8.5rem;background:var(--panel)}
.counts strong{display:block;font-size:1.6rem}
.state-expired{border-left-color:var(--expired)!important}
.state-failing{border-left-color:var(--failing)!important}
.state-renewing{border-left-color:var(--renewing)!important}
.state-due{border-left-color:var(--due)!important}
.state-healthy{border-left-color:var(--healthy)!important}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:var(--panel)}
td.num,th.num{text-align:right}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;color:#fff;font-size:.85rem;font-weight:600}
.b-expired{background:var(--expired)}
.b-failing{background:var(--failing)}
.b-renewing{background:var(--renewing)}
.b-due{background:var(--due)}
.b-healthy{background:var(--healthy)}
button{font:inherit;padding:.3rem .8rem;border:1px solid #1f6feb;background:#1f6feb;color:#fff;
border-radius:6px;cursor:pointer}
button:hover{background:#0a58ca}
.note{padding:.6rem .9rem;border-radius:6px;background:#ddf4ff;border:1px solid #54aeff}
.error{background:#ffebe9;border-color:#ff8182}
.muted{color:var(--muted)}
.sev-error{color:var(--expired);font-weight:600}
.sev-warning{color:var(--due);font-weight:600}
.findings-none{color:var(--healthy)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0}
code{font-size:.9em}
svg text{font:12px system-ui,sans-serif;fill:var(--ink)}
.legend span{display:inline-block;width:.9rem;height:.9rem;vertical-align:middle;margin:0 .3rem 0 1rem}
.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.6rem 0}
.filters input,.filters select{font:inherit;padding:.2rem .3rem}
.pager{display:flex;gap:1rem;margin:.4rem 0}
"""


def _t(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "—"


def _d(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d}" if value is not None else "—"


def _badge(state: str) -> str:
    return f'<span class="badge b-{escape(state)}">{escape(state)}</span>'


class Links:
    """URLs inside the dashboard; carries the Functions key (``code``) when the page was opened with one."""

    def __init__(self, base: str, code: str | None) -> None:
        self.base, self.code = base.rstrip("/"), code

    def _q(self, extra: str = "") -> str:
        parts = [p for p in (extra, f"code={quote(self.code, safe='')}" if self.code else "") if p]
        return ("?" + "&".join(parts)) if parts else ""

    def overview(self, extra: str = "") -> str:
        return self.base + self._q(extra)

    def certificate(self, vault: str, name: str) -> str:
        return f"{self.base}/certificates/{quote(vault, safe='')}/{quote(name, safe='')}" + self._q()

    def replay(self) -> str:
        return f"{self.base}/replay" + self._q()


def page(title: str, body: str, links: Links) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="same-origin"><link rel="icon" href="data:,">
<title>{escape(title)} · Certificate renewal</title><style>{CSS}</style></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><p class="muted" style="margin:.6rem 0 0">Key Vault certificate renewal</p>
<nav aria-label="Dashboard"><ul><li><a href="{escape(links.overview())}">Estate</a></li>
<li><a href="{escape(links.overview())}#certificates">Certificates</a></li>
<li><a href="{escape(links.overview())}#failures">Failures</a></li></ul></nav></header>
<main id="main">{body}</main>
<footer><p class="muted">Server-rendered; times in UTC.</p></footer></body></html>"""


def _table(caption: str, head: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    ths = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(head)}" class="muted">None.</td></tr>'
    return f"<table><caption>{escape(caption)}</caption><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>"


def expiry_chart(weeks: Sequence[WeekBucket]) -> str:
    """Grouped bars per week: expiries and scheduled renewals (inline SVG, with a text alternative)."""
    width, height, left, bottom, top = 860, 240, 40, 40, 16
    plot_h = height - bottom - top
    peak = max([1, *(w.expiries for w in weeks), *(w.renewals for w in weeks)])
    slot = (width - left - 10) / len(weeks)
    bar = slot * 0.36
    parts = [
        f'<svg id="expiry-chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Expiries and scheduled renewals per '
        f'week, next 90 days</title><desc id="chart-desc">{sum(w.expiries for w in weeks)} expiries and '
        f"{sum(w.renewals for w in weeks)} scheduled renewals; the table below lists each week.</desc>"
    ]
    for tick in range(peak + 1):
        if peak > 8 and tick % max(1, peak // 4):
            continue
        y = top + plot_h - plot_h * tick / peak
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for i, week in enumerate(weeks):
        x = left + i * slot + slot * 0.12
        for j, (value, color, label) in enumerate(
            ((week.expiries, "#a40e26", "expiries"), (week.renewals, "#0550ae", "scheduled renewals"))
        ):
            h = plot_h * value / peak
            parts.append(
                f'<rect class="bar-{label.split()[-1]}" x="{x + j * bar:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar - 2:.1f}" height="{h:.1f}" fill="{color}"><title>week of {week.start:%Y-%m-%d}: '
                f"{value} {label}</title></rect>"
            )
        label_y = height - bottom + 16
        parts.append(f'<text x="{x + bar:.1f}" y="{label_y}" text-anchor="middle">{week.start:%m-%d}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">week starting (month-day)</text></svg>')
    return "".join(parts)


def overview(
    estate: Estate, links: Links, *, csrf: str, message: str | None = None, query: CertificateQuery | None = None
) -> str:
    query = query or CertificateQuery()
    counts = estate.counts
    kept = f"; {_n(estate.kept, 'unchanged version')} from the version facts table" if estate.kept else ""
    out = [
        "<h1>Certificate estate</h1>",
        f'<p class="muted" id="as-of">As of {_t(estate.now)}: {_n(len(estate.certificates), "certificate")}, '
        f"{estate.reads} read from Key Vault{kept}. "
        f'<a href="{escape(links.overview(query.params(fresh=1)))}">Rebuild now</a></p>',
    ]
    if message:
        out.append(f'<p class="note" role="status">{escape(message)}</p>')
    for error in estate.errors:
        out.append(f'<p class="note error" role="alert">{escape(error)}</p>')
    out.append('<section aria-labelledby="h-states"><h2 id="h-states">By state</h2><ul class="counts" id="counts">')
    for state in STATES:
        out.append(
            f'<li class="state-{state}" data-state="{state}"><strong>{counts[state]}</strong>{escape(state)}</li>'
        )
    out.append("</ul></section>")
    out.append('<section aria-labelledby="h-chart"><h2 id="h-chart">Next 90 days</h2>')
    out.append(
        '<p class="legend" aria-hidden="true"><span style="background:#a40e26;margin-left:0"></span>expiries'
        '<span style="background:#0550ae"></span>scheduled renewals</p>'
    )
    out.append(expiry_chart(estate.weeks))
    out.append("<details><summary>Per-week numbers</summary>")
    out.append(
        _table(
            "Expiries and scheduled renewals per week",
            ["week starting", "expiries", "scheduled renewals"],
            ([_d(w.start), str(w.expiries), str(w.renewals)] for w in estate.weeks),
            numeric={1, 2},
        )
    )
    out.append("</details></section>")
    out.append(_certificates_section(estate, links, query))
    out.append(failures(estate, links, csrf=csrf))
    out.append(_drill_section(estate))
    return "".join(out)


def _options(
    name: str, label: str, values: Iterable[str], chosen: str, *, any_label: str = "any", labels: dict | None = None
) -> str:
    labels = labels or {}
    opts = [f'<option value=""{" selected" if not chosen else ""}>{escape(any_label)}</option>']
    opts += [
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(labels.get(v, v))}</option>'
        for v in values
    ]
    return f'<label>{escape(label)} <select name="{name}" id="f-{name}">{"".join(opts)}</select></label>'


def _certificates_section(estate: Estate, links: Links, query: CertificateQuery) -> str:
    found = select(estate.certificates, query)
    vaults = sorted({r.vault for r in estate.certificates})
    issuers = sorted({r.issuer for r in estate.certificates if r.issuer})
    rules = sorted({f.rule for r in estate.certificates for f in r.findings})
    hidden = f'<input type="hidden" name="code" value="{escape(links.code)}">' if links.code else ""
    form = (
        f'<form method="get" action="{escape(links.base)}" role="search" id="filters" class="filters">{hidden}'
        f'<label>Name <input type="search" name="q" id="f-q" value="{escape(query.q)}" maxlength="200"></label> '
        + _options("vault", "Vault", vaults, query.vault)
        + " "
        + _options("state", "State", STATES, query.state)
        + " "
        + _options("issuer", "Issuer", issuers, query.issuer)
        + " "
        + _options("finding", "Finding", ["none", *SEVERITIES, *rules], query.finding)
        + " "
        + _options(
            "sort",
            "Sort",
            [k for k in SORTS if k != "expiry"],
            "" if query.sort == "expiry" else query.sort,
            any_label=SORTS["expiry"],
            labels=SORTS,
        )
        + ' <button type="submit">Show</button></form>'
    )
    shown = f"{found.total} of {len(estate.certificates)}" if query.filtered else str(found.total)
    caption = f"{shown} certificates, {SORTS[query.sort]}, page {found.page} of {found.pages}"
    nav = []
    if found.page > 1:
        nav.append(f'<a rel="prev" id="page-prev" href="{escape(links.overview(query.params(page=found.page - 1)))}">'
                   "Previous</a>")  # fmt: skip
    if found.page < found.pages:
        nav.append(f'<a rel="next" id="page-next" href="{escape(links.overview(query.params(page=found.page + 1)))}">'
                   "Next</a>")  # fmt: skip
    exports = " ".join(
        f'<a id="export-{fmt}" href="{escape(links.overview(query.params(page=None, format=fmt)))}" '
        f'download="certificates.{fmt}">{fmt.upper()}</a>'
        for fmt in ("csv", "json")
    )
    return (
        '<section aria-labelledby="h-certs" id="certificates"><h2 id="h-certs">Certificates</h2>'
        + _finding_summary(estate)
        + form
        + _table(
            caption,
            ["certificate", "state", "expires", "renew at", "why", "issuer", "last outcome", "findings"],
            (_certificate_cells(c, links) for c in found.rows),
        )
        + f'<nav aria-label="Pages" class="pager">{" ".join(nav)}</nav>'
        + f'<p id="exports">Export the {found.total} matching certificates: {exports}</p>'
        + "</section>"
    )


def _drill_section(estate: Estate) -> str:
    out = ['<section aria-labelledby="h-backups" id="backups"><h2 id="h-backups">Backups</h2>']
    drill = estate.last_drill
    if not estate.backups_configured:
        out.append('<p class="note">No backup archive is configured (RENEWAL_BACKUP_STORAGE).</p>')
    elif drill is None:
        out.append('<p class="note error" id="last-drill">No restore drill on record: run <code>python -m renewal '
                   "drill</code>.</p>")  # fmt: skip
    else:
        verdict = "passed" if drill.get("passed") else "FAILED"
        css = "" if drill.get("passed") else " error"
        out.append(
            f'<p class="note{css}" id="last-drill">Last restore drill {escape(str(drill.get("finished_at", "")))} '
            f"into {escape(str(drill.get('drill_vault', '')))}: {verdict}, {drill.get('verified', 0)} of "
            f"{drill.get('sampled', 0)} verified in {float(drill.get('seconds', 0.0)):.1f} s.</p>"
        )
    out.append("</section>")
    return "".join(out)


# The overview's colours: done reads as healthy, a failed target as failing, one under way as renewing.
_ROLLOUT_BADGE = {"done": "healthy", "in_progress": "renewing", "skipped": "due", "failed": "failing"}


def _rollouts_section(detail: CertificateDetail) -> str:
    """Each deployer target's outcome per version: what the target reported bound, or why not."""
    live = detail.current.version if detail.current is not None else detail.row.entry.version
    open_ = [r for r in detail.rollouts if r.version == live and r.state.value in ("failed", "in_progress")]
    out = ['<section aria-labelledby="h-rollouts" id="rollouts"><h2 id="h-rollouts">Rollouts</h2>']
    if open_:
        out.append(
            f'<p class="note error" role="alert">{len(open_)} target(s) have not taken the live version yet.</p>'
        )
    out.append(
        _table(
            f"{len(detail.rollouts)} target outcomes, newest first",
            ["version", "deployer", "target", "state", "bound thumbprint", "started", "updated", "passes", "detail"],
            (
                [
                    f"<code>{escape(r.version[:12])}</code>",
                    escape(r.deployer),
                    f"<code>{escape(r.target)}</code>" if r.target != r.deployer else "—",
                    f'<span class="badge b-{_ROLLOUT_BADGE[r.state.value]}">{r.state.value.replace("_", " ")}</span>',
                    f"<code>{escape(r.thumbprint or '')}</code>",
                    _t(r.started_at),
                    _t(r.updated_at),
                    str(r.attempts),
                    escape(r.detail),
                ]
                for r in detail.rollouts
            ),
            numeric={7},
        )
    )
    out.append("</section>")
    return "".join(out)


def _issuer_cell(row: CertificateRow) -> str:
    if row.issuer:
        return escape(row.issuer)
    return '<span class="sev-error">no route</span>' if row.entry.route_problem else "—"


def _findings_cell(row: CertificateRow, link: str) -> str:
    """Count, worst severity first, then the rules, linking to the certificate page's findings list."""
    if not row.findings:
        return '<span class="findings-none">0</span>'
    severities = row.severities
    worst = next(s for s in SEVERITIES if severities.get(s))
    rules = ", ".join(sorted({f.rule for f in row.findings}))
    return (
        f'<a class="sev-{worst}" href="{escape(link)}#findings" data-findings="{len(row.findings)}">'
        f'{len(row.findings)}</a> <span class="muted">{escape(rules)}</span>'
    )


def _certificate_cells(c: CertificateRow, links: Links) -> list[str]:
    link = links.certificate(c.vault, c.name)
    last = c.last
    return [
        f'<a href="{escape(link)}">{escape(c.vault)}/{escape(c.name)}</a>',
        _badge(c.state),
        _d(c.expires_on),
        _d(c.renew_at),
        escape(c.why),
        _issuer_cell(c),
        escape(f"{last.state} ({_d(last.updated_at or last.started_at)})") if last else "—",
        _findings_cell(c, link),
    ]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _finding_summary(estate: Estate) -> str:
    counts = estate.finding_counts
    flagged = sum(1 for c in estate.certificates if c.findings)
    return (
        f'<p id="finding-summary">Compliance: <span class="sev-error">{_n(counts["error"], "error")}</span>, '
        f'<span class="sev-warning">{_n(counts["warning"], "warning")}</span> on {flagged} of '
        f"{_n(len(estate.certificates), 'certificate')}.</p>"
    )


def _replay_form(links: Links, csrf: str, kind: str, item_id: str, label: str) -> str:
    return (
        f'<form method="post" action="{escape(links.replay())}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<input type="hidden" name="kind" value="{escape(kind)}">'
        f'<input type="hidden" name="id" value="{escape(item_id)}">'
        f'<button type="submit" aria-label="Replay {escape(label)}">Replay</button></form>'
    )


def failures(estate: Estate, links: Links, *, csrf: str) -> str:
    report = estate.failures
    rows: list[list[str]] = []
    for kind, items in (("job", report.jobs), ("notice", report.notices)):
        for f in items:
            target = f"{f.vault}/{f.name}" if f.vault and f.name else "(unreadable message)"
            label = f"{kind} {target}"
            rows.append(
                [
                    escape(f"{kind} in {f.queue}-poison"),
                    escape(target),
                    escape(f.reason),
                    _t(f.inserted_on) if isinstance(f.inserted_on, dt.datetime) else escape(str(f.inserted_on or "—")),
                    _replay_form(links, csrf, kind, f.message_id, label),
                ]
            )
    blobs: dict[str, list[Any]] = {}
    for item in report.dead_letters:
        blobs.setdefault(item.blob_name, []).append(item)
    for blob, items in blobs.items():
        reason = "; ".join(str(i.error or i.reason or "dead-lettered") for i in items)
        rows.append(
            [
                "Event Grid dead-letter",
                escape(blob),
                escape(reason),
                "—",
                _replay_form(links, csrf, "dead_letter", blob, f"dead-letter {blob}"),
            ]
        )
    return (
        '<section aria-labelledby="h-failures" id="failures"><h2 id="h-failures">Failures</h2>'
        + _table(f"{len(rows)} failed items to replay", ["where", "certificate", "reason", "failed at", "action"], rows)
        + "</section>"
    )


def certificate(detail: CertificateDetail, links: Links) -> str:
    row, current = detail.row, detail.current
    entry = row.entry
    out = [f"<h1>{escape(detail.vault)}/{escape(detail.name)} {_badge(row.state)}</h1>"]
    out.append('<section aria-labelledby="h-current"><h2 id="h-current">Live version</h2><dl class="facts">')
    if current is not None:
        out.append(
            f"<dt>version</dt><dd><code>{escape(current.version)}</code></dd>"
            f"<dt>valid</dt><dd>{_t(current.not_before)} to {_t(current.expires_on)}</dd>"
            f"<dt>tags</dt><dd>{escape(', '.join(f'{k}={v}' for k, v in sorted(current.tags.items())) or '—')}</dd>"
        )
    else:
        out.append(
            f"<dt>version</dt><dd><code>{escape(entry.version or '')}</code> (listed)</dd>"
            f"<dt>valid</dt><dd>{_t(entry.not_before)} to {_t(entry.expires_on)}</dd>"
            f'<dt>read</dt><dd class="sev-error">{escape(entry.read_error or "not read")}</dd>'
        )
    out.append("</dl></section>")
    issuer = (
        escape(entry.issuer) if entry.issuer else f'<span class="sev-error">{escape(entry.route_problem or "—")}</span>'
    )
    out.append(
        '<section aria-labelledby="h-renewal"><h2 id="h-renewal">Renewal</h2><dl class="facts">'
        f"<dt>issuer</dt><dd>{issuer}</dd>"
        f"<dt>renew at</dt><dd>{_t(entry.decision.renew_at)}</dd>"
        f"<dt>why</dt><dd>{escape(entry.decision.reason)}</dd>"
        f"<dt>merged by this service</dt><dd>{'yes' if entry.merged_by_service else 'no'}</dd>"
        "</dl></section>"
    )
    out.append('<section aria-labelledby="h-findings" id="findings"><h2 id="h-findings">Compliance findings</h2>')
    out.append(
        _table(
            _n(len(row.findings), "finding"),
            ["severity", "rule", "finding"],
            (
                [
                    f'<span class="sev-{escape(f.severity)}">{escape(f.severity)}</span>',
                    escape(f.rule),
                    escape(f.message),
                ]
                for f in sorted(row.findings, key=lambda f: (SEVERITIES.index(f.severity), f.rule))
            ),
        )
    )
    out.append("</section>")
    out.append('<section aria-labelledby="h-versions" id="versions"><h2 id="h-versions">Versions</h2>')
    out.append(
        _table(
            f"{len(detail.versions)} versions, newest first",
            ["version", "created", "not before", "expires", "enabled", "live"],
            (
                [
                    f"<code>{escape(v.version or '')}</code>",
                    _t(v.created_on),
                    _t(v.not_before),
                    _t(v.expires_on),
                    "yes" if v.enabled else "no",
                    "live" if v.version == (current.version if current is not None else entry.version) else "",
                ]
                for v in detail.versions
            ),
        )
    )
    out.append("</section>")
    if detail.backups is not None:
        live = current.version if current is not None else entry.version
        out.append('<section aria-labelledby="h-backups" id="backups"><h2 id="h-backups">Backups</h2>')
        if not any(b.version == live for b in detail.backups):
            out.append('<p class="note error" role="alert">The live version has no backup yet.</p>')
        out.append(
            _table(
                f"{len(detail.backups)} backups, newest first",
                ["version", "backed up", "thumbprint", "live"],
                (
                    [
                        f"<code>{escape(b.version)}</code>",
                        _t(b.backed_up_at),
                        f"<code>{escape(b.thumbprint)}</code>",
                        "live" if b.version == live else "",
                    ]
                    for b in detail.backups
                ),
            )
        )
        out.append("</section>")
    if detail.rollouts:
        out.append(_rollouts_section(detail))
    out.append('<section aria-labelledby="h-ledger" id="ledger"><h2 id="h-ledger">Ledger</h2>')
    out.append(
        _table(
            f"{len(detail.ledger)} renewal attempts, newest first",
            ["started", "updated", "state", "reason", "issuer", "old version", "new version", "attempts", "error"],
            (
                [
                    _t(r.started_at),
                    _t(r.updated_at),
                    _badge_for_ledger(r.state),
                    escape(r.reason or ""),
                    escape(r.issuer or ""),
                    f"<code>{escape((r.old_version or '')[:12])}</code>",
                    f"<code>{escape((r.new_version or '')[:12])}</code>",
                    str(r.attempts),
                    escape(r.error or ""),
                ]
                for r in detail.ledger
            ),
            numeric={7},
        )
    )
    out.append("</section>")
    return "".join(out)


def _badge_for_ledger(state: str) -> str:
    attempt = AttemptState(state)
    kind = "failing" if attempt.failing else "healthy" if attempt.succeeded else "renewing"
    return f'<span class="badge b-{kind}">{escape(attempt.value)}</span>'


def error_page(title: str, message: str, links: Links) -> str:
    return page(
        title,
        f'<h1>{escape(title)}</h1><p class="note error" role="alert">{escape(message)}</p>'
        f'<p><a href="{escape(links.overview())}">Back to the estate</a></p>',
        links,
    )
