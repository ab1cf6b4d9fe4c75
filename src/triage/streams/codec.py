"""Every record the Kafka path writes, its encoder beside its decoder: what the stages put on
``alerts.keyed`` (alert and clock records), on ``alerts.raw`` (forwarded or split alerts,
silence copies), on ``changes`` and on ``alerts.deadletter``. The stages
(``triage.streams.stages``) and ``triage serve``'s door (``triage.streams.keys``) use these
and build no record themselves. No Kafka here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal, NamedTuple

import orjson

from triage.core.changes import ChangeRecord, change_from_dict
from triage.core.render import render_failure, render_outcome
from triage.core.silences import Silence
from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.core.types import Alert, Failed, Triaged
from triage.errors import DecodeError, SchemaError

_dumps = orjson.dumps

# Stage 1's own records on ``alerts.raw`` (forwarded alerts, silence copies) start with this
# (orjson keeps key order), so telling them from input costs a prefix test.
INTERNAL = b'{"_triage":'
INTERNAL_SOURCE = "triage-internal"  # the ``source`` of a dead-lettered internal record

# (stage-1 partition, how many there are, idle, drained): the ``up`` of a keyed record
Upstream = tuple[int, int, bool, bool]


# -- alerts.keyed ---------------------------------------------------------------------------

def keyed_record(outcome: Triaged, t: float, src: list[Any], up: list[Any]) -> bytes:
    """A stage-1 outcome for stage 2: the rendered outcome, its exact time ``t`` (stage 2's
    event time), the input message it came from (``src``: stage 2 observes the records of
    one message together, as ``triage run`` observes one line) and its upstream (``up``:
    the partition whose clock ``t`` is, ``triage.streams.eventtime``).

    >>> a = Alert({"alertname": "Up", "service": "db"}, {}, "firing", 5.0, None, 5.0,
    ...           "generic", fingerprint="f1")
    >>> value = keyed_record(Triaged(a, "firing", 1, 1, 5.0, 5.0), 5.0, [0, 7],
    ...                      [0, 1, False, False])
    >>> t, at, src, up, ahead = decode_keyed(value)
    >>> (t.alert.fingerprint, at, src, up, ahead)
    ('f1', 5.0, (0, 7), (0, 1, False, False), None)
    """
    record = render_outcome(outcome, t)
    assert record is not None
    record["t"] = t
    record["src"] = src
    record["up"] = up
    return _dumps(record)


def clock_record(t: float, up: list[Any], ahead: float | None = None) -> bytes:
    """A stage-1 partition's clock for every stage-2 partition (and, when it has messages
    waiting, the time of the next: ``ahead``).

    >>> decode_keyed(clock_record(9.0, [1, 2, True, True]))
    (None, 9.0, None, (1, 2, True, True), None)
    """
    clock: dict[str, Any] = {"schema_version": 1, "kind": "clock", "t": t, "up": up}
    if ahead is not None:
        clock["next"] = ahead
    return _dumps(clock)


def decode_keyed(value: bytes | None
                  ) -> tuple[Triaged | None, float, Any, Upstream | None, float | None]:
    """A keyed record: the outcome (None for a clock record), its time, the input message
    it came from (``src``), its upstream (``up``: stage-1 partition, how many, idle,
    drained) and, in a clock record, the time of the upstream's next waiting message."""
    try:
        rec = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    triaged, at = triaged_from_dict(rec)
    src = None
    if triaged is not None:
        src = tuple(rec["src"]) if isinstance(rec.get("src"), list) else None
    raw_up = rec.get("up")
    up: Upstream | None = None
    if (isinstance(raw_up, list) and len(raw_up) == 4 and isinstance(raw_up[0], int)
            and isinstance(raw_up[1], int) and 0 <= raw_up[0] < raw_up[1]):
        up = (raw_up[0], raw_up[1], raw_up[2] is True, raw_up[3] is True)
    nxt = rec.get("next")
    ahead = float(nxt) if isinstance(nxt, int | float) and not isinstance(nxt, bool) else None
    return triaged, at, src, up, ahead



