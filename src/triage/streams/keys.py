"""The Kafka key of a message for ``alerts.raw``: the fingerprint of its (first) alert.

Stage 1 keeps each alert's dedup and flap state on one partition, its owner: the partition
the producer's default partitioner gives the alert's fingerprint (see
``triage.streams.stages``). A message keyed by its alert's fingerprint lands on the owner
directly; a payload with several alerts lands on the first one's owner, which forwards the
others to theirs. No Kafka here: ``triage serve`` (Kafka mode) and ``triage produce`` use it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from triage.core import normalize as normalizers
from triage.core.fingerprint import Fingerprinter
from triage.core.pipeline import Pipeline
from triage.core.types import Alert
from triage.errors import InputError
from triage.streams.codec import forward_record

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


def split_payload(message: bytes, reader: Pipeline) -> list[tuple[bytes | None, bytes]]:
    """``message`` (a payload for ``alerts.raw``, usually enveloped with its receive time) as
    the (key, value) messages to publish: one per alert, keyed by its fingerprint, when it
    holds several alerts (a Prometheus API v2 post, an Alertmanager webhook group). Each
    lands on its owner partition, in the order it was received there, and stage 1 never
    forwards: forwarded alerts reach their owner after what it read meanwhile, so its dedup
    would see an alert's history out of order on several partitions (issue 12). The parts
    are stage 1's forward records (``forward_record``), read and fingerprinted here by
    ``reader`` (the pipeline's fingerprinter and intake limits: future timestamps are
    bounded at the door), and name the message they came from, so stage 2 still observes
    them together. A message with one alert, none (a silence, a change record) or a bad
    one is published whole, keyed by its first alert's fingerprint (or unkeyed).

    >>> parts = split_payload(b'[{"alertname": "A", "at": 5}, {"alertname": "B", "at": 5}]',
    ...                       Pipeline())
    >>> [key for key, _ in parts] == [partition_key({"alertname": n}) for n in "AB"]
    True
    >>> split_payload(b'{"alertname": "A", "at": 5}', Pipeline())[0][0] == partition_key(
    ...     {"alertname": "A"})
    True
    """
    read = reader.read(message)
    items = read.items
    if items is None or len(items) < 2 or not all(isinstance(a, Alert) for a in items):
        first = next((a for a in items or () if isinstance(a, Alert)), None)
        return [(first.fingerprint.encode() if first is not None else None, message)]
    t = reader.clock(items, read.now)
    # one id for the message, so stage 2 groups its alerts (as ``triage run`` does a line)
    ident = int.from_bytes(hashlib.blake2b(message, digest_size=7).digest(), "big")
    src = [-1, ident]
    return [(a.fingerprint.encode(), forward_record(a, t, src))
            for a in items if isinstance(a, Alert)]
