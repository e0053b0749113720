"""``python -m renewal report``: JSON shape, a self-contained HTML page, the table, exit codes."""

from __future__ import annotations

import json
import re
from typing import Any

from typer.testing import CliRunner

from renewal.flow.due import ISSUER_TAG
from renewal.operations import cli
from tests.flow.conftest import Flow

runner = CliRunner()
CERTIFICATE_KEYS = {
    "vault", "name", "version", "enabled", "not_before", "expires_on", "issuer", "route_problem", "due",
    "renew_at", "renew_reason", "trigger", "policy_issuer", "subject", "last_renewal", "merged_by_service",
    "read_error", "tags", "findings",
}  # fmt: skip
FINDING_KEYS = {"rule", "severity", "certificate", "vault", "name", "version", "message"}


def test_json_schema(flow: Flow, use_service: Any) -> None:
    flow.seed("kv-alpha", "web", days_left=60)
    flow.seed("kv-beta", "orphan", days_left=60, tags={ISSUER_TAG: "gone"})

    result = runner.invoke(cli.app, ["report", "--format", "json"])

    assert result.exit_code == 1  # the orphan never renews: an error
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "generated_at", "summary", "certificates", "findings", "errors"}
    assert data["schema"] == 1
    assert {"certificates", "due", "errors", "warnings", "rules", "certificate_reads"} <= set(data["summary"])
    assert data["summary"]["certificates"] == 2 and data["summary"]["certificate_reads"] == 2
    for certificate in data["certificates"]:
        assert set(certificate) == CERTIFICATE_KEYS
    for finding in data["findings"]:
        assert set(finding) == FINDING_KEYS
    web = next(c for c in data["certificates"] if c["name"] == "web")
    assert web["issuer"] == "corp-local" and web["renew_at"] and web["trigger"] == "policy"
    orphan = next(c for c in data["certificates"] if c["name"] == "orphan")
    assert orphan["issuer"] is None and "gone" in orphan["route_problem"]
    assert any(f["rule"] == "no-route" and f["severity"] == "error" for f in orphan["findings"])


def test_html_is_self_contained(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    flow.seed("kv-alpha", "web", days_left=60)
    flow.seed("kv-alpha", "api", days_left=5)
    out = tmp_path / "estate.html"

    result = runner.invoke(cli.app, ["report", "--format", "html", "--output", str(out)])

    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", page.replace("</", "<"))  # no external references
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "kv-alpha" in page and "web" in page and "corp-local" in page


def test_table_and_output_file(flow: Flow, use_service: Any, tmp_path: Any) -> None:
    flow.seed("kv-alpha", "web", days_left=60)
    out = tmp_path / "estate.txt"
    result = runner.invoke(cli.app, ["report", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "kv-alpha/web" in text and "1 certificates" in text


def test_bad_arguments(flow: Flow, use_service: Any) -> None:
    assert runner.invoke(cli.app, ["report", "--format", "pdf"]).exit_code == 2
    assert runner.invoke(cli.app, ["report", "--vault", "kv-nowhere"]).exit_code == 3
