"""Settings: one YAML file, every key also settable as a ``TRIAGE_...`` environment variable
(nested keys joined with ``__``, e.g. ``TRIAGE_DEDUP__RESOLVE_TIMEOUT=10m``; the environment
wins over the file). Built once at the entry point, frozen, passed down; validated at start-up
with errors that name the key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from triage.core.incidents.engine import CorrelationPolicy
from triage.core.timeutil import parse_duration, parse_timestamp
from triage.errors import ConfigError

Duration = Annotated[float, BeforeValidator(lambda v: parse_duration(v)), Field(ge=0)]


def _epoch(value: object) -> float:
    # YAML turns unquoted ISO times into datetimes; strings and epoch numbers also work.
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError("a time is required")
    return parsed


Timestamp = Annotated[float, BeforeValidator(_epoch)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Section):
    """Per-source fingerprint identity and timeout (keys are normalizer names)."""

    identifying_labels: list[str] | None = None
    ignore_labels: list[str] = []
    resolve_timeout: Duration | None = None


class IntakeSettings(_Section):
    max_payload_bytes: int = Field(1 << 20, gt=0)
    sweep_interval: Duration = 15.0
    # An alert stamped further than this after it was received is clamped to the receive
    # time, or dead-lettered: one bad clock must not move event time ahead for good.
    max_future_skew: Duration | None = 300.0
    future_timestamps: Literal["clamp", "dead-letter"] = "clamp"
    # Labels never part of the identity, for every source (e.g. an HA Prometheus pair's
    # external `replica` label), so both replicas' alerts are one alert.
    ignore_labels: list[str] = []
    sources: dict[str, SourceSettings] = {}


class DedupSettings(_Section):
    resolve_timeout: Duration = 300.0
    notification_timeout: Duration = 86400.0
    retention: Duration = 3600.0


class FlapSettings(_Section):
    enabled: bool = True
    max_changes: int = Field(4, ge=1)
    window: Duration = 600.0
    stable_after: Duration = 600.0


class SilenceSettings(_Section):
    """A silence (or, with ``repeat_every``, a recurring maintenance window)."""

    id: str | None = None
    matchers: list[str] | str
    starts_at: Timestamp
    ends_at: Timestamp
    created_by: str = ""
    comment: str = ""
    repeat_every: Duration | None = None


class SilencesSettings(_Section):
    retention: Duration = 86400.0
    file: Path | None = None  # Alertmanager silences JSON (GET /api/v2/silences)


class NoiseSettings(_Section):
    """The stage-1 noise gate: off unless ``registry`` names a model registry directory."""

    registry: Path | None = None
    # Suppress at or above this noise probability. None: the promoted model's recommended
    # threshold (chosen at training to keep 99% of actionable alerts), else 0.95.
    threshold: float | None = Field(None, gt=0, le=1)
    check_every: Duration = 60.0  # event-time seconds between looks for a newly promoted model


class TopologySettings(_Section):
    """Where the service graph and catalog come from (``triage.loaders`` loaders)."""

    file: Path | None = None  # services YAML, GraphML (.graphml) or Kubernetes manifests
    format: str | None = None  # services | graphml | kubernetes; default: from the file
    catalog: Path | None = None  # catalog YAML: team, tier, users, business_service, runbook
    # Label keys that name an alert's service, tried in order.
    service_labels: list[str] = ["service", "app.kubernetes.io/name", "app", "k8s_app",
                                 "job", "container"]
    service_aliases: dict[str, str] = {}


_POLICY = CorrelationPolicy()  # the defaults live with the engine, chosen on the tuning set


class CorrelationSettings(_Section):
    """Grouping, paging and recurrence (README, "How incidents are formed"). Defaults are the
    engine's (``triage.core.incidents.CorrelationPolicy``)."""

    window: Duration = _POLICY.window  # a new service joins this soon after the latest onset
    horizon: Duration = _POLICY.horizon  # ... and of the first onset of its episode
    hops: int = Field(_POLICY.hops, ge=1)  # how far on the graph a related service may be
    page_delay: Duration = _POLICY.page_delay  # a new incident pages if still firing after this
    lone_delay: Duration = _POLICY.lone_delay  # ... one alert alone must fire this long
    lone_critical_delay: Duration = _POLICY.lone_critical_delay  # ... a critical one
    page_unknown_services: bool = _POLICY.page_unknown_services  # not in the topology
    update_interval: Duration = _POLICY.update_interval  # re-decide at most this often
    merge: bool = _POLICY.merge  # incidents one new alert explains as one failure merge
    split: bool = _POLICY.split  # groups of an incident no relation joins any more leave it
    attach_weak: bool = _POLICY.attach_weak  # info/resource trends join as context
    quiet_period: Duration = _POLICY.quiet_period  # no evidence firing this long: resolved
    recurrence_window: Duration = _POLICY.recurrence_window  # firing again: reopens, no page
    change_lookback: Duration = _POLICY.change_lookback
    change_hops: int = Field(_POLICY.change_hops, ge=0)  # suspects this many hops from root
    max_suspects: int = Field(_POLICY.max_suspects, ge=0)
    # Extra alert-name patterns per kind (crash, saturation, dependency, resource, latency,
    # errors, timeout), tried before the built-in vocabulary; and the label that names a kind.
    kinds: dict[str, list[str]] = {}
    kind_label: str = "signal"
    # Deprecated (before recurrence_window): `after_resolve: new` turns recurrence off;
    # `reopen_within` sets the recurrence window.
    after_resolve: str | None = Field(None, pattern="^(new|reopen)$")
    reopen_within: Duration | None = None


