"""The dispatcher: posts the outbox's due deliveries to their webhook receivers (aiohttp
client, ``timeout`` seconds each) and records every attempt (``DeskStore.attempted``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aiohttp

from triage.desk.notify import Route
from triage.desk.store import DeskStore


class Dispatcher:
    def __init__(self, store: DeskStore, routes: Sequence[Route],
                 clock: Callable[[], float], *, timeout: float = 10.0) -> None:
        self.store = store
        self.urls = {r.name: r.url for r in routes}
        self.headers = {r.name: {"Authorization": f"Bearer {r.token}"} if r.token else {}
                        for r in routes}
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def run_once(self) -> dict[str, int]:
        """Attempt every delivery due now; how many ended sent, pending again, dead."""
        due = await asyncio.to_thread(self.store.due, self.clock(), routes=list(self.urls))
        outcomes = {"sent": 0, "pending": 0, "dead": 0}
        if not due:
            return outcomes
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            for delivery in due:
                status, error = None, None
                url = self.urls.get(delivery["route"])
                if url is None:
                    error = f"no route {delivery['route']!r} in desk.notify any more"
                    status = 410  # gone: not retried
                else:
                    try:
                        async with session.post(url, json=delivery["payload"],
                                                headers=self.headers[delivery["route"]]) as r:
                            status = r.status
                            if status >= 300:
                                error = (await r.text())[:500] or r.reason
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        error = f"{type(exc).__name__}: {exc}"[:500]
                state = await asyncio.to_thread(self.store.attempted, delivery,
                                                status=status, error=error, now=self.clock())
                outcomes[state] += 1
        return outcomes
