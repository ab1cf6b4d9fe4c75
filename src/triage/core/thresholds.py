"""Tuned thresholds: the file format and the threshold gate of stage 1.

A Prometheus rule such as ``cpu > 0.8`` pages at one fixed threshold for every service. The
thresholds file narrows that per alert and label set, from responders' feedback and historical
false-positive rates (``triage tune``, the learning stage, writes it; people may edit it). A
firing alert whose value does not cross its tuned threshold, or that has not been firing for
the tuned ``for`` duration yet, is *suppressed*: it never pages and is counted with its reason.

The document (YAML or JSON; this module takes the decoded value, it does no I/O)::

    version: 1                           # required; an unknown major version is an error
    generated_at: 2026-11-27T10:00:00Z   # optional, RFC 3339 or epoch seconds
    generated_by: "triage tune 0.1.0"    # optional
    rules:                               # required, may be empty
      - match: {alertname: HighCPU, service: cartservice}   # label equality, needs alertname
        threshold: 0.85
        direction: above                 # optional: above (default) | below
        for: 5m                          # optional: Go duration or seconds
        keep_firing_for: 1h              # optional (version 1.1): see below
        threshold_z: 3.5                 # optional (version 1.1): see below
        fp_rate_before: 0.42             # optional, informational (0..1)
        fp_rate_after: 0.06              # optional, informational (0..1)
        recall: 0.995                    # optional, informational (0..1)
        samples: 812                     # optional, informational (count >= 0)
        source_rule: "node_cpu ... > 0.8"   # optional: the Prometheus expr this tunes

A rule may leave ``threshold`` null (version 1.1) and carry only ``threshold_z``, ``for``
and/or ``keep_firing_for``: what ``triage tune`` learns for a whole alertname, scale-free,
for the series no judgement names yet.

Semantics (see ``docs/thresholds.md``):

* Only ``firing`` alerts are gated; ``resolved`` and ``pending`` ones always pass.
* ``above``: the alert is real when ``value >= threshold``; ``below``: when
  ``value <= threshold``. The boundary counts as crossed, as a tuned threshold is the lowest
  (highest) value responders still found actionable.
* An alert without a numeric value (or NaN) passes the value test; it still gets the ``for``
  test, ``now - starts_at >= for``.
* ``threshold_z`` (1.1): the value test in the series' own scale, for alerts that carry
  their series' baseline as the annotations ``baseline`` and ``scale`` (numbers; for example
  from recording rules): ``(value - baseline) / scale`` against ``threshold_z`` by
  direction. An alert without them passes this test (never suppressed on a number it lacks).
* ``keep_firing_for`` (as Prometheus' rule field): once an alert of the rule has passed, its
  resolution is held that long; firing again meanwhile continues the same occurrence (no new
  page). The dedup stage applies it (``triage.core.dedup``).
* The most specific matching rule wins (most match labels); ties go to the earlier rule.
  A match value ``""`` matches an absent label, as in Prometheus matchers.

Errors are ``ConfigError`` whose key is a path into the document, such as
``rules[3].threshold``; the caller prefixes the file name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal, cast

from triage.core.timeutil import format_timestamp, parse_duration, parse_timestamp
from triage.core.types import FIRING, Alert
from triage.errors import ConfigError, TimestampError

Direction = Literal["above", "below"]

FORMAT_VERSION: Final = 1
"""The major format version this module reads and writes."""
KNOWN_MINOR: Final = 1
"""The newest minor version this reader knows (1.1: ``keep_firing_for``, null thresholds);
files of a newer minor are read leniently (unknown keys ignored)."""

_DIRECTIONS: Final = ("above", "below")
_TOP_KEYS: Final = frozenset({"version", "generated_at", "generated_by", "rules"})
_RULE_KEYS: Final = frozenset(
    {
        "match",
        "threshold",
        "direction",
        "for",
        "keep_firing_for",
        "threshold_z",
        "fp_rate_before",
        "fp_rate_after",
        "recall",
        "samples",
        "source_rule",
    }
)
_RATE_KEYS: Final = ("fp_rate_before", "fp_rate_after", "recall")

# The lookup index (see Thresholds.__post_init__): label values -> (file position, rule), and
# one specificity level: (label names, as many "" defaults, table) per shape.
_Table = dict[tuple[str, ...], tuple[int, "ThresholdRule"]]
_Level = tuple[tuple[tuple[str, ...], tuple[str, ...], _Table], ...]


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """One tuned threshold for the alerts whose labels equal ``match``.

    ``match`` must name the ``alertname``; treat it as read-only (it is a private copy).

    >>> rule = ThresholdRule({"alertname": "HighCPU", "service": "cart"}, 0.85)
    >>> rule.key
    'HighCPU{service="cart"}'
    >>> rule.matches({"alertname": "HighCPU", "service": "cart", "pod": "cart-1"})
    True
    """

    match: Mapping[str, str]
    threshold: float | None
    direction: Direction = "above"
    for_seconds: float | None = None
    keep_firing_for: float | None = None
    threshold_z: float | None = None
    fp_rate_before: float | None = None
    fp_rate_after: float | None = None
    recall: float | None = None
    samples: int | None = None
    source_rule: str | None = None

    # Derived once: lookups run per alert in storms, so no per-call work on the rule.
    _extra: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        match = dict(self.match)  # a private copy, so the caller cannot change the index
        if not match.get("alertname"):
            raise ValueError("match must contain a non-empty alertname")
        if self.direction not in _DIRECTIONS:
            raise ValueError(f"direction must be above or below, got {self.direction!r}")
        if self.threshold is None:
            if not self.for_seconds and not self.keep_firing_for and self.threshold_z is None:
                raise ValueError("a rule without a threshold needs threshold_z, for or "
                                 "keep_firing_for")
        elif not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        if self.threshold_z is not None and not math.isfinite(self.threshold_z):
            raise ValueError(f"threshold_z must be finite, got {self.threshold_z!r}")
        if self.for_seconds is not None and not 0 <= self.for_seconds < math.inf:
            raise ValueError(f"for_seconds must be finite and >= 0, got {self.for_seconds!r}")
        if self.keep_firing_for is not None and not 0 <= self.keep_firing_for < math.inf:
            raise ValueError("keep_firing_for must be finite and >= 0, got "
                             f"{self.keep_firing_for!r}")
        extra = tuple(sorted((k, v) for k, v in match.items() if k != "alertname"))
        object.__setattr__(self, "match", match)
        object.__setattr__(self, "_extra", extra)
        object.__setattr__(self, "_key", _format_key(match["alertname"], extra))

    def __hash__(self) -> int:
        # The generated hash would hash the dict; a rule is identified by its match set.
        return hash((self._key, self.threshold, self.direction, self.for_seconds,
                     self.keep_firing_for, self.threshold_z))

    @property
    def key(self) -> str:
        """Stable id: the alertname and the other match labels as a Prometheus selector."""
        return self._key

    @property
    def specificity(self) -> int:
        """Number of match labels; the most specific matching rule wins."""
        return len(self._extra) + 1

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every match label (``""`` matches an absent label)."""
        if labels.get("alertname") != self.match["alertname"]:
            return False
        return all(labels.get(name, "") == value for name, value in self._extra)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A parsed thresholds file: rules indexed by alertname for per-alert lookups.

    >>> t = Thresholds(rules=(
    ...     ThresholdRule({"alertname": "HighCPU"}, 0.9),
    ...     ThresholdRule({"alertname": "HighCPU", "service": "cart"}, 0.85),
    ... ))
    >>> t.lookup({"alertname": "HighCPU", "service": "cart"}).key
    'HighCPU{service="cart"}'
    >>> t.lookup({"alertname": "HighCPU", "service": "web"}).key
    'HighCPU'
    >>> t.lookup({"alertname": "DiskFull"}) is None
    True
    """

    version: int = FORMAT_VERSION
    generated_at: float | None = None
    generated_by: str | None = None
    rules: tuple[ThresholdRule, ...] = ()

    _index: dict[str, tuple[_Level, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        # alertname -> specificity -> label names (a "shape") -> label values -> rule.
        # A lookup is then one dict get per shape instead of a scan over every rule: a storm
        # alert usually meets one or two shapes, however many services have their own rule.
        tree: dict[str, dict[int, dict[tuple[str, ...], _Table]]] = {}
        for position, rule in enumerate(rules):
            names = tuple(name for name, _ in rule._extra)
            values = tuple(value for _, value in rule._extra)
            shapes = tree.setdefault(rule.match["alertname"], {}).setdefault(len(names), {})
            # setdefault: of two identical match sets (the parser rejects them) the first wins.
            shapes.setdefault(names, {}).setdefault(values, (position, rule))
        index = {
            alertname: tuple(
                tuple((names, ("",) * len(names), table) for names, table in shapes.items())
                for _, shapes in sorted(levels.items(), reverse=True)
            )
            for alertname, levels in tree.items()
        }
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "_index", index)

    def lookup(self, labels: Mapping[str, str]) -> ThresholdRule | None:
        """The most specific rule matching ``labels`` (ties: first in file order), or None."""
        levels = self._index.get(labels.get("alertname", ""))
        if levels is None:
            return None
        get = labels.get
        for level in levels:  # most specific first: the first level with a hit decides
            best: tuple[int, ThresholdRule] | None = None
            for names, blanks, table in level:
                # An absent label reads as "", so a match value "" matches it (Prometheus).
                hit = table.get(tuple(map(get, names, blanks)))
                if hit is not None and (best is None or hit[0] < best[0]):
                    best = hit
            if best is not None:
                return best[1]
        return None

    def check(self, alert: Alert, now: float) -> tuple[ThresholdRule, str] | None:
        """The rule and the reason if ``alert`` must be suppressed, else None.

        >>> t = Thresholds(rules=(ThresholdRule(
        ...     {"alertname": "HighCPU", "service": "cart"}, 0.85,
        ...     fp_rate_before=0.42, fp_rate_after=0.06),))
        >>> alert = Alert(labels={"alertname": "HighCPU", "service": "cart"}, annotations={},
        ...               status="firing", starts_at=0.0, ends_at=None, at=0.0,
        ...               source="test", value=0.71)
        >>> print(t.check(alert, now=60.0)[1])
        value 0.71 below tuned threshold 0.85 for HighCPU{service="cart"} (fp rate 0.42 → 0.06)
        >>> alert.value = 0.85
        >>> t.check(alert, now=60.0) is None
        True
        """
        if alert.status != FIRING:  # resolving or pending never pages, so never gate it
            return None
        rule = self.lookup(alert.labels)
        if rule is None:
            return None
        reasons: list[str] = []
        failed = _value_failure(rule, alert)
        if failed is not None:
            reasons.append(failed)
        if rule.for_seconds is not None:
            firing_for = max(0.0, now - alert.starts_at)
            if firing_for < rule.for_seconds:
                reasons.append(
                    f"firing {_format_seconds(firing_for)}, shorter than tuned "
                    f"for={format_duration(rule.for_seconds)} of {rule.key}"
                )
        if not reasons:
            return None
        return rule, "; ".join(reasons)

    def release_at(self, rule: ThresholdRule, alert: Alert) -> float | None:
        """When an alert that failed only the ``for`` test of ``rule`` may pass: its start plus
        the tuned duration. ``None`` if it failed the value test (it is noise, not early).

        >>> t = Thresholds(rules=(ThresholdRule({"alertname": "X"}, 1.0, for_seconds=300.0),))
        >>> a = Alert(labels={"alertname": "X"}, annotations={}, status="firing",
        ...           starts_at=100.0, ends_at=None, at=100.0, source="test", value=2.0)
        >>> t.release_at(t.rules[0], a)
        400.0
        """
        if rule.for_seconds is None or _value_failure(rule, alert) is not None:
            return None
        return alert.starts_at + rule.for_seconds

    def keep_for(self, labels: Mapping[str, str]) -> float:
        """The ``keep_firing_for`` of the rule for ``labels`` (0: none).

        >>> t = Thresholds(rules=(ThresholdRule({"alertname": "X"}, None,
        ...                                     keep_firing_for=3600.0),))
        >>> t.keep_for({"alertname": "X", "pod": "a"}), t.keep_for({"alertname": "Y"})
        (3600.0, 0.0)
        """
        rule = self.lookup(labels)
        return rule.keep_firing_for or 0.0 if rule is not None else 0.0


def parse_thresholds(data: object) -> Thresholds:
    """Build ``Thresholds`` from a decoded YAML/JSON document; ``ConfigError`` names the key.

    >>> t = parse_thresholds({"version": 1, "rules": [
    ...     {"match": {"alertname": "HighCPU"}, "threshold": 0.9, "for": "5m"}]})
    >>> t.rules[0].for_seconds
    300.0
    >>> parse_thresholds({"version": 1, "rules": [{"match": {}, "threshold": 1}]})
    Traceback (most recent call last):
    ...
    triage.errors.ConfigError: config rules[0].match.alertname: missing
    """
    doc = _require_mapping(data, "")
    major, minor = _parse_version(doc.get("version"))
    # A newer minor version only adds optional keys, so this reader ignores what it does not
    # know; within a version it knows, an unknown key is most likely a typo and an error.
    strict = minor <= KNOWN_MINOR
    if strict:
        _reject_unknown(doc, _TOP_KEYS, "")
    generated_at = _parse_generated_at(doc.get("generated_at"))
    generated_by = _optional_str(doc, "generated_by", "generated_by")
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raise ConfigError("rules", "missing (use [] for no rules)")
    if not isinstance(raw_rules, list):
        raise ConfigError("rules", f"expected a list, got {_kind(raw_rules)}")
    rules: list[ThresholdRule] = []
    seen: dict[frozenset[tuple[str, str]], int] = {}
    for i, raw in enumerate(raw_rules):
        path = f"rules[{i}]"
        rule = _parse_rule(raw, path, strict=strict)
        identity = frozenset(rule.match.items())
        if identity in seen:
            raise ConfigError(
                f"{path}.match", f"same match as rules[{seen[identity]}] ({rule.key})"
            )
        seen[identity] = i
        rules.append(rule)
    return Thresholds(
        version=major,
        generated_at=generated_at,
        generated_by=generated_by,
        rules=tuple(rules),
    )


def dump_thresholds(t: Thresholds) -> dict[str, Any]:
    """The document for ``t``, ready for YAML or JSON; ``parse_thresholds`` reads it back.

    >>> rule = ThresholdRule({"alertname": "HighCPU"}, 0.9, for_seconds=300.0)
    >>> dump_thresholds(Thresholds(rules=(rule,)))
    {'version': 1, 'rules': [{'match': {'alertname': 'HighCPU'}, 'threshold': 0.9, \
'direction': 'above', 'for': '5m'}]}
    """
    newer = any(r.threshold is None or r.keep_firing_for is not None
                or r.threshold_z is not None for r in t.rules)
    doc: dict[str, Any] = {"version": f"{t.version}.1" if newer else t.version}
    if t.generated_at is not None:
        doc["generated_at"] = format_timestamp(t.generated_at)
    if t.generated_by is not None:
        doc["generated_by"] = t.generated_by
    doc["rules"] = [_dump_rule(rule) for rule in t.rules]
    return doc


def format_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration when whole, else plain seconds.

    >>> format_duration(300.0), format_duration(5400.0), format_duration(2.5)
    ('5m', '1h30m', '2.5s')
    """
    if not seconds.is_integer() or seconds >= 1e12:
        return f"{seconds!r}s"
    rest = int(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --- helpers ---------------------------------------------------------------------------------


def _format_key(alertname: str, extra: tuple[tuple[str, str], ...]) -> str:
    if not extra:
        return alertname
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in extra)
    return f"{alertname}{{{inner}}}"


