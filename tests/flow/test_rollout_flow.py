"""The deployments stage as a rollout: per-target outcomes in the ``rollouts`` table (Azurite), a target in
progress brought back by a delayed message, a failed one retried, poisoned and replayed without renewing again,
and what ``status`` shows. The deployer here is a scripted stand-in for the Azure ones (those are tested against
the ARM stand-in through their real HTTP paths in tests/azure/ and tests/flow/test_azure_rollouts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

import function_app
from devtools.pump import QueuePump
from renewal import settings
from renewal.model import RolloutOutcome, RolloutRecord, RolloutState
from renewal.operations import cli

from .conftest import near_expiry_event


@dataclass
class _Config:
    vault: str | None = None
    match: str = "*"


@dataclass
class ScriptedRollout:
    """Answers each target from a script of states; records what it was asked."""

    name: str
    script: dict[str, list[RolloutState]]
    config: _Config = field(default_factory=_Config)
    calls: list[tuple[str, RolloutRecord | None]] = field(default_factory=list)

    def targets(self) -> list[str]:
        return list(self.script)

    def roll_out(self, notice, current, target, previous):
        self.calls.append((target, previous))
        assert current.version == notice.new_version
        state = self.script[target].pop(0)
        return RolloutOutcome(
            self.name,
            target,
            state,
            detail=f"{state.value} #{len(self.calls)}",
            thumbprint=notice.thumbprint_sha1.upper() if state is RolloutState.DONE else None,
            check_after_seconds=1 if state is RolloutState.IN_PROGRESS else None,
            operation="https://arm.example/op/1" if state is RolloutState.IN_PROGRESS else None,
        )


GW = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/gw"
APIM = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim"


@pytest.fixture(autouse=True)
def wired(flow):
    function_app._service = flow.service
    yield
    function_app._service = None


def renew(flow, name="web"):
    flow.seed("kv-alpha", name, days_left=20)
    old = flow.current(name)
    flow.service.handle_event(
        near_expiry_event("kv-alpha", name, old.properties.version, base_url=flow.kv.vault_urls["kv-alpha"])
    )
    stats = QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(timeout=60)
    assert stats.processed == 1 and stats.poisoned == 0
    return flow.current(name).properties.version


def deliver(flow, **kw):
    return QueuePump(flow.storage, settings.DEPLOYMENTS_QUEUE, function_app.deploy_notifier, **kw).run_until_idle(
        timeout=60, wait_for_delayed=True
    )


def use(flow, *deployers):
    notifiers = [d for d in flow.service.deployers if not hasattr(d, "roll_out")]
    flow.service.__dict__["deployers"] = [*notifiers, *deployers]


def test_a_target_in_progress_comes_back_after_its_delay_and_is_done(flow, hook):
    rollout = ScriptedRollout(
        "edge",
        {GW: [RolloutState.DONE], APIM: [RolloutState.IN_PROGRESS, RolloutState.IN_PROGRESS, RolloutState.DONE]},
    )
    use(flow, rollout)
    version = renew(flow)

    stats = deliver(flow)
    assert stats.processed == 3 and stats.poisoned == 0  # the notice and two delayed looks
    assert len(hook.received) == 1  # the notifier is told once, not on every pass
    assert [t for t, _ in rollout.calls] == [GW, APIM, APIM, APIM]  # the done gateway is left alone
    # the second and third looks see the in-progress record with its operation and first start time
    looks = [prev for t, prev in rollout.calls if t == APIM]
    assert looks[0] is None
    assert looks[1].state is RolloutState.IN_PROGRESS and looks[1].operation == "https://arm.example/op/1"
    assert looks[2].started_at == looks[1].started_at and looks[2].attempts == 2

    records = flow.service.rollout_log.of_version("kv-alpha", "web", version)
    assert {k: (r.state, r.attempts) for k, r in records.items()} == {
        ("hook", "hook"): (RolloutState.DONE, 1),
        ("edge", GW): (RolloutState.DONE, 1),
        ("edge", APIM): (RolloutState.DONE, 3),
    }
    thumbprint = records[("edge", APIM)].thumbprint
    assert thumbprint and thumbprint == thumbprint.upper()
    assert records[("edge", APIM)].operation is None  # a finished target keeps no operation


def test_a_failed_target_is_retried_poisoned_and_replayed_without_renewing_again(flow, hook):
    rollout = ScriptedRollout("edge", {GW: [RolloutState.DONE], APIM: [RolloutState.FAILED] * 5 + [RolloutState.DONE]})
    use(flow, rollout)
    version = renew(flow)

    stats = deliver(flow)
    assert stats.poisoned == 1
    assert len(hook.received) == 1  # retries do not re-send the notice the hook already has
    assert [t for t, _ in rollout.calls] == [GW, APIM, APIM, APIM, APIM, APIM]

    status = flow.service.status(("kv-alpha", "web"))
    assert [(r["target"], r["state"]) for r in status["rollouts"]] == [(APIM, "failed")]
    assert {(r["target"], r["state"]) for r in status["certificate"]["rollouts"]} == {
        ("hook", "done"),
        (GW, "done"),
        (APIM, "failed"),
    }
    failures = flow.service.failures()
    assert len(failures.notices) == 1

    # The operator fixes the target and replays: only the failed target is driven, nothing is renewed.
    versions_before = flow.versions("web")
    assert flow.service.replay().notices == 1
    assert deliver(flow).processed == 1
    assert [t for t, _ in rollout.calls][-1:] == [APIM]
    assert len(hook.received) == 1
    assert flow.versions("web") == versions_before
    records = flow.service.rollout_log.of_version("kv-alpha", "web", version)
    assert records[("edge", APIM)].state is RolloutState.DONE
    assert flow.service.status()["rollouts"] == []


def test_a_deployer_that_raises_is_a_failed_target_and_others_still_run(flow, hook):
    class Broken(ScriptedRollout):
        def roll_out(self, notice, current, target, previous):
            raise ConnectionError("ARM unreachable")

    good = ScriptedRollout("second", {APIM: [RolloutState.DONE]})
    use(flow, Broken("first", {GW: []}), good)
    version = renew(flow)
    assert deliver(flow, max_dequeue_count=1).poisoned == 1
    records = flow.service.rollout_log.of_version("kv-alpha", "web", version)
    assert records[("first", GW)].state is RolloutState.FAILED
    assert records[("first", GW)].detail == "ConnectionError: ARM unreachable"
    assert records[("second", APIM)].state is RolloutState.DONE
    assert len(good.calls) == 1 and len(hook.received) == 1


def test_status_command_shows_each_target(flow, hook, monkeypatch):
    rollout = ScriptedRollout("edge", {GW: [RolloutState.SKIPPED], APIM: [RolloutState.FAILED]})
    use(flow, rollout)
    renew(flow)
    deliver(flow, max_dequeue_count=1)
    monkeypatch.setattr(cli, "_service", lambda: flow.service)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["status", "kv-alpha/web", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {(r["target"], r["state"]) for r in data["certificate"]["rollouts"]} == {
        ("hook", "done"),
        (GW, "skipped"),
        (APIM, "failed"),
    }
    text = runner.invoke(cli.app, ["status", "kv-alpha/web"])
    assert text.exit_code == 0 and "rollouts per target" in text.output and "skipped" in text.output
    assert runner.invoke(cli.app, ["status", "no-slash"]).exit_code == cli.EXIT_CONFIG


def test_the_dashboard_certificate_page_lists_each_target(flow, hook):
    from renewal.operations.dashboard import estate
    from renewal.operations.dashboard.pages import Links, certificate

    rollout = ScriptedRollout("edge", {GW: [RolloutState.DONE], APIM: [RolloutState.FAILED]})
    use(flow, rollout)
    renew(flow)
    deliver(flow, max_dequeue_count=1)
    detail = estate.certificate(flow.service, "kv-alpha", "web")
    assert {(r.target, r.state) for r in detail.rollouts} >= {(GW, RolloutState.DONE), (APIM, RolloutState.FAILED)}
    html = certificate(detail, Links("/api/dashboard", None))
    assert 'id="rollouts"' in html and "have not taken the live version yet" in html
    assert GW in html and "failed" in html


def test_a_failure_waits_for_the_targets_still_in_progress_before_the_notice_is_poisoned(flow, hook):
    rollout = ScriptedRollout(
        "edge", {GW: [RolloutState.FAILED] * 3, APIM: [RolloutState.IN_PROGRESS, RolloutState.DONE]}
    )
    use(flow, rollout)
    version = renew(flow)
    stats = deliver(flow, max_dequeue_count=1)
    # pass 1: the gateway fails, API Management is under way: the notice comes back (not retried, not poisoned);
    # pass 2: API Management is done, the gateway fails again: now the notice is poisoned for the operator.
    assert [t for t, _ in rollout.calls] == [GW, APIM, GW, APIM]
    assert stats.poisoned == 1
    records = flow.service.rollout_log.of_version("kv-alpha", "web", version)
    assert records[("edge", APIM)].state is RolloutState.DONE
    assert records[("edge", GW)].state is RolloutState.FAILED and records[("edge", GW)].attempts == 2
