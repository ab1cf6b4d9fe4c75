"""Stage 1 as one callable: raw payload in, one outcome per alert out.

``Pipeline.process(raw, now=...)`` decodes, detects the format, normalizes, fingerprints,
gates (pending, silences and maintenance windows, tuned thresholds, an optional noise
classifier) and deduplicates. No I/O, no clock: ``now`` is passed in, or derived from the
alerts' own timestamps (event time), so replaying the same input gives the same output.

Every alert of every payload comes back as exactly one outcome, so counts reconcile; a
payload that cannot be read at all is one ``Failed``. No exception escapes ``process``.

Input lines may be wrapped in an envelope that records when they were received, which is
what the HTTP receiver and the Kafka path write, and what makes replays exact::

    {"received_at": "2026-11-27T10:02:11Z", "payload": <any supported payload>}

An Alertmanager API v2 silence object (``matchers``, ``startsAt``, ``endsAt``, ``createdBy``,
``comment``) on the input adds that silence; it is state, persisted like dedup state. A change
record (``id``, ``service``, ``kind``, ``at``) is handed to ``on_change`` (stage 2's suspect
changes). Neither is an alert, so neither counts in the reconciliation.

``process`` is ``read`` (decode, take in silences and change records, normalize,
fingerprint) then ``triage`` (clock, gates, dedup, counts). A partitioned runtime calls the
two itself: it reads a payload, keeps the alerts whose state it owns and hands the others,
already normalized and fingerprinted, to their owners, which pass them to ``triage`` with the
time the payload was read at (``clock``), so every alert is gated, deduplicated and counted
once, exactly as ``process`` would have done it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from triage.core import normalize as normalizers
from triage.core.changes import ChangeRecord, change_from_dict, is_change_record
from triage.core.dedup import AlertState, DedupStore, Hold
from triage.core.fingerprint import Fingerprinter
from triage.core.normalize._common import failed
from triage.core.silences import (
    Silence,
    SilenceSet,
    is_silence_object,
    silence_from_alertmanager,
)
from triage.core.thresholds import Thresholds
from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.core.types import Alert, Failed, Outcome, Suppressed
from triage.errors import DecodeError, InputError, OversizeError, SchemaError

# A noise scorer maps an alert, with what dedup knows of it so far (None if new), to the
# probability that it is noise; the learning stage provides a scikit-learn one. A scorer may
# also have ``score_batch(alerts, states, now) -> list[float]``, which the pipeline then calls
# once per payload. ``noise_threshold`` is where suppression starts.
NoiseScorer = Callable[[Alert, AlertState | None, float], float]


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """Input limits. Payloads over ``max_payload_bytes`` fail with ``OversizeError``.

    Event time is bounded: an alert stamped more than ``max_future_skew`` seconds after the
    time it was received (the envelope's ``received_at``, else the pipeline's wall clock)
    is clamped to the receive time (``future_timestamps="clamp"``, counted
    ``future_clamped``) or dead-lettered (``"dead-letter"``), so one bad clock cannot move
    the pipeline's clock ahead for good. ``None`` turns the bound off."""

    max_payload_bytes: int = 1 << 20
    sweep_interval: float = 15.0
    silence_retention: float = 86400.0
    max_future_skew: float | None = 300.0
    future_timestamps: str = "clamp"  # or "dead-letter"


class Read(NamedTuple):
    """A payload read by ``Pipeline.read``, not triaged yet.

    ``items``: its alerts, normalized and fingerprinted, and its bad alerts (``Failed``), in
    input order; None when there is nothing to triage: the payload was a silence or a change
    record (taken in already), or unreadable. ``done``: the outcomes of such a payload
    (already counted: its ``Failed``). ``now``: the receive time (envelope or caller), if
    known. ``silence``: the silence the payload added, if it was one.
    """

    items: list[Alert | Failed] | None
    now: float | None = None
    done: tuple[Outcome, ...] = ()
    silence: Silence | None = None


