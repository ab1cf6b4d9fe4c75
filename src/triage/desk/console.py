"""The desk's web console: server-rendered pages (Jinja2) in the API's process, with htmx
(vendored, ``static/htmx.min.js``) for the list's refresh and boosted links. Every page
works without JavaScript; the keys (``/`` search, ``n`` note, ``a`` acknowledge, ``g`` list,
Ctrl+Enter post) are a small script in the base page.

Signing in stores the API token in an HttpOnly, SameSite=Strict cookie: the browser never
sends it from another site's page, and a POST whose ``Origin`` is another site is refused
as well. Writes go through the same rules as the API (``triage.desk.lifecycle``) and record
the token's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from triage.core.timeutil import format_timestamp
from triage.desk import graphview, mitigation, updates
from triage.desk import lifecycle as lc
from triage.desk.auth import Token, allows, find_token
from triage.desk.rules import RuleError
from triage.desk.schema import STATUSES
from triage.desk.store import UNATTENDED_AFTER, DeskStore

HERE = Path(__file__).resolve().parent
COOKIE = "desk_token"


def _when(t: float | None) -> str:
    return (format_timestamp(t) or "")[:19].replace("T", " ") + " UTC" if t else ""


def _since(t: float | None, now: float) -> str:
    if not t:
        return ""
    s = max(0.0, now - t)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def moves(status: str) -> list[str]:
    """The status buttons an incident in ``status`` shows: the forward moves (a reopen
    or a correction needs a reason: the API or the CLI)."""
    if status == "closed":
        return []
    if status == "resolved":
        return ["closed"]
    return [s for s in STATUSES[STATUSES.index(status) + 1:] if s != "closed"]


class Console:
    def __init__(self, store: DeskStore, tokens: Sequence[Token],
                 clock: Callable[[], float]) -> None:
        self.store, self.tokens, self.clock = store, list(tokens), clock
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]))
        self.env.globals["when"] = _when

    def page(self, name: str, code: int = 200, **values: Any) -> web.Response:
        html = self.env.get_template(name).render(**values)
        return web.Response(text=html, status=code, content_type="text/html")

    def who(self, request: web.Request) -> Any:
        return find_token(self.tokens, request.cookies.get(COOKIE, ""))

    def need(self, request: web.Request, role: str) -> Any:
        token = self.who(request)
        if token is None:
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs))
        if not allows(token, role):
            raise web.HTTPForbidden(text=f"{token.name} is a {token.role}: this needs {role}")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and urlparse(origin).netloc != request.host:
                raise web.HTTPForbidden(text="a form from another site")
        return token

    # -- pages ---------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        return self.page("login.html", who=None, error=request.query.get("error"))

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = str(form.get("token", "")).strip()
        if find_token(self.tokens, given) is None:
            return self.page("login.html", code=401, who=None, error="Unknown token.")
        nxt = request.query.get("next", "/")
        response = web.HTTPSeeOther(nxt if nxt.startswith("/") else "/")
        response.set_cookie(COOKIE, given, httponly=True, samesite="Strict", path="/")
        raise response

    async def incidents(self, request: web.Request) -> web.Response:
        who = self.need(request, "viewer")
        q, status = request.query.get("q", ""), request.query.get("status", "")
        wanted = (None if status == "all" else [status] if status in STATUSES
                  else [s for s in STATUSES if s not in ("resolved", "closed")])
        rows = await asyncio.to_thread(self.store.incidents, status=wanted, limit=200,
                                       search=q or None, by_priority=True)
        now = self.clock()
        for r in rows:
            r["since"] = _since(r["triggered_at"], now)
            r["unattended"] = (r["priority"] in ("P1", "P2") and not r["commander"]
                               and r["status"] not in ("resolved", "closed")
                               and now - r["triggered_at"] >= UNATTENDED_AFTER)
        query = urlencode({k: v for k, v in (("q", q), ("status", status)) if v})
        return self.page("list.html", who=who, incidents=rows, q=q, status=status,
                         statuses=STATUSES, refresh="/" + ("?" + query if query else ""),
                         error=request.query.get("error"))

    async def incident(self, request: web.Request) -> web.Response:
        who = self.need(request, "viewer")
        iid = request.match_info["id"]
        row = await asyncio.to_thread(self.store.incident, iid)
        if row is None:
            return self.page("list.html", code=404, status="", who=who, incidents=[], q="",
                             statuses=STATUSES, refresh="/", error=f"No incident {iid}.")
        log = await asyncio.to_thread(self.store.log, iid)
        entries = lc.timeline(log)
        roles = lc.holders(log)
        now = self.clock()
        failing = sorted(row["services"], key=lambda s: (s != row["root_cause"], s))
        audience = request.query.get("audience", "internal")
        if audience not in updates.AUDIENCES:
            audience = "internal"
        due = updates.next_due(row, log)
        return self.page(
            "incident.html", who=who, inc=row, roles=roles, moves=moves(row["status"]),
            audiences=updates.AUDIENCES, audience=audience,
            update_draft=updates.draft(row, log, audience, now=now),
            comms=updates.comms_log(log), next_due=due,
            mitigations=mitigation.mitigations(log),
            overdue=due is not None and due <= now,
            pinned=[e for e in entries if e["pinned"]][::-1],
            rest=[e for e in entries if not e["pinned"]][::-1],
            postable=lc.POSTABLE, all_roles=lc.ROLES, failing=failing,
            graph=graphview.layout(graphview.latest_incident(log)),
            unattended=row["priority"] in ("P1", "P2") and "incident_commander" not in roles
            and now - row["triggered_at"] >= UNATTENDED_AFTER,
            error=request.query.get("error"))

    # -- writes (form posts; then back to the incident page) ------------------------------

    async def _act(self, request: web.Request, command: Any) -> web.StreamResponse:
        iid = request.match_info["id"]
        target = f"/incidents/{quote(iid)}"
        try:
            await asyncio.to_thread(self.store.act, iid, command)
        except RuleError as exc:
            raise web.HTTPSeeOther(target + "?" + urlencode({"error": str(exc)})) from None
        raise web.HTTPSeeOther(target)

    async def post_status(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        to, at = str(form.get("status", "")), self.clock()
        return await self._act(request, lambda row, log: lc.set_status(
            row, log, to, actor=who.name, at=at))

    async def post_entry(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        kind, text, at = str(form.get("type", "")), str(form.get("text", "")), self.clock()
        pinned = bool(form.get("pinned"))
        return await self._act(request, lambda row, log: lc.add_entry(
            row, log, kind, text, actor=who.name, at=at, pinned=pinned))

    async def post_judgement(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        entry, state, at = int(request.match_info["seq"]), str(form.get("state", "")), \
            self.clock()
        return await self._act(request, lambda row, log: lc.judge(
            row, log, entry, state, actor=who.name, at=at))

    async def post_update(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        audience, text, at = str(form.get("audience", "")), str(form.get("text", "")), \
            self.clock()
        return await self._act(request, lambda row, log: updates.send_update(
            row, log, audience, text, actor=who.name, at=at))

    async def post_mitigation(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        action = str(form.get("action", ""))
        promql = str(form.get("promql", "")).strip() or None
        manual = str(form.get("manual", "")).strip() or None
        try:
            window = float(str(form.get("window", "10")) or 10) * 60
        except ValueError:
            window = -1.0  # refused by the rules, naming the field
        at = self.clock()
        return await self._act(request, lambda row, log: mitigation.add_mitigation(
            row, log, action, actor=who.name, at=at, promql=promql, manual=manual,
            window=window))

    async def post_outcome(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        seq, at = int(request.match_info["seq"]), self.clock()
        holds, outcome = form.get("holds"), form.get("outcome")
        if holds is not None:
            return await self._act(request, lambda row, log: mitigation.check(
                row, log, seq, str(holds) == "1", actor=who.name, at=at))
        return await self._act(request, lambda row, log: mitigation.set_outcome(
            row, log, seq, str(outcome or ""), actor=who.name, at=at))

    async def post_role(self, request: web.Request) -> web.StreamResponse:
        who = self.need(request, "responder")
        form = await request.post()
        role, person = str(form.get("role", "")), str(form.get("person", ""))
        note, at = str(form.get("note", "")) or None, self.clock()
        return await self._act(request, lambda row, log: lc.assume_role(
            row, log, role, person, actor=who.name, at=at, note=note))


def add_console(app: web.Application, store: DeskStore, tokens: Sequence[Token],
                clock: Callable[[], float]) -> None:
    """The console's routes on the desk's app."""
    console = Console(store, tokens, clock)
    r = app.router
    r.add_get("/", console.incidents, name="console_list")
    r.add_get("/login", console.login_form, name="console_login_form")
    r.add_post("/login", console.login, name="console_login")
    r.add_get("/incidents/{id}", console.incident, name="console_incident")
    r.add_post("/incidents/{id}/status", console.post_status, name="console_status")
    r.add_post("/incidents/{id}/entries", console.post_entry, name="console_entry")
    r.add_post("/incidents/{id}/entries/{seq:\\d+}/judgement", console.post_judgement,
               name="console_judgement")
    r.add_post("/incidents/{id}/roles", console.post_role, name="console_role")
    r.add_post("/incidents/{id}/updates", console.post_update, name="console_update")
    r.add_post("/incidents/{id}/mitigations", console.post_mitigation,
               name="console_mitigation")
    r.add_post("/incidents/{id}/mitigations/{seq:\\d+}/outcome", console.post_outcome,
               name="console_outcome")
    r.add_static("/static", HERE / "static", name="static")
