"""Topology loaders: the service dependency graph and the service catalog, from files.

Three graph formats, one result (a ``triage.core.topology.Topology``) holding two kinds of
connection:

* *dependencies*, directed: edge A→B means A calls / depends on B (``soft`` when A degrades
  gracefully without B: it still correlates, but carries no user impact);
* *links*, undirected: physical or peer links with no known direction (two switches on one
  cable, a database primary and its replica). Where there is no direction, the incident stage
  lets time decide the root: the side that failed first.

A link between two services that already have a dependency between them says nothing more
(the direction is known) and is dropped; self-links and self-loops are errors in YAML and
ignored in GraphML.

* services YAML, written by hand; links per service (``links: [peer, ...]``) or at the top
  level as ``[a, b]`` pairs, and a service named only in a link is a node::

      services:
        frontend: {depends_on: [cartservice], soft_depends_on: [adservice], users: 50000}
        cartservice: {depends_on: [redis-cart], team: cart, tier: 1}
        redis-cart: {links: [redis-cart-replica]}
      links:
        - [switch-a, switch-b]
      business_services:
        online-shop: {tier: 1}

* GraphML (``networkx``'s reader), node attributes ``team``, ``tier``, ``users``,
  ``business_service``, ``runbook``. In a directed graph (``edgedefault="directed"``) an edge
  is a dependency, soft if its boolean ``soft`` attribute is true, and an edge marked
  ``directed="false"`` is a link; in an undirected graph (``edgedefault="undirected"``) an
  edge is a link, and one marked ``directed="true"`` is a dependency::

      <graph edgedefault="directed">
        <edge source="web" target="db"/>                     <!-- web depends on db -->
        <edge source="db" target="db-replica" directed="false"/>   <!-- a link -->
      </graph>

* Kubernetes manifests: Deployments / StatefulSets / DaemonSets and the Services selecting
  them; dependencies come from ``*_ADDR`` / ``*_HOST`` / ``*_URL`` env values naming another
  service (``CART_SERVICE_ADDR: cartservice:7070``). What cannot be resolved is reported in a
  ``TopologyReport``, never fatal: a graph with one missing edge is still worth having.

A catalog YAML (``services: {name: {team, tier, users, business_service, runbook}}``) may be
laid over any of them; it keeps the dependencies and links. Invalid input raises
``ConfigError`` naming the key, with the file in the message, at start-up.
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from xml.etree.ElementTree import ParseError

import networkx as nx
import yaml
from networkx.readwrite.graphml import GraphMLReader

from triage.core.topology import TIERS, ServiceInfo, Topology
from triage.errors import ConfigError

if TYPE_CHECKING:
    from triage.app.settings import TopologySettings

__all__ = [
    "TopologyReport",
    "UnresolvedRef",
    "load_catalog",
    "load_graphml",
    "load_kubernetes",
    "load_services_yaml",
    "load_topology",
]

INFO_FIELDS: Final = ("team", "tier", "users", "business_service", "runbook")
GRAPH_FIELDS: Final = ("depends_on", "soft_depends_on", "links")  # per service, services YAML
FORMATS: Final = ("services", "graphml", "kubernetes")
WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
REF_SUFFIXES: Final = ("_ADDR", "_HOST", "_URL")

# name, name.namespace, name.namespace.svc, name.namespace.svc.cluster.local: the ways a pod
# addresses a Service. Anything else with a dot is a host outside the cluster.
_CLUSTER_HOST: Final = re.compile(
    r"(?P<name>[a-z0-9]([a-z0-9-]*[a-z0-9])?)"
    r"(\.(?P<ns>[a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.svc(\.[a-z0-9-]+)*)?)?"
)
_DNS_NAME: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_LOOPBACK: Final = frozenset({"localhost", "localhost.localdomain"})


# --- reading files ---------------------------------------------------------------------------


def _read_text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key, f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(key, f"{path}: not UTF-8 text: {exc.reason}") from None


def _yaml_documents(path: Path, key: str) -> list[Any]:
    text = _read_text(path, key)
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{path}: not valid YAML: {exc}") from None


def _yaml_mapping(path: Path, key: str) -> dict[Any, Any]:
    docs = _yaml_documents(path, key)
    if not docs:
        return {}
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise ConfigError(key, f"{path}: expected one YAML mapping at the top level")
    return docs[0]


# --- validation shared by the services YAML, GraphML and the catalog ---------------------------


def _int(value: Any, *, coerce: bool) -> int | None:
    # bool is an int in Python; `tier: true` is a typo, not tier 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if coerce:  # GraphML attributes are often declared as strings or doubles
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
    return None


def _info_fields(
    entry: Mapping[Any, Any], key: str, source: Path, *, allowed: Iterable[str], coerce: bool
) -> dict[str, Any]:
    """Validate the catalog fields of one service entry; returns only those given."""
    allowed = tuple(allowed)
    fields: dict[str, Any] = {}
    for name, value in entry.items():
        if name not in allowed:
            raise ConfigError(f"{key}.{name}",
                              f"{source}: unknown key; expected one of {', '.join(allowed)}")
        if value is None or name in GRAPH_FIELDS:
            continue
        if name == "tier":
            tier = _int(value, coerce=coerce)
            if tier not in TIERS:
                raise ConfigError(f"{key}.tier", f"{source}: expected a tier 1..4 "
                                  f"(1 = business critical), got {value!r}")
            fields["tier"] = tier
        elif name == "users":
            users = _int(value, coerce=coerce)
            if users is None or users < 0:
                raise ConfigError(f"{key}.users", f"{source}: expected an integer >= 0 "
                                  f"(users served directly), got {value!r}")
            fields["users"] = users
        else:
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{key}.{name}",
                                  f"{source}: expected a non-empty string, got {value!r}")
            fields[name] = value.strip()
    return fields


def _entries(data: Any, key: str, source: Path) -> Iterator[tuple[str, Mapping[Any, Any], str]]:
    """``(name, entry, key)`` of a ``{name: {...}}`` mapping; a null entry is an empty one."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"{source}: expected a mapping of name to settings")
    for name, entry in data.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.{name}", f"{source}: a name must be a non-empty string")
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}.{name}", f"{source}: expected a mapping, got {entry!r}")
        yield name, entry, f"{key}.{name}"


