"""The desk's HTTP API over a real store (SQLite and PostgreSQL), through aiohttp's test
server: tokens and roles, every write recorded with its actor, refusals that name the
field, and an OpenAPI document that matches the routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from triage.desk.api import ROUTES, Token, create_desk_app
from triage.desk.openapi import document
from triage.desk.store import DeskStore

TOKENS = [Token("ana", "responder-token-0001", "responder"),
          Token("viewer-bot", "viewer-token-00001", "viewer"),
          Token("triage", "admin-token-000001", "admin")]
ANA, VIEWER, ADMIN = ({"Authorization": f"Bearer {t.secret}"} for t in TOKENS)
T0 = 1_800_000_000.0


@asynccontextmanager
async def served(url: str) -> AsyncIterator[TestClient[Any, Any]]:
    store = DeskStore(url)
    app = create_desk_app(store, TOKENS, clock=lambda: T0 + 3600)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        store.close()


def run(url: str, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with served(url) as client:
            await body(client)
    asyncio.run(main())


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def test_tokens_and_roles(desk_url: str, events: list[dict[str, Any]]) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get("/api/v1/incidents")
        assert r.status == 401 and (await r.json())["field"] == "Authorization"
        r = await c.get("/api/v1/incidents", headers={"Authorization": "Bearer nope"})
        assert r.status == 401
        r = await c.get("/api/v1/incidents", headers={"Authorization": "Bearer "})
        assert r.status == 401
        r = await c.get("/api/v1/incidents", headers={"Authorization": b"Bearer \xff".decode(
            "latin-1")})
        assert r.status == 401  # a byte that is not UTF-8: refused, never a 500
        r = await c.post("/api/v1/events", data=ndjson(events), headers=ANA)
        assert r.status == 403 and "responder" in (await r.json())["reason"]
        r = await c.post("/api/v1/events", data=ndjson(events), headers=ADMIN)
        assert r.status == 200 and (await r.json())["added"] == len(events)
        iid = events[0]["incident"]["id"]
        r = await c.post(f"/api/v1/incidents/{iid}/entries", headers=VIEWER,
                         json={"type": "observation", "text": "x"})
        assert r.status == 403
        r = await c.get("/api/v1/incidents", headers=VIEWER)
        assert r.status == 200 and len((await r.json())["incidents"]) >= 1
        assert (await c.get("/-/healthy")).status == 200
    run(desk_url, body)


def test_writes_record_their_actor_and_refusals_name_the_field(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    created = next(e for e in events if e["type"] == "incident.created")
    iid = created["incident"]["id"]

    async def body(c: TestClient[Any, Any]) -> None:
        await c.post("/api/v1/events", data=ndjson([created]), headers=ADMIN)
        url = f"/api/v1/incidents/{iid}"

        async def refused(path: str, doc: Any, status: int, field: str) -> None:
            kwargs = {"data": doc} if isinstance(doc, bytes) else {"json": doc}
            r = await c.post(url + path, headers=ANA, **kwargs)
            got = await r.json()
            assert (r.status, got["field"]) == (status, field), got

        r = await c.post(url + "/status", headers=ANA, json={"status": "acknowledged"})
        assert r.status == 201
        await refused("/status", {"status": "acknowledged"}, 409, "status")
        await refused("/status", {"status": "fixed"}, 422, "status")
        await refused("/status", {"status": "resolved", "at": "yesterday"}, 422, "at")
        await refused("/status", b"{not json", 400, "")
        await refused("/status", [1, 2], 400, "")
        await refused("/entries", {"type": "rumour", "text": "x"}, 422, "type")
        await refused("/entries", {"type": "observation", "text": ""}, 422, "text")
        await refused("/roles", {"role": "incident_commander"}, 422, "person")
        await refused("/entries/999/pin", {}, 404, "entry")
        r = await c.post("/api/v1/incidents/inc-nope/status", headers=ANA,
                         json={"status": "acknowledged"})
        assert r.status == 404
        r = await c.post(url + "/entries", headers=ANA,
                         json={"type": "hypothesis", "text": "cart latency"})
        assert r.status == 201
        seq = (await r.json())["appended"][0]["seq"]
        r = await c.post(url + f"/entries/{seq}/judgement", headers=ANA,
                         json={"state": "refuted", "reason": "latency is flat"})
        assert r.status == 201
        r = await c.post(url + "/roles", headers=ANA,
                         json={"role": "incident_commander", "person": "ana"})
        assert r.status == 201
        r = await c.get(url, headers=VIEWER)
        got = await r.json()
        assert got["incident"]["status"] == "acknowledged"
        assert got["incident"]["commander"] == "ana"
        assert got["roles"]["incident_commander"]["person"] == "ana"
        # the desk's own rows (an overdue update's reminder, when its pass has run) aside
        posted = [e for e in got["timeline"] if e["author"] not in ("triage", "desk")]
        assert posted and all(e["author"] == "ana" for e in posted)
        assert [e.get("state") for e in got["timeline"] if e["type"] == "hypothesis"] == [
            "refuted"]
        assert got["incident"]["acknowledged_at"].startswith("2027-")  # the server's clock
    run(desk_url, body)


def test_the_list_filters_and_searches(desk_url: str, events: list[dict[str, Any]]) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        await c.post("/api/v1/events", data=ndjson(events), headers=ADMIN)
        everything = (await (await c.get("/api/v1/incidents?limit=500",
                                          headers=VIEWER)).json())["incidents"]
        some = everything[0]
        word = some["root_cause"] or some["services"][0]
        r = await c.get(f"/api/v1/incidents?q={word}&limit=500", headers=VIEWER)
        found = (await r.json())["incidents"]
        assert some["id"] in {i["id"] for i in found}
        assert all(word in (i["title"] + str(i["root_cause"]) + i["id"]) for i in found)
        r = await c.get("/api/v1/incidents?q=%25_nothing_like_this&limit=500", headers=VIEWER)
        assert (await r.json())["incidents"] == []
        r = await c.get("/api/v1/incidents?status=resolved&limit=500", headers=VIEWER)
        assert {i["status"] for i in (await r.json())["incidents"]} <= {"resolved"}
        r = await c.get("/api/v1/incidents?status=nonsense", headers=VIEWER)
        assert r.status == 422 and (await r.json())["field"] == "status"
    run(desk_url, body)


@pytest.mark.parametrize("url", ["sqlite://"])
def test_the_openapi_document_is_valid_and_names_every_route(url: str) -> None:
    doc = document()
    validate(doc)  # OpenAPI 3.1 schema: raises if not valid
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served_routes = {(m, p.replace("{seq:\\d+}", "{seq}")) for m, p, _ in ROUTES}
    assert documented == served_routes

    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get("/api/v1/openapi.json")
        assert r.status == 200 and (await r.json()) == orjson.loads(orjson.dumps(doc))
    run("sqlite://", body)


def test_bad_input_on_every_write_endpoint_gets_a_4xx_naming_what_is_wrong(
        events: list[dict[str, Any]], tmp_path: Any) -> None:
    """Every POST route, with a body that is not JSON, not an object, and an object of the
    wrong fields: a 4xx (never a 500), JSON with the error and the field."""
    created = next(e for e in events if e["type"] == "incident.created")
    iid = created["incident"]["id"]
    writes = [p for m, p, _ in ROUTES if m == "POST" and p != "/api/v1/events"]

    async def body(c: TestClient[Any, Any]) -> None:
        await c.post("/api/v1/events", data=ndjson([created]), headers=ADMIN)
        for template in writes:
            path = template.replace("{id}", iid).replace("{seq:\\d+}", "1")
            for bad in (b"{not json", b"[1, 2]", b'"text"', b"{}",
                        b'{"status": 7, "type": [], "text": {}, "role": 1, "audience": 2, '
                        b'"action": null, "holds": "maybe", "outcome": 3, "approve": "no", '
                        b'"service": 5, "resource": 6, "minutes": "ten", "at": "soon"}'):
                r = await c.post(path, data=bad, headers=ADMIN)
                got = await r.json()
                assert 400 <= r.status < 500, (path, bad, r.status, got)
                assert got["error"] and "field" in got and got["reason"], (path, bad, got)
        r = await c.post("/api/v1/events", data=b"{not json\n[]\n", headers=ADMIN)
        got = await r.json()
        assert r.status == 422 and [x["line"] for x in got["rejected"]] == [1, 2]
    run(f"sqlite:///{tmp_path / 'desk.db'}", body)