def _escape(value: str) -> str:
    # Prometheus label-value escaping, so the key reads (and parses) as a selector.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_number(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _format_seconds(seconds: float) -> str:
    # Whole seconds read best in a reason ("firing 90s"); keep fractions only below one.
    return f"{int(seconds)}s" if seconds >= 1 else f"{seconds:.3g}s"


def _value_failure(rule: ThresholdRule, alert: Alert) -> str | None:
    """Why ``alert`` fails the value tests of ``rule`` (absolute, then in its own scale), or
    None. NaN or a missing number is "no usable value": never suppressed on it."""
    value = alert.value
    if value is None or math.isnan(value):
        return None
    threshold = rule.threshold
    if threshold is not None:
        if rule.direction == "above" and value < threshold:
            return _value_reason(rule, value, "below")
        if rule.direction == "below" and value > threshold:
            return _value_reason(rule, value, "above")
    if rule.threshold_z is not None:
        baseline = _annotation_number(alert.annotations, "baseline")
        scale = _annotation_number(alert.annotations, "scale")
        if baseline is None or scale is None or scale <= 0:
            return None
        z = (value - baseline) / scale
        side = ("below" if rule.direction == "above" and z < rule.threshold_z else
                "above" if rule.direction == "below" and z > rule.threshold_z else None)
        if side is not None:
            return (f"z {_format_number(z)} (value {_format_number(value)}, baseline "
                    f"{_format_number(baseline)}, scale {_format_number(scale)}) {side} tuned "
                    f"threshold_z {_format_number(rule.threshold_z)} for {rule.key}")
    return None


