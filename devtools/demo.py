"""``make demo``: the whole flow on the local defaults, narrated.

Starts the Key Vault emulator and Azurite, makes a local CA, seeds four certificates (near expiry,
expired, healthy, and one routed to an issuer whose key is missing), lets the emulator deliver a real
NearExpiry event to ``on_certificate_event`` through a host-like web hook, runs the nightly sweep,
pumps the queues through the functions the way the host does, and shows what happened."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from devtools.arm import ArmStandIn, GatewayFrontEnd
from devtools.host import timer_request
from renewal.model import AttemptState

DAY = 86_400
DEMO_CERTS = {
    # name: (days left, lifetime days, what it shows)
    "web-frontend": (20, 90, "near expiry: Key Vault's NearExpiry event drives it"),
    "legacy-api": (-2, 90, "expired: the nightly sweep catches it"),
    "healthy-app": (75, 90, "healthy: left alone"),
    "partner-billing": (10, 90, "routed to partner-ca, whose key is missing: fails to the poison queue"),
}

GATEWAY_CERT = "web-frontend"
GATEWAY_HOST = f"{GATEWAY_CERT}.contoso.test"


def _policy(name: str) -> dict[str, Any]:
    host = f"{name}.contoso.test"
    # An Application Gateway serves web-frontend: it reads the certificate with its key from the secret.
    exportable = name == GATEWAY_CERT
    return {
        "issuer": {"name": "Unknown"},
        "key_props": {"kty": "RSA", "key_size": 2048, "exportable": exportable, "reuse_key": False},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": f"CN={host}", "sans": {"dns_names": [host]}, "validity_months": 3},
        "lifetime_actions": [{"trigger": {"days_before_expiry": 30}, "action": {"action_type": "EmailContacts"}}],
    }


class _HookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/deploy-hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _record_metrics(service: Any) -> Any:
    """Collect the service's OpenTelemetry metrics in memory, to show what Azure Monitor would receive."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from renewal import metrics

    reader = InMemoryMetricReader()
    metrics.use_meter_provider(MeterProvider(metric_readers=[reader]))
    metrics.watch_service(service.poison)
    return reader


def _print_metrics(console: Console, reader: Any) -> None:
    table = Table(title="metrics recorded during the demo (OpenTelemetry; Azure Monitor in Azure)")
    for column in ("metric", "points", "example"):
        table.add_column(column)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if not points:
                    continue
                first = points[0]
                value = getattr(first, "value", None)
                if value is None:
                    value = f"count={first.count} sum={first.sum:.3f}"
                labels = ",".join(f"{k}={v}" for k, v in sorted(first.attributes.items()))
                table.add_row(metric.name, str(len(points)), f"{labels} -> {value}")
    console.print(table)


def _presented(address: str) -> str:
    """The SHA-1 of the leaf the gateway's listener presents for its host name."""
    from renewal.azure.rollouts.probe import presented_leaf, sha1_thumbprint

    return sha1_thumbprint(presented_leaf(address, GATEWAY_HOST))


def _versions(client: Any, name: str) -> list[str]:
    return [p.version for p in client.list_properties_of_certificate_versions(name)]


def _merged_panel(client: Any, service: Any, hook: _HookReceiver, name: str) -> Panel:
    """What was merged, as far as it can be read without the secrets API: the leaf from ``cer``, and the
    service's own records of the renewal (ledger row, deployment notice). Key Vault keeps the rest of the
    chain in the managed secret, which the service never reads, so the chain is not printed."""
    import hashlib

    from cryptography import x509
    from rich.markup import escape

    renewed = client.get_certificate(name)
    leaf = x509.load_der_x509_certificate(renewed.cer)
    row = service.ledger.history("kv-alpha", name)[0]
    notice = next(
        (
            i["body"]["data"]
            for i in hook.received
            if i["body"]["data"].get("new_version") == renewed.properties.version
        ),
        None,
    )
    thumbprint = hashlib.sha1(renewed.cer).hexdigest()  # noqa: S324 - x5t is SHA-1 by definition
    merged = row.state is AttemptState.NOTIFIED
    lines = [
        f"leaf       {escape(leaf.subject.rfc4514_string())}",
        f"issued by  {escape(leaf.issuer.rfc4514_string())}",
        f"valid      {leaf.not_valid_before_utc:%Y-%m-%d} .. {leaf.not_valid_after_utc:%Y-%m-%d}",
        f"x5t        {thumbprint}",
        f"renewed by {row.issuer} (configured issuer, ledger row)"
        + (f"; {notice['issuer']} (deployment notice)" if notice else ""),
        "chain      " + ("verified leaf -> intermediates before merge; " if merged else "") + "not listed here:",
        "           beyond the leaf it is kept in the managed secret, which the",
        "           service never reads, and neither record stores it",
        f"ledger     state={row.state} request={row.request_id[:12]} attempts={row.attempts}",
    ]
    if notice is not None and notice.get("thumbprint_sha1") != thumbprint:
        lines.append(f"[red]notice thumbprint {notice.get('thumbprint_sha1')} differs from the merged leaf[/]")
    return Panel.fit("\n".join(lines), title=f"{name}: the new version")