def triaged_from_record(value: bytes | None) -> tuple[Triaged | None, float]:
    """An ``alerts.keyed`` record back into the ``Triaged`` outcome stage 2 observes, with
    the stage-1 clock (``t``) it was decided at; ``(None, t)`` for a clock record.

    >>> a = Alert({"alertname": "Up", "service": "db"}, {}, "firing", 5.0, None, 5.0,
    ...           "generic", fingerprint="f1")
    >>> rec = render_outcome(Triaged(a, "firing", 1, 1, 5.0, 5.0), 5.0) | {"t": 5.0}
    >>> t, at = triaged_from_record(orjson.dumps(rec))
    >>> t is not None and (t.alert.fingerprint, t.change, at)
    ('f1', 'firing', 5.0)
    """
    try:
        rec = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    return triaged_from_dict(rec)


def triaged_from_dict(rec: Any) -> tuple[Triaged | None, float]:
    """``triaged_from_record`` of a record already decoded."""
    if isinstance(rec, dict) and rec.get("kind") == "clock" and isinstance(
            rec.get("t"), int | float):
        return None, float(rec["t"])
    if not isinstance(rec, dict) or rec.get("kind") != "alert":
        raise SchemaError("kind", "expected a stage-1 alert record (kind: alert or clock)")
    try:
        at = float(rec["t"]) if "t" in rec else parse_timestamp(rec["at"], "at")
        labels = rec["labels"]
        status = rec["status"]
        fingerprint = rec["fingerprint"]
        change = rec["change"]
    except KeyError as exc:
        raise SchemaError(str(exc.args[0]), "missing") from None
    if at is None:
        raise SchemaError("at", "missing")
    if not isinstance(labels, dict) or not isinstance(fingerprint, str):
        raise SchemaError("labels", "expected labels (object) and fingerprint (string)")
    if status not in ("firing", "resolved") or change not in (
            "firing", "resolved", "flapping", "stable"):
        raise SchemaError("status", f"unexpected status/change {status!r}/{change!r}")
    starts = parse_timestamp(rec.get("starts_at"), "starts_at") or at
    ends = parse_timestamp(rec.get("ends_at"), "ends_at")
    alert = Alert(labels=labels, annotations=rec.get("annotations") or {}, status=status,
                  starts_at=starts, ends_at=ends, at=at, source=rec.get("source") or "",
                  value=rec.get("value"), fingerprint=fingerprint)
    return Triaged(alert, change, int(rec.get("occurrence") or 1), int(rec.get("count") or 1),
                   parse_timestamp(rec.get("first_seen"), "first_seen") or at,
                   parse_timestamp(rec.get("last_seen"), "last_seen") or at,
                   flapping=bool(rec.get("flapping")), reason=rec.get("reason") or ""), at



# -- alerts.raw: stage 1's own records --------------------------------------------------------

def silence_copy(silence: Silence, src: list[int]) -> bytes:
    """A silence received on one partition, for every other one (never copied again)."""
    return _dumps({"_triage": "silence", "v": 1, "src": src, "silence": silence.to_record()})


class InternalAlert(NamedTuple):
    kind: Literal["alert"]
    alert: Alert
    t: float
    src: list[int]


class InternalSilence(NamedTuple):
    kind: Literal["silence"]
    silence: Silence
    src: list[int]


def decode_internal(raw: bytes) -> InternalAlert | InternalSilence:
    """A record starting with ``INTERNAL``: a forwarded or split alert (``forward_record``)
    or a silence copy (``silence_copy``); ``InputError`` naming what is wrong.

    >>> a = Alert({"alertname": "Up"}, {}, "firing", 1.5, None, 2.25, "generic",
    ...           fingerprint="f1")
    >>> got = decode_internal(forward_record(a, 3.0, [-1, 9]))
    >>> (got.kind, got.alert == a, got.t, got.src)
    ('alert', True, 3.0, [-1, 9])
    """
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    kind = rec.get("_triage") if isinstance(rec, dict) else None
    src = rec.get("src") if isinstance(rec, dict) else None
    if not (isinstance(src, list) and len(src) == 2 and all(isinstance(x, int) for x in src)):
        raise SchemaError("src", "expected [partition, offset]")
    if kind == "silence":
        silence = rec.get("silence")
        if not isinstance(silence, dict):
            raise SchemaError("silence", "expected a silence record")
        try:
            return InternalSilence("silence", Silence.from_record(silence), src)
        except ValueError as exc:
            raise SchemaError("silence", str(exc)) from None
    if kind != "alert":
        raise SchemaError("_triage", f"unknown internal record {kind!r}")
    t = rec.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise SchemaError("t", "expected the payload's time (number)")
    return InternalAlert("alert", alert_from_record(rec.get("alert")), float(t), src)