def _business_tiers(data: Any, source: Path) -> dict[str, int]:
    tiers: dict[str, int] = {}
    for name, entry, key in _entries(data, "business_services", source):
        fields = _info_fields(entry, key, source, allowed=("tier",), coerce=False)
        if "tier" in fields:
            tiers[name] = fields["tier"]
    return tiers


def _check_top_level(data: Mapping[Any, Any], source: Path, allowed: tuple[str, ...]) -> None:
    for name in data:
        if name not in allowed:
            raise ConfigError(str(name), f"{source}: unknown top-level key; "
                              f"expected any of {', '.join(allowed)}")


def _without_redundant_links(graph: nx.DiGraph, links: Iterable[tuple[str, str]]
                             ) -> list[tuple[str, str]]:
    """Links between services with no dependency either way (a dependency knows more)."""
    return [(a, b) for a, b in links if not graph.has_edge(a, b) and not graph.has_edge(b, a)]


# --- services YAML ---------------------------------------------------------------------------


def load_services_yaml(path: Path) -> Topology:
    """Read a services YAML file (``services: {name: {depends_on: [...], team, ...}}``, and
    undirected ``links``: per service ``links: [peer, ...]`` or top-level ``[a, b]`` pairs).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "services.yaml"
    >>> _ = f.write_text("services:\\n  web: {depends_on: [db], tier: 1, users: 10}\\n"
    ...                  "links:\\n  - [db, db-replica]\\n")
    >>> t = load_services_yaml(f)
    >>> sorted(t.graph.edges), t.info("web").tier, "db" in t, sorted(t.linked("db"))
    ([('web', 'db')], 1, True, ['db-replica'])
    """
    return _services_topology(_yaml_mapping(path, str(path)), path)


def _service_names(value: Any, key: str, source: Path, *, owner: str, relation: str
                   ) -> list[str]:
    """The service names listed under ``key`` of service ``owner`` (none of them itself)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, f"{source}: expected a list of service names, got {value!r}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}[{i}]", f"{source}: expected a service name, got {name!r}")
        if name == owner:
            raise ConfigError(f"{key}[{i}]", f"{source}: a service cannot {relation} itself")
    return value


def _top_level_links(data: Any, source: Path) -> list[tuple[str, str]]:
    """``links: [[a, b], ...]``: undirected links between two services."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError("links", f"{source}: expected a list of [service, service] pairs, "
                          f"got {data!r}")
    links: list[tuple[str, str]] = []
    for i, pair in enumerate(data):
        key = f"links[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(key, f"{source}: expected two service names [a, b], got {pair!r}")
        for name in pair:
            if not isinstance(name, str) or not name:
                raise ConfigError(key, f"{source}: expected two service names [a, b], "
                                  f"got {name!r} in {pair!r}")
        a, b = pair
        if a == b:
            raise ConfigError(key, f"{source}: a service cannot be linked to itself")
        links.append((a, b))
    return links