def run(console: Console, *, acme: bool = False, stepca: bool = False, keep: bool = False) -> int:
    import function_app
    from ca_clients.local import create_ca_files
    from devtools.azurite import running_azurite
    from devtools.eventgrid_host import eventgrid_webhook
    from devtools.pump import QueuePump
    from emulator.testing import running_emulator
    from renewal import settings
    from renewal.config import parse_config
    from renewal.service import RenewalService

    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")
    logging.getLogger("devtools.pump").setLevel(logging.ERROR)  # the pump's tracebacks repeat the ledger's reason
    workdir = Path(tempfile.mkdtemp(prefix="renewal-demo-"))
    with ExitStack() as stack:
        console.rule("[bold]Key Vault certificate renewal: local demo")
        kv = stack.enter_context(running_emulator(("kv-alpha", "kv-beta")))
        drill_url = kv.admin.add_vault("kv-drill")["kv-drill"]  # a recovery vault: restores only, never renewed
        console.print(f"Key Vault emulator: {kv.vault_urls}, drill vault {drill_url}")
        storage_server = stack.enter_context(running_azurite(workdir / "azurite"))
        queue_endpoint = storage_server.connection_string.split("QueueEndpoint=")[1].split(";")[0]
        console.print(f"Azurite (queues, table, blobs): {queue_endpoint}")
        ca = create_ca_files(workdir / "ca", common_name="Contoso Demo Issuing CA")
        hook = _HookReceiver()
        stack.callback(hook.close)
        arm = ArmStandIn(kv.vault_urls, kv.ca_bundle, kv.credential, resolve_vault=kv.vault_url).start()
        stack.callback(arm.close)
        front_end = GatewayFrontEnd(arm)
        stack.callback(front_end.close)
        gateway_id = (
            f"/subscriptions/{arm.subscription_id}/resourceGroups/rg-edge/providers/Microsoft.Network/"
            "applicationGateways/agw-contoso"
        )
        console.print(f"Azure Resource Manager stand-in: {arm.base_url}, gateway front end {front_end.address}")

        issuers: list[dict[str, Any]] = [
            {
                "name": "corp-local",
                "type": "local",
                "ca_certificate": str(ca["ca_certificate"]),
                "ca_key": {"file": str(ca["ca_key"])},
                "chain": str(ca["chain"]),
                "trust_anchors": [str(ca["root"])],
            },
            {
                "name": "partner-ca",
                "type": "local",
                "ca_certificate": str(ca["ca_certificate"]),
                "ca_key": {"setting": "PARTNER_CA_KEY"},
                "trust_anchors": [str(ca["root"])],
            },
        ]
        default_issuer = "corp-local"
        if acme:
            from devtools.pebble import running_pebble

            pebble = stack.enter_context(running_pebble(workdir / "pebble"))
            issuers.append(pebble.issuer_section("pebble-acme"))
            default_issuer = "pebble-acme"
            console.print(f"pebble ACME directory: {pebble.directory_url} (validation via dns-01)")
        if stepca:
            from devtools.pebble import running_challtestsrv
            from devtools.stepca import running_stepca

            dns = stack.enter_context(running_challtestsrv(workdir / "stepca-dns"))
            step = stack.enter_context(running_stepca(workdir / "stepca", dns))
            issuers.append(step.jwk_section("stepca-jwk"))
            default_issuer = "stepca-jwk"
            console.print(f"step-ca: {step.url} (JWK provisioner, one-time tokens on /1.0/sign)")
        config = parse_config(
            {
                "vaults": [{"name": n, "url": u} for n, u in kv.vault_urls.items()],
                "issuers": issuers,
                "routes": [{"issuer": "partner-ca", "match": "partner-*"}],
                "default_issuer": default_issuer,
                "deployers": [
                    {
                        "type": "webhook",
                        "name": "release-pipeline",
                        "url": hook.url,
                        "signing_key": {"setting": "DEPLOY_HOOK_KEY"},
                        "allow_private_addresses": True,
                    },
                    {
                        "type": "application_gateway",
                        "name": "edge-gateway",
                        "match": GATEWAY_CERT,
                        "targets": [{"id": gateway_id, "probe": front_end.address}],
                        "arm_endpoint": arm.base_url,
                        "ca_bundle": arm.ca_bundle,
                    },
                ],
                "recovery_vaults": [{"name": "kv-drill", "url": drill_url}],
            }
        )
        environ = {
            **storage_server.env(),
            # The backup archive: a container of this Azurite standing in for an account in another region.
            settings.BACKUP_STORAGE.name: storage_server.connection_string,
            settings.KEYVAULT_CREDENTIAL.name: "emulator",
            settings.KEYVAULT_CA_BUNDLE.name: kv.ca_bundle,
            "DEPLOY_HOOK_KEY": os.urandom(16).hex(),
        }
        service = RenewalService(
            config, environ=environ, clock=lambda: dt.datetime.fromtimestamp(kv.admin.now(), dt.UTC)
        )
        function_app._service = service
        metric_reader = _record_metrics(service)

        client = kv.certificate_client("kv-alpha")
        now = int(kv.admin.now())
        for name, (days_left, lifetime, _why) in DEMO_CERTS.items():
            kv.admin.seed(
                "kv-alpha",
                certificates=[{"name": name}],
                policy=_policy(name),
                not_before=int(now - (lifetime - days_left) * DAY),
                expires=int(now + days_left * DAY),
            )
        before = {name: client.get_certificate(name).properties for name in DEMO_CERTS}
        # The gateway's listener serves web-frontend through a versionless Key Vault reference.
        arm.add_application_gateway(
            "rg-edge",
            "agw-contoso",
            certificates={"web-frontend-tls": f"{kv.vault_url('kv-alpha')}secrets/{GATEWAY_CERT}"},
            listeners={"https-web": (GATEWAY_HOST, "web-frontend-tls")},
        )
        presented_before = _presented(front_end.address)

        seeded = Table(title="kv-alpha before")
        for column in ("certificate", "version", "expires", "scenario"):
            seeded.add_column(column)
        for name, props in before.items():
            seeded.add_row(name, props.version[:12], f"{props.expires_on:%Y-%m-%d}", DEMO_CERTS[name][2])
        console.print(seeded)

        console.rule("1. Key Vault publishes CertificateNearExpiry through Event Grid")
        with eventgrid_webhook(function_app.on_certificate_event) as (url, delivered):
            kv.admin.subscribe(
                "kv-alpha", "renewal-func", url, event_types=["Microsoft.KeyVault.CertificateNearExpiry"]
            )
            kv.admin.scan_expiry()
            kv.admin.flush_events()
        for line in delivered:
            console.print(f"  delivered to on_certificate_event: {line}")

        console.rule("2. The nightly sweep (timer) finds what events missed")

        report = service.sweep(dry_run=True, collect_all=True)
        function_app.nightly_sweep(timer_request())
        for entry in report.due:
            console.print(f"  due: {entry.vault}/{entry.name}: {entry.decision.reason}")

        console.rule("3. renewal_worker drains renewal-jobs (as the host: base64, dequeue count, poison)")
        jobs = QueuePump(service.storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=4)
        stats = jobs.run_until_idle(timeout=120, wait_for_delayed=True)
        console.print(f"  handled {stats.processed}, failed deliveries {stats.failed}, poisoned {stats.poisoned}")
        notices = QueuePump(service.storage, settings.DEPLOYMENTS_QUEUE, function_app.deploy_notifier)
        notices.run_until_idle(timeout=120, wait_for_delayed=True)

        console.rule("4. Result")
        after = Table(title="kv-alpha after")
        for column in ("certificate", "before", "after", "expires now", "versions"):
            after.add_column(column)
        for name, old in before.items():
            new = client.get_certificate(name).properties
            changed = new.version != old.version
            after.add_row(
                name,
                old.version[:12],
                (f"[green]{new.version[:12]}[/]" if changed else "unchanged"),
                f"{new.expires_on:%Y-%m-%d}",
                str(len(_versions(client, name))),
            )
        console.print(after)

        console.print(_merged_panel(client, service, hook, "web-frontend"))
        for item in hook.received:
            headers = {k.lower(): v for k, v in item["headers"].items()}
            console.print(
                Panel.fit(
                    json.dumps(item["body"]["data"], indent=2)
                    + f"\nX-Renewal-Signature: {headers.get('x-renewal-signature')}",
                    title="notice received by the release-pipeline web hook",
                )
            )
        new_gateway_cert = client.get_certificate(GATEWAY_CERT)
        rollout = next(
            (r for r in service.rollout_log.history("kv-alpha", GATEWAY_CERT) if r.deployer == "edge-gateway"), None
        )
        presented_after = _presented(front_end.address)
        expected = hashlib.sha1(new_gateway_cert.cer).hexdigest().upper()  # noqa: S324 - x5t is SHA-1
        rolled_out = (
            rollout is not None
            and rollout.state.value == "done"
            and rollout.version == new_gateway_cert.properties.version
            and rollout.thumbprint == expected == presented_after
        )
        console.print(
            Panel.fit(
                f"gateway agw-contoso, listener {GATEWAY_HOST} (TLS probe {front_end.address} with SNI)\n"
                f"presented before: {presented_before}\n"
                f"presented after:  {presented_after}\n"
                f"new version's x5t: {expected}\n"
                f"rollout: {rollout.state.value if rollout else 'none'} - {rollout.detail if rollout else ''}",
                title="rollout to an Application Gateway, verified on its TLS listener",
                border_style="green" if rolled_out else "red",
            )
        )
        failures = service.failures()
        poison = Table(title="renewal-jobs-poison (replay with: python -m renewal replay)")
        for column in ("certificate", "reason"):
            poison.add_column(column)
        for failure in failures.jobs:
            poison.add_row(f"{failure.vault}/{failure.name}", failure.reason)
        console.print(poison)
        # The gateway reads the certificate's secret with its own identity; the service never does.
        secret_calls = sum(v for k, v in kv.admin.counters().items() if "secret" in k)
        secret_reads = secret_calls - arm.secret_reads
        console.print(
            f"secrets API calls on certificate vaults: {secret_reads} by the service, {arm.secret_reads} by the gateway"
        )

        console.rule("5. Disaster recovery: every merge backed up, a restore drill proves it")
        backups = sorted(f"{e.vault}/{e.name}/{e.version[:12]}" for e in service.backups.entries())
        console.print(f"  backed up by deploy_notifier (after each merge): {', '.join(backups)}")
        drill = service.drill(to="kv-drill")
        console.print(
            f"  drill into kv-drill: {'passed' if drill.passed else 'FAILED'}, {drill.verified}/{drill.sampled} "
            f"restored with the archive's thumbprint, {drill.purged} purged, {drill.seconds:.2f}s "
            "(python -m renewal drill --to kv-drill)"
        )
        for problem in drill.problems:
            console.print(f"  [red]{problem}[/]")

        console.rule("6. What operators see: compliance report and metrics")
        from renewal.operations.report import build_report

        estate = build_report(service)
        summary = estate.summary()
        console.print(
            f"report: {summary['certificates']} certificates, {summary['errors']} error and "
            f"{summary['warnings']} warning findings {summary['rules']} "
            "(python -m renewal report --format table|json|html)"
        )
        for finding in [f for f in estate.findings if f.severity == "error"][:5]:
            console.print(f"  {finding.severity}: {finding.vault}/{finding.name}: {finding.rule}: {finding.message}")
        _print_metrics(console, metric_reader)

        ok = (
            client.get_certificate("web-frontend").properties.version != before["web-frontend"].version
            and client.get_certificate("legacy-api").properties.version != before["legacy-api"].version
            and client.get_certificate("healthy-app").properties.version == before["healthy-app"].version
            and {f.name for f in failures.jobs} == {"partner-billing"}  # the event and the sweep may both queue it
            and len(hook.received) == 2
            and not secret_reads
            and rolled_out
            and drill.passed
            and drill.sampled == 2
        )
        console.rule("[green]demo finished as expected" if ok else "[red]demo did not go as expected")
        from devtools.functions_http import FunctionsHttpServer

        dashboard = FunctionsHttpServer(function_app.app, key=os.urandom(12).hex()).start()
        stack.callback(dashboard.close)
        console.print(f"dashboard (Functions key in ?code=): {dashboard.url('ops/dashboard')}")
        if keep:
            console.print(f"left running; state in {workdir}. Press Ctrl+C to stop.")
            threading.Event().wait()
        else:
            console.print("it stops with the demo now; `make demo DEMO_ARGS=--keep` keeps everything running")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1