class Pipeline:
    """Stage 1 of triage, composable and runnable in a REPL.

    >>> p = Pipeline()
    >>> [o.kind for o in p.process(b'{"alertname": "DiskFull", "service": "db", "at": 100}')]
    ['triaged']
    >>> [o.kind for o in p.process(b'{"alertname": "DiskFull", "service": "db", "at": 130}')]
    ['deduplicated']
    """

    # Whether a silence object on the input is taken in. True for the operator's own input
    # (``triage run`` files, the Kafka workers); ``triage serve`` sets it from
    # ``http.stream_silences`` so an alert sender cannot mute alerts: an untrusted silence is
    # dead-lettered ("UntrustedSilence") with its payload instead.
    trust_stream_silences: bool = True

    def __init__(
        self,
        *,
        fingerprinter: Fingerprinter | None = None,
        silences: SilenceSet | None = None,
        thresholds: Thresholds | None = None,
        dedup: DedupStore | None = None,
        limits: IntakeLimits | None = None,
        noise_scorer: NoiseScorer | None = None,
        noise_threshold: float = 0.95,
        on_change: Callable[[ChangeRecord], None] | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.fingerprinter = fingerprinter or Fingerprinter()
        # Read only to bound event time when a payload has no receive time (the runtimes
        # pass time.time; without one, such payloads are not bounded).
        self.wall_clock = wall_clock
        self.silences = silences if silences is not None else SilenceSet()
        self.thresholds = thresholds
        # "is not None": a DedupStore has a length, so a configured but empty one is falsy
        self.dedup = dedup if dedup is not None else DedupStore()
        self.limits = limits or IntakeLimits()
        self.noise_scorer = noise_scorer
        self.noise_threshold = noise_threshold
        # Change records (deploys, flags, ...) on the input are handed to stage 2.
        self.on_change = on_change
        self.watermark = 0.0
        self.next_sweep = 0.0
        self.silences_changed = False
        # Counts by outcome kind and reason: the run summary and the metrics read these.
        self.counts: Counter[str] = Counter()

    # -- entry points --------------------------------------------------------------------

    def spawn(self) -> Pipeline:
        """A pipeline configured like this one, with state of its own (no alerts, its own
        copy of the configured silences, its clock at zero): one per partition of a
        partitioned runtime. Every setting is carried over here, beside ``__init__``, so a
        new one cannot be lost on the way (the partitions once lost the wall clock, and
        with it the bound on alerts stamped in the future).

        >>> import time
        >>> p = Pipeline(wall_clock=time.time); _ = p.process(b'{"alertname": "A", "at": 5}')
        >>> q = p.spawn()
        >>> q.wall_clock is p.wall_clock, q.watermark, len(q.dedup), len(p.dedup)
        (True, 0.0, 0, 1)
        """
        twin = Pipeline(fingerprinter=self.fingerprinter, silences=SilenceSet(self.silences),
                        thresholds=self.thresholds,
                        dedup=DedupStore(self.dedup.policy, self.dedup.flap),
                        limits=self.limits, noise_scorer=self.noise_scorer,
                        noise_threshold=self.noise_threshold, wall_clock=self.wall_clock)
        twin.trust_stream_silences = self.trust_stream_silences
        return twin

    def process(self, raw: bytes | str | Any, now: float | None = None) -> list[Outcome]:
        """Triage one payload (bytes, text, or an already decoded JSON value).

        ``now`` is the receive time; without it the clock is event time: the latest
        timestamp seen so far (a watermark that never goes backwards).
        """
        read = self.read(raw, now)
        if read.items is None:
            return list(read.done)
        return self._triage(read.items, read.now)

    def read(self, raw: bytes | str | Any, now: float | None = None) -> Read:
        """Decode one payload, take in a silence or change record, normalize and fingerprint
        its alerts; nothing is triaged or counted but a payload that failed as a whole.

        >>> p = Pipeline()
        >>> read = p.read(b'[{"alertname": "A", "at": 5}, {"alertname": "B", "at": 7}]')
        >>> [a.fingerprint for a in read.items] == [p.fingerprinter.fingerprint("generic",
        ...     {"alertname": n}) for n in "AB"], p.clock(read.items, read.now), p.counts["in"]
        (True, 7.0, 0)
        """
        try:
            payload = self._decode(raw)
            if isinstance(payload, dict) and "payload" in payload and "received_at" in payload:
                received = parse_timestamp(payload["received_at"], "received_at")
                if received is not None:
                    now = received if now is None else now
                payload = payload["payload"]
            if is_silence_object(payload):
                if not self.trust_stream_silences:
                    return Read(None, done=tuple(self._count([Failed(
                        "UntrustedSilence", "", UNTRUSTED_SILENCE, _raw_text(raw),
                        "alertmanager-silence")])))
                return self._add_silence(payload, raw)
            if is_change_record(payload):
                return Read(None, done=tuple(self._add_change(payload, raw)))
            items = normalizers.normalize(payload)
        except InputError as exc:
            return Read(None, done=tuple(self._count([failed(exc, _raw_text(raw), None)])))
        except Exception as exc:  # the boundary: nothing escapes, and the payload is kept
            return Read(None, done=tuple(self._count([Failed(
                type(exc).__name__, "", f"internal error: {exc!r}", _raw_text(raw))])))
        fingerprint = self.fingerprinter.fingerprint
        for item in items:
            if isinstance(item, Alert):
                item.fingerprint = fingerprint(item.source, item.labels)
        skew = self.limits.max_future_skew
        if skew is not None:
            wall = self.wall_clock() if self.wall_clock is not None else None
            if now is not None and wall is not None and now > wall + skew:
                self.counts["future_clamped"] += 1  # a receive time from the future
                now = wall
            ref = now if now is not None else wall
            if ref is not None:
                # clamped to when it was received, or (no receive time: a file replayed in
                # event time) to the clock so far, which a replay of the past is behind;
                # with neither there is no time to trust, and it is dead-lettered
                target = now if now is not None else (self.watermark or None)
                items = self._bound_future(items, ref, skew, raw, target)
        return Read(items, now)

    def _bound_future(self, items: list[Alert | Failed], ref: float, skew: float,
                      raw: Any, target: float | None) -> list[Alert | Failed]:
        """Clamp (to ``target``) or dead-letter alerts stamped more than ``skew`` after
        ``ref``.

        >>> p = Pipeline()
        >>> a = p.read(b'{"alertname": "A", "at": "2099-01-01T00:00:00Z"}', now=100.0).items[0]
        >>> a.at, a.annotations["triage_clamped_from"], p.counts["future_clamped"]
        (100.0, '2099-01-01T00:00:00.000Z', 1)
        """
        limit = ref + skew
        if all(not isinstance(a, Alert) or a.at <= limit for a in items):
            return items
        out: list[Alert | Failed] = []
        for i, item in enumerate(items):
            if not isinstance(item, Alert) or item.at <= limit:
                out.append(item)
                continue
            if target is None or self.limits.future_timestamps == "dead-letter":
                out.append(Failed(
                    "FutureTimestamp", f"alerts[{i}]",
                    f"stamped {format_timestamp(item.at)}, {item.at - ref:,.0f} s after it was "
                    f"received ({format_timestamp(ref)}); intake.max_future_skew is "
                    f"{skew:,.0f} s" + ("" if target is not None else
                                         "; no event time yet to clamp it to"),
                    _raw_text(raw)))
                continue
            item.annotations = {**item.annotations,
                                "triage_clamped_from": format_timestamp(item.at) or ""}
            item.at = target
            if item.starts_at > limit:
                item.starts_at = target
            self.counts["future_clamped"] += 1
            out.append(item)
        return out

    def triage(self, items: list[Alert | Failed], now: float | None = None) -> list[Outcome]:
        """Triage alerts already read (normalized and fingerprinted, as ``read`` leaves
        them; ``Failed`` items pass through), one outcome each, counted, after what the
        clock moving to ``now`` (default: as ``process`` decides it) expired.

        >>> p = Pipeline()
        >>> items = p.read(b'{"alertname": "A", "at": 5}').items
        >>> [o.kind for o in p.triage(items, 5.0)], p.counts["in"]
        (['triaged'], 1)
        """
        return self._triage(items, now)

    def clock(self, items: list[Alert | Failed], now: float | None = None) -> float:
        """The time ``triage(items, now)`` observes ``items`` at: ``now`` if given, else the
        latest time of the alerts; never before the watermark. Changes nothing."""
        if now is None:
            if len(items) == 1:  # one alert per payload: the Kafka path's usual case
                only = items[0]
                now = only.at if isinstance(only, Alert) else self.watermark
            else:
                now = max((a.at for a in items if isinstance(a, Alert)),
                          default=self.watermark)
        return self.watermark if now < self.watermark else now

    def add_silence(self, silence: Silence, *, copy: bool = False) -> None:
        """Add a silence to the state (persisted with it). ``copy``: one already counted
        where it was received (a partitioned runtime gives every partition a copy), counted
        as ``silences_copied`` rather than ``silences_added``."""
        self.silences.add(silence)
        self.silences_changed = True
        self.counts["silences_copied" if copy else "silences_added"] += 1

    def tick(self, now: float) -> list[Outcome]:
        """Advance the clock to ``now`` without input: expire timed-out and resolved state."""
        if now > self.watermark:
            self.watermark = now
        return self._sweep(self.watermark)

    def clock_state(self) -> dict[str, Any]:
        """The pipeline's clock and counters, as every state store saves them (``clock``:
        [watermark, next sweep]; ``counts``), so no store reaches into its fields.

        >>> p = Pipeline(); _ = p.tick(5.0)
        >>> q = Pipeline(); q.restore_clock_state(p.clock_state()); q.watermark
        5.0
        """
        return {"clock": [self.watermark, self.next_sweep], "counts": dict(self.counts)}

    def restore_clock_state(self, state: Mapping[str, Any]) -> None:
        """Take back what ``clock_state`` gave (missing keys leave the defaults)."""
        clock = state.get("clock")
        if clock is not None:
            self.watermark, self.next_sweep = float(clock[0]), float(clock[1])
        counts = state.get("counts")
        if counts:
            self.counts.update(counts)

    def advance(self, now: float) -> list[Outcome]:
        """Move the clock to ``now`` as an input line stamped ``now`` would (one of another
        partition, in a partitioned runtime): state expires only if a sweep is due then.

        >>> p = Pipeline()
        >>> p.advance(5.0), p.watermark
        ([], 5.0)
        """
        if now > self.watermark:
            self.watermark = now
        return self._sweep(now) if now >= self.next_sweep else []

    # -- internals -----------------------------------------------------------------------

    def _decode(self, raw: bytes | str | Any) -> Any:
        if isinstance(raw, bytes | bytearray | memoryview | str):
            size = len(raw)
            if size > self.limits.max_payload_bytes:
                raise OversizeError("payload", f"{size} bytes, over the limit of "
                                               f"{self.limits.max_payload_bytes}")
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DecodeError("payload", f"not JSON: {exc}") from None
        return raw

    def _triage(self, items: list[Alert | Failed], now: float | None) -> list[Outcome]:
        # the clock never goes backwards (late or replayed input)
        now = self.watermark = self.clock(items, now)
        swept = self._sweep(now) if now >= self.next_sweep else []
        match_silence = self.silences.match if len(self.silences) else None
        thresholds = self.thresholds
        observe = self.dedup.observe
        # First pass: the cheap gates. Alerts left for the noise model are scored together
        # (one model call per payload, not per alert), then observed in input order.
        plan: list[Outcome | tuple[Alert, Hold | None, bool]] = []
        to_score: list[Alert] = []
        for item in items:
            if not isinstance(item, Alert):
                plan.append(item)
                continue
            alert = item
            if alert.at <= 0.0:  # the sender gave no time: it happened when we got it
                alert.at = now
                if alert.starts_at <= 0.0:
                    alert.starts_at = now
            if alert.status == "firing":
                if alert.ends_at is not None and alert.ends_at <= now:
                    alert.status = "resolved"  # endsAt in the past resolves the alert
                else:
                    gated = self._gate(alert, now, match_silence, thresholds)
                    if isinstance(gated, Suppressed):
                        plan.append(gated)
                        continue
                    scored = self.noise_scorer is not None
                    if scored:
                        to_score.append(alert)
                    plan.append((alert, gated, scored))
                    continue
            elif alert.status == "pending":
                plan.append(Suppressed(alert, "pending",
                                       "rule is pending: its `for` duration has not elapsed"))
                continue
            plan.append((alert, None, False))
        scores = iter(self._score(to_score, now)) if to_score else iter(())
        out: list[Outcome] = []
        threshold = self.noise_threshold
        for step in plan:
            if not isinstance(step, tuple):
                out.append(step)
                continue
            alert, hold, scored = step
            if scored:
                score = next(scores)
                if score >= threshold:
                    out.append(Suppressed(alert, "noise",
                                          f"noise probability {score:.2f} >= {threshold:.2f}",
                                          noise_score=score))
                    continue
            if thresholds is not None and alert.status == "firing":
                out.append(observe(alert, now, hold, thresholds.keep_for(alert.labels)))
            else:
                out.append(observe(alert, now, hold))
        self._count(out)
        return swept + out if swept else out

    def _score(self, alerts: list[Alert], now: float) -> list[float]:
        scorer = self.noise_scorer
        assert scorer is not None
        states = [self.dedup.get(a.fingerprint) for a in alerts]
        batch = getattr(scorer, "score_batch", None)
        if batch is not None:
            return list(batch(alerts, states, now))
        return [scorer(a, st, now) for a, st in zip(alerts, states, strict=True)]

    def _gate(
        self,
        alert: Alert,
        now: float,
        match_silence: Callable[..., Any] | None,
        thresholds: Thresholds | None,
    ) -> Suppressed | Hold | None:
        """Silences and maintenance windows, then tuned thresholds (the noise model runs
        after, batched per payload)."""
        # Gates apply to firing observations only: a resolution of something already passed
        # downstream must always get through, or incidents would never close.
        if match_silence is not None:
            silence = match_silence(alert.labels, now)
            if silence is not None:
                return Suppressed(alert, silence.kind, silence.describe(), by=silence.id)
        hold: Hold | None = None
        if thresholds is not None:
            hit = thresholds.check(alert, now)
            if hit is not None:
                rule, reason = hit
                release = thresholds.release_at(rule, alert)
                if release is None:
                    return Suppressed(alert, "threshold", reason, by=rule.key)
                # Only too young: held in dedup state, it pages at `release` if it is still
                # firing then, even if its sender does not repeat it for hours.
                hold = Hold(release, reason, rule.key)
        return hold

    def _sweep(self, now: float) -> list[Outcome]:
        self.next_sweep = now + self.limits.sweep_interval
        if self.silences.expire(now, self.limits.silence_retention):
            self.silences_changed = True
        changes: list[Outcome] = list(self.dedup.sweep(now))
        # State changes triage decided itself (timeouts, flapping settled): not input alerts,
        # so counted apart from the reconciliation of inputs.
        self.counts["swept"] += len(changes)
        return changes

    def _add_silence(self, payload: dict[str, Any], raw: Any) -> Read:
        try:
            silence = silence_from_alertmanager(payload)
        except InputError as exc:
            return Read(None, done=tuple(self._count([failed(exc, _raw_text(raw),
                                                             "alertmanager-silence")])))
        except ValueError as exc:
            err = SchemaError("silence", str(exc))
            return Read(None, done=tuple(self._count([failed(err, _raw_text(raw),
                                                             "alertmanager-silence")])))
        self.add_silence(silence)
        return Read(None, silence=silence)

    def _add_change(self, payload: dict[str, Any], raw: Any) -> list[Outcome]:
        try:
            record = change_from_dict(payload)
        except InputError as exc:
            return self._count([failed(exc, _raw_text(raw), "change-record")])
        self.counts["changes"] += 1
        if self.on_change is not None:
            self.on_change(record)
        return []

    def _count(self, outcomes: list[Outcome]) -> list[Outcome]:
        counts = self.counts
        counts["in"] += len(outcomes)
        for o in outcomes:
            if o.kind == "suppressed":
                counts["suppressed." + o.reason] += 1
            counts[o.kind] += 1
        return outcomes


UNTRUSTED_SILENCE = ("a silence on the alert input, which is not trusted with silences: "
                     "POST it to /api/v2/silences (http.admin_token), or trust the stream "
                     "(http.stream_silences: true)")


def _raw_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw).decode("utf-8", "backslashreplace")
    try:
        return orjson.dumps(raw).decode()
    except TypeError:
        return repr(raw)
