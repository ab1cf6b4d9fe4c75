"""Silences and maintenance windows, and the indexed set the stage-1 gate consults.

A ``Silence`` mutes every alert whose labels satisfy all of its matchers while it is active.
A maintenance window is the same thing with ``kind="maintenance"`` (so the suppression reason
says so) and, optionally, ``repeat_every`` seconds: a weekly window is active in
``[starts_at + k*week, ends_at + k*week)`` for every ``k >= 0``.

Times are epoch seconds passed in as ``now``; nothing here reads a clock.

>>> from triage.core.matchers import parse_matchers
>>> s = Silence("s1", parse_matchers('alertname="DiskFull"'), starts_at=100.0, ends_at=200.0)
>>> silences = SilenceSet([s])
>>> silences.match({"alertname": "DiskFull"}, now=150.0) is s
True
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

from triage.core.matchers import Matcher, matcher_from_api, parse_matchers
from triage.core.timeutil import parse_duration, parse_timestamp
from triage.errors import InputError, SchemaError, TimestampError

Kind = Literal["silence", "maintenance"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)

# Machine-made ids (UUIDs from Alertmanager, our sha1 prefixes) are shortened in the
# human-readable reason; named windows such as "weekly-db-patching" are kept whole.
_MACHINE_ID: Final = re.compile(r"[0-9a-fA-F-]{13,}")
_MAX_COMMENT: Final = 80


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence or (possibly repeating) maintenance window over ``[starts_at, ends_at)``.

    Raises ``ValueError`` unless ``ends_at > starts_at``, there is at least one matcher, not
    every matcher matches the empty label set (Alertmanager's guard against silencing
    everything), and ``repeat_every`` (if set) exceeds the window length.

    >>> from triage.core.matchers import parse_matchers
    >>> week = 7 * 86400.0
    >>> w = Silence("patch", parse_matchers("team=db"), 0.0, 3600.0,
    ...             kind="maintenance", repeat_every=week)
    >>> w.active(week + 60), w.active(week + 7200), w.expired(10 * week)
    (True, False, False)
    """

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    kind: Kind = "silence"
    repeat_every: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.matchers, tuple):  # a list would make the silence unhashable
            object.__setattr__(self, "matchers", tuple(self.matchers))
        problem = _problem(id=self.id, matchers=self.matchers, starts_at=self.starts_at,
                           ends_at=self.ends_at, kind=self.kind, repeat_every=self.repeat_every)
        if problem is not None:
            raise ValueError(problem[1])

    def active(self, now: float) -> bool:
        """Whether the silence mutes alerts at ``now``.

        >>> from triage.core.matchers import parse_matchers
        >>> s = Silence("s", parse_matchers("a=b"), 10.0, 20.0)
        >>> s.active(9.9), s.active(10.0), s.active(20.0)
        (False, True, False)
        """
        if now < self.starts_at:
            return False
        if self.repeat_every is None:
            return now < self.ends_at
        return (now - self.starts_at) % self.repeat_every < self.ends_at - self.starts_at

    def matches(self, labels: Mapping[str, str], now: float) -> bool:
        """Whether the silence is active at ``now`` and every matcher accepts ``labels``.

        >>> from triage.core.matchers import parse_matchers
        >>> s = Silence("s", parse_matchers("a=b"), 10.0, 20.0)
        >>> s.matches({"a": "b"}, 15.0), s.matches({"a": "c"}, 15.0)
        (True, False)
        """
        if not self.active(now):
            return False
        # A plain loop: this runs per alert per candidate, and all(<genexpr>) costs ~2x here.
        for matcher in self.matchers:  # noqa: SIM110 - measured hot path
            if not matcher.matches(labels):
                return False
        return True

    def expired(self, now: float) -> bool:
        """Whether the silence has ended for good (repeating windows never expire).

        >>> from triage.core.matchers import parse_matchers
        >>> Silence("s", parse_matchers("a=b"), 10.0, 20.0).expired(20.0)
        True
        """
        return self.repeat_every is None and now >= self.ends_at

    def describe(self) -> str:
        """The human-readable suppression reason.

        >>> from triage.core.matchers import parse_matchers
        >>> Silence("4f2a9c1e-0b7d-4c55-9e1a-2f1d7c3b9a10", parse_matchers("a=b"), 0.0, 1.0,
        ...         created_by="alice", comment="db failover").describe()
        'silenced by 4f2a9c1e… (alice: "db failover")'
        >>> Silence("weekly-db-patching", parse_matchers("a=b"), 0.0, 1.0, created_by="ops",
        ...         comment="patch tuesday", kind="maintenance").describe()
        'maintenance window weekly-db-patching (ops: "patch tuesday")'
        """
        ident = f"{self.id[:8]}…" if _MACHINE_ID.fullmatch(self.id) else self.id
        head = f"silenced by {ident}" if self.kind == "silence" else f"maintenance window {ident}"
        comment = self.comment.strip().replace("\n", " ")
        if len(comment) > _MAX_COMMENT:
            comment = comment[: _MAX_COMMENT - 1] + "…"
        if self.created_by and comment:
            return f'{head} ({self.created_by}: "{comment}")'
        if self.created_by:
            return f"{head} ({self.created_by})"
        if comment:
            return f'{head} ("{comment}")'
        return head

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (matchers as strings) that ``from_record`` turns back into an
        equal ``Silence``.

        >>> from triage.core.matchers import parse_matchers
        >>> s = Silence("s", parse_matchers('a=~"b.*"'), 10.0, 20.0)
        >>> s.to_record()["matchers"], Silence.from_record(s.to_record()) == s
        (['a=~"b.*"'], True)
        """
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "kind": self.kind,
            "repeat_every": self.repeat_every,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Silence:
        """Rebuild a silence from ``to_record`` output (state file or config).

        Besides epoch seconds, times may be RFC 3339 strings and ``repeat_every`` a duration
        such as ``"1w"``, so hand-written config entries work too. Errors are ``SchemaError``
        (``TimestampError`` for times) naming the member.

        >>> s = Silence.from_record({"id": "w", "matchers": ['{team="db"}'], "kind": "maintenance",
        ...     "starts_at": "2024-01-02T03:00:00Z", "ends_at": "2024-01-02T05:00:00Z",
        ...     "repeat_every": "1w"})
        >>> s.repeat_every, s.ends_at - s.starts_at
        (604800.0, 7200.0)
        """
        if not isinstance(record, Mapping):
            raise SchemaError("", f"expected an object, got {type(record).__name__}")
        ident = _str(record, "id", required=True)
        raw_matchers = record.get("matchers")
        if not isinstance(raw_matchers, list):
            raise SchemaError("matchers", "expected a list of matcher strings")
        matchers: list[Matcher] = []
        for i, text in enumerate(raw_matchers):
            if not isinstance(text, str):
                raise SchemaError(f"matchers[{i}]", "expected a matcher string")
            try:
                matchers.extend(parse_matchers(text))
            except ValueError as exc:
                raise SchemaError(f"matchers[{i}]", str(exc)) from None
        starts_at = _time(record, "starts_at")
        ends_at = _time(record, "ends_at")
        kind = _str(record, "kind") or "silence"
        if kind not in KINDS:  # checked here so the error names the member
            raise SchemaError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        repeat = record.get("repeat_every")
        repeat_every: float | None = None
        if repeat is not None:
            try:
                repeat_every = parse_duration(repeat, "repeat_every")
            except ValueError as exc:
                raise SchemaError("repeat_every", str(exc)) from None
        return _build(
            fields={},
            id=ident,
            matchers=tuple(matchers),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=_str(record, "created_by"),
            comment=_str(record, "comment"),
            kind="maintenance" if kind == "maintenance" else "silence",
            repeat_every=repeat_every,
        )


def silence_from_alertmanager(obj: Mapping[str, object]) -> Silence:
    """Convert Alertmanager API v2 silence JSON (PostableSilence or GettableSilence).

    Without an ``id`` the id is derived from the content (sha1, 16 hex digits), so replaying
    the same silence gives the same id. ``status`` is ignored: state follows from the times.

    >>> s = silence_from_alertmanager({"matchers": [{"name": "job", "value": "db",
    ...     "isRegex": False}], "startsAt": "2024-01-01T00:00:00Z",
    ...     "endsAt": "2024-01-01T02:00:00Z", "createdBy": "alice", "comment": "db failover"})
    >>> len(s.id), s.describe().startswith("silenced by"), s.active(1704067200.0 + 60)
    (16, True, True)
    """
    if not isinstance(obj, Mapping):
        raise SchemaError("", f"expected a silence object, got {type(obj).__name__}")
    raw_matchers = obj.get("matchers")
    if not isinstance(raw_matchers, list):
        raise SchemaError("matchers", "expected an array of matcher objects")
    if not raw_matchers:
        raise SchemaError("matchers", "empty: a silence needs at least one matcher")
    matchers: list[Matcher] = []
    for i, raw in enumerate(raw_matchers):
        try:
            if not isinstance(raw, Mapping):
                raise SchemaError("", f"expected a matcher object, got {type(raw).__name__}")
            matchers.append(matcher_from_api(raw))
        except InputError as exc:
            raise exc.at(f"matchers[{i}]") from None
    starts_at = _time(obj, "startsAt")
    ends_at = _time(obj, "endsAt")
    created_by = _str(obj, "createdBy")
    comment = _str(obj, "comment")
    ident = _str(obj, "id")
    if not ident:
        ident = _content_id(matchers, starts_at, ends_at, created_by, comment)
    return _build(
        fields={"ends_at": "endsAt", "starts_at": "startsAt"},
        id=ident,
        matchers=tuple(matchers),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
    )


def is_silence_object(payload: object) -> bool:
    """Whether a decoded input payload is an Alertmanager silence rather than alerts: the one
    test ``Pipeline.read`` dispatches on and the HTTP receiver refuses untrusted silences by,
    so a body cannot look like alerts to one and like a silence to the other.

    >>> is_silence_object({"matchers": [], "createdBy": "ops"}), is_silence_object([{}])
    (True, False)
    """
    return isinstance(payload, dict) and "matchers" in payload and "createdBy" in payload


def _content_id(
    matchers: Iterable[Matcher], starts_at: float, ends_at: float, created_by: str, comment: str
) -> str:
    # Matchers are sorted because their order does not change what a silence mutes.
    canonical = orjson.dumps(
        [sorted(str(m) for m in matchers), starts_at, ends_at, created_by, comment]
    )
    return hashlib.sha1(canonical, usedforsecurity=False).hexdigest()[:16]


def _str(obj: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise SchemaError(key, "missing")
        return ""
    if not isinstance(value, str):
        raise SchemaError(key, f"expected a string, got {type(value).__name__}")
    if required and not value:
        raise SchemaError(key, "empty")
    return value


def _time(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key)
    if value is None:
        raise SchemaError(key, "missing")
    parsed = parse_timestamp(value, key)
    if parsed is None:  # Go's zero time: meaningless as a silence bound
        raise TimestampError(key, "zero or empty time where a time is required")
    return parsed


def _problem(
    *,
    id: str,
    matchers: tuple[Matcher, ...],
    starts_at: float,
    ends_at: float,
    kind: str,
    repeat_every: float | None,
) -> tuple[str, str] | None:
    """The first invalid attribute and why, or ``None``. Shared by ``Silence.__post_init__``
    (``ValueError``) and the JSON builders (``SchemaError`` on the member it came from), so
    neither has to classify errors by their message."""
    label = f"silence {id!r}"
    if not id:
        return "id", "silence: empty id"
    if not matchers:
        return "matchers", f"{label}: needs at least one matcher"
    if all(m.matches_empty for m in matchers):
        return "matchers", (
            f"{label}: at least one matcher must not match the empty string, otherwise "
            f"it would silence every alert ({', '.join(map(str, matchers))})"
        )
    if not math.isfinite(starts_at):
        return "starts_at", f"{label}: starts_at must be finite"
    if not math.isfinite(ends_at) or ends_at <= starts_at:
        return "ends_at", f"{label}: ends_at ({ends_at}) must be after starts_at ({starts_at})"
    if kind not in KINDS:
        return "kind", f"{label}: kind must be one of {', '.join(KINDS)}, not {kind!r}"
    if repeat_every is not None:
        length = ends_at - starts_at
        if not math.isfinite(repeat_every) or repeat_every <= length:
            return "repeat_every", (
                f"{label}: repeat_every ({repeat_every}s) must be longer than the "
                f"window itself ({length}s), or windows would overlap"
            )
    return None


def _build(
    *,
    fields: Mapping[str, str],
    id: str,
    matchers: tuple[Matcher, ...],
    starts_at: float,
    ends_at: float,
    created_by: str,
    comment: str,
    kind: Kind = "silence",
    repeat_every: float | None = None,
) -> Silence:
    """Validate, then construct a ``Silence``; a problem becomes a ``SchemaError`` naming the
    JSON member (``fields`` maps attribute names to member names)."""
    problem = _problem(id=id, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                       kind=kind, repeat_every=repeat_every)
    if problem is not None:
        attr, message = problem
        raise SchemaError(fields.get(attr, attr), message)
    return Silence(id, matchers, starts_at, ends_at, created_by, comment, kind, repeat_every)


def _order(silence: Silence) -> tuple[float, str]:
    return (silence.starts_at, silence.id)


class SilenceSet:
    """The silences in force, indexed for the per-alert gate.

    Each silence is filed under one of its equality matchers (label name -> value -> silences,
    each list sorted by ``(starts_at, id)``); silences without a usable ``=`` matcher go in a
    fallback list. ``match`` then looks at one bucket per indexed label name plus the fallback,
    so its cost follows the candidates, not the number of silences, and it is a single
    truth test when the set is empty. Nothing derived from alert labels is cached, so adding or
    removing a silence takes effect on the next call.

    >>> from triage.core.matchers import parse_matchers
    >>> a = Silence("a", parse_matchers('alertname="X"'), 0.0, 10.0)
    >>> b = Silence("b", parse_matchers('severity=~"warn.*"'), 5.0, 10.0)
    >>> silences = SilenceSet([b, a])
    >>> [s.id for s in silences], silences.match({"alertname": "X"}, now=6.0).id
    (['a', 'b'], 'a')
    """

    __slots__ = ("_by_id", "_fallback", "_index", "_key_of")

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._by_id: dict[str, Silence] = {}
        self._index: dict[str, dict[str, list[Silence]]] = {}
        self._fallback: list[Silence] = []
        # Where each silence is filed: (name, value) or None for the fallback list.
        self._key_of: dict[str, tuple[str, str] | None] = {}
        for silence in silences:
            self.add(silence)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Silence]:
        return iter(sorted(self._by_id.values(), key=_order))

    def __contains__(self, silence_id: object) -> bool:
        return silence_id in self._by_id

    def get(self, silence_id: str) -> Silence | None:
        """The silence with this id, or ``None``.

        >>> SilenceSet().get("nope") is None
        True
        """
        return self._by_id.get(silence_id)

    def add(self, silence: Silence) -> None:
        """Add ``silence``, replacing any silence with the same id.

        >>> from triage.core.matchers import parse_matchers
        >>> s = SilenceSet([Silence("a", parse_matchers("x=1"), 0.0, 1.0)])
        >>> s.add(Silence("a", parse_matchers("x=2"), 0.0, 1.0)); len(s)
        1
        """
        if silence.id in self._by_id:
            self.remove(silence.id)
        key = self._choose_key(silence)
        if key is None:
            insort(self._fallback, silence, key=_order)
        else:
            name, value = key
            insort(self._index.setdefault(name, {}).setdefault(value, []), silence, key=_order)
        self._by_id[silence.id] = silence
        self._key_of[silence.id] = key

    def remove(self, silence_id: str) -> Silence | None:
        """Remove and return the silence with this id (``None`` if there is none).

        >>> SilenceSet().remove("nope") is None
        True
        """
        silence = self._by_id.pop(silence_id, None)
        if silence is None:
            return None
        key = self._key_of.pop(silence_id)
        if key is None:
            self._fallback.remove(silence)
        else:
            name, value = key
            by_value = self._index[name]
            bucket = by_value[value]
            bucket.remove(silence)
            # Drop empty buckets so match() never walks names no silence uses any more.
            if not bucket:
                del by_value[value]
                if not by_value:
                    del self._index[name]
        return silence

    def match(self, labels: Mapping[str, str], now: float) -> Silence | None:
        """The first silence, in ``(starts_at, id)`` order, that is active at ``now`` and
        matches ``labels``; ``None`` if none does.

        >>> from triage.core.matchers import parse_matchers
        >>> s = SilenceSet([Silence("a", parse_matchers("env=prod"), 0.0, 10.0)])
        >>> s.match({"env": "prod"}, now=5.0).id, s.match({"env": "prod"}, now=10.0)
        ('a', None)
        """
        if not self._by_id:
            return None
        best: Silence | None = None
        for name, by_value in self._index.items():
            # A missing label is "", exactly as Matcher.matches sees it.
            bucket = by_value.get(labels.get(name, ""))
            if bucket is not None:
                best = _first_match(bucket, labels, now, best)
        if self._fallback:
            best = _first_match(self._fallback, labels, now, best)
        return best

    def expire(self, now: float, retention: float) -> list[Silence]:
        """Drop non-repeating silences that ended more than ``retention`` seconds before
        ``now``; return them in ``(starts_at, id)`` order.

        >>> from triage.core.matchers import parse_matchers
        >>> s = SilenceSet([Silence("a", parse_matchers("x=1"), 0.0, 10.0)])
        >>> s.expire(now=15.0, retention=10.0), [x.id for x in s.expire(now=21.0, retention=10.0)]
        ([], ['a'])
        """
        gone = [
            s
            for s in self._by_id.values()
            if s.repeat_every is None and now - s.ends_at > retention
        ]
        gone.sort(key=_order)
        for silence in gone:
            self.remove(silence.id)
        return gone

    def _choose_key(self, silence: Silence) -> tuple[str, str] | None:
        # Any "=" matcher is a correct key: a matching alert must carry exactly that value
        # (or lack the label, for value ""). Prefer non-empty values, then the emptiest
        # bucket, so one popular label such as env="prod" does not collect every silence.
        best: tuple[str, str] | None = None
        best_rank: tuple[bool, int] | None = None
        for m in silence.matchers:
            if m.op != "=":
                continue
            bucket = self._index.get(m.name, {}).get(m.value, ())
            rank = (m.value == "", len(bucket))
            if best_rank is None or rank < best_rank:
                best, best_rank = (m.name, m.value), rank
        return best


def _first_match(
    bucket: list[Silence], labels: Mapping[str, str], now: float, best: Silence | None
) -> Silence | None:
    """The earlier of ``best`` and the first match in the sorted ``bucket``."""
    limit = None if best is None else _order(best)
    for silence in bucket:
        if limit is not None and _order(silence) >= limit:
            return best  # the bucket is sorted: nothing later can beat ``best``
        if silence.matches(labels, now):
            return silence
    return best
