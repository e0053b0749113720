"""Azure Functions bindings only: each function turns its trigger input into one domain call and maps
the outcome to its output. The domain (``renewal``) is imported inside the functions, so cold start
pays for ``azure.functions`` and the setting names only."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from renewal import settings

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("renewal.functions")
_service = None


def service():
    """The process-wide RenewalService; the config is validated here, listing every problem at once."""
    global _service
    if _service is None:
        from renewal.service import RenewalService

        _service = RenewalService.from_environment()
        from renewal import metrics

        metrics.configure(_service.environ)
        metrics.watch_service(_service.poison)
    return _service


def _event_dict(event: func.EventGridEvent | func.CloudEvent) -> dict:
    """The event as it was on the wire, in its own schema: the worker's converter hands us a
    ``CloudEvent`` (source, type, time) when the delivery has ``specversion``, else an ``EventGridEvent``."""
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


@app.function_name("on_certificate_event")
@app.event_grid_trigger(arg_name="event")
def on_certificate_event(event: func.EventGridEvent | func.CloudEvent) -> None:
    # Rejected and ignored events are logged by the service and acknowledged (a retry cannot fix them);
    # a failure to enqueue raises, so Event Grid retries and finally dead-letters the event.
    service().handle_event(_event_dict(event))


@app.function_name("renewal_worker")
@app.queue_trigger(arg_name="msg", queue_name=settings.JOBS_QUEUE, connection="AzureWebJobsStorage")
def renewal_worker(msg: func.QueueMessage) -> None:
    from renewal.model import parse_job

    job = parse_job(msg.get_body())  # JobRejected raises: retried, then poisoned with its reason logged
    outcome = service().run_job(job)  # RenewalFailed raises: the queue retries, then poisons
    log.info("renewal_worker %s %s/%s %s", outcome.status, job.vault, job.name, outcome.detail)


@app.function_name("nightly_sweep")
@app.timer_trigger(
    arg_name="timer", schedule=f"%{settings.SWEEP_SCHEDULE.name}%", run_on_startup=False, use_monitor=True
)
def nightly_sweep(timer: func.TimerRequest) -> None:
    report = service().sweep()
    if report.errors:
        raise RuntimeError("sweep failed for: " + "; ".join(report.errors))


@app.function_name("weekly_backup")
@app.timer_trigger(
    arg_name="timer", schedule=f"%{settings.BACKUP_SCHEDULE.name}%", run_on_startup=False, use_monitor=True
)
def weekly_backup(timer: func.TimerRequest) -> None:
    """Back up the current versions the service did not renew (imported, renewed by Key Vault or by hand)."""
    if service().backups is None:
        return  # RENEWAL_BACKUP_STORAGE not set: backups are off
    report = service().back_up_estate()
    if report.errors:
        raise RuntimeError(f"backup failed for {len(report.errors)}: " + "; ".join(report.errors[:20]))


@app.function_name("deploy_notifier")
@app.queue_trigger(arg_name="msg", queue_name=settings.DEPLOYMENTS_QUEUE, connection="AzureWebJobsStorage")
def deploy_notifier(msg: func.QueueMessage) -> None:
    from renewal.model import parse_notice

    service().deliver(parse_notice(msg.get_body()))


def _json(status: int, body: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str, indent=2), status_code=status, mimetype="application/json")


@app.function_name("ops_force_renewal")
@app.route(route="ops/renew/{vault}/{name}", methods=["POST"])
def ops_force_renewal(req: func.HttpRequest) -> func.HttpResponse:
    from renewal.errors import NotFound, Rejected

    try:
        job = service().force_renewal(req.route_params["vault"], req.route_params["name"], requested_by="http")
    except NotFound as exc:
        return _json(404, {"error": str(exc)})
    except Rejected as exc:
        return _json(400, {"error": str(exc)})
    return _json(202, {"queued": json.loads(job.to_json())})


@app.function_name("ops_failures")
@app.route(route="ops/failures", methods=["GET"])
def ops_failures(req: func.HttpRequest) -> func.HttpResponse:
    report = service().failures()
    return _json(200, {"jobs": report.jobs, "notices": report.notices, "dead_letters": report.dead_letters})


@app.function_name("ops_replay")
@app.route(route="ops/replay", methods=["POST"])
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json() if req.get_body() else {}
    except ValueError:
        return _json(400, {"error": "body: not JSON"})
    if not isinstance(body, dict):
        return _json(400, {"error": "body: must be a JSON object"})
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return _json(400, {"error": "ids: must be a list of message ids or dead-letter blob names"})
    kinds = {k: body.get(k, True) for k in ("jobs", "notices", "dead_letters")}
    if not all(isinstance(v, bool) for v in kinds.values()):
        return _json(400, {"error": "jobs/notices/dead_letters: must be true or false"})
    result = service().replay(ids=ids, **kinds)
    return _json(200, result.__dict__)


@app.function_name("ops_status")
@app.route(route="ops/status", methods=["GET"])
def ops_status(req: func.HttpRequest) -> func.HttpResponse:
    return _json(200, service().status())


# -- operator dashboard (HTML; renewal/operations/dashboard renders it). Function keys locally, Entra ID in Azure. --
def _dashboard(req: func.HttpRequest, view: str) -> func.HttpResponse:
    import renewal.operations.dashboard as dashboard

    request = dashboard.DashboardRequest(
        method=req.method,
        url=req.url,
        headers=dict(req.headers),
        params=dict(req.params),
        route=dict(req.route_params),
        body=req.get_body() or b"",
    )
    page = getattr(dashboard, view)(service(), request)
    return func.HttpResponse(page.body, status_code=page.status, headers=page.headers, mimetype=page.mimetype)


@app.function_name("ops_dashboard")
@app.route(route="ops/dashboard", methods=["GET"])
def ops_dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return _dashboard(req, "overview")


@app.function_name("ops_dashboard_certificate")
@app.route(route="ops/dashboard/certificates/{vault}/{name}", methods=["GET"])
def ops_dashboard_certificate(req: func.HttpRequest) -> func.HttpResponse:
    return _dashboard(req, "certificate")


@app.function_name("ops_dashboard_replay")
@app.route(route="ops/dashboard/replay", methods=["POST"])
def ops_dashboard_replay(req: func.HttpRequest) -> func.HttpResponse:
    return _dashboard(req, "replay")
