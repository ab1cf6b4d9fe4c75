"""The desk's HTTP JSON API (aiohttp), with its OpenAPI document at ``/api/v1/openapi.json``.

Every request but the health check and the document carries ``Authorization: Bearer
<token>``; each token has a name (the actor every write records) and a role:

- ``viewer``: read incidents and timelines;
- ``responder``: also acknowledge, move status, post and judge entries, take roles;
- ``admin``: also post triage's incident events (``POST /api/v1/events``).

Refusals are JSON ``{"error", "field", "reason"}``: 400 for a body that is not JSON or not an
object, 422 for a field that is wrong, 409 for a move the incident's state does not allow,
404 for an unknown incident, 401 without a valid token, 403 for a role that may not.
Database calls run in worker threads: the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.desk import changes, mitigation, updates
from triage.desk import lifecycle as lc
from triage.desk.auth import Token, allows, find_token
from triage.desk.console import add_console
from triage.desk.rules import ConflictError, MissingError, RuleError
from triage.desk.schema import STATUSES
from triage.desk.store import Command, DeskStore
from triage.errors import InputError

MAX_BODY = 1 << 20
log = logging.getLogger("triage.desk")
__all__ = ["API", "ROUTES", "DeskAPI", "Token", "create_desk_app"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")


def _error(status: int, error: str, field: str, reason: str) -> web.Response:
    return _json({"error": error, "field": field, "reason": reason}, status)


def _times(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (format_timestamp(v) if (k.endswith("_at") or k.endswith("_seen"))
                and isinstance(v, float) else v) for k, v in row.items()}


class DeskAPI:
    """The routes over one store."""

    def __init__(self, store: DeskStore, tokens: Sequence[Token],
                 clock: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Gauge
        self.store = store
        self.tokens = list(tokens)
        self.clock = clock
        self.registry = CollectorRegistry()
        self.overdue = Gauge("triage_desk_updates_overdue", "Open incidents whose next "
                             "status update is overdue (P1 every 30 min, P2 1 h, P3 4 h)",
                             registry=self.registry)

    # -- plumbing ------------------------------------------------------------------------

    def who(self, request: web.Request, need: str) -> Token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _Refused(401, "Unauthorized", "Authorization",
                           "send Authorization: Bearer <token>")
        found = find_token(self.tokens, given)
        if found is None:
            raise _Refused(401, "Unauthorized", "Authorization", "unknown token")
        if not allows(found, need):
            raise _Refused(403, "Forbidden", "Authorization",
                           f"{found.name} is a {found.role}; this needs {need}")
        return found

    @staticmethod
    async def body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refused(400, "DecodeError", "", f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _Refused(400, "SchemaError", "", "expected a JSON object")
        return doc

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def act(self, request: web.Request, command: Command) -> web.Response:
        iid = request.match_info["id"]
        try:
            rows = await self.run(self.store.act, iid, command)
        except RuleError as exc:
            status = (404 if isinstance(exc, MissingError) else
                      409 if isinstance(exc, ConflictError) else 422)
            return _error(status, type(exc).__name__, exc.field, exc.message)
        timeline = lc.timeline(rows)
        return _json({"appended": [_times(e) for e in timeline] or
                      [{"seq": r["seq"], "type": r["type"]} for r in rows]}, 201)

    def at(self, doc: dict[str, Any]) -> float:
        """When it happened: ``at`` in the body (RFC 3339 or epoch seconds), else now."""
        if doc.get("at") is None:
            return self.clock()
        t = parse_timestamp(doc["at"], "at")
        if t is None:
            raise _Refused(422, "TimestampError", "at", "not a time")
        return t

    # -- reading -------------------------------------------------------------------------

    async def list_incidents(self, request: web.Request) -> web.Response:
        self.who(request, "viewer")
        q = request.query
        try:
            limit = min(500, max(1, int(q.get("limit", "50"))))
        except ValueError:
            return _error(422, "SchemaError", "limit", "an integer")
        status = [s for s in q.getall("status", []) if s]
        bad = [s for s in status if s not in STATUSES]
        if bad:
            return _error(422, "SchemaError", "status", f"one of {', '.join(STATUSES)}")
        rows = await self.run(self.store.incidents, status=status or None,
                              priority=q.getall("priority", []) or None, limit=limit,
                              search=q.get("q") or None)
        return _json({"incidents": [_times(r) for r in rows]})

    async def get_incident(self, request: web.Request) -> web.Response:
        self.who(request, "viewer")
        iid = request.match_info["id"]
        row = await self.run(self.store.incident, iid)
        if row is None:
            return _error(404, "NotFound", "id", f"no incident {iid!r}")
        log = await self.run(self.store.log, iid)
        due = updates.next_due(row, log)
        return _json({"incident": _times(row), "roles": lc.holders(log),
                      "timeline": [_times(e) for e in lc.timeline(log)],
                      "comms": [_times(c) for c in updates.comms_log(log)],
                      "mitigations": [_times(m) for m in mitigation.mitigations(log)],
                      "changes": [_times(c) for c in changes.emergency_changes(log)],
                      "access": [_times(a) for a in changes.access(log)],
                      "next_update_due": format_timestamp(due) if due is not None else None})

    async def post_mitigation(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        at = self.at(doc)
        window = doc.get("window", mitigation.WINDOW)
        return await self.act(request, lambda row, log: mitigation.add_mitigation(
            row, log, doc.get("action"), actor=token.name, at=at,  # type: ignore[arg-type]
            hypothesis=doc.get("hypothesis"), promql=doc.get("promql"),
            manual=doc.get("manual"), window=window))

    async def post_check(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        seq, at = int(request.match_info["seq"]), self.at(doc)
        return await self.act(request, lambda row, log: mitigation.check(
            row, log, seq, doc.get("holds"), actor=token.name, at=at,  # type: ignore[arg-type]
            value=doc.get("value"), source="manual"))

    async def post_outcome(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        seq, at = int(request.match_info["seq"]), self.at(doc)
        return await self.act(request, lambda row, log: mitigation.set_outcome(
            row, log, seq, doc.get("outcome"), actor=token.name,  # type: ignore[arg-type]
            at=at, note=doc.get("note")))

    async def post_change(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        d = await self.body(request)
        at = self.at(d)
        return await self.act(request, lambda row, log: changes.record_change(
            row, log, service=d.get("service"), kind=d.get("kind"),  # type: ignore[arg-type]
            what=d.get("what"), why=d.get("why"), risk=d.get("risk"),  # type: ignore[arg-type]
            rollback=d.get("rollback"), actor=token.name, at=at,  # type: ignore[arg-type]
            approver=d.get("approver")))

    async def post_approval(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        d = await self.body(request)
        seq, at = int(request.match_info["seq"]), self.at(d)
        return await self.act(request, lambda row, log: changes.approve_change(
            row, log, seq, approver=token.name, at=at))

    async def post_access(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        d = await self.body(request)
        at = self.at(d)
        return await self.act(request, lambda row, log: changes.request_access(
            row, log, who=d.get("who", token.name), resource=d.get("resource"),  # type: ignore[arg-type]
            level=d.get("level"), why=d.get("why"),  # type: ignore[arg-type]
            minutes=d.get("minutes"), actor=token.name, at=at))  # type: ignore[arg-type]

    async def post_decision(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        d = await self.body(request)
        seq, at = int(request.match_info["seq"]), self.at(d)
        if not isinstance(d.get("approve"), bool):
            return _error(422, "SchemaError", "approve", "true or false")
        return await self.act(request, lambda row, log: changes.decide_access(
            row, log, seq, d["approve"], approver=token.name, at=at, note=d.get("note")))

    async def post_revoke(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        d = await self.body(request)
        seq, at = int(request.match_info["seq"]), self.at(d)
        return await self.act(request, lambda row, log: changes.revoke_access(
            row, log, seq, actor=token.name, at=at, reason=d.get("reason")))

    async def get_draft(self, request: web.Request) -> web.Response:
        self.who(request, "viewer")
        iid = request.match_info["id"]
        audience = request.query.get("audience", "")
        row = await self.run(self.store.incident, iid)
        if row is None:
            return _error(404, "NotFound", "id", f"no incident {iid!r}")
        log = await self.run(self.store.log, iid)
        return _json({"audience": audience,
                      "text": updates.draft(row, log, audience, now=self.clock())})

    async def post_update(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        audience, text, at = doc.get("audience"), doc.get("text"), self.at(doc)
        channel = doc.get("channel", "desk")
        return await self.act(request, lambda row, log: updates.send_update(
            row, log, audience, text, actor=token.name, at=at,  # type: ignore[arg-type]
            channel=channel))

    async def metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def remind(self) -> list[str]:
        """One pass of the reminders: ``update.overdue`` rows, and the overdue gauge."""
        overdue: list[str] = await self.run(self.store.remind, self.clock())
        await self.run(self.store.expire, self.clock())  # access grants whose time is up
        self.overdue.set(len(overdue))
        return overdue

    # -- writing -------------------------------------------------------------------------

    async def post_status(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        to, at = doc.get("status"), self.at(doc)
        if not isinstance(to, str):
            return _error(422, "SchemaError", "status", f"one of {', '.join(STATUSES)}")
        reason, correct = doc.get("reason"), bool(doc.get("correct", False))
        return await self.act(request, lambda row, log: lc.set_status(
            row, log, to, actor=token.name, at=at, reason=reason, correct=correct))

    async def post_entry(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        kind, text, at = doc.get("type"), doc.get("text"), self.at(doc)
        return await self.act(request, lambda row, log: lc.add_entry(
            row, log, kind, text, actor=token.name, at=at,  # type: ignore[arg-type]
            pinned=bool(doc.get("pinned", False))))

    async def post_judgement(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        entry, at = int(request.match_info["seq"]), self.at(doc)
        return await self.act(request, lambda row, log: lc.judge(
            row, log, entry, doc.get("state"), actor=token.name, at=at,  # type: ignore[arg-type]
            reason=doc.get("reason")))

    async def post_pin(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        entry, at = int(request.match_info["seq"]), self.at(doc)
        return await self.act(request, lambda row, log: lc.pin(
            row, log, entry, actor=token.name, at=at, pinned=bool(doc.get("pinned", True))))

    async def post_role(self, request: web.Request) -> web.Response:
        token = self.who(request, "responder")
        doc = await self.body(request)
        role, person, at = doc.get("role"), doc.get("person"), self.at(doc)
        if doc.get("renounce"):
            return await self.act(request, lambda row, log: lc.renounce_role(
                row, log, role, actor=token.name, at=at,  # type: ignore[arg-type]
                note=doc.get("note")))
        return await self.act(request, lambda row, log: lc.assume_role(
            row, log, role, person, actor=token.name, at=at,  # type: ignore[arg-type]
            note=doc.get("note")))

    async def post_events(self, request: web.Request) -> web.Response:
        self.who(request, "admin")
        raw = await request.read()
        lines = [line for line in raw.splitlines() if line.strip()]
        result = await self.run(self.store.ingest, lines)
        return _json({"added": result.added, "duplicates": result.duplicates,
                      "rejected": [{"line": i + 1, "error": type(e).__name__,
                                    "field": e.field, "reason": e.message}
                                   for i, e in result.rejected]},
                     422 if result.rejected and not result.added else 200)

    async def healthy(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        from triage.desk.openapi import document
        return _json(document())


class _Refused(Exception):
    def __init__(self, status: int, error: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.response = _error(status, error, field, reason)


API = web.AppKey("api", DeskAPI)


def periodic(app: web.Application, name: str, work: Callable[[], Awaitable[Any]],
             every: float) -> None:
    """Run ``work`` every ``every`` seconds while ``app`` runs. A pass that fails is logged
    and the next one tries again; at cleanup the pass in progress (its database calls run
    in threads) is waited for, so the store is never closed under it."""
    stopping = asyncio.Event()

    async def loop() -> None:
        while not stopping.is_set():
            try:
                await work()
            except Exception:  # a database or a receiver away: the next pass tries again
                log.exception("desk: the %s pass failed; retrying in %gs", name, every)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)

    key = web.AppKey(name, asyncio.Task)

    async def start(app: web.Application) -> None:
        stopping.clear()
        app[key] = asyncio.create_task(loop())

    async def stop(app: web.Application) -> None:
        stopping.set()
        await app[key]

    app.on_startup.append(start)
    app.on_cleanup.append(stop)

ROUTES: list[tuple[str, str, str]] = [  # method, path, DeskAPI method
    ("GET", "/-/healthy", "healthy"),
    ("GET", "/api/v1/openapi.json", "openapi"),
    ("GET", "/api/v1/incidents", "list_incidents"),
    ("GET", "/api/v1/incidents/{id}", "get_incident"),
    ("POST", "/api/v1/incidents/{id}/status", "post_status"),
    ("POST", "/api/v1/incidents/{id}/entries", "post_entry"),
    ("POST", "/api/v1/incidents/{id}/entries/{seq:\\d+}/judgement", "post_judgement"),
    ("POST", "/api/v1/incidents/{id}/entries/{seq:\\d+}/pin", "post_pin"),
    ("POST", "/api/v1/incidents/{id}/roles", "post_role"),
    ("POST", "/api/v1/incidents/{id}/mitigations", "post_mitigation"),
    ("POST", "/api/v1/incidents/{id}/mitigations/{seq:\\d+}/checks", "post_check"),
    ("POST", "/api/v1/incidents/{id}/mitigations/{seq:\\d+}/outcome", "post_outcome"),
    ("POST", "/api/v1/incidents/{id}/changes", "post_change"),
    ("POST", "/api/v1/incidents/{id}/changes/{seq:\\d+}/approval", "post_approval"),
    ("POST", "/api/v1/incidents/{id}/access", "post_access"),
    ("POST", "/api/v1/incidents/{id}/access/{seq:\\d+}/decision", "post_decision"),
    ("POST", "/api/v1/incidents/{id}/access/{seq:\\d+}/revoke", "post_revoke"),
    ("GET", "/api/v1/incidents/{id}/updates/draft", "get_draft"),
    ("POST", "/api/v1/incidents/{id}/updates", "post_update"),
    ("GET", "/metrics", "metrics"),
    ("POST", "/api/v1/events", "post_events"),
]


def create_desk_app(store: DeskStore, tokens: Sequence[Token], *,
                    clock: Callable[[], float], console: bool = True,
                    remind_every: float | None = 30.0,
                    dispatch_every: float | None = 2.0, prometheus_url: str | None = None,
                    check_every: float = 15.0) -> web.Application:
    """The desk's application over ``store``: the API, the web console (``console``), and
    a reminder pass every ``remind_every`` seconds (None: none; ``app[API].remind()``),
    and, when the store has webhook routes, a delivery pass every ``dispatch_every``
    seconds (``triage.desk.dispatch``); with ``prometheus_url``, a pass over the live
    mitigations' PromQL criteria every ``check_every`` seconds (``triage.desk.checks``)."""
    api = DeskAPI(store, tokens, clock)

    @web.middleware
    async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as exc:
            return exc.response
        except InputError as exc:
            return _error(422, type(exc).__name__, exc.field, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400 or not request.path.startswith("/api/"):
                raise  # the console's redirects and pages
            # aiohttp's own 404, 405, 413 on the API: JSON as well
            return _error(exc.status, exc.reason, "", exc.text or exc.reason)

    app = web.Application(middlewares=[refusals], client_max_size=MAX_BODY)
    for method, path, name in ROUTES:
        app.router.add_route(method, path, getattr(api, name), name=name)
    if console:
        add_console(app, api.store, api.tokens, api.clock)
    app[API] = api
    if store.routes and dispatch_every is not None:
        from triage.desk.dispatch import Dispatcher
        dispatcher = Dispatcher(store, store.routes, clock)
        periodic(app, "delivery", dispatcher.run_once, dispatch_every)
    if remind_every is not None:
        periodic(app, "reminder", api.remind, remind_every)
    if prometheus_url:
        from triage.desk.checks import PromChecker
        periodic(app, "check", PromChecker(store, prometheus_url, clock).run_once,
                 check_every)
    return app