def _services_topology(data: Mapping[Any, Any], source: Path) -> Topology:
    _check_top_level(data, source, ("services", "business_services", "links"))
    if "services" not in data:
        raise ConfigError("services", f"{source}: missing; expected `services: {{name: ...}}`")
    graph = nx.DiGraph()
    services: dict[str, ServiceInfo] = {}
    links: list[tuple[str, str]] = []
    for name, entry, key in _entries(data["services"], "services", source):
        graph.add_node(name)
        fields = _info_fields(entry, key, source, allowed=(*GRAPH_FIELDS, *INFO_FIELDS),
                              coerce=False)
        if fields:
            services[name] = ServiceInfo(name, **fields)
        # soft_depends_on: calls it but degrades gracefully when it fails (e.g. ads on a
        # storefront): it still correlates, but users are not counted as affected through it.
        for field, soft in (("depends_on", False), ("soft_depends_on", True)):
            for dep in _service_names(entry.get(field), f"{key}.{field}", source, owner=name,
                                      relation="depend on"):
                graph.add_edge(name, dep, soft=soft)
        links += [(name, peer) for peer in _service_names(
            entry.get("links"), f"{key}.links", source, owner=name, relation="be linked to")]
    links += _top_level_links(data.get("links"), source)
    return Topology(graph, services, _business_tiers(data.get("business_services"), source),
                    links=_without_redundant_links(graph, links))


# --- GraphML ---------------------------------------------------------------------------------


def load_graphml(path: Path) -> Topology:
    """Read a GraphML graph (plain, ``.gz`` or ``.bz2``).

    Directed (``edgedefault="directed"``): edge A→B means A depends on B, soft if its boolean
    ``soft`` attribute is true; an edge marked ``directed="false"`` is an undirected link.
    Undirected (``edgedefault="undirected"``): every edge is a link, except one marked
    ``directed="true"`` (a dependency). Node attributes ``team``, ``tier``, ``users``,
    ``business_service`` and ``runbook`` become the catalog; other attributes (drawing
    positions, labels) are ignored.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "net.graphml"
    >>> _ = f.write_text('''<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
    ... <graph edgedefault="directed">
    ...   <edge source="web" target="db"/>
    ...   <edge source="db" target="db-replica" directed="false"/>
    ... </graph></graphml>''')
    >>> t = load_graphml(f)
    >>> sorted(t.graph.edges), sorted(t.linked("db")), t.component("db-replica")
    ([('web', 'db')], ['db-replica'], 'db')
    """
    return _graphml_topology(path, str(path))


_XML_BOOLEAN: Final = {"true": True, "1": True, "false": False, "0": False}
_GRAPHML_HEADER: Final = b'<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'


class _GraphMLReader(GraphMLReader):  # type: ignore[misc]  # networkx is untyped
    """networkx's GraphML reader, for mixed graphs too.

    networkx refuses an edge whose ``directed`` attribute contradicts the graph's
    ``edgedefault`` ("directed=false edge found in directed graph"), so it cannot tell a link
    in a directed graph; this reader sets such edges aside in ``against_default`` instead.
    """

    def __init__(self) -> None:
        super().__init__(node_type=str)
        self.against_default: list[tuple[str, str, dict[str, Any]]] = []

    def add_edge(self, G: Any, edge_element: Any, graphml_keys: Any) -> None:
        directed = edge_element.get("directed")
        if directed is not None:
            flag = _XML_BOOLEAN.get(directed.strip().lower())
            if flag is None:
                raise nx.NetworkXError(
                    f"edge {edge_element.get('source')}->{edge_element.get('target')}: "
                    f"directed={directed!r} is not a boolean")
            if flag != G.is_directed():
                self.against_default.append((
                    self.node_type(edge_element.get("source")),
                    self.node_type(edge_element.get("target")),
                    self.decode_data_elements(graphml_keys, edge_element)))
                return
        super().add_edge(G, edge_element, graphml_keys)


