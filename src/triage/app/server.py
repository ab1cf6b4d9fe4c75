"""Run ``triage serve``: build the backend for the mode, listen, stop cleanly on SIGTERM or
SIGINT (outputs flushed and state committed before exit)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from triage.app.bootstrap import build_fingerprinter, build_reader
from triage.app.settings import Settings
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.http.app import create_app, error_response
from triage.http.embedded import EmbeddedBackend
from triage.http.intake import Backend
from triage.http.relay import KafkaBackend
from triage.metrics import TriageMetrics
from triage.state.statefile import Durability
from triage.streams.publisher import Publisher

if TYPE_CHECKING:
    from triage.app.deskfeed import DeskFeed

log = logging.getLogger("triage.http")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``triage serve`` takes besides the settings (``settings.http`` holds host, port,
    token, body limit and mode, already overridden from the command line)."""

    state: Path | None = None
    output: str = "-"
    dead_letter: str | None = None
    tick_interval: float = 1.0
    outcomes: str | None = None
    durability: Durability = "power"
    force: bool = False
    desk: str | None = None  # the incident desk's database URL: fed from ``output``


def build_backend(settings: Settings, options: ServeOptions, metrics: TriageMetrics, *,
                  pipeline: Pipeline | None = None, engine: IncidentEngine | None = None,
                  clock: Callable[[], float] = time.time) -> Backend:
    """The backend for ``settings.http.mode``; embedded mode needs ``pipeline`` and
    ``engine`` (built by ``triage.app.bootstrap``)."""
    if settings.http.mode == "kafka":
        limit = settings.intake.max_payload_bytes
        # the producer must carry whatever the door lets through, envelope included
        publisher = Publisher(settings.kafka, max_request_size=limit + 4096)
        return KafkaBackend(publisher, metrics, max_payload_bytes=limit, clock=clock,
                            fingerprinter=build_fingerprinter(settings),
                            reader=build_reader(settings))
    if pipeline is None or engine is None:
        raise ValueError("embedded mode needs a pipeline and an incident engine")
    return EmbeddedBackend(pipeline, engine, metrics, output=options.output,
                           dead_letter=options.dead_letter, state_path=options.state,
                           tick_interval=options.tick_interval, clock=clock,
                           feedback_store=settings.feedback.store, outcomes=options.outcomes,
                           durability=options.durability, force=options.force)


