"""infra/app/alerts.bicep: four alert rules over the service's metrics, each with a threshold, a window
and the action group, wired from main.bicep."""

from __future__ import annotations

import pytest

from renewal import metrics
from tests.infra import templates as t

ALERTS = "app/alerts.bicep"
RULE = "Microsoft.Insights/scheduledQueryRules"


def check_alerts(templates: t.Templates) -> list[str]:
    problems = []
    if ALERTS not in templates:
        return [f"{ALERTS} is missing"]
    wired = [m for m in t.modules(t.parse(templates[t.MAIN])).values() if m["path"] == ALERTS]
    if not wired:
        problems.append(f"main.bicep does not use {ALERTS}")
    elif "actionGroupId" not in wired[0]["body"].get("params", {}):
        problems.append("main.bicep does not pass actionGroupId to the alerts")
    rules = {r.symbol: r.body for r in t.resources(t.parse(templates[ALERTS])) if r.type == RULE and not r.existing}
    if len(rules) != 4:
        problems.append(f"expected 4 alert rules, found {sorted(rules)}")
    wanted = {
        "expiring": (metrics.EXPIRATION, "now(7d)"),
        "failures": (metrics.RENEWALS, '"failed"'),
        "poison": (metrics.POISON_DEPTH, "-poison"),
        "backup": (metrics.BACKUPS, '"overdue"'),
    }
    for key, needles in wanted.items():
        matching = [b for b in rules.values() if all(n in str(b) for n in needles)]
        if not matching:
            problems.append(f"no rule for {key} (query naming {needles})")
    for symbol, body in rules.items():
        props = body.get("properties", {})
        criteria = props.get("criteria", {}).get("allOf") or [{}]
        if not all("threshold" in c and c.get("operator") for c in criteria):
            problems.append(f"{symbol}: no threshold")
        if not props.get("windowSize") or not props.get("evaluationFrequency"):
            problems.append(f"{symbol}: no window or evaluation frequency")
        if not props.get("actions"):
            problems.append(f"{symbol}: no action group")
        if not props.get("enabled", False):
            problems.append(f"{symbol}: disabled")
    return problems


TEMPLATES = t.load_templates()


def test_four_alert_rules_with_threshold_window_and_action_group():
    assert check_alerts(TEMPLATES) == []
    doc = t.parse(TEMPLATES[ALERTS])
    assert "actionGroupId" in doc["parameters"]
    assert "actionGroupId" in str(doc["variables"]["actions"])
    windows = {r.symbol: r.body["properties"]["windowSize"] for r in t.resources(doc) if r.type == RULE}
    assert windows == {
        "expiringNotRenewed": "P1D",
        "renewalFailures": "PT1H",
        "poisonQueue": "PT1H",
        "backupOverdue": "P1D",
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("          threshold: 0\n", ""),
        ("    windowSize: 'PT1H'\n", ""),
        ("    enabled: true\n", "    enabled: false\n"),
        ("renewal.poison_queue.depth", "renewal.poison"),
        ("    actionGroupId: alertActionGroupId\n", ""),
    ],
)
def test_alert_checker_catches(old, new):
    copy = dict(TEMPLATES)
    path = t.MAIN if "alertActionGroupId" in old else ALERTS
    assert old in copy[path]
    copy[path] = copy[path].replace(old, new, 1)
    assert check_alerts(copy)
