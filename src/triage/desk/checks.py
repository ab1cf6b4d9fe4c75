"""Checks of mitigations' PromQL criteria against Prometheus's HTTP API.

A criterion holds when the instant query returns at least one series (as an alerting rule
fires), and fails when it returns none. An answer Prometheus could not give (an error, a
timeout, a bad expression) records nothing: the last check stands. ``desk serve`` runs a
pass every 15 s when ``desk.prometheus_url`` is set."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from triage.desk.mitigation import check, mitigations
from triage.desk.store import DeskStore
from triage.desk.updates import OPEN

log = logging.getLogger("triage.desk")


def _checked(row: dict[str, Any], log: list[dict[str, Any]], *, seq: int, holds: bool,
             value: str, at: float) -> list[dict[str, Any]]:
    return check(row, log, seq, holds, actor="prometheus", at=at, value=value,
                 source="prometheus")


class PromChecker:
    def __init__(self, store: DeskStore, prometheus_url: str, clock: Callable[[], float], *,
                 timeout: float = 10.0) -> None:
        self.store = store
        self.url = prometheus_url.rstrip("/") + "/api/v1/query"
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, session: aiohttp.ClientSession, expr: str
                    ) -> tuple[bool, str] | None:
        """(holds, what it returned) for ``expr``; None if Prometheus gave no answer."""
        try:
            async with session.get(self.url, params={"query": expr}) as r:
                doc: Any = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("desk: Prometheus did not answer %r: %s", expr, exc)
            return None
        if doc.get("status") != "success":
            log.warning("desk: Prometheus refused %r: %s", expr, doc.get("error"))
            return None
        result = doc["data"]["result"]
        if doc["data"].get("resultType") == "scalar":
            holds = float(result[1]) != 0
            return holds, str(result[1])
        values = [s.get("value", [0, ""])[1] for s in result]
        return bool(result), ", ".join(values[:5]) or "no series"

    async def run_once(self) -> int:
        """Check every live PromQL criterion of the open incidents; how many checks."""
        rows = await asyncio.to_thread(self.store.incidents, status=list(OPEN), limit=10_000)
        made = 0
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            for row in rows:
                entries = await asyncio.to_thread(self.store.log, row["id"])
                for m in mitigations(entries):
                    if not m["promql"] or m["outcome"] in ("failed", "abandoned"):
                        continue
                    answer = await self.query(session, m["promql"])
                    if answer is None:
                        continue
                    command = functools.partial(
                        _checked, seq=m["seq"], holds=answer[0], value=answer[1],
                        at=self.clock())
                    await asyncio.to_thread(self.store.act, row["id"], command)
                    made += 1
        return made
