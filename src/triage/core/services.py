"""Which service an alert is about, from its labels.

Sources disagree on where the service name lives (``service``, ``app``,
``app.kubernetes.io/name``, ``job``, ``container`` ...), so the mapper tries configured label
keys in order and takes the first non-empty one, then maps it through exact-match aliases
(``cart`` → ``cartservice``) onto the topology's node names. It runs once per alert, so it is
a few dict lookups and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ServiceMapper:
    """Label keys tried in order, then aliases (exact match).

    >>> m = ServiceMapper(("service", "app", "job"), {"cart": "cartservice"})
    >>> m.service_of({"app": "cart", "job": "kubernetes-pods"})
    'cartservice'
    >>> m.service_of({"service": "", "job": "node-exporter"})
    'node-exporter'
    >>> m.service_of({"alertname": "Watchdog"}) is None
    True
    """

    label_keys: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Copy so that a caller mutating its dict (or passing a list of keys) cannot change a
        # frozen mapper behind the pipeline's back.
        object.__setattr__(self, "label_keys", tuple(self.label_keys))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))

    @classmethod
    def create(cls, label_keys: Iterable[str], aliases: Mapping[str, str] | None = None
               ) -> ServiceMapper:
        """Build from any iterable of keys (e.g. a settings list).

        >>> ServiceMapper.create(["app"]).service_of({"app": "frontend"})
        'frontend'
        """
        return cls(tuple(label_keys), aliases or {})

    def service_of(self, labels: Mapping[str, str]) -> str | None:
        """The service named by the first non-empty label among ``label_keys``, aliased."""
        for key in self.label_keys:
            value = labels.get(key)
            if value:
                return self.aliases.get(value, value)
        return None
