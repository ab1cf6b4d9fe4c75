"""The Kafka key of a message for ``alerts.raw``: the fingerprint of its (first) alert.

Stage 1 keeps each alert's dedup and flap state on one partition, its owner: the partition
the producer's default partitioner gives the alert's fingerprint (see
``triage.streams.stages``). A message keyed by its alert's fingerprint lands on the owner
directly; a payload with several alerts lands on the first one's owner, which forwards the
others to theirs. No Kafka here: ``triage serve`` (Kafka mode) and ``triage produce`` use it.
"""

from __future__ import annotations

from typing import Any

from triage.core import normalize as normalizers
from triage.core.fingerprint import Fingerprinter
from triage.core.types import Alert
from triage.errors import InputError

_PLAIN = Fingerprinter()


def partition_key(payload: Any, fingerprinter: Fingerprinter | None = None) -> bytes | None:
    """The fingerprint of the payload's first alert, computed as the pipeline computes it
    (``fingerprinter``: the configured one, with per-source policies); None when the payload
    holds no alert (a silence, a change record) or is in no known format.

    >>> partition_key({"alertname": "Up", "service": "db"})
    b'd5a446198cc7bc62'
    >>> partition_key({"matchers": [], "createdBy": "ops"}) is None
    True
    """
    if isinstance(payload, dict) and "payload" in payload and "received_at" in payload:
        payload = payload["payload"]  # an envelope (as Pipeline.read unwraps it)
    try:
        items = normalizers.normalize(payload)
    except InputError:
        return None
    first = next((a for a in items if isinstance(a, Alert)), None)
    if first is None:
        return None
    return (fingerprinter or _PLAIN).fingerprint(first.source, first.labels).encode()
