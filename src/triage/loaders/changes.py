"""Change records from a JSON Lines file (``changes_file``), into a ``ChangeIndex``.

One record per line, as DESIGN.md's change-record contract: ``id``, ``service``, ``kind``
(``deploy`` | ``config`` | ``feature_flag`` | ``infra``), ``at``, optional ``description``,
``author``. A bad line is reported and skipped: one malformed deploy record must not stop
triage from starting, and the other changes are still worth suspecting.
"""

from __future__ import annotations

import json
from pathlib import Path

from triage.core.changes import ChangeIndex, change_from_dict
from triage.errors import ConfigError, InputError

__all__ = ["load_changes"]


def load_changes(path: Path) -> tuple[ChangeIndex, list[str]]:
    """Read change records; returns the index and one ``line N: field: reason`` per bad line.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "changes.jsonl"
    >>> _ = f.write_text('{"id": "d1", "service": "cart", "kind": "deploy", '
    ...                  '"at": "2026-11-27T10:00:00Z"}\\n\\n{"id": "d2"}\\n')
    >>> index, problems = load_changes(f)
    >>> len(index), problems
    (1, ['line 3: service: missing'])
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("changes_file", f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("changes_file", f"{path}: not UTF-8 text: {exc.reason}") from None
    index = ChangeIndex()
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            record = change_from_dict(obj)
        except InputError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        if not index.add(record):
            problems.append(f"line {n}: id: duplicate change id {record.id!r} (first kept)")
    return index, problems
