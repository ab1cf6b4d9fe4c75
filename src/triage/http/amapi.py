"""Alertmanager's read and silence API on ``triage serve`` (embedded mode), so ``amtool`` and
Grafana's Alertmanager data source work against triage:

* ``GET/POST /api/v2/silences``, ``GET/DELETE /api/v2/silence/{id}``: silences, with their
  own permission. When ``http.admin_token`` is set, writes need ``Bearer <admin_token>``; the
  senders' ``http.token`` only reads. With a sender token and no admin token, writes are
  refused (403): who may post alerts may not silence them. With no token at all (a laptop)
  writes are taken from the same machine only (loopback clients). Expiring keeps the
  silence, ended now, as Alertmanager does. A silence that matches every alert is refused
  unless ``?force=true``. Maintenance windows are config, not silences: not listed here.
* Silences on the alert routes (``carries_silence``): refused unless
  ``http.stream_silences`` (app.py), whoever sends them.
* ``GET /api/v2/alerts`` (the active alerts triage holds, with ``filter``, ``active``,
  ``silenced``) and ``GET /api/v2/status``: readable with either token.

Writes go through the pipeline (``Pipeline.add_silence``) and are committed before the
answer, like alerts. In Kafka mode the state lives in the workers: these answer 501.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from triage.core.matchers import Matcher, parse_matchers
from triage.core.pipeline import UNTRUSTED_SILENCE
from triage.core.silences import Silence, is_silence_object, silence_from_alertmanager
from triage.core.timeutil import format_timestamp
from triage.errors import InputError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorFn = Callable[..., web.Response]
STARTED = time.time()
# label values no real alert could all avoid: a silence accepting all of them mutes everything
_PROBES = ("x", "prod", "api-7f9c", "0", "Z_z")
UNTRUSTED = UNTRUSTED_SILENCE
# the config Alertmanager's /api/v2/status shows: what triage is, in Alertmanager's terms
# (every alert goes to one receiver, "triage", as GET /api/v2/alerts says)
STATUS_CONFIG = ("# triage serve: routing, grouping and inhibition are triage's own (see its\n"
                 "# YAML config); in Alertmanager's terms, one receiver takes every alert\n"
                 "route:\n  receiver: triage\nreceivers:\n  - name: triage\n")


def carries_silence(body: bytes) -> bool:
    """Whether a body POSTed to an alert route is a silence, as ``Pipeline.read`` would take
    it: an Alertmanager silence object, bare or in an envelope (``received_at``,
    ``payload``), its keys possibly written with JSON escapes (``"\\u006datchers"``).

    >>> carries_silence(b'{"received_at": "", "payload": {"matchers": [], "createdBy": ""}}')
    True
    >>> carries_silence(b'[{"labels": {"alertname": "matchers"}}]')
    False
    """
    if b"matchers" not in body and b"\\u" not in body:  # the key, plain or escaped
        return False
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if isinstance(payload, dict) and "payload" in payload and "received_at" in payload:
        payload = payload["payload"]  # an envelope, which Pipeline.read unwraps
    return is_silence_object(payload)


def matches_everything(silence: Silence) -> bool:
    """Whether every matcher accepts any value (``alertname=~".+"``, ``job!=""``, ...).

    >>> m = lambda text: Silence("s", parse_matchers(text), 0.0, 1.0)
    >>> matches_everything(m('alertname=~".+"')), matches_everything(m('alertname="Up"'))
    (True, False)
    """
    return all(all(mt.matches({mt.name: v}) for v in _PROBES) for mt in silence.matchers)


def gettable_matcher(m: Matcher) -> dict[str, Any]:
    return {"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"),
            "isEqual": m.op in ("=", "=~")}


def gettable_silence(s: Silence, now: float) -> dict[str, Any]:
    state = "pending" if now < s.starts_at else ("expired" if s.expired(now) else "active")
    return {"id": s.id, "status": {"state": state},
            "updatedAt": format_timestamp(min(now, s.ends_at)),
            "matchers": [gettable_matcher(m) for m in s.matchers],
            "startsAt": format_timestamp(s.starts_at), "endsAt": format_timestamp(s.ends_at),
            "createdBy": s.created_by or "triage", "comment": s.comment or ""}


def register(app: web.Application, backend: Any, error_response: ErrorFn, *,
             token: str | None, admin_token: str | None,
             clock: Callable[[], float] = time.time) -> None:
    """Add the routes to ``app``; ``backend`` is the server's backend."""

    def bearer(request: web.Request) -> bytes:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return given.strip().encode("latin-1", "replace") if scheme.lower() == "bearer" else b""

    def allowed(request: web.Request, write: bool) -> web.Response | None:
        """None if the request may go on, else the 401/403 saying which token it needs."""
        if token is None and admin_token is None:  # no auth configured: a laptop
            if not write or _loopback(request):
                return None
            return error_response(403, "Forbidden", "silences from another machine need "
                                  "their own permission: set http.admin_token "
                                  "(TRIAGE_HTTP__ADMIN_TOKEN) and send it as a bearer token")
        given = bearer(request)
        if admin_token is not None and given and hmac.compare_digest(given,
                                                                     admin_token.encode()):
            return None
        sender = token is not None and bool(given) and hmac.compare_digest(given,
                                                                           token.encode())
        if not write and sender:
            return None
        if not given:
            return error_response(401, "Unauthorized", "missing bearer token (Authorization: "
                                  "Bearer <http.admin_token>, or <http.token> to read)",
                                  headers={"WWW-Authenticate": "Bearer"})
        if admin_token is None:
            return error_response(403, "Forbidden", "silences need their own permission: "
                                  "set http.admin_token (TRIAGE_HTTP__ADMIN_TOKEN); the "
                                  "senders' token does not grant it")
        return error_response(403, "Forbidden", "silences need Authorization: Bearer "
                              "<http.admin_token>; the senders' token only reads")

    def embedded() -> web.Response | None:
        if getattr(backend, "mode", "") != "embedded":
            return error_response(501, "NotImplemented", "in Kafka mode the workers hold the "
                                  "state: read and silence it there (triage serve in embedded "
                                  "mode answers these)")
        return None

    def guard(write: bool) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def checked(request: web.Request) -> web.StreamResponse:
                refused = allowed(request, write) or embedded()
                return refused if refused is not None else await handler(request)
            return checked
        return wrap

    @guard(write=False)
    async def list_silences(request: web.Request) -> web.StreamResponse:
        now = clock()
        wanted = _filter(request, error_response)
        if isinstance(wanted, web.Response):
            return wanted
        out = [gettable_silence(s, now) for s in backend.pipeline.silences
               if s.kind == "silence" and _silence_matches(s, wanted)]
        return web.json_response(out)

    def find(silence_id: str) -> Silence | None:
        """A silence by id; maintenance windows are config, not silences: not found here."""
        found: Silence | None = backend.pipeline.silences.get(silence_id)
        return found if found is not None and found.kind == "silence" else None

    def not_found(silence_id: str) -> web.Response:
        return error_response(404, "NotFound", f"no silence {silence_id!r} (maintenance "
                              "windows are changed in the config, not here)")

    @guard(write=False)
    async def get_silence(request: web.Request) -> web.StreamResponse:
        found = find(request.match_info["id"])
        if found is None:
            return not_found(request.match_info["id"])
        return web.json_response(gettable_silence(found, clock()))

    def refuse(status: int, error: str, message: str, *,
               headers: dict[str, str] | None = None) -> web.Response:
        # Alertmanager's API (and so amtool) reads a silence error as one JSON string
        return web.json_response(f"{error}: {message}", status=status, headers=headers)

    @guard(write=True)
    async def post_silence(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
            silence = silence_from_alertmanager(body)
        except orjson.JSONDecodeError as exc:
            return refuse(400, "DecodeError", f"not JSON: {exc}")
        except InputError as exc:
            return refuse(400, type(exc).__name__, f"silence {exc}")
        except ValueError as exc:
            return refuse(400, "SchemaError", f"silence: {exc}")
        if matches_everything(silence) and request.query.get("force") != "true":
            return refuse(400, "SilencesEverything",
                          f"{', '.join(map(str, silence.matchers))} matches every "
                          "alert; send it again with ?force=true if that is meant")
        if not body.get("id"):  # a new silence gets a fresh id, as in Alertmanager
            silence = replace(silence, id=f"{silence.id}-{int(clock() * 1000):x}")
        elif find(silence.id) is None:  # an update (amtool silence update) of a silence
            return refuse(404, "NotFound", f"no silence {silence.id!r} to update")
        backend.pipeline.add_silence(silence)
        failed = await backend.durable()
        if failed is not None:
            return refuse(503, "StorageUnavailable", f"not saved: {failed}; retry",
                          headers={"Retry-After": "5"})
        return web.json_response({"silenceID": silence.id})

    @guard(write=True)
    async def expire_silence(request: web.Request) -> web.StreamResponse:
        found = find(request.match_info["id"])
        if found is None:
            return not_found(request.match_info["id"])
        now = clock()
        if not found.expired(now):
            start = min(found.starts_at, now)
            backend.pipeline.add_silence(replace(found, starts_at=start,
                                                 ends_at=max(now, start + 0.001),
                                                 repeat_every=None))
            failed = await backend.durable()
            if failed is not None:
                return error_response(503, "StorageUnavailable", f"not saved: {failed}",
                                      headers={"Retry-After": "5"})
        return web.Response(status=200)

    @guard(write=False)
    async def list_alerts(request: web.Request) -> web.StreamResponse:
        now = clock()
        wanted = _filter(request, error_response)
        if isinstance(wanted, web.Response):
            return wanted
        show_active = request.query.get("active", "true") != "false"
        show_silenced = request.query.get("silenced", "true") != "false"
        silences = backend.pipeline.silences
        out = []
        for fp, st in backend.pipeline.dedup.states.items():
            if st.status != "firing" or not all(m.matches(st.labels) for m in wanted):
                continue
            # the indexed lookup first: only an alert some silence mutes costs a full scan
            by = ([s.id for s in silences if s.matches(st.labels, now)]
                  if silences.match(st.labels, now) is not None else [])
            if (by and not show_silenced) or (not by and not show_active):
                continue
            out.append({
                "labels": st.labels, "annotations": {}, "fingerprint": fp,
                "startsAt": format_timestamp(st.starts_at or st.first_seen),
                "endsAt": format_timestamp(st.ends_at or (st.last_seen + st.timeout)),
                "updatedAt": format_timestamp(st.last_seen),
                "receivers": [{"name": "triage"}],
                "status": {"state": "suppressed" if by else "active", "silencedBy": by,
                           "inhibitedBy": []},
                "generatorURL": ""})
        return web.json_response(out)

    @guard(write=False)
    async def alert_groups(request: web.Request) -> web.StreamResponse:
        """One group (triage groups into incidents, not by Alertmanager routes): what
        ``amtool alert query`` reads."""
        response = await list_alerts(request)
        assert isinstance(response, web.Response) and response.body is not None
        if response.status != 200:
            return response
        alerts = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
        return web.json_response([{"labels": {}, "receiver": {"name": "triage"},
                                   "alerts": alerts}] if alerts else [])

    @guard(write=False)
    async def status(request: web.Request) -> web.StreamResponse:
        from triage import __version__

        return web.json_response({
            "cluster": {"status": "disabled", "peers": []},
            "versionInfo": {"version": __version__, "revision": "", "branch": "",
                            "buildUser": "", "buildDate": "", "goVersion": "triage (Python)"},
            "config": {"original": STATUS_CONFIG},
            "uptime": format_timestamp(STARTED)})

    app.router.add_get("/api/v2/silences", list_silences, name="api_v2_silences")
    app.router.add_post("/api/v2/silences", post_silence, name="api_v2_silences_post")
    app.router.add_get("/api/v2/silence/{id}", get_silence, name="api_v2_silence")
    app.router.add_delete("/api/v2/silence/{id}", expire_silence, name="api_v2_silence_del")
    app.router.add_get("/api/v2/alerts", list_alerts, name="api_v2_alerts_get")
    app.router.add_get("/api/v2/alerts/groups", alert_groups, name="api_v2_alert_groups")
    app.router.add_get("/api/v2/status", status, name="api_v2_status")


def _loopback(request: web.Request) -> bool:
    """Whether the client is on this machine (the only one trusted without a token)."""
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:  # a unix socket, or no peer address
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _filter(request: web.Request, error_response: ErrorFn) -> list[Matcher] | web.Response:
    """The ``filter`` query parameters (amtool sends one matcher each)."""
    out: list[Matcher] = []
    for text in request.query.getall("filter", []):
        try:
            out.extend(parse_matchers(text))
        except ValueError as exc:
            return error_response(400, "BadFilter", f"filter {text!r}: {exc}")
    return out


def _silence_matches(silence: Silence, wanted: list[Matcher]) -> bool:
    """amtool's silence query filter, as Alertmanager applies it: each wanted matcher
    accepts the value (the pattern, for a regex) the silence gives that label name.

    >>> s = Silence("s", parse_matchers('alertname="DiskFull",env=~"prod.*"'), 0.0, 1.0)
    >>> [_silence_matches(s, parse_matchers(f)) for f in ("alertname=~Disk.*", "env=x")]
    [True, False]
    """
    mine = {m.name: m.value for m in silence.matchers}
    return all(w.matches(mine) for w in wanted)
