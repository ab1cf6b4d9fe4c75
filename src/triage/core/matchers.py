"""Alertmanager-compatible label matchers.

A matcher is ``name op value`` with ``op`` one of ``=``, ``!=``, ``=~``, ``!~``. Semantics follow
Alertmanager exactly where it matters for silences:

* a label that is absent counts as the empty string, so ``foo=""`` matches alerts without
  ``foo`` and ``foo!=""`` requires it;
* regexes are anchored at both ends (Alertmanager compiles ``^(?:value)$``), so
  ``severity=~"crit"`` does not match ``critical``.

Regexes are Python ``re`` rather than Go RE2; the common subset (classes, alternation,
quantifiers, ``(?i)``) behaves the same.

>>> parse_matchers('{alertname="DiskFull",severity=~"crit.*"}')[1].matches({"severity": "critical"})
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from triage.errors import SchemaError

Op = Literal["=", "!=", "=~", "!~"]
OPS: Final[tuple[str, ...]] = get_args(Op)

# Names that Alertmanager's classic parser accepts unquoted; anything else is printed quoted
# (UTF-8 label names, accepted by Alertmanager >= 0.27).
_CLASSIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Characters that end an unquoted label name.
_NAME_STOP: Final = frozenset('{}=!~,"\'') | frozenset(" \t\r\n")
# Characters that end (or may not appear in) an unquoted value: ',' and '}' delimit, '{' and
# '"' would make the rest of the text ambiguous, so such values must be quoted.
_VALUE_STOP: Final = frozenset(',}{"')
# Two-character operators first, so "=~" is not read as "=" followed by a value "~...".
_OP_TOKENS: Final[tuple[Op, ...]] = ("=~", "!=", "!~", "=")
# (isRegex, isEqual) of the Alertmanager API v2 matcher object.
_API_OPS: Final[dict[tuple[bool, bool], Op]] = {
    (False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~",
}
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n"}


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; ``matches`` treats a missing label as ``""``.

    >>> m = Matcher("env", "!=", "prod")
    >>> m.matches({"env": "staging"}), m.matches({"env": "prod"}), str(m)
    (True, False, 'env!="prod"')
    """

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(
        init=False, default=None, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"matcher {self}: empty label name")
        if self.op not in OPS:
            raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: unknown operator "
                             f"{self.op!r}, expected one of {', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                # fullmatch gives Alertmanager's ^(?:value)$ anchoring without the Python
                # quirk of '$' also matching before a trailing newline.
                regex = re.compile(f"(?:{self.value})")
            except re.error as exc:
                raise ValueError(f"matcher {self}: invalid regex: {exc}") from None
            object.__setattr__(self, "_regex", regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (missing label = ``""``).

        >>> Matcher("foo", "=", "").matches({})
        True
        >>> Matcher("sev", "=~", "crit").matches({"sev": "critical"})
        False
        """
        actual = labels.get(self.name, "")
        op = self.op
        if op == "=":
            return actual == self.value
        if op == "!=":
            return actual != self.value
        assert self._regex is not None  # set in __post_init__ for both regex ops
        hit = self._regex.fullmatch(actual) is not None
        return hit if op == "=~" else not hit

    @property
    def matches_empty(self) -> bool:
        """Whether this matcher matches an alert that lacks the label entirely.

        >>> Matcher("foo", "!=", "").matches_empty
        False
        """
        return self.matches({})

    def __str__(self) -> str:
        name = self.name if _CLASSIC_NAME.fullmatch(self.name) else _quote(self.name)
        return f"{name}{self.op}{_quote(self.value)}"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _Parser:
    """A hand-written scanner: matcher text is short, and errors must point at a position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str, pos: int | None = None) -> ValueError:
        at = self.pos if pos is None else pos
        near = self.text[at : at + 20]
        where = f"near {near!r}" if near else "at end"
        return ValueError(f"{what} at position {at} ({where}) in matchers {self.text!r}")

    def skip_ws(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def quoted(self) -> str:
        start = self.pos
        text = self.text
        pos = start + 1
        out: list[str] = []
        while pos < len(text):
            char = text[pos]
            if char == '"':
                self.pos = pos + 1
                return "".join(out)
            if char == "\\" and pos + 1 < len(text):
                nxt = text[pos + 1]
                # Unknown escapes stay literal, as in Alertmanager's classic parser, so
                # regexes written as "10\.0\..*" keep working.
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                pos += 2
                continue
            out.append(char)
            pos += 1
        raise self.fail("unterminated quoted string", start)

    def name(self) -> str:
        if self.peek() == '"':
            start = self.pos
            name = self.quoted()
            if not name:
                raise self.fail("empty label name", start)
            return name
        start = pos = self.pos
        text = self.text
        while pos < len(text) and text[pos] not in _NAME_STOP:
            pos += 1
        if pos == start:
            raise self.fail("expected a label name")
        self.pos = pos
        return text[start:pos]

    def op(self) -> Op:
        text, pos = self.text, self.pos
        for op in _OP_TOKENS:
            if text.startswith(op, pos):
                self.pos = pos + len(op)
                return op
        raise self.fail("expected an operator (=, !=, =~, !~)")

    def value(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        start = pos = self.pos
        text = self.text
        while pos < len(text) and text[pos] not in _VALUE_STOP:
            pos += 1
        if pos < len(text) and text[pos] in '{"':
            raise self.fail(f"unexpected {text[pos]!r} in unquoted value; quote the value", pos)
        self.pos = pos
        return text[start:pos].strip()

    def parse(self) -> tuple[Matcher, ...]:
        self.skip_ws()
        braced = self.peek() == "{"
        if braced:
            self.pos += 1
        out: list[Matcher] = []
        while True:
            self.skip_ws()
            char = self.peek()
            if not char:
                if braced:
                    raise self.fail("missing closing '}'")
                return tuple(out)
            if char == "}":
                if not braced:
                    raise self.fail("unexpected '}' without opening '{'")
                self.pos += 1
                self.skip_ws()
                if self.peek():
                    raise self.fail("unexpected text after closing '}'")
                return tuple(out)
            out.append(self.matcher())
            self.skip_ws()
            char = self.peek()
            if char == ",":
                self.pos += 1  # a trailing comma is accepted, as Alertmanager does
            elif char and char != "}":
                raise self.fail("expected ',' between matchers")

    def matcher(self) -> Matcher:
        start = self.pos
        name = self.name()
        self.skip_ws()
        op = self.op()
        self.skip_ws()
        value = self.value()
        try:
            return Matcher(name, op, value)
        except ValueError as exc:
            raise self.fail(str(exc), start) from None


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Parse Alertmanager matcher syntax (``amtool`` / ``alertmanager.yml`` ``matchers:``).

    Accepts optional surrounding braces, comma-separated matchers, quoted values (escapes
    ``\\"``, ``\\\\``, ``\\n``) or unquoted ones. An empty string (or ``{}``) gives no
    matchers. Errors are ``ValueError`` naming the position and the text.

    >>> [str(m) for m in parse_matchers('{alertname="Foo", severity=~"crit.*"}')]
    ['alertname="Foo"', 'severity=~"crit.*"']
    >>> parse_matchers("env!=prod")
    (Matcher(name='env', op='!=', value='prod'),)
    """
    return _Parser(text).parse()


def matcher_from_api(obj: Mapping[str, object]) -> Matcher:
    """Build a matcher from Alertmanager API v2 JSON (``name``, ``value``, ``isRegex``,
    ``isEqual`` defaulting to true). Bad shapes raise ``SchemaError`` naming the member.

    >>> str(matcher_from_api({"name": "env", "value": "prod", "isRegex": False, "isEqual": False}))
    'env!="prod"'
    """
    if not isinstance(obj, Mapping):
        raise SchemaError("", f"expected a matcher object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError("name", "expected a non-empty string")
    value = obj.get("value")
    if not isinstance(value, str):
        raise SchemaError("value", "expected a string")
    is_regex = obj.get("isRegex")
    if not isinstance(is_regex, bool):
        raise SchemaError("isRegex", "expected true or false")
    is_equal = obj.get("isEqual", True)
    if is_equal is None:  # some clients send null for "not set"
        is_equal = True
    if not isinstance(is_equal, bool):
        raise SchemaError("isEqual", "expected true or false")
    try:
        return Matcher(name, _API_OPS[is_regex, is_equal], value)
    except ValueError as exc:
        raise SchemaError("value", str(exc)) from None