def _read_graphml(path: Path, key: str) -> tuple[nx.Graph, list[tuple[str, str, dict[str, Any]]]]:
    """The graph and the edges against its ``edgedefault`` (see ``_GraphMLReader``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".gz":
            data = gzip.decompress(path.read_bytes())
        elif suffix == ".bz2":
            data = bz2.decompress(path.read_bytes())
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # missing, or corrupt compression
        raise ConfigError(key, f"{path}: cannot read: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        reader = _GraphMLReader()
        graphs = list(reader(string=data))
        if not graphs:  # like nx.read_graphml, forgive a missing xmlns
            reader = _GraphMLReader()
            graphs = list(reader(string=data.replace(b"<graphml>", _GRAPHML_HEADER)))
    except (ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise ConfigError(key, f"{path}: not valid GraphML: {exc}") from None
    if not graphs:
        raise ConfigError(key, f"{path}: not valid GraphML: no <graph> element")
    return graphs[0], reader.against_default


def _graphml_soft(value: Any, key: str, path: Path) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _XML_BOOLEAN:
        return _XML_BOOLEAN[value.strip().lower()]
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ConfigError(key, f"{path}: expected a boolean (soft dependency), got {value!r}")


def _graphml_topology(path: Path, key: str) -> Topology:
    raw, against_default = _read_graphml(path, key)
    graph = nx.DiGraph()
    services: dict[str, ServiceInfo] = {}
    for node, attrs in raw.nodes(data=True):
        name = str(node)
        graph.add_node(name)
        given = {k: v for k, v in attrs.items() if k in INFO_FIELDS}
        fields = _info_fields(given, f"nodes.{name}", path, allowed=INFO_FIELDS, coerce=True)
        if fields:
            services[name] = ServiceInfo(name, **fields)
    edges = [(a, b, data, raw.is_directed()) for a, b, data in raw.edges(data=True)]
    edges += [(a, b, data, not raw.is_directed()) for a, b, data in against_default]
    links: list[tuple[str, str]] = []
    for a, b, data, directed in edges:
        a, b = str(a), str(b)
        if a == b:  # a self-loop says nothing
            continue
        if not directed:
            links.append((a, b))
            continue
        soft = _graphml_soft(data.get("soft"), f"edges[{a}->{b}].soft", path)
        if graph.has_edge(a, b):  # parallel edges are one dependency, soft only if all are
            soft = soft and graph[a][b]["soft"]
        graph.add_edge(a, b, soft=soft)
    return Topology(graph, services, links=_without_redundant_links(graph, links))


# --- Kubernetes manifests --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnresolvedRef:
    """An env var of ``service`` whose value names no deployed service."""

    service: str
    env: str
    value: str


@dataclass(frozen=True, slots=True)
class TopologyReport:
    """What the Kubernetes loader could not turn into the graph, for a human to check."""

    services: int = 0
    dependencies: int = 0
    unresolved: tuple[UnresolvedRef, ...] = ()  # names nothing deployed (not an edge)
    external: tuple[UnresolvedRef, ...] = ()  # hosts outside the cluster (not in the graph)
    isolated: tuple[str, ...] = ()  # services with no dependency either way
    unselected: tuple[str, ...] = ()  # Services whose selector matches no workload
    aliases: tuple[tuple[str, str], ...] = ()  # (other Service name, node it names)

    def lines(self) -> list[str]:
        """A human summary, one finding per line.

        >>> TopologyReport(2, 1, (UnresolvedRef("web", "DB_ADDR", "db:5432"),)).lines()
        ['kubernetes: 2 services, 1 dependencies', 'unresolved: web DB_ADDR=db:5432 names no deployed service (no edge)']
        """  # noqa: E501
        out = [f"kubernetes: {self.services} services, {self.dependencies} dependencies"]
        out += [f"unresolved: {r.service} {r.env}={r.value} names no deployed service (no edge)"
                for r in self.unresolved]
        out += [f"external: {r.service} {r.env}={r.value} is outside the cluster (no edge)"
                for r in self.external]
        if self.isolated:
            out.append(f"no dependencies either way: {', '.join(self.isolated)}")
        out += [f"Service {s} selects no Deployment, StatefulSet or DaemonSet"
                for s in self.unselected]
        out += [f"Service {alias} is another name for {node}" for alias, node in self.aliases]
        return out


@dataclass(slots=True)
class _Workload:
    kind: str
    name: str
    namespace: str | None
    labels: dict[str, str]
    env: list[tuple[str, str]]  # (name, value) with a literal value, all containers
    node: str = ""


@dataclass(slots=True)
class _Service:
    name: str
    namespace: str | None
    selector: dict[str, str]


def load_kubernetes(paths: list[Path] | Path) -> tuple[Topology, TopologyReport]:
    """Derive the dependency graph from Kubernetes manifests (files or folders of them).

    A node per workload, named after the Service selecting it (else the workload's name); an
    edge per ``*_ADDR`` / ``*_HOST`` / ``*_URL`` env value naming another service.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "k8s.yaml"
    >>> _ = f.write_text('''
    ... kind: Deployment
    ... apiVersion: apps/v1
    ... metadata: {name: web}
    ... spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [
    ...   {name: c, env: [{name: DB_ADDR, value: "db:5432"}]}]}}}
    ... ''')
    >>> topology, report = load_kubernetes(f)
    >>> sorted(topology.graph), report.unresolved[0].value
    (['web'], 'db:5432')
    """
    files = _manifest_files([paths] if isinstance(paths, Path) else list(paths))
    return _kubernetes_topology([(f, doc) for f in files for doc in _yaml_documents(f, str(f))])


def _manifest_files(paths: list[Path]) -> list[Path]:
    """The files themselves, and every ``*.yaml`` / ``*.yml`` under a folder, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml")
                          and f.is_file())
        else:
            out.append(p)
    return out