class _Handler(RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses (malformed framing:
    Content-Length with Transfer-Encoding, two Content-Lengths, a garbage request line) with
    a JSON 400 and one log line, not a text page and a traceback."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        reason = (getattr(exc, "message", None) or message or str(exc or "")).strip()
        log.warning("refused a malformed request from %s: %s", request.remote,
                    reason.splitlines()[0][:200] if reason else "bad request")
        response = error_response(status, type(exc).__name__ if exc else "BadRequest",
                                  f"malformed HTTP request: {reason[:500]}")
        response.force_close()
        return response


class _OverCap(asyncio.Protocol):
    """A connection over ``http.max_connections``: answered 503 and closed before aiohttp
    builds a handler for it (closing it later, inside aiohttp's own ``connection_made``,
    left a handler task to fail on the closed connection and log a traceback)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        transport.close()


def _over_cap_answer(limit: int) -> bytes:
    body = orjson.dumps({"status": "error", "code": 503, "error": "TooManyConnections",
                         "message": f"{limit} connections are open (http.max_connections); "
                                    "retry"})
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Server(Server):
    """aiohttp's server with the connection cap and the JSON framing errors."""

    max_connections = 512
    _accepted: weakref.WeakSet[RequestHandler]  # made, not yet connected (see __call__)

    def __call__(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        # the protocol factory, called once per accepted socket; asyncio connects a batch of
        # them (up to the listen backlog) later, so those count too or the cap overshoots
        if len(self._connections) + len(self._accepted) >= self.max_connections:
            log.warning("over http.max_connections (%d): refusing a new connection",
                        self.max_connections)
            return _OverCap(_over_cap_answer(self.max_connections))
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        self._accepted.add(handler)
        return handler

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self._accepted.discard(handler)
        super().connection_made(handler, transport)


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: object
                 ) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self._max_connections = max_connections

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same object, with the two behaviours above
        server.max_connections = self._max_connections  # type: ignore[attr-defined]
        server._accepted = weakref.WeakSet()  # type: ignore[attr-defined]
        return server


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per ``window`` seconds per logger; then one line saying how
    many were dropped. A client sending garbage as fast as it can must not fill the disk
    with tracebacks (asyncio and aiohttp log one per bad connection)."""

    def __init__(self, burst: int = 20, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._start = clock()
        self._seen = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now - self._start >= self.window:
            dropped, self._dropped = self._dropped, 0
            self._start, self._seen = now, 0
            if dropped:
                record.msg = (f"({dropped} similar log lines dropped in the last "
                              f"{self.window:.0f} s) {record.getMessage()}")
                record.args = ()
        self._seen += 1
        if self._seen == self.burst + 1:
            # said at once: if the flood stops, no later record would carry the count
            record.msg = (f"{record.getMessage()} (more lines like this are dropped for up "
                          f"to {self.window:.0f} s; their count follows)")
            record.args = ()
            return True
        if self._seen > self.burst:
            self._dropped += 1
            return False
        return True


NOISY_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.internal", "aiohttp.web",
                 "asyncio", "triage.http")


def install_log_limits() -> None:
    """Rate-limit the loggers a hostile client can make talk (idempotent)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter())


async def serve(settings: Settings, backend: Backend, metrics: TriageMetrics,
                stop: asyncio.Event | None = None, desk: DeskFeed | None = None) -> None:
    """Listen on ``settings.http.host:port`` until ``stop`` is set or a SIGTERM/SIGINT;
    with ``desk``, feed the incident desk from the output meanwhile."""
    http = settings.http
    install_log_limits()
    app = create_app(backend, metrics, token=http.token, max_body_bytes=http.max_body_bytes,
                     body_timeout=http.body_timeout, admin_token=http.admin_token,
                     stream_silences=http.stream_silences)
    # keepalive_timeout: aiohttp closes a connection that has not sent a whole request
    # this long after it opened or was last answered: the header (and idle) timeout
    runner = _Runner(app, access_log=None, handle_signals=False,
                     keepalive_timeout=http.header_timeout,
                     max_connections=http.max_connections)
    await runner.setup()  # starts the backend: state restored before the port opens
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    feeding = asyncio.create_task(desk.run(), name="triage-desk-feed") if desk else None
    try:
        site = web.TCPSite(runner, http.host, http.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else http.port  # --port 0: picked
        print(f"triage serve: {backend.mode} mode, listening on http://{http.host}:{port}",
              file=sys.stderr, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops the backend: outputs flushed, state committed
        if feeding is not None and desk is not None:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            await desk.step_logged()  # what the stop wrote


def run(settings: Settings, options: ServeOptions, *, pipeline: Pipeline | None = None,
        engine: IncidentEngine | None = None) -> None:
    """Blocking entry point for the CLI."""
    registry = CollectorRegistry()
    # the process's own CPU, memory and file descriptors, as the default registry would have
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = TriageMetrics.create(registry)
    backend = build_backend(settings, options, metrics, pipeline=pipeline, engine=engine)
    if options.desk is None:
        asyncio.run(serve(settings, backend, metrics))
        return
    from triage.app.deskfeed import DeskFeed
    from triage.desk.store import DeskStore
    url = options.desk if "://" in options.desk else f"sqlite:///{options.desk}"
    with DeskStore(url, lifecycle=settings.desk.lifecycle) as store:
        feed = DeskFeed(store, Path(options.output))
        asyncio.run(serve(settings, backend, metrics, desk=feed))