class KafkaSettings(_Section):
    """The streaming runtime (``triage worker``, ``triage serve`` in Kafka mode)."""

    bootstrap: str = "127.0.0.1:9092"  # TRIAGE_KAFKA__BOOTSTRAP
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    app_id: str = "triage"  # faust app id: consumer group and changelog topic prefix
    partitions: int = Field(6, ge=1)
    replication: int = Field(1, ge=1)
    retention: Duration = 7 * 86400.0
    topics: dict[str, str] = {
        "raw": "alerts.raw", "keyed": "alerts.keyed", "changes": "changes",
        "feedback": "feedback", "incidents": "incidents", "deadletter": "alerts.deadletter",
        "lifecycle": "incidents.lifecycle",
    }
    # wall seconds a stage-1 partition may go unheard before stage 2 stops holding its clock
    # for it (a worker gone; a live one beats every second): docs/streaming.md, event time
    idle_timeout: Duration = 30.0


class StateSettings(_Section):
    """The ``--state`` database of ``triage run`` and ``triage serve`` (docs/durability.md)."""

    # power: synchronous=FULL and fsynced outputs, survives power loss; process: survives a
    # killed process (kill -9, OOM, crash), not a power cut, at a fraction of the cost
    durability: Literal["power", "process"] = "power"


class HttpSettings(_Section):
    """``triage serve``: the Alertmanager-compatible receiver."""

    host: str = "127.0.0.1"
    port: int = Field(9094, ge=0, le=65535)
    # bearer token; TRIAGE_HTTP__TOKEN. None: no auth. An empty or blank token is an error,
    # not "no auth" and not "anyone sending `Bearer` with nothing after it".
    token: str | None = Field(None, min_length=1, pattern=r"^\S+$")
    # silence writes (POST /api/v2/silences, DELETE /api/v2/silence/{id}) need this one; the
    # senders' token only reads. Neither token set: writes from loopback clients only.
    # TRIAGE_HTTP__ADMIN_TOKEN
    admin_token: str | None = Field(None, min_length=1, pattern=r"^\S+$")
    # silence objects POSTed to the alert endpoints: refused (403, dead-lettered) unless
    # the stream is trusted here (whatever token the request carries: silences have their
    # own endpoint). `triage run` and the Kafka workers read the operator's own input and
    # always take them.
    stream_silences: bool = False
    max_body_bytes: int = Field(10 << 20, gt=0)
    mode: str = Field("embedded", pattern="^(embedded|kafka)$")
    # A connection must send a whole request's headers within header_timeout of opening (or
    # of its last answer: the keep-alive idle limit), and its body within body_timeout; at
    # most max_connections are open at once (more are closed as they come): slow or idle
    # clients cannot hold the file descriptors real senders need.
    header_timeout: Duration = Field(15.0, gt=0)
    body_timeout: Duration = Field(30.0, gt=0)
    max_connections: int = Field(512, gt=0)


class FeedbackSettings(_Section):
    """Responders' feedback (docs/learning.md): where ``triage serve`` (embedded) and
    ``triage feedback ingest`` append it, and the ingest's consumer group."""

    store: Path | None = None  # SQLite history; TRIAGE_FEEDBACK__STORE. None: serve refuses
    group: str | None = None  # consumer group of `feedback ingest`; None: <kafka.app_id>-feedback


class DeskToken(_Section):
    """One bearer token of the desk's API: its name is the actor its writes record."""

    name: str = Field(min_length=1, max_length=128)
    token: SecretStr = Field(min_length=16)  # never printed, not even in a config error
    role: Literal["viewer", "responder", "admin"] = "viewer"