def _objects(docs: Iterable[tuple[Path, Any]]) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """``(file, where, object)`` for each object, with ``kind: List`` items flattened."""
    for n, (path, doc) in enumerate(docs):
        if not isinstance(doc, dict):
            raise ConfigError(f"documents[{n}]", f"{path}: a manifest must be a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            for i, item in enumerate(doc["items"]):
                if isinstance(item, dict):
                    yield path, f"documents[{n}].items[{i}]", item
        else:
            yield path, f"documents[{n}]", doc


def _mapping(obj: Any, key: str, path: Path) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(key, f"{path}: expected a mapping, got {obj!r}")
    return obj


def _list(obj: Any, key: str, path: Path) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise ConfigError(key, f"{path}: expected a list, got {obj!r}")
    return obj


def _labels(obj: Any, key: str, path: Path) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(obj, key, path).items()}


def _parse_object(path: Path, where: str, obj: dict[str, Any]) -> _Workload | _Service | None:
    kind = obj.get("kind")
    if kind not in WORKLOAD_KINDS and kind != "Service":
        return None
    meta = _mapping(obj.get("metadata"), f"{where}.metadata", path)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.metadata.name", f"{path}: a {kind} needs a name")
    ns = meta.get("namespace")
    namespace = ns if isinstance(ns, str) and ns else None
    key = f"{kind}/{name}.spec"
    spec = _mapping(obj.get("spec"), key, path)
    if kind == "Service":
        return _Service(name, namespace, _labels(spec.get("selector"), f"{key}.selector", path))
    template = _mapping(spec.get("template"), f"{key}.template", path)
    labels = _labels(_mapping(template.get("metadata"), f"{key}.template.metadata", path)
                     .get("labels"), f"{key}.template.metadata.labels", path)
    pod = _mapping(template.get("spec"), f"{key}.template.spec", path)
    env: list[tuple[str, str]] = []
    for group in ("initContainers", "containers"):
        for i, container in enumerate(_list(pod.get(group), f"{key}.template.spec.{group}",
                                            path)):
            ckey = f"{key}.template.spec.{group}[{i}]"
            for j, item in enumerate(_list(_mapping(container, ckey, path).get("env"),
                                           f"{ckey}.env", path)):
                var = _mapping(item, f"{ckey}.env[{j}]", path)
                # valueFrom (secrets, config maps, field refs) is not knowable from manifests.
                if isinstance(var.get("name"), str) and var.get("value") is not None:
                    env.append((var["name"], str(var["value"])))
    return _Workload(kind, name, namespace, labels, env)


