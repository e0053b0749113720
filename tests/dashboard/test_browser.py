"""The dashboard in a real headless Chromium (playwright-core from tools/): read the estate, see a
failure with its reason, fix the cause, press Replay, let the worker run, reload and see it renewed.
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import unavailable

from .conftest import run_jobs, seed_estate

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "tools" / "node_modules" / "playwright-core"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
COUNTS_JS = (
    "() => Object.fromEntries([...document.querySelectorAll('#counts li')]"
    ".map(li => [li.dataset.state, Number(li.querySelector('strong').textContent)]))"
)
ROW_JS = (
    "(name) => { const a = [...document.querySelectorAll('#certificates tbody a')]"
    ".find(x => x.textContent === name); if (!a) return null;"
    " return [...a.closest('tr').cells].map(c => c.textContent.trim()); }"
)


class Browser:
    def __init__(self) -> None:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            unavailable("chromium", "the Debian package chromium is not installed (make system-deps)")
        if not PLAYWRIGHT.exists() or shutil.which("node") is None:
            unavailable("chromium", "node or tools/node_modules/playwright-core is missing (make tools)")
        self.proc = subprocess.Popen(
            ["node", str(Path(__file__).with_name("browser.cjs"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "PLAYWRIGHT_CORE": str(PLAYWRIGHT), "CHROMIUM": chromium},
        )
        assert self._read().get("ready")

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"browser driver exited ({self.proc.wait()})")
        return json.loads(line)

    def do(self, op: str, **kw: Any) -> Any:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if not answer["ok"]:
            raise AssertionError(answer["error"])
        return answer.get("value")

    def eval(self, function: str) -> Any:
        """Call a JavaScript function expression in the page and return its (JSON) result."""
        return self.do("eval", expr=f"({function})()")

    def row(self, name: str) -> list[str] | None:
        return self.do("eval", expr=f"({ROW_JS})({json.dumps(name)})")

    def close(self) -> None:
        try:
            self.do("close")
        finally:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def test_operator_sees_the_estate_and_replays_a_failure_in_the_browser(flow, dashboard, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seed_estate(flow)
    flow.service.force_renewal("kv-alpha", "partner-api")
    assert run_jobs(flow).poisoned == 1  # partner-ca has no PARTNER_CA_KEY: poison queue

    assert browser.do("goto", url=dashboard.url("ops/dashboard"))["status"] == 200
    browser.do("screenshot", path=str(ARTIFACTS / "1-overview-with-failure.png"))
    assert browser.eval(COUNTS_JS) == {"expired": 1, "failing": 1, "renewing": 0, "due": 1, "healthy": 1}
    web = browser.row("kv-alpha/web")
    assert web[1] == "healthy" and web[5] == "corp-local"
    assert web[7] == "1 chain-unverified"  # seeded by the emulator's CA: the stored chain cannot be shown
    assert browser.row("kv-alpha/legacy")[7] == "2 chain-unverified, expired-current"
    assert browser.row("kv-alpha/partner-api")[1] == "failing"
    assert browser.eval("() => document.querySelectorAll('#expiry-chart rect').length") == 26  # 13 weeks x 2
    assert browser.eval("() => document.querySelector('#expiry-chart title').textContent").startswith("Expiries")
    failure = browser.eval("() => document.querySelector('#failures tbody tr').innerText")
    assert "kv-alpha/partner-api" in failure and "PARTNER_CA_KEY" in failure

    # Keyboard: the first Tab stop is the skip link, and focus is visible.
    first = browser.do("tab")
    assert first["tag"] == "A" and first["text"] == "Skip to content" and first["outline"].startswith("solid")

    # The operator fixes the cause (the app setting appears) and presses Replay.
    flow.service.environ["PARTNER_CA_KEY"] = flow.ca_paths["ca_key"].read_text()
    flow.service.reset_issuers()
    before = flow.current("partner-api").properties.version
    after_click = browser.do("click", selector="#failures button")
    assert after_click["status"] == 200 and "/ops/dashboard" in after_click["url"]
    assert "Replayed 1 item" in browser.eval("() => document.querySelector('[role=status]').textContent")
    assert browser.eval(COUNTS_JS)["failing"] == 1  # still failing until the worker runs

    assert run_jobs(flow).processed == 1  # the host's worker picks the replayed job up
    browser.do("goto", url=dashboard.url("ops/dashboard"))
    browser.do("screenshot", path=str(ARTIFACTS / "2-overview-after-replay.png"))
    assert browser.eval(COUNTS_JS) == {"expired": 1, "failing": 0, "renewing": 0, "due": 1, "healthy": 2}
    partner = browser.row("kv-alpha/partner-api")
    assert partner[1] == "healthy" and partner[6].startswith("notified")
    assert partner[7] == "0"  # merged by the service, so its chain was verified: no finding left
    assert "None." in browser.eval("() => document.querySelector('#failures tbody').innerText")

    browser.do("click", selector="#certificates a[href*='partner-api']")
    browser.do("screenshot", path=str(ARTIFACTS / "3-certificate-partner-api.png"))
    versions = browser.eval("() => [...document.querySelectorAll('#versions tbody tr')].map(r => r.innerText)")
    assert len(versions) == 2 and any(before in v for v in versions)
    ledger = browser.eval("() => document.querySelector('#ledger tbody').innerText")
    assert "notified" in ledger and "partner-ca" in ledger
    assert browser.do("errors") == []  # no console errors, no failed (e.g. external) requests

    # The findings count links to the certificate's findings list.
    browser.do("goto", url=dashboard.url("ops/dashboard"))
    browser.do("click", selector="#certificates a[href*='legacy'][href$='#findings']")
    assert browser.eval("() => location.hash") == "#findings"
    findings = browser.eval("() => [...document.querySelectorAll('#findings tbody tr')].map(r => r.cells[1].innerText)")
    assert findings == ["expired-current", "chain-unverified"]
    assert browser.do("errors") == []


ROWS_JS = "() => [...document.querySelectorAll('#certificates tbody tr')].map(r => r.cells[0].innerText)"
CAPTION_JS = "() => document.querySelector('#certificates caption').innerText"


def test_operator_searches_filters_pages_and_exports_the_estate_in_the_browser(flow, dashboard, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    now = flow.now()
    flow.kv.admin.seed("kv-alpha", count=70, prefix="web", not_before=now - 30 * 86400, expires=now + 60 * 86400)
    flow.kv.admin.seed("kv-beta", count=40, prefix="api", not_before=now - 30 * 86400, expires=now + 20 * 86400)
    flow.seed("kv-beta", "old-billing", days_left=-2)

    assert browser.do("goto", url=dashboard.url("ops/dashboard"))["status"] == 200
    assert browser.eval(CAPTION_JS) == "111 certificates, expires soonest first, page 1 of 3"
    first = browser.eval(ROWS_JS)
    assert len(first) == 50 and first[0] == "kv-beta/old-billing"  # the expired one leads
    browser.do("screenshot", path=str(ARTIFACTS / "4-list-page-1.png"))

    browser.do("click", selector="#page-next")
    assert browser.eval(CAPTION_JS).endswith("page 2 of 3")
    second = browser.eval(ROWS_JS)
    assert len(second) == 50 and not set(first) & set(second)
    browser.do("click", selector="#page-next")
    assert len(browser.eval(ROWS_JS)) == 11

    # Search by name within one vault, soonest expiry last.
    browser.do("fill", selector="#f-q", value="WEB-6")  # case does not matter
    browser.do("select", selector="#f-vault", value="kv-alpha")
    browser.do("select", selector="#f-sort", value="-expiry")
    browser.do("click", selector="#filters button")
    assert "q=WEB-6" in browser.eval("() => location.search")  # a plain GET: bookmarkable
    rows = browser.eval(ROWS_JS)
    assert sorted(rows) == sorted(["kv-alpha/web-6", *(f"kv-alpha/web-{i}" for i in range(60, 70))])
    assert browser.eval(CAPTION_JS).startswith("11 of 111 certificates, expires latest first")
    browser.do("screenshot", path=str(ARTIFACTS / "5-list-searched.png"))

    # Filter by state and by finding.
    browser.do("goto", url=dashboard.url("ops/dashboard"))
    browser.do("select", selector="#f-state", value="expired")
    browser.do("click", selector="#filters button")
    assert browser.eval(ROWS_JS) == ["kv-beta/old-billing"]
    browser.do("select", selector="#f-state", value="")
    browser.do("select", selector="#f-finding", value="expired-current")
    browser.do("click", selector="#filters button")
    assert browser.eval(ROWS_JS) == ["kv-beta/old-billing"]

    # Export the filtered list: the links carry the filters.
    browser.do("goto", url=dashboard.url("ops/dashboard") + "&vault=kv-beta")
    # (The page's CSP forbids scripts from fetching, so the test follows the links itself.)
    csv_href = browser.eval("() => document.querySelector('#export-csv').href")
    answer = requests.get(csv_href, timeout=60)
    assert answer.headers["Content-Disposition"] == 'attachment; filename="certificates.csv"'
    lines = answer.text.strip().splitlines()
    assert lines[0].startswith("vault,name,state,version,expires_on")
    assert len(lines) == 1 + 41 and all(line.startswith("kv-beta,") for line in lines[1:])
    json_href = browser.eval("() => document.querySelector('#export-json').href")
    exported = requests.get(json_href, timeout=60).json()
    assert len(exported["certificates"]) == 41
    browser.do("screenshot", path=str(ARTIFACTS / "6-list-filtered-by-vault.png"))
    assert browser.do("errors") == []
