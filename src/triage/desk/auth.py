"""Who is calling the desk: bearer tokens, each with a name (the actor of every write made
with it) and a role, ranked viewer < responder < admin. Used by the API and the console."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

ROLE_RANK = {"viewer": 0, "responder": 1, "admin": 2}


@dataclass(frozen=True)
class Token:
    name: str  # the actor of every write made with it
    secret: str
    role: str


def find_token(tokens: Iterable[Token], given: str) -> Token | None:
    """The token whose secret is ``given`` (compared in constant time with every one, so
    the time taken does not tell which one nearly matched), else None.

    >>> find_token([Token("ana", "s3cret-s3cret-s3cret", "responder")], "s3cret-s3cret-s3cret").name
    'ana'
    >>> find_token([Token("ana", "s3cret-s3cret-s3cret", "responder")], "\\xff") is None
    True
    """
    wanted = given.strip().encode("utf-8", "surrogateescape")
    found = None
    for token in tokens:
        if wanted and hmac.compare_digest(token.secret.encode(), wanted):
            found = token
    return found


def allows(token: Token, need: str) -> bool:
    """Whether ``token``'s role ranks at least ``need``."""
    return ROLE_RANK[token.role] >= ROLE_RANK[need]