def _hosts(value: str) -> list[str]:
    """Host names in an address / URL value, or [] if it cannot name a service.

    >>> _hosts("http://user@cartservice.shop.svc.cluster.local:7070/api"), _hosts("8080")
    (['cartservice.shop.svc.cluster.local'], [])
    """
    hosts: list[str] = []
    # Interpolated values ($(OTHER_VAR), ${X}) are only known at run time.
    if "$(" in value or "${" in value:
        return hosts
    for part in value.split(","):  # broker lists: "kafka-0:9092,kafka-1:9092"
        v = part.strip().lower()
        if "://" in v:
            v = v.split("://", 1)[1]
        v = re.split(r"[/?#]", v, maxsplit=1)[0]
        v = v.rsplit("@", 1)[-1]
        if v.startswith("["):  # [IPv6]:port
            continue
        v = v.split(":", 1)[0].rstrip(".")
        if not v or v in _LOOPBACK or not _DNS_NAME.fullmatch(v):
            continue
        try:
            ipaddress.ip_address(v)
            continue
        except ValueError:
            pass
        if v.replace(".", "").isdigit():  # a number, not a host
            continue
        hosts.append(v)
    return hosts


def _kubernetes_topology(docs: Iterable[tuple[Path, Any]]) -> tuple[Topology, TopologyReport]:
    workloads: list[_Workload] = []
    services: list[_Service] = []
    for path, where, obj in _objects(docs):
        parsed = _parse_object(path, where, obj)
        if isinstance(parsed, _Workload):
            workloads.append(parsed)
        elif isinstance(parsed, _Service):
            services.append(parsed)

    def selects(svc: _Service, w: _Workload) -> bool:
        # Kubernetes semantics: no selector selects nothing; else every pair must match.
        return (bool(svc.selector) and svc.namespace == w.namespace
                and all(w.labels.get(k) == v for k, v in svc.selector.items()))

    # Name lookups: every Service name and workload name → (namespace, node). Services
    # first: pods address Services, and a workload's name is only a fallback.
    names: dict[str, list[tuple[str | None, str]]] = {}
    aliases: list[tuple[str, str]] = []
    unselected: list[str] = []
    for w in workloads:
        own = [s.name for s in services if selects(s, w)]
        w.node = w.name if (not own or w.name in own) else own[0]
    for s in services:
        selected = [w for w in workloads if selects(s, w)]
        if not selected:
            unselected.append(s.name)
            continue
        node = selected[0].node
        names.setdefault(s.name, []).append((s.namespace, node))
        if s.name != node:
            aliases.append((s.name, node))
    for w in workloads:
        names.setdefault(w.name, []).append((w.namespace, w.node))

    def resolve(host: str, w: _Workload) -> str | None:
        m = _CLUSTER_HOST.fullmatch(host)
        if m is None:
            return None
        found = names.get(m["name"], [])
        ns = m["ns"] or w.namespace
        for namespace, node in found:
            if namespace == ns:
                return node
        return found[0][1] if found else None

    graph = nx.DiGraph()
    graph.add_nodes_from(w.node for w in workloads)
    unresolved: dict[UnresolvedRef, None] = {}  # ordered sets: init + main containers repeat
    external: dict[UnresolvedRef, None] = {}
    for w in workloads:
        for env, value in w.env:
            if not env.upper().endswith(REF_SUFFIXES):
                continue
            for host in _hosts(value):
                target = resolve(host, w)
                if target is not None:
                    if target != w.node:  # a service naming itself (e.g. its public URL)
                        graph.add_edge(w.node, target)
                elif _CLUSTER_HOST.fullmatch(host):
                    unresolved[UnresolvedRef(w.node, env, value)] = None
                else:
                    external[UnresolvedRef(w.node, env, value)] = None
    report = TopologyReport(
        services=graph.number_of_nodes(),
        dependencies=graph.number_of_edges(),
        unresolved=tuple(unresolved),
        external=tuple(external),
        isolated=tuple(sorted(n for n in graph if graph.degree(n) == 0)),
        unselected=tuple(unselected),
        aliases=tuple(aliases),
    )
    return Topology(graph), report


# --- catalog ---------------------------------------------------------------------------------


def load_catalog(path: Path, topology: Topology) -> tuple[Topology, list[str]]:
    """Lay a catalog YAML over ``topology`` (catalog values win); returns notes for a human.

    Catalog services not in the graph are added without dependencies; graph services without
    a catalog entry are reported. The dependencies and links of ``topology`` are kept.
    """
    return _apply_catalog(_yaml_mapping(path, str(path)), path, topology)