class NotifyRoute(_Section):
    """A webhook receiver the desk tells of incidents triggered, status changes and status
    updates (``triage.desk.notify``); the filters are empty for "every one"."""

    name: str = Field(min_length=1, max_length=128)
    url: str = Field(pattern=r"^https?://")
    format: Literal["json", "slack", "alertmanager", "change"] = "json"
    priorities: list[Literal["P1", "P2", "P3", "P4"]] = []
    teams: list[str] = []
    audiences: list[Literal["responders", "internal", "executive", "customers"]] = []
    kinds: list[Literal["triggered", "status", "update", "change", "access"]] = [
        "triggered", "status", "update"]
    token: SecretStr | None = None  # sent as a bearer token (e.g. to triage serve)


class DeskSettings(_Section):
    """The incident desk (``triage desk``, ``triage incident``): its database, the
    consumer group it reads the ``incidents`` topic in, and its API's tokens."""

    # a SQLAlchemy URL: sqlite:///desk.db (embedded, the default) or
    # postgresql+psycopg://user@host/db; TRIAGE_DESK__URL
    url: str = "sqlite:///desk.db"
    group: str | None = None  # None: <kafka.app_id>-desk
    tokens: list[DeskToken] = []  # TRIAGE_DESK__TOKENS='[{"name": ..., "token": ...}]'
    host: str = "127.0.0.1"
    port: int = Field(9095, ge=0, le=65535)
    notify: list[NotifyRoute] = []
    # the command line goes through this API when set (TRIAGE_DESK__API_URL), as the token
    # TRIAGE_DESK__API_TOKEN names; else it opens the database
    api_url: str | None = Field(None, pattern=r"^https?://")
    api_token: SecretStr | None = None
    # publish every change to an incident on the lifecycle topic (triage desk publish)
    lifecycle: bool = False
    # where mitigations' PromQL success criteria are checked (None: only manual checks)
    prometheus_url: str | None = Field(None, pattern=r"^https?://")


class Settings(BaseSettings):
    """All of triage's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="TRIAGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    intake: IntakeSettings = IntakeSettings()
    dedup: DedupSettings = DedupSettings()
    flap: FlapSettings = FlapSettings()
    silences: list[SilenceSettings] = []
    silence_store: SilencesSettings = SilencesSettings()
    maintenance: list[SilenceSettings] = []
    thresholds_file: Path | None = None
    noise: NoiseSettings = NoiseSettings()
    topology: TopologySettings = TopologySettings()
    changes_file: Path | None = None  # change records, JSON Lines
    correlation: CorrelationSettings = CorrelationSettings()
    # Validated by their own parsers (triage.core.incidents.priority / oncall / warroom), which name
    # the key of any error.
    priority: dict[str, Any] = {}
    war_room: dict[str, Any] = {}
    oncall: dict[str, Any] = {}
    oncall_file: Path | None = None  # the same `oncall` section, in a file of its own
    kafka: KafkaSettings = KafkaSettings()
    http: HttpSettings = HttpSettings()
    state: StateSettings = StateSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    desk: DeskSettings = DeskSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed in as init kwargs).
        return env_settings, init_settings


def load_settings(path: Path | None) -> Settings:
    """Read and validate the YAML config at ``path`` (``None``: defaults and environment).

    Relative paths inside the file are resolved against the file's folder.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(str(path), "the top level must be a mapping of settings")
        data = _resolve_paths(loaded, path.parent)
    try:
        return Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        key = key.lstrip(".") or "(root)"
        where = f"{path}: " if path else ""
        if _SECRET.search(key):  # never echo a secret, right or wrong, into a log
            got = f"a {type(err.get('input')).__name__}"
        else:
            got = repr(err.get("input"))
        raise ConfigError(key, f"{where}{err['msg']} (got {got})") from None


_SECRET = re.compile(r"(token|password|secret|key)$", re.IGNORECASE)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(data)
    for key in ("thresholds_file", "changes_file", "oncall_file"):
        if isinstance(out.get(key), str):
            out[key] = str((base / out[key]).resolve())
    noise = out.get("noise")
    if isinstance(noise, dict) and isinstance(noise.get("registry"), str):
        out["noise"] = dict(noise, registry=str((base / noise["registry"]).resolve()))
    topo = out.get("topology")
    if isinstance(topo, dict):
        out["topology"] = {k: str((base / v).resolve()) if k in ("file", "catalog")
                           and isinstance(v, str) else v for k, v in topo.items()}
    feedback = out.get("feedback")
    if isinstance(feedback, dict) and isinstance(feedback.get("store"), str):
        out["feedback"] = dict(feedback, store=str((base / feedback["store"]).resolve()))
    store = out.get("silence_store")
    if isinstance(store, dict) and isinstance(store.get("file"), str):
        out["silence_store"] = dict(store, file=str((base / store["file"]).resolve()))
    return out
