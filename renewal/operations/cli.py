"""Operator CLI: ``python -m renewal sweep|renew|replay|status|report|adopt|import|backup|restore|drill|
check-config|demo``.

Exit codes scripts can rely on: 0 success, 1 the work failed (or failures exist, for ``replay --list``),
2 bad configuration or arguments, 3 the named vault or certificate does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Key Vault certificate renewal operations.")
console = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_NOT_FOUND = 0, 1, 2, 3

service_factory: Callable[[], Any] | None = None
"""Builds the service the commands use; None means ``RenewalService.from_environment()`` (tests replace it)."""


def _service() -> Any:
    from renewal.errors import ConfigError
    from renewal.service import RenewalService

    try:
        if service_factory is not None:
            return service_factory()
        return RenewalService.from_environment()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_CONFIG) from None


def _stop(exc: Exception, what: str = "") -> typer.Exit:
    """Print a domain error and the exit its branch of the error tree means: a missing vault, certificate
    or backup 3, refused input or configuration 2, the outside world saying no 1."""
    from renewal.errors import NotFound, Rejected

    err.print(f"[red]{what + ': ' if what else ''}{exc}[/red]")
    if isinstance(exc, NotFound):
        return typer.Exit(EXIT_NOT_FOUND)
    return typer.Exit(EXIT_CONFIG if isinstance(exc, Rejected) else EXIT_FAILED)


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value else "-"


@app.command("check-config")
def check_config() -> None:
    """Validate the configuration document and list every problem at once."""
    service = _service()
    console.print(
        f"[green]configuration valid[/green]: {len(service.config.vaults)} vault(s), "
        f"{len(service.config.issuers)} issuer(s), {len(service.config.deployers)} deployer(s)"
    )


@app.command()
def sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show, enqueue nothing.")] = False,
    vault: Annotated[list[str] | None, typer.Option("--vault", help="Only these vaults.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also list certificates that are not due.")] = True,
) -> None:
    """List every configured vault, show what is due and why, and when the rest will be."""
    service = _service()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("scanning vaults", total=None)
        counted = {"n": 0}

        def tick(_vault: str, n: int) -> None:
            counted["n"] += n
            progress.update(task, description=f"scanned {counted['n']} certificates")

        report = service.sweep(dry_run=dry_run, collect_all=show_all, vaults=vault, progress=tick)
    table = Table(title=f"sweep at {_when(report.started_at)}{' (dry run)' if dry_run else ''}")
    for column in ("vault", "certificate", "expires", "due", "why / when", "queued"):
        table.add_column(column)
    for entry in sorted(report.due, key=lambda e: e.expires_on or report.started_at):
        table.add_row(
            entry.vault,
            entry.name,
            _when(entry.expires_on),
            "[bold red]due[/]",
            escape(entry.decision.reason),  # a reason can quote a CA's text (ARI's explanationURL)
            "yes" if entry.enqueued else "no",
        )
    for entry in sorted(report.later, key=lambda e: e.decision.renew_at or report.started_at)[:200]:
        # A "later" entry can be queued: an ARI moment within a day gets a job delayed to it.
        queued = "yes" if entry.enqueued else "-"
        table.add_row(entry.vault, entry.name, _when(entry.expires_on), "later", escape(entry.decision.reason), queued)
    console.print(table)
    console.print(
        f"scanned {report.scanned}, due {len(report.due)}, not due {report.not_due_count}, "
        f"skipped {report.skipped}, policy reads {report.policy_reads}, stale resumed {report.stale_resumed}; "
        f"ARI: certificate reads {report.ari_reads}, CA checks {report.ari_checks}, failures {report.ari_failures}, "
        f"scheduled {report.ari_scheduled}"
    )
    for problem in report.errors:
        err.print(f"[red]error[/red] {problem}")
    raise typer.Exit(EXIT_FAILED if report.errors else EXIT_OK)


@app.command()
def renew(
    vault: str,
    name: str,
    inline: Annotated[bool, typer.Option("--inline", help="Run the renewal here instead of queueing it.")] = False,
) -> None:
    """Force a renewal of VAULT/NAME (queued for the worker, or run inline)."""
    from renewal.errors import NotFound, RenewalFailed

    service = _service()
    try:
        job = service.force_renewal(vault, name, requested_by="cli")
    except NotFound as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_NOT_FOUND) from None
    if not inline:
        console.print(f"queued forced renewal of {vault}/{name} (current version {job.version})")
        return
    try:
        outcome = service.run_job(job)
    except RenewalFailed as exc:
        err.print(f"[red]renewal failed[/red]: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(f"{vault}/{name}: {outcome.status} {outcome.new_version or ''} {outcome.detail}")


@app.command()
def replay(
    list_only: Annotated[bool, typer.Option("--list", help="Only list failed work.")] = False,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only these message ids / dead-letter blobs.")] = None,
) -> None:
    """List poisoned jobs/notices and dead-lettered events, or re-drive them."""
    service = _service()
    report = service.failures()
    table = Table(title="failed work")
    for column in ("where", "id", "certificate", "reason"):
        table.add_column(column)
    for item in [*report.jobs, *report.notices]:
        table.add_row(item.queue + "-poison", item.message_id, f"{item.vault}/{item.name}", item.reason)
    for dl in report.dead_letters:
        data = dl.event.get("data") or {}
        table.add_row(
            "dead-letter",
            dl.blob_name,
            f"{data.get('VaultName')}/{data.get('ObjectName')}",
            f"{dl.reason} after {dl.attempts} attempts",
        )
    console.print(table)
    if list_only:
        raise typer.Exit(EXIT_FAILED if report.total else EXIT_OK)
    result = service.replay(ids=ids)
    console.print(f"re-queued {result.jobs} job(s), {result.notices} notice(s), {result.events} dead-lettered event(s)")
    for line in result.left:
        err.print(f"[yellow]left in place[/yellow] {line}")
    raise typer.Exit(EXIT_FAILED if result.left else EXIT_OK)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    certificate: Annotated[
        str | None,
        typer.Argument(metavar="[VAULT/NAME]", help="Also this certificate's renewals and each target's rollout."),
    ] = None,
) -> None:
    """Queue depths, failures, the latest renewals and the rollouts not finished."""
    which = None
    if certificate is not None:
        vault, _, name = certificate.partition("/")
        if not vault or not name:
            err.print(f"certificate: give VAULT/NAME, not {escape(certificate)!r}")
            raise typer.Exit(EXIT_CONFIG)
        which = (vault, name)
    data = _service().status(which)
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    table = Table(title="queues")
    table.add_column("queue")
    table.add_column("messages", justify="right")
    for name, depth in data["queues"].items():
        table.add_row(name, str(depth))
    table.add_row("eventgrid dead-letter blobs", str(data["dead_letters"]))
    console.print(table)
    console.print(_attempts_table("recent renewals", data["recent"]))
    if data["rollouts"]:
        console.print(_rollouts_table("rollouts not finished", data["rollouts"]))
    if "certificate" in data:
        mine = data["certificate"]
        console.print(_attempts_table(f"renewals of {escape(which[0])}/{escape(which[1])}", mine["renewals"]))
        console.print(_rollouts_table("rollouts per target", mine["rollouts"]))


def _attempts_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("certificate", "state", "issuer", "old -> new", "attempts", "updated", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(f"{row['vault']}/{row['name']}"),
            row["state"],
            escape(row["issuer"]),
            f"{(row['old_version'] or '-')[:8]} -> {(row['new_version'] or '-')[:8]}",
            str(row["attempts"]),
            row["updated_at"] or "-",
            escape((row["error"] or "")[:80]),
        )
    return table


def _rollouts_table(title: str, records: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("certificate", "version", "deployer", "target", "state", "thumbprint", "since", "detail"):
        table.add_column(column)
    for r in records:
        table.add_row(
            escape(f"{r['vault']}/{r['name']}"),
            r["version"][:8],
            escape(r["deployer"]),
            escape(r["target"] if r["target"] != r["deployer"] else "-"),
            r["state"],
            (r["thumbprint"] or "-")[:12],
            r["started_at"] or "-",
            escape(r["detail"][:160]),
        )
    return table


@app.command()
def report(
    output_format: Annotated[str, typer.Option("--format", help="table, json or html.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", help="Write the report to this file.")] = None,
    vault: Annotated[list[str] | None, typer.Option("--vault", help="Only these vaults.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="Concurrent certificate reads.")] = 32,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Read every certificate from Key Vault, not the kept versions.")
    ] = False,
) -> None:
    """Inventory and compliance report of every configured vault; exit 1 when any finding is an error.

    A version already seen by an earlier report, the dashboard or a renewal is not read again (its facts are
    kept in the versionfacts table; a kept policy is re-read after a day): a repeated report costs the list
    pages only. --refresh reads everything."""
    from renewal.operations.report import build_report

    if output_format not in ("table", "json", "html"):
        err.print(f"[red]--format: unknown format {output_format!r} (table, json or html)[/red]")
        raise typer.Exit(EXIT_CONFIG)
    service = _service()
    unknown = [v for v in vault or [] if service.config.vault(v) is None]
    if unknown:
        err.print(f"[red]--vault: not configured: {', '.join(unknown)}[/red]")
        raise typer.Exit(EXIT_NOT_FOUND)
    with Progress(  # on a terminal only, and never around machine-readable output
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=output_format == "json",
    ) as progress:
        task = progress.add_task("reading vaults", total=None)
        counted = {"n": 0}

        def tick(_vault: str, n: int) -> None:
            counted["n"] += n
            if counted["n"] % 100 == 0:
                progress.update(task, description=f"read {counted['n']} certificates")

        estate = build_report(service, vaults=vault, max_workers=workers, progress=tick, refresh=refresh)
    if output_format == "json":
        text = estate.to_json()
    elif output_format == "html":
        text = estate.to_html()
    else:
        text = None
    if text is not None:
        if output is not None:
            output.write_text(text, encoding="utf-8")
            err.print(f"wrote {output_format} report to {output}")
        else:
            typer.echo(text)
    else:
        table = Table(title=f"certificate estate at {_when(estate.inventory.generated_at)}")
        for column in ("certificate", "issuer", "expires", "renew at", "last renewal", "findings"):
            table.add_column(column)
        for entry in estate.inventory.entries:
            findings = estate.by_certificate.get(entry.key, [])
            last = entry.last_renewal
            table.add_row(
                entry.key,
                entry.issuer or f"[red]{entry.route_problem}[/red]",
                _when(entry.expires_on),
                ("[bold red]due[/] " if entry.decision.due else "") + _when(entry.decision.renew_at),
                f"{last.state} {_when(last.updated_at)}" if last else "-",
                "\n".join(
                    f"[{'red' if f.severity == 'error' else 'yellow'}]{f.rule}[/]: {f.message}" for f in findings
                ),
            )
        target = Console(file=output.open("w", encoding="utf-8"), width=200) if output is not None else console
        target.print(table)
        summary = estate.summary()
        target.print(
            f"{summary['certificates']} certificates, {summary['due']} due, {summary['errors']} error(s), "
            f"{summary['warnings']} warning(s) in {summary['elapsed_seconds']}s"
        )
        if output is not None:
            target.file.close()
    for problem in estate.inventory.errors:
        err.print(f"[red]error[/red] {problem}")
    raise typer.Exit(EXIT_FAILED if estate.failed else EXIT_OK)


@app.command()
def adopt(
    vault: str,
    name: str,
    issuer: Annotated[str, typer.Option("--issuer", help="The configured issuer that will renew it.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes, make none.")] = False,
) -> None:
    """Bring an existing certificate under management: issuer tag, Unknown issuer, EmailContacts trigger."""
    from renewal.errors import AdoptionRefused, NotFound
    from renewal.operations.adoption import adopt as run_adopt

    service = _service()
    try:
        result = run_adopt(service, vault, name, issuer=issuer, dry_run=dry_run)
    except (AdoptionRefused, NotFound) as exc:
        err.print(f"[red]not adopted[/red]: {exc}")
        raise typer.Exit(EXIT_NOT_FOUND if isinstance(exc, NotFound) else EXIT_FAILED) from None
    if not result.changes:
        console.print(f"{vault}/{name} is already managed by {issuer}: nothing to change")
        return
    verb = "would change" if dry_run else "changed"
    console.print(f"{vault}/{name} (version {result.version}) {verb}:")
    for change in result.changes:
        console.print(f"  {change}", markup=False)


@app.command("import")
def import_certificate(
    vault: str,
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="PFX or PEM file.")],
    password_setting: Annotated[
        str | None, typer.Option("--password-setting", help="Environment variable holding the PFX password.")
    ] = None,
    allow_incomplete_chain: Annotated[
        bool, typer.Option("--allow-incomplete-chain", help="Import a leaf without its intermediates.")
    ] = False,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Tag the certificate for this issuer.")] = None,
) -> None:
    """Import a PFX/PEM after checking its chain, key and validity against the compliance rules."""
    import os

    from renewal.errors import ImportRefused, NotFound
    from renewal.operations.adoption import import_file

    password = None
    if password_setting:
        password = os.environ.get(password_setting)
        if password is None:
            err.print(f"[red]--password-setting: environment variable {password_setting} is not set[/red]")
            raise typer.Exit(EXIT_CONFIG)
    service = _service()
    try:
        result = import_file(
            service,
            vault,
            name,
            file.read_bytes(),
            password=password,
            allow_incomplete_chain=allow_incomplete_chain,
            issuer=issuer,
        )
    except ImportRefused as exc:
        err.print(f"[red]refused[/red]: {exc}", markup=True)
        for finding in exc.findings:
            err.print(f"  {finding.severity} {finding.rule}: {finding.message}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    except NotFound as exc:
        err.print(f"[red]refused[/red]: {exc}", markup=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    console.print(
        f"imported {vault}/{name} version {result.version} from {result.format.upper()} "
        f"(chain of {result.chain_length})"
    )


@app.command()
def backup(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Back up every current version not yet in the backup archive (what the weekly timer does)."""
    from renewal.errors import StorageNotConfigured

    service = _service()
    try:
        result = service.back_up_estate()
    except StorageNotConfigured as exc:
        raise _stop(exc) from None
    if as_json:
        console.print_json(json.dumps({"backed_up": result.backed_up, "already": result.already,
                                       "errors": result.errors}))  # fmt: skip
    else:
        console.print(f"backed up {len(result.backed_up)}, already in the archive {result.already}")
        for problem in result.errors:
            err.print(f"[red]{problem}[/red]")
    raise typer.Exit(EXIT_FAILED if result.errors else EXIT_OK)


