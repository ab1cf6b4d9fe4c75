"""The aiohttp application of ``triage serve``: routes, auth, limits and error answers.

Every error is JSON naming the problem (``status``, ``code``, ``error``, ``message`` and
``field`` when known; ``code`` and ``message`` are what Alertmanager's own API answers), and
no request can crash the process: anything unexpected is logged and answered 500.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from triage.errors import DecodeError, InputError, SchemaError
from triage.http import amapi
from triage.http.intake import MAX_DEAD_LETTER_BYTES, Accepted, Backend, Rejected, too_large
from triage.metrics import TriageMetrics
from triage.models.feedback import Feedback, feedback_from_dict

log = logging.getLogger("triage.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Route names double as the `handler` label of the HTTP metrics (a fixed, small set).
ALERT_ROUTES = (
    ("/api/v2/alerts", "api_v2_alerts"),  # Alertmanager API v2: what Prometheus posts
    ("/webhook", "webhook"),  # Alertmanager webhook v4, Grafana, PagerDuty, SNS ...
    ("/api/v1/alerts", "api_v1_alerts"),  # triage's generic alerts (any format works)
)
FEEDBACK_ROUTE = ("/api/v1/feedback", "api_v1_feedback")  # responders' judgements


def create_app(
    backend: Backend,
    metrics: TriageMetrics,
    *,
    token: str | None = None,
    max_body_bytes: int = 10 << 20,
    clock: Callable[[], float] = time.time,
    body_timeout: float = 30.0,
    admin_token: str | None = None,
    stream_silences: bool = False,
) -> web.Application:
    """The application; ``backend`` is started and stopped with it.

    ``token``: when set, the alert and feedback endpoints need ``Authorization: Bearer <token>``
    (``/metrics`` and the health endpoints stay open for probes and scrapers).
    ``clock``: the wall clock stamped on each body as ``received_at``.
    """

    @web.middleware
    async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.name or "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404, 405 ...: JSON as well
            message = exc.reason
            if exc.status == 404:
                message = (f"no endpoint {request.path}; alerts go to POST "
                           f"{', '.join(path for path, _ in ALERT_ROUTES)}")
            elif exc.status == 405:
                message = (f"{request.method} is not allowed on {request.path}; use "
                           f"{exc.headers.get('Allow', 'another method')}")
            response = error_response(exc.status, exc.reason.replace(" ", ""), message)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = error_response(500, "InternalError",
                                      "internal error; the body was not triaged, retry")
        metrics.observe_http(route, response.status, time.perf_counter() - started)
        return response

    def authorized(request: web.Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # the header's bytes come as latin-1 text: encode them back as such, since a token
        # is ASCII and a byte such as 0xFF must be refused, not crash the comparison
        given_bytes = given.strip().encode("latin-1", "replace")
        return (scheme.lower() == "bearer" and bool(given_bytes)
                and hmac.compare_digest(given_bytes, token.encode()))

    async def read_body(request: web.Request) -> bytes | web.Response:
        """The body, or the answer refusing it (no or wrong token, too large)."""
        if not authorized(request):
            return error_response(401, "Unauthorized",
                                  "missing or wrong bearer token (Authorization: Bearer "
                                  "<http.token>)", headers={"WWW-Authenticate": "Bearer"})
        if request.content_length is not None and request.content_length > max_body_bytes:
            return await oversize(request, request.content_length)
        try:
            return await asyncio.wait_for(request.read(), body_timeout)
        except web.HTTPRequestEntityTooLarge:  # no Content-Length (chunked) and too big
            return await oversize(request, None)
        except TimeoutError:  # a client trickling its body holds a connection: not forever
            response = error_response(408, "RequestTimeout",
                                      f"the body did not arrive within {body_timeout:g} s "
                                      "(http.body_timeout)")
            response.force_close()
            return response

    async def oversize(request: web.Request, declared: int | None) -> web.Response:
        """413, and the body's first bytes dead-lettered with the reason."""
        answer = too_large(declared or max_body_bytes + 1, max_body_bytes,
                           "http.max_body_bytes")
        head = await request.content.read(min(max_body_bytes, MAX_DEAD_LETTER_BYTES))
        size = f"{declared:,} bytes declared" if declared is not None else "chunked"
        await backend.dead_letter(head, answer.error, f"{answer.message}; {size}, the first "
                                  f"{len(head):,} kept here ({request.method} {request.path})")
        return rejected(answer)

    async def untrusted_silence(request: web.Request, body: bytes) -> web.Response | None:
        """A silence object in the alert stream, from a sender not trusted with silences
        (amapi.UNTRUSTED: the alert routes never take one unless http.stream_silences)."""
        if stream_silences or not amapi.carries_silence(body):
            return None
        await backend.dead_letter(body, "UntrustedSilence", amapi.UNTRUSTED)
        return error_response(403, "UntrustedSilence", amapi.UNTRUSTED)

    def alerts_handler(name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await read_body(request)
            if isinstance(body, web.Response):
                return body
            refused = await untrusted_silence(request, body)
            if refused is not None:
                return refused
            result = await backend.accept(body, received_at=clock())
            if isinstance(result, Rejected):
                return rejected(result)
            return accepted(name, result)

        return handle

    async def feedback_handler(request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            records, feedback = parse_feedback_body(body)
        except InputError as exc:  # nothing of a bad body is taken: the sender fixes it
            return error_response(400, type(exc).__name__, f"feedback {exc}",
                                  field=exc.field or None)
        result = await backend.accept_feedback(records, feedback)
        if isinstance(result, Rejected):
            return rejected(result)
        if result.queued:
            return web.json_response({"status": "accepted", "queued": True, **result.counts},
                                     status=202)
        return web.json_response({"status": "success", **result.counts})

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def ready(request: web.Request) -> web.Response:
        if await backend.ready():
            return web.Response(text="OK\n")
        return error_response(503, "NotReady", f"{backend.mode} backend is not ready "
                              "(Kafka unavailable?)")

    async def lifecycle(app: web.Application) -> Any:
        await backend.start()
        yield
        await backend.stop()

    app = web.Application(middlewares=[errors_and_metrics], client_max_size=max_body_bytes)
    for path, name in ALERT_ROUTES:
        app.router.add_post(path, alerts_handler(name), name=name)
    app.router.add_post(FEEDBACK_ROUTE[0], feedback_handler, name=FEEDBACK_ROUTE[1])
    amapi.register(app, backend, error_response, token=token, admin_token=admin_token,
                   clock=clock)
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    app.router.add_get("/-/healthy", healthy, name="healthy")
    app.router.add_get("/-/ready", ready, name="ready")
    app.cleanup_ctx.append(lifecycle)
    return app


def parse_feedback_body(body: bytes) -> tuple[list[Any], list[Feedback]]:
    """A feedback body, one record or a JSON array of them: the records as sent and as
    validated (``feedback_from_dict``). ``InputError`` names the field, with the record's
    index for an array; one bad record refuses the whole body.

    >>> parse_feedback_body(b'{"at": 0, "label": "noise", "alertname": "X"}')[1][0].label
    'noise'
    >>> parse_feedback_body(b'[{"at": 0, "label": "noise", "alertname": "X"}, {"at": 0}]')
    Traceback (most recent call last):
    ...
    triage.errors.SchemaError: [1].label: expected actionable or noise, got None
    """
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    records = decoded if isinstance(decoded, list) else [decoded]
    if not records:
        raise SchemaError("", "an empty array: send one feedback record or an array of them")
    feedback: list[Feedback] = []
    for i, record in enumerate(records):
        try:
            feedback.append(feedback_from_dict(record))
        except InputError as exc:
            raise exc.at(f"[{i}]") if isinstance(decoded, list) else exc from None
    return records, feedback


def error_response(status: int, error: str, message: str, *, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The JSON body of every error answer."""
    body: dict[str, Any] = {"status": "error", "code": status, "error": error,
                            "message": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def rejected(result: Rejected) -> web.Response:
    """The answer for a refused body."""
    headers = None
    if result.retry_after is not None:
        headers = {"Retry-After": str(max(1, round(result.retry_after)))}
    return error_response(result.status, result.error, result.message, field=result.field,
                          headers=headers)


def accepted(route: str, result: Accepted) -> web.Response:
    """The answer for a body taken in.

    ``/api/v2/alerts`` answers 200 like Alertmanager (whose clients ignore the body), with
    what happened to each alert in input order: ``accepted``, ``deduplicated``,
    ``suppressed`` (with the reason) or ``refused`` (with the error, field and reason).
    The others answer 200 with the stage-1 counts (embedded), or 202 once Kafka has the
    body (Kafka mode).
    Alerts that failed inside a good payload are dead-lettered and listed in ``errors``;
    the request still succeeds, as Alertmanager would accept them.
    """
    if route == "api_v2_alerts":
        if result.queued:  # Kafka mode: the workers decide; Alertmanager's empty 200
            return web.Response(status=200)
        counts = {"accepted": 0, "deduplicated": 0, "suppressed": 0, "refused": 0}
        for r in result.results:
            counts[r["outcome"]] += 1
        return _json({"status": "success", "alerts": result.results, "counts": counts})
    if result.queued:
        return _json({"status": "accepted", "queued": True}, status=202)
    return _json({"status": "success", "alerts": result.alerts, **result.counts,
                  "events": result.events, "errors": result.errors})


def _json(data: Any, *, status: int = 200) -> web.Response:
    """A JSON answer encoded with orjson: an answer lists every alert of the body, and the
    standard library's encoder cost a few percent of a storm's intake."""
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")