def _annotation_number(annotations: Mapping[str, str], name: str) -> float | None:
    text = annotations.get(name)
    if text is None:
        return None
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _value_reason(rule: ThresholdRule, value: float, side: str) -> str:
    assert rule.threshold is not None  # only a rule with a threshold fails the value test
    text = (
        f"value {_format_number(value)} {side} tuned threshold "
        f"{_format_number(rule.threshold)} for {rule.key}"
    )
    before, after = rule.fp_rate_before, rule.fp_rate_after
    if before is not None and after is not None:
        text += f" (fp rate {_format_number(before)} → {_format_number(after)})"
    elif before is not None:
        text += f" (fp rate before tuning {_format_number(before)})"
    elif after is not None:
        text += f" (fp rate after tuning {_format_number(after)})"
    return text


def _dump_rule(rule: ThresholdRule) -> dict[str, Any]:
    # alertname first, so a hand reader finds the rule; the rest sorted for stable diffs.
    match = {"alertname": rule.match["alertname"], **dict(rule._extra)}
    out: dict[str, Any] = {
        "match": match,
        "threshold": rule.threshold,
        "direction": rule.direction,
    }
    if rule.for_seconds is not None:
        out["for"] = _dump_duration(rule.for_seconds)
    if rule.keep_firing_for is not None:
        out["keep_firing_for"] = _dump_duration(rule.keep_firing_for)
    if rule.threshold_z is not None:
        out["threshold_z"] = rule.threshold_z
    for name in (*_RATE_KEYS, "samples", "source_rule"):
        value = getattr(rule, name)
        if value is not None:
            out[name] = value
    return out