@app.command()
def restore(
    vault: str,
    name: str,
    to: Annotated[str, typer.Option("--to", help="Certificate vault or recovery vault of the config.")],
    version: Annotated[str | None, typer.Option("--version", help="The backup written when V was current.")] = None,
) -> None:
    """Restore VAULT/NAME from the backup archive into the vault named by --to (every version, key, policy)."""
    from renewal.errors import Rejected, RestoreRefused, StoreError

    service = _service()
    try:
        restored = service.restore(vault, name, to=to, version=version)
    except (Rejected, StoreError) as exc:
        raise _stop(exc, "restore refused" if isinstance(exc, RestoreRefused) else "") from None
    state = "[green]matches[/green]" if restored.matches else f"[red]differs from {restored.entry.thumbprint}[/red]"
    console.print(
        f"restored {vault}/{name} into {to}: current version {restored.version}, thumbprint {restored.thumbprint} "
        f"{state} (backup of {_when(restored.entry.backed_up_at)}, {restored.seconds:.2f}s)"
    )
    raise typer.Exit(EXIT_OK if restored.matches else EXIT_FAILED)


@app.command()
def drill(
    to: Annotated[str, typer.Option("--to", help="A recovery vault of the config used only for drills.")],
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Restore N random certificates.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore a sample of the newest backups into a drill vault, verify each one, time it, purge the copies."""
    from renewal.errors import Rejected, StoreError

    service = _service()
    try:
        report = service.drill(to=to, sample=sample)
    except (Rejected, StoreError) as exc:
        raise _stop(exc, "drill failed" if isinstance(exc, StoreError) else "") from None
    if as_json:
        console.print_json(json.dumps(report.as_dict(), default=str))
    else:
        verdict = "[green]passed[/green]" if report.passed else "[red]FAILED[/red]"
        console.print(
            f"drill into {to} {verdict}: {report.verified}/{report.sampled} verified, {report.purged} purged, "
            f"{report.seconds:.1f}s in all ({report.restore_seconds:.1f}s restoring)"
        )
        for problem in report.problems:
            err.print(f"[red]{problem}[/red]")
    raise typer.Exit(EXIT_OK if report.passed else EXIT_FAILED)


@app.command()
def demo(
    acme: Annotated[bool, typer.Option("--acme", help="Renew through ACME against a local pebble.")] = False,
    stepca: Annotated[
        bool, typer.Option("--stepca", help="Renew through a local step-ca (JWK provisioner; make test builds it).")
    ] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the emulator and Azurite running at the end.")] = False,
) -> None:
    """Run the whole flow locally: emulator, Azurite, local CA, a real event, the queues, a web hook."""
    import importlib

    try:
        demo_module = importlib.import_module("devtools.demo")  # dev-only package; never deployed
    except ModuleNotFoundError:
        err.print("[red]the demo needs the dev tools (run it from a source checkout: make demo)[/red]")
        raise typer.Exit(EXIT_CONFIG) from None
    raise typer.Exit(demo_module.run(console, acme=acme, stepca=stepca, keep=keep))


def main() -> None:
    app()
