"""Alertmanager matcher parsing and semantics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.matchers import Matcher, matcher_from_api, parse_matchers
from triage.errors import SchemaError


def m(name: str, op: str, value: str) -> Matcher:
    return Matcher(name, op, value)  # type: ignore[arg-type]


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('foo="bar"', [m("foo", "=", "bar")]),
        ('foo!="bar"', [m("foo", "!=", "bar")]),
        ('foo=~"ba.*"', [m("foo", "=~", "ba.*")]),
        ('foo!~"ba.*"', [m("foo", "!~", "ba.*")]),
        ("foo=bar", [m("foo", "=", "bar")]),
        ("env!=prod", [m("env", "!=", "prod")]),
        ("foo=~ba.*", [m("foo", "=~", "ba.*")]),
        ("foo!~ba.*", [m("foo", "!~", "ba.*")]),
        (
            '{alertname="Foo",severity=~"crit.*"}',
            [m("alertname", "=", "Foo"), m("severity", "=~", "crit.*")],
        ),
        (
            ' { alertname = "Foo" , env != prod } ',
            [m("alertname", "=", "Foo"), m("env", "!=", "prod")],
        ),
        ("a=b,c=d", [m("a", "=", "b"), m("c", "=", "d")]),
        ("{a=b,}", [m("a", "=", "b")]),  # trailing comma, as Alertmanager accepts
        ('foo=""', [m("foo", "=", "")]),
        ("foo=", [m("foo", "=", "")]),
        ("foo=,bar=x", [m("foo", "=", ""), m("bar", "=", "x")]),
        ("foo=bar baz", [m("foo", "=", "bar baz")]),  # classic parser keeps inner spaces
        ('foo="a,b}c"', [m("foo", "=", "a,b}c")]),
        (r'foo="say \"hi\""', [m("foo", "=", 'say "hi"')]),
        (r'foo="back\\slash"', [m("foo", "=", "back\\slash")]),
        (r'foo="two\nlines"', [m("foo", "=", "two\nlines")]),
        (r'ip=~"10\.0\..*"', [m("ip", "=~", r"10\.0\..*")]),  # unknown escapes stay literal
        ('"service.name"="api"', [m("service.name", "=", "api")]),  # UTF-8 name, quoted
        ("a:b_c=x", [m("a:b_c", "=", "x")]),
        ("foo=a=b", [m("foo", "=", "a=b")]),
        ("", []),
        ("  ", []),
        ("{}", []),
    ],
)
def test_parse(text: str, expected: list[Matcher]) -> None:
    assert list(parse_matchers(text)) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("foo", "expected an operator"),
        ("foo~bar", "expected an operator"),
        ("=bar", "expected a label name"),
        ('foo="bar', "unterminated quoted string"),
        ("{foo=bar", "missing closing '}'"),
        ("foo=bar}", "without opening"),
        ("{foo=bar} x", "after closing"),
        ('foo="a" bar="b"', "expected ','"),
        ("a=b,,c=d", "expected a label name"),
        ('foo=ab"c"', "quote the value"),
        ("foo=~a{2}", "quote the value"),
        ('""="x"', "empty label name"),
    ],
)
def test_parse_errors_name_text_and_position(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="position") as info:
        parse_matchers(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_parse_error_position_points_at_problem() -> None:
    with pytest.raises(ValueError, match=r"expected an operator .* at position 8 "):
        parse_matchers('a="b", c~d')
    with pytest.raises(ValueError, match="position 4 "):
        parse_matchers('a=b,"unterminated')


def test_invalid_regex_names_matcher() -> None:
    with pytest.raises(ValueError, match=r'invalid regex.*job=~"\(unclosed"'):
        parse_matchers('{env="prod", job=~"(unclosed"}')
    with pytest.raises(ValueError, match="invalid regex"):
        Matcher("job", "!~", "[")


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="empty label name"):
        Matcher("", "=", "x")
    with pytest.raises(ValueError, match="unknown operator"):
        Matcher("a", "==", "x")  # type: ignore[arg-type]


# --- semantics -----------------------------------------------------------------------------


def test_regex_is_anchored() -> None:
    (crit,) = parse_matchers('severity=~"crit"')
    assert crit.matches({"severity": "crit"})
    assert not crit.matches({"severity": "critical"})
    assert not crit.matches({"severity": "supercrit"})
    (not_crit,) = parse_matchers('severity!~"crit"')
    assert not_crit.matches({"severity": "critical"})
    # '$' in Python also matches before a trailing newline; fullmatch must not.
    assert not crit.matches({"severity": "crit\n"})


def test_regex_alternation_is_grouped() -> None:
    # Without the (?:...) group, "a|b" anchored as ^a|b$ would match "ax".
    (ab,) = parse_matchers('x=~"a|b"')
    assert not ab.matches({"x": "ax"})
    assert ab.matches({"x": "b"})


def test_missing_label_is_empty_string() -> None:
    eq_empty, ne_empty = Matcher("foo", "=", ""), Matcher("foo", "!=", "")
    assert eq_empty.matches({}) and eq_empty.matches({"foo": ""})
    assert not eq_empty.matches({"foo": "x"})
    assert not ne_empty.matches({}) and ne_empty.matches({"foo": "x"})
    assert Matcher("foo", "!=", "bar").matches({})
    assert not Matcher("foo", "=", "bar").matches({})
    assert Matcher("foo", "=~", ".*").matches({})
    assert not Matcher("foo", "=~", ".+").matches({})
    assert Matcher("foo", "!~", ".+").matches({})
    assert Matcher("foo", "=~", "").matches_empty
    assert not Matcher("foo", "=~", ".+").matches_empty


def test_str() -> None:
    assert str(Matcher("a", "=", "b")) == 'a="b"'
    assert str(Matcher("a", "!~", 'q"\\\n')) == 'a!~"q\\"\\\\\\n"'
    assert str(Matcher("service.name", "=", "x")) == '"service.name"="x"'


def test_equality_and_hash_ignore_compiled_regex() -> None:
    assert Matcher("a", "=~", "b.*") == Matcher("a", "=~", "b.*")
    assert len({Matcher("a", "=~", "b.*"), Matcher("a", "=~", "b.*")}) == 1


_names = st.one_of(
    st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True),
    st.text(min_size=1, max_size=8),
)
_literal_values = st.text(max_size=12)


@settings(max_examples=200)
@given(name=_names, op=st.sampled_from(["=", "!="]), value=_literal_values)
def test_str_parse_round_trip(name: str, op: str, value: str) -> None:
    matcher = m(name, op, value)
    assert parse_matchers(str(matcher)) == (matcher,)
    assert parse_matchers("{" + str(matcher) + "," + str(matcher) + "}") == (matcher, matcher)


@settings(max_examples=200)
@given(name=_names, op=st.sampled_from(["=~", "!~"]), literal=_literal_values)
def test_regex_round_trip_and_escape_semantics(name: str, op: str, literal: str) -> None:
    import re

    matcher = m(name, op, re.escape(literal))
    assert parse_matchers(str(matcher)) == (matcher,)
    assert matcher.matches({name: literal}) is (op == "=~")


# --- Alertmanager API v2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"name": "a", "value": "b", "isRegex": False}, m("a", "=", "b")),
        ({"name": "a", "value": "b", "isRegex": False, "isEqual": True}, m("a", "=", "b")),
        ({"name": "a", "value": "b", "isRegex": False, "isEqual": False}, m("a", "!=", "b")),
        ({"name": "a", "value": "b.*", "isRegex": True}, m("a", "=~", "b.*")),
        ({"name": "a", "value": "b.*", "isRegex": True, "isEqual": False}, m("a", "!~", "b.*")),
        ({"name": "a", "value": "b", "isRegex": False, "isEqual": None}, m("a", "=", "b")),
    ],
)
def test_matcher_from_api(obj: dict[str, object], expected: Matcher) -> None:
    assert matcher_from_api(obj) == expected


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"value": "b", "isRegex": False}, "name"),
        ({"name": "", "value": "b", "isRegex": False}, "name"),
        ({"name": "a", "isRegex": False}, "value"),
        ({"name": "a", "value": 3, "isRegex": False}, "value"),
        ({"name": "a", "value": "b"}, "isRegex"),
        ({"name": "a", "value": "b", "isRegex": "yes"}, "isRegex"),
        ({"name": "a", "value": "b", "isRegex": False, "isEqual": 1}, "isEqual"),
        ({"name": "a", "value": "(", "isRegex": True}, "value"),
    ],
)
def test_matcher_from_api_errors(obj: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaError) as info:
        matcher_from_api(obj)
    assert info.value.field == field
