"""Disaster recovery end to end: every merge is backed up by the deployments stage (a failed backup is
retried, poisoned and replayed like any delivery), the weekly backup covers what the service did not renew,
restore and the drill bring versions back through the SDK, and Key Vault's restore rules hold (another
geography or subscription, a name that exists)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from typer.testing import CliRunner

import function_app
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.errors import BackupMissing, NotFound, Rejected, RestoreRefused
from renewal.operations import cli
from renewal.service import RenewalService

from .conftest import make_config

DRILL, FARAWAY, FOREIGN = "kv-drill", "kv-faraway", "kv-foreign"


def ensure_vault(kv, name: str, **knobs: str) -> str:
    """A vault outside the session's two certificate vaults (added once; emptied by each test's reset)."""
    urls = kv.admin.health()["vaults"]
    if name not in urls:
        urls = kv.admin.add_vault(name, **knobs)
    return urls[name]


@pytest.fixture
def dr(flow, azurite):
    """The flow's service with a backup archive (a container of Azurite standing in for the account in
    another region) and three recovery vaults: a drill vault like the certificate vaults, one in another
    geography and one in another subscription."""
    backup_env = {settings.BACKUP_STORAGE.name: azurite.env()["AzureWebJobsStorage"]}
    recovery = [
        {"name": DRILL, "url": ensure_vault(flow.kv, DRILL)},
        {"name": FARAWAY, "url": ensure_vault(flow.kv, FARAWAY, geography="Europe")},
        {"name": FOREIGN, "url": ensure_vault(flow.kv, FOREIGN, subscription="11111111-2222-3333-4444-555555555555")},
    ]
    config = parse_config(make_config(flow.kv, flow.ca_paths, None, recovery_vaults=recovery))
    service = RenewalService(
        config,
        environ={**flow.environ, **backup_env},
        storage=flow.storage,
        clock=flow.service.clock,
        keyvault_options={"sleep": lambda _s: None},
    )
    container = service.backups._ready()
    for blob in container.list_blobs():
        container.delete_blob(blob.name)
    function_app._service = service
    yield dataclasses.replace(flow, service=service)
    function_app._service = None


def pump(flow, queue: str) -> object:
    handler = function_app.renewal_worker if queue == settings.JOBS_QUEUE else function_app.deploy_notifier
    return QueuePump(flow.storage, queue, handler).run_until_idle(timeout=60, wait_for_delayed=True)


def renew(flow, name: str, vault: str = "kv-alpha") -> str:
    flow.service.force_renewal(vault, name)
    assert pump(flow, settings.JOBS_QUEUE).poisoned == 0
    return flow.current(name, vault).properties.version


def drill_client(flow):
    from azure.keyvault.certificates import CertificateClient

    url = next(v.url for v in flow.service.config.recovery_vaults if v.name == DRILL)
    return CertificateClient(url, flow.kv.credential, **flow.kv.client_kwargs)


def sha1(cer: bytes) -> str:
    return hashlib.sha1(cer).hexdigest()


def test_every_merge_is_backed_up_and_the_backup_restores_every_version_elsewhere(dr):
    dr.seed("kv-alpha", "web", days_left=10)
    new = renew(dr, "web")
    stats = pump(dr, settings.DEPLOYMENTS_QUEUE)
    assert stats.processed == 1 and stats.poisoned == 0

    entries = list(dr.service.backups.entries("kv-alpha", "web"))
    assert [e.version for e in entries] == [new]
    assert entries[0].thumbprint == sha1(bytes(dr.current("web").cer))
    assert dr.kv.admin.counters("kv-alpha").get("backup") == 1

    restored = dr.service.restore("kv-alpha", "web", to=DRILL)
    assert restored.matches and restored.version == new
    assert sorted(p.version for p in drill_client(dr).list_properties_of_certificate_versions("web")) == sorted(
        dr.versions("web")
    )  # every version, the old one included

    # A second delivery of the same notice (the queue redelivers) writes nothing new.
    pump(dr, settings.DEPLOYMENTS_QUEUE)
    assert len(list(dr.service.backups.entries("kv-alpha", "web"))) == 1


def test_a_failed_backup_is_retried_poisoned_and_replayed_once_fixed(dr):
    dr.seed("kv-alpha", "web", days_left=10)
    new = renew(dr, "web")
    # The identity lacks certificates/backup: every delivery of the notice fails, then it is poisoned.
    dr.kv.admin.set_knobs(fail_next={"backup": settings.MAX_DEQUEUE_COUNT}, fault_status=403)
    stats = pump(dr, settings.DEPLOYMENTS_QUEUE)
    assert stats.failed == settings.MAX_DEQUEUE_COUNT and stats.poisoned == 1
    assert not list(dr.service.backups.entries("kv-alpha", "web"))
    assert len(dr.service.failures().notices) == 1

    result = dr.service.replay()  # the role is fixed; the operator replays
    assert result.notices == 1
    assert pump(dr, settings.DEPLOYMENTS_QUEUE).processed == 1
    assert [e.version for e in dr.service.backups.entries("kv-alpha", "web")] == [new]


def test_the_weekly_backup_covers_certificates_the_service_did_not_renew_and_skips_the_rest(dr):
    for name in ("imported-a", "imported-b"):
        dr.seed("kv-alpha", name, days_left=200)
    dr.seed("kv-beta", "api", days_left=200)
    first = dr.service.back_up_estate()
    assert sorted(first.backed_up) == sorted(
        f"{v}/{n}/{dr.current(n, v).properties.version}"
        for v, n in (("kv-alpha", "imported-a"), ("kv-alpha", "imported-b"), ("kv-beta", "api"))
    )
    assert not first.errors

    dr.kv.admin.reset_counters()
    again = dr.service.back_up_estate()
    assert again.backed_up == [] and again.already == 3
    assert not dr.kv.admin.counters("kv-alpha").get("backup")  # nothing is backed up twice

    # A new version made outside the service (a renewal by hand) is backed up by the next run.
    new = renew(dr, "imported-a")
    dr.storage.queue_client(settings.DEPLOYMENTS_QUEUE).clear_messages()  # its notice never ran
    third = dr.service.back_up_estate()
    assert third.backed_up == [f"kv-alpha/imported-a/{new}"]


def test_the_timer_function_runs_the_weekly_backup(dr):
    from devtools.host import timer_request

    dr.seed("kv-beta", "api", days_left=200)
    function_app.weekly_backup(timer_request())
    assert len(list(dr.service.backups.entries("kv-beta", "api"))) == 1


def test_restore_is_refused_across_geographies_subscriptions_and_onto_an_existing_name(dr):
    dr.seed("kv-alpha", "web", days_left=200)
    dr.service.back_up_estate()
    with pytest.raises(RestoreRefused, match=r"(?i)geograph"):
        dr.service.restore("kv-alpha", "web", to=FARAWAY)
    with pytest.raises(RestoreRefused, match=r"(?i)subscription"):
        dr.service.restore("kv-alpha", "web", to=FOREIGN)
    with pytest.raises(RestoreRefused):
        dr.service.restore("kv-alpha", "web", to="kv-alpha")  # the name exists: never overwritten
    with pytest.raises(BackupMissing):
        dr.service.restore("kv-alpha", "nothing-here", to=DRILL)
    with pytest.raises(NotFound, match="to"):
        dr.service.restore("kv-alpha", "web", to="kv-unknown")


def test_a_deleted_certificate_is_restored_into_its_own_vault(dr):
    dr.seed("kv-alpha", "web", days_left=10)
    new = renew(dr, "web")
    pump(dr, settings.DEPLOYMENTS_QUEUE)
    client = dr.client("kv-alpha")
    client.begin_delete_certificate("web").wait()
    with pytest.raises(RestoreRefused):  # soft-deleted: the name is still taken until purged
        dr.service.restore("kv-alpha", "web", to="kv-alpha")
    client.purge_deleted_certificate("web")
    restored = dr.service.restore("kv-alpha", "web", to="kv-alpha")
    assert restored.matches and dr.current("web").properties.version == new


def test_the_drill_restores_a_sample_verifies_it_against_archive_and_ledger_and_purges(dr):
    dr.seed("kv-alpha", "web", days_left=10)
    renew(dr, "web")
    pump(dr, settings.DEPLOYMENTS_QUEUE)
    for i in range(4):
        dr.seed("kv-beta", f"svc-{i}", days_left=200)
    dr.service.back_up_estate()

    report = dr.service.drill(to=DRILL, sample=3)
    assert report.passed, report.problems
    assert (report.sampled, report.verified, report.purged) == (3, 3, 3)
    assert not list(drill_client(dr).list_properties_of_certificates())  # the copies are gone
    assert not list(drill_client(dr).list_deleted_certificates())  # and purged
    last = dr.service.backups.last_drill()
    assert last["passed"] is True and last["drill_vault"] == DRILL

    full = dr.service.drill(to=DRILL)
    assert full.passed and full.sampled == 5

    with pytest.raises(Rejected, match="to"):
        dr.service.drill(to="kv-alpha")  # never into a certificate vault


def test_the_cli_restores_and_drills_with_exit_codes_scripts_can_use(dr, monkeypatch):
    dr.seed("kv-alpha", "web", days_left=200)
    monkeypatch.setattr(cli, "service_factory", lambda: dr.service)
    runner = CliRunner()
    assert runner.invoke(cli.app, ["backup"]).exit_code == 0
    ok = runner.invoke(cli.app, ["restore", "kv-alpha", "web", "--to", DRILL])
    assert ok.exit_code == 0, ok.output
    assert "matches" in ok.output
    refused = runner.invoke(cli.app, ["restore", "kv-alpha", "web", "--to", DRILL])
    assert refused.exit_code == 1 and "refused" in refused.output
    missing = runner.invoke(cli.app, ["restore", "kv-alpha", "nope", "--to", DRILL])
    assert missing.exit_code == 3
    dr.service.recovery_target(DRILL).delete_and_purge("web")
    drilled = runner.invoke(cli.app, ["drill", "--to", DRILL, "--json"])
    assert drilled.exit_code == 0, drilled.output
    assert json.loads(drilled.stdout)["passed"] is True


def test_a_version_without_a_backup_for_more_than_a_day_is_counted_overdue_for_the_alert(dr):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from renewal import metrics

    reader = InMemoryMetricReader()
    metrics.reset()
    metrics.use_meter_provider(MeterProvider(metric_readers=[reader]))
    try:
        dr.seed("kv-alpha", "fresh", days_left=200)
        dr.kv.admin.set_knobs(fail_next={"backup": 1}, fault_status=403)
        first = dr.service.back_up_estate()  # the version is minutes old: a failure, not yet overdue
        assert len(first.errors) == 1 and first.oldest_missing_hours < 1
        dr.kv.admin.advance_clock(days=2)
        dr.kv.admin.set_knobs(fail_next={"backup": 1}, fault_status=403)
        second = dr.service.back_up_estate()
        assert len(second.errors) == 1 and second.oldest_missing_hours > 24
        assert dr.service.back_up_estate().backed_up  # once Key Vault answers, it is written (and late)
        outcomes: dict[str, float] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == metrics.BACKUPS:
                        for point in metric.data.data_points:
                            outcome = point.attributes["outcome"]
                            outcomes[outcome] = outcomes.get(outcome, 0) + point.value
        # failed once, overdue twice (the failed try two days on, and the late write), written once
        assert outcomes == {"failed": 1, "overdue": 2, "written": 1}
    finally:
        metrics.reset()


def test_the_dashboard_shows_each_certificates_backups_and_the_last_drill(dr):
    import re

    import requests

    from devtools.functions_http import serving

    dr.seed("kv-alpha", "web", days_left=200)
    dr.seed("kv-alpha", "api", days_left=200)
    with serving(function_app.app) as server:
        overview = requests.get(server.url("ops/dashboard"), timeout=60).text
        assert "No restore drill on record" in overview
        dr.service.back_up_estate()
        assert dr.service.drill(to=DRILL).passed
        overview = requests.get(server.url("ops/dashboard"), timeout=60).text
        drill_line = re.search(r'<p class="note" id="last-drill">(.*?)</p>', overview).group(1)
        assert "into kv-drill: passed, 2 of 2 verified" in drill_line

        version = dr.current("web").properties.version
        page = requests.get(server.url("ops/dashboard/certificates/kv-alpha/web"), timeout=60).text
        backups = re.search(r'<section aria-labelledby="h-backups".*?</section>', page).group(0)
        assert version in backups and "live" in backups and "has no backup yet" not in backups

        renew(dr, "web")  # a new version whose notice has not run: the page says so
        page = requests.get(server.url("ops/dashboard/certificates/kv-alpha/web"), timeout=60).text
        assert "The live version has no backup yet." in page