def _dump_duration(seconds: float) -> str | float:
    # Write the readable form only when it reads back to the very same float.
    text = format_duration(seconds)
    try:
        if parse_duration(text) == seconds:
            return text
    except ValueError:  # e.g. "1e-07s", which the duration grammar does not accept
        pass
    return seconds


def _parse_rule(raw: object, path: str, *, strict: bool) -> ThresholdRule:
    obj = _require_mapping(raw, path)
    if strict:
        _reject_unknown(obj, _RULE_KEYS, path)
    match = _parse_match(obj.get("match"), f"{path}.match")
    if "threshold" not in obj:
        raise ConfigError(f"{path}.threshold", "missing (null: for/keep_firing_for only)")
    threshold = (None if obj["threshold"] is None
                 else _number(obj["threshold"], f"{path}.threshold"))
    direction = obj.get("direction", "above")
    if direction is None:
        direction = "above"
    if direction not in _DIRECTIONS:
        raise ConfigError(f"{path}.direction", f"expected above or below, got {direction!r}")
    for_seconds = _parse_rule_duration(obj, "for", path)
    keep_firing_for = _parse_rule_duration(obj, "keep_firing_for", path)
    threshold_z = (None if obj.get("threshold_z") is None
                   else _number(obj["threshold_z"], f"{path}.threshold_z"))
    if threshold is None and not for_seconds and not keep_firing_for and threshold_z is None:
        raise ConfigError(f"{path}.threshold", "null needs a threshold_z, for or "
                                               "keep_firing_for (else the rule does nothing)")
    rates: dict[str, float | None] = {}
    for name in _RATE_KEYS:
        value = obj.get(name)
        if value is None:
            rates[name] = None
            continue
        number = _number(value, f"{path}.{name}")
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"{path}.{name}", f"expected a rate between 0 and 1, got {value!r}")
        rates[name] = number
    samples = obj.get("samples")
    if samples is not None and (
        not isinstance(samples, int) or isinstance(samples, bool) or samples < 0
    ):
        raise ConfigError(f"{path}.samples", f"expected a count >= 0, got {samples!r}")
    return ThresholdRule(
        match=match,
        threshold=threshold,
        direction=cast(Direction, direction),
        for_seconds=for_seconds,
        keep_firing_for=keep_firing_for,
        threshold_z=threshold_z,
        fp_rate_before=rates["fp_rate_before"],
        fp_rate_after=rates["fp_rate_after"],
        recall=rates["recall"],
        samples=samples,
        source_rule=_optional_str(obj, "source_rule", f"{path}.source_rule"),
    )