def forward_record(alert: Alert, t: float, src: list[int]) -> bytes:
    """An alert for the partition that owns it, normalized and fingerprinted already,
    triaged there at ``t`` (the payload's time): what stage 1 forwards, and what ``triage
    serve`` publishes for each alert of a body it splits (``triage.streams.keys``). ``src``
    names the message it came from ([partition, offset]; [-1, id] for a split body), so
    stage 2 observes a message's alerts together."""
    return _dumps({"_triage": "alert", "v": 1, "src": src, "t": t,
                   "alert": alert_record(alert)})


def alert_record(alert: Alert) -> dict[str, Any]:
    """An alert as stage 1 forwards it to its owner partition: every field, times as epoch
    seconds (exact, unlike the millisecond strings of rendered records).

    >>> a = Alert({"alertname": "Up"}, {}, "firing", 1.5, None, 2.25, "generic",
    ...           fingerprint="f1")
    >>> alert_from_record(orjson.loads(orjson.dumps(alert_record(a)))) == a
    True
    """
    return {"labels": alert.labels, "annotations": alert.annotations, "status": alert.status,
            "starts_at": alert.starts_at, "ends_at": alert.ends_at, "at": alert.at,
            "source": alert.source, "value": alert.value, "generator_url": alert.generator_url,
            "source_fingerprint": alert.source_fingerprint, "fingerprint": alert.fingerprint}


def alert_from_record(rec: Any) -> Alert:
    """``alert_record`` back into the ``Alert``; ``SchemaError`` naming the bad field."""
    if not isinstance(rec, dict):
        raise SchemaError("alert", "expected an alert record (object)")

    def num(name: str, optional: bool = False) -> float | None:
        value = rec.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SchemaError(f"alert.{name}", "expected a number")
        return float(value)

    maps: list[dict[str, str]] = []
    for name in ("labels", "annotations"):
        mapping = rec.get(name)
        if not isinstance(mapping, dict) or not all(
                isinstance(v, str) for v in mapping.values()):
            raise SchemaError(f"alert.{name}", "expected an object of strings")
        maps.append(mapping)
    strings: list[str] = []
    for name in ("source", "generator_url", "fingerprint"):
        value = rec.get(name)
        if not isinstance(value, str):
            raise SchemaError(f"alert.{name}", "expected a string")
        strings.append(value)
    source_fingerprint = rec.get("source_fingerprint")
    if source_fingerprint is not None and not isinstance(source_fingerprint, str):
        raise SchemaError("alert.source_fingerprint", "expected a string or null")
    status = rec.get("status")
    if status != "firing" and status != "resolved" and status != "pending":
        raise SchemaError("alert.status", f"unexpected status {status!r}")
    starts_at, at = num("starts_at"), num("at")
    assert starts_at is not None and at is not None
    return Alert(labels=maps[0], annotations=maps[1], status=status, starts_at=starts_at,
                 ends_at=num("ends_at", True), at=at, source=strings[0],
                 value=num("value", True), generator_url=strings[1],
                 source_fingerprint=source_fingerprint, fingerprint=strings[2])



# -- changes ----------------------------------------------------------------------------------

def render_change(change: ChangeRecord) -> dict[str, Any]:
    """A change record as it goes on the ``changes`` topic.

    >>> render_change(ChangeRecord("d1", "cart", "deploy", 0.0))["at"]
    '1970-01-01T00:00:00.000Z'
    """
    rec = asdict(change)
    rec["at"] = format_timestamp(change.at)
    return rec


def decode_change(value: bytes | None) -> ChangeRecord:
    """A record of the ``changes`` topic; ``InputError`` if it is not one.

    >>> decode_change(orjson.dumps(render_change(ChangeRecord("d1", "cart", "deploy", 5.0)))).at
    5.0
    """
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SchemaError("", "expected a change record object")
    return change_from_dict(obj)


# -- alerts.deadletter ------------------------------------------------------------------------

def dead_letter(failure: Failed, now: float, topic: str, partition: int,
                offset: int | None) -> dict[str, Any]:
    """``render_failure`` plus where the message came from (logical topic, partition,
    offset), so it can be found and replayed."""
    record = render_failure(failure, now)
    record.update(topic=topic, partition=partition, offset=offset)
    return record
