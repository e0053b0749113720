"""The operator CLI against the emulator and Azurite, configured only through app settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from devtools.pump import QueuePump
from renewal import settings
from renewal.operations.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, app

from .conftest import make_config


@pytest.fixture
def cli_env(flow, azurite, hook, monkeypatch):
    env = {
        **azurite.env(),
        **flow.environ,
        settings.CONFIG.name: json.dumps(make_config(flow.kv, flow.ca_paths, hook.url)),
        "COLUMNS": "250",  # rich wraps tables to the terminal width
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_sweep_dry_run_lists_due_and_later_and_queues_nothing(flow, cli_env):
    flow.seed("kv-alpha", "web", days_left=10)
    flow.seed("kv-alpha", "healthy", days_left=85)
    result = invoke("sweep", "--dry-run")
    assert result.exit_code == EXIT_OK, result.output
    assert "web" in result.output and "healthy" in result.output and "later" in result.output
    assert "due 1" in result.output
    assert flow.storage.queue_client(settings.JOBS_QUEUE).get_queue_properties().approximate_message_count == 0
    result = invoke("sweep")
    assert result.exit_code == EXIT_OK
    assert flow.storage.queue_client(settings.JOBS_QUEUE).get_queue_properties().approximate_message_count == 1


def test_renew_inline_and_exit_codes(flow, cli_env):
    flow.seed("kv-alpha", "web", days_left=60)
    result = invoke("renew", "kv-alpha", "web", "--inline")
    assert result.exit_code == EXIT_OK, result.output
    assert "renewed" in result.output
    assert len(flow.versions("web")) == 2
    assert invoke("renew", "kv-alpha", "missing").exit_code == EXIT_NOT_FOUND
    assert invoke("renew", "kv-zulu", "web").exit_code == EXIT_NOT_FOUND


def test_replay_list_then_replay_and_status(flow, cli_env, monkeypatch):
    flow.seed("kv-alpha", "partner-api", days_left=5)
    assert invoke("renew", "kv-alpha", "partner-api").exit_code == EXIT_OK
    import function_app

    function_app._service = flow.service
    try:
        QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(timeout=60)
    finally:
        function_app._service = None
    listed = invoke("replay", "--list")
    assert listed.exit_code == EXIT_FAILED
    assert "partner-api" in listed.output and "PARTNER_CA_KEY" in listed.output
    status = invoke("status", "--json")
    assert status.exit_code == EXIT_OK
    assert json.loads(status.output)["queues"]["renewal-jobs-poison"] == 1
    monkeypatch.setenv("PARTNER_CA_KEY", flow.ca_paths["ca_key"].read_text())
    replayed = invoke("replay")
    assert replayed.exit_code == EXIT_OK and "re-queued 1 job" in replayed.output
    assert invoke("replay", "--list").exit_code == EXIT_OK


def test_bad_configuration_lists_every_problem_and_exits_2(cli_env, monkeypatch):
    monkeypatch.setenv(settings.CONFIG.name, json.dumps({"vaults": [], "issuers": [{"name": "x", "type": "nope"}]}))
    result = CliRunner().invoke(app, ["check-config"])
    assert result.exit_code == EXIT_CONFIG
    assert "vaults" in result.output and "issuers[0].type" in result.output