def _parse_rule_duration(obj: Mapping[str, Any], name: str, path: str) -> float | None:
    if obj.get(name) is None:
        return None
    try:
        seconds = parse_duration(obj[name], f"{path}.{name}")
    except ValueError as exc:
        raise ConfigError(f"{path}.{name}", str(exc).split(": ", 1)[-1]) from None
    if not math.isfinite(seconds):
        raise ConfigError(f"{path}.{name}", f"expected a finite duration, got {obj[name]!r}")
    return seconds


def _parse_match(raw: object, path: str) -> dict[str, str]:
    obj = _require_mapping(raw, path)
    match: dict[str, str] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(path, f"label names must be non-empty strings, got {name!r}")
        label_path = f"{path}.{name}"
        # YAML 1.1 reads `on`/`yes` as booleans and `1.10` as 1.1: refuse what would not
        # compare equal to the label's text, rather than guess. Integers are unambiguous.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(
                label_path, f"expected a string label value, got {_kind(value)} (quote it)"
            )
        match[name] = value
    if not match.get("alertname"):
        raise ConfigError(f"{path}.alertname", "missing" if "alertname" not in match else "empty")
    return match


def _parse_version(raw: object) -> tuple[int, int]:
    if raw is None:
        raise ConfigError("version", f"missing (this reader knows version {FORMAT_VERSION})")
    text = str(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else ""
    major_text, _, minor_text = text.partition(".")
    if not major_text.isdigit() or (minor_text and not minor_text.isdigit()):
        raise ConfigError("version", f"expected a version like 1 or 1.2, got {raw!r}")
    if int(major_text) != FORMAT_VERSION:
        raise ConfigError(
            "version", f"unsupported version {raw!r} (this reader knows version {FORMAT_VERSION})"
        )
    return int(major_text), int(minor_text or 0)


def _parse_generated_at(raw: object) -> float | None:
    # YAML decodes an unquoted timestamp to a datetime (or a date) before we see it.
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=UTC)).timestamp()
    if isinstance(raw, date):
        return datetime(raw.year, raw.month, raw.day, tzinfo=UTC).timestamp()
    try:
        return parse_timestamp(raw, "generated_at")
    except TimestampError as exc:
        raise ConfigError("generated_at", exc.message) from None


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"expected a number, got {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(path, f"expected a finite number, got {value!r}")
    return number


def _optional_str(obj: Mapping[str, Any], name: str, path: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {_kind(value)}")
    return value


def _require_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping, got {_kind(value)}")
    return cast(Mapping[str, Any], value)


def _reject_unknown(obj: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    for name in obj:
        if name not in known:
            key = f"{path}.{name}" if path else str(name)
            raise ConfigError(key, f"unknown key (expected one of {', '.join(sorted(known))})")


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