def _apply_catalog(
    data: Mapping[Any, Any], source: Path, topology: Topology
) -> tuple[Topology, list[str]]:
    _check_top_level(data, source, ("services", "business_services"))
    merged = dict(topology.services)
    catalogued: list[str] = []
    for name, entry, key in _entries(data.get("services"), "services", source):
        fields = _info_fields(entry, key, source, allowed=INFO_FIELDS, coerce=False)
        merged[name] = replace(topology.info(name), **fields)
        catalogued.append(name)
    tiers = {**topology.business_tiers, **_business_tiers(data.get("business_services"), source)}
    notes: list[str] = []
    added = [n for n in catalogued if n not in topology]
    if added:
        notes.append(f"catalog: {len(added)} services not in the dependency graph, added "
                     f"without dependencies: {', '.join(added)}")
    known = set(catalogued)
    missing = sorted(n for n in topology.graph if n not in known)
    if missing:
        notes.append(f"catalog: {len(missing)} graph services have no catalog entry: "
                     f"{', '.join(missing)}")
    unknown_bs = sorted({i.business_service for i in merged.values()
                         if i.business_service and i.business_service not in tiers})
    if unknown_bs:
        notes.append(f"catalog: business services without a tier: {', '.join(unknown_bs)}")
    return Topology(topology.graph.copy(), merged, tiers, links=topology.links.edges), notes


# --- settings entry point --------------------------------------------------------------------


def load_topology(settings: TopologySettings) -> tuple[Topology, list[str]]:
    """Build the topology ``settings`` point at: graph file (any format), then catalog.

    Returns the topology and notes for a human (unresolved references, catalog gaps, cycles).
    No file and no catalog: an empty topology, so correlation falls back to service names.
    """
    notes: list[str] = []
    topology = Topology()
    path = settings.file
    if path is not None:
        fmt = settings.format
        if fmt is not None and fmt not in FORMATS:
            raise ConfigError("topology.format",
                              f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        docs: list[Any] | None = None
        if fmt is None:
            if path.is_dir():
                fmt = "kubernetes"
            elif path.suffix.lower() in (".graphml", ".xml"):
                fmt = "graphml"
            else:
                docs = _yaml_documents(path, "topology.file")
                fmt = _sniff(docs, path)
        if fmt == "graphml":
            topology = _graphml_topology(path, "topology.file")
        elif fmt == "kubernetes":
            if docs is not None:  # already read while sniffing the format
                pairs = [(path, d) for d in docs]
            else:
                pairs = [(f, d) for f in _manifest_files([path])
                         for d in _yaml_documents(f, "topology.file")]
            topology, report = _kubernetes_topology(pairs)
            notes += report.lines()
        else:
            if docs is None:
                docs = _yaml_documents(path, "topology.file")
            if len(docs) != 1 or not isinstance(docs[0], dict):
                raise ConfigError("topology.file",
                                  f"{path}: expected one YAML mapping with `services:`")
            topology = _services_topology(docs[0], path)
        if fmt != "kubernetes":
            links = (f", {topology.links.number_of_edges()} links" if topology.has_links
                     else "")
            notes.append(f"{fmt}: {len(topology)} services, "
                         f"{topology.graph.number_of_edges()} dependencies{links}")
        notes += _cycle_notes(topology.graph)
    if settings.catalog is not None:
        data = _yaml_mapping(settings.catalog, "topology.catalog")
        had_graph = len(topology) > 0
        topology, catalog_notes = _apply_catalog(data, settings.catalog, topology)
        if had_graph:
            notes += catalog_notes
        else:  # without a graph every catalog entry is "not in the graph": say it once
            notes.append(f"catalog: {len(topology)} services, no dependency graph configured")
    return topology, notes


def _sniff(docs: list[Any], path: Path) -> str:
    if any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
        return "kubernetes"
    if len(docs) == 1 and isinstance(docs[0], dict) and "services" in docs[0]:
        return "services"
    raise ConfigError("topology.format", f"{path}: cannot tell the format (no `services:` and "
                      f"no Kubernetes objects); set topology.format to one of "
                      f"{', '.join(FORMATS)}")


def _cycle_notes(graph: nx.DiGraph) -> list[str]:
    # Cycles are legal (services call each other) but make "the deepest failing dependency"
    # ambiguous, so a responder should know about them.
    return [f"dependency cycle among: {', '.join(sorted(c))}"
            for c in nx.strongly_connected_components(graph) if len(c) > 1]
