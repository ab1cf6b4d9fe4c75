"""The faust app, built from ``Settings`` (nothing global, nothing read from the
environment): broker URL, SASL/TLS credentials, in-memory table store with changelog topics
in Kafka (rocksdb is not required), raw bytes on every topic (``alerts.raw`` values are
arbitrary payloads; triage encodes JSON itself with orjson).

>>> from triage.app.settings import Settings
>>> app = build_app(Settings())
>>> app.conf.id, str(app.conf.broker[0])
('triage', 'kafka://127.0.0.1:9092')
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from triage.app.settings import KafkaSettings, Settings

# faust's app/table config that is not a user setting: chosen for this workload.
_DEFAULTS: dict[str, Any] = {
    "store": "memory://",
    "key_serializer": "raw",
    "value_serializer": "raw",
    "web_enabled": False,  # /metrics is served by triage's own exporter, not faust's web
    "autodiscover": False,
    "consumer_auto_offset_reset": "earliest",  # a new group reads what was published first
    "producer_acks": -1,  # all in-sync replicas: an acked output survives a broker loss
    # Commit often: after a crash, at most this much input is replayed (and recognised as
    # repeats, see triage.streams.stages).
    "broker_commit_interval": 1.0,
    # The in-memory store rebuilds from the changelog on assignment; standbys would keep a
    # second full copy of other workers' state in RAM for a faster failover.
    "table_standby_replicas": 0,
    "stream_wait_empty": False,
}


def broker_url(kafka: KafkaSettings) -> str:
    """faust's broker URL for ``kafka.bootstrap`` (``host:port[,host:port]``).

    >>> broker_url(KafkaSettings(bootstrap="a:9092, b:9093"))
    'kafka://a:9092;kafka://b:9093'
    """
    hosts = [h.strip() for h in kafka.bootstrap.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """A TLS context for ``SSL`` / ``SASL_SSL``, else None."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    return context


def credentials(kafka: KafkaSettings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """faust credentials for the configured security protocol (None for PLAINTEXT)."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.sasl_username,
                                     password=kafka.sasl_password,
                                     mechanism=kafka.sasl_mechanism or "PLAIN",
                                     ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The same connection for a plain aiokafka client (the change feed, benchmarks)."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in kafka.bootstrap.split(",") if h.strip()],
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        cfg.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                   sasl_plain_password=kafka.sasl_password)
    context = ssl_context(kafka)
    if context is not None:
        cfg["ssl_context"] = context
    return cfg


def build_app(settings: Settings, *, session_timeout: float = 10.0, **overrides: Any
              ) -> faust.App:
    """The faust app for ``settings`` (agents are added by ``triage.streams.agents``).

    ``session_timeout`` is how long a silent worker keeps its partitions: a killed worker's
    partitions move to the others after it (Kafka's default, 45 s, is a long outage for
    paging).
    """
    kafka = settings.kafka
    conf: dict[str, Any] = dict(_DEFAULTS)
    conf.update(
        broker=broker_url(kafka),
        broker_credentials=credentials(kafka),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
    )
    conf.update(overrides)
    return faust.App(kafka.app_id, **conf)
