"""Topology loaders: services YAML, GraphML, Kubernetes manifests, catalog, settings."""

from __future__ import annotations

import gzip
import textwrap
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

import triage.demo_assets
from triage.app.settings import TopologySettings
from triage.core.topology import ServiceInfo
from triage.errors import ConfigError
from triage.loaders.topology import (
    TopologyReport,
    UnresolvedRef,
    load_catalog,
    load_graphml,
    load_kubernetes,
    load_services_yaml,
    load_topology,
)
from triage.simulate.emit import services_yaml

MANIFESTS = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "topologies"
             / "online-boutique" / "kubernetes-manifests.yaml")
DEMO_SERVICES = Path(triage.demo_assets.__file__).parent / "boutique-services.yaml"


@pytest.fixture
def boutique() -> Path:
    if not MANIFESTS.is_file():
        pytest.skip("../shared/data/topologies/online-boutique is not beside the repository")
    return MANIFESTS


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --- Kubernetes: the real Online Boutique manifests ----------------------------------------


def addr_refs(manifests: Path) -> tuple[set[str], set[tuple[str, str, str]]]:
    """Independently of the loader: deployed names and every (deployment, env, host) *_ADDR."""
    docs = [d for d in yaml.safe_load_all(manifests.read_text()) if d]
    deployed = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    refs = set()
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            for var in c.get("env", []):
                if var["name"].endswith("_ADDR"):
                    refs.add((d["metadata"]["name"], var["name"], var["value"].split(":")[0]))
    return deployed, refs


def test_boutique_every_addr_dependency_of_a_deployed_service_is_an_edge(boutique: Path) -> None:
    topology, _ = load_kubernetes(boutique)
    deployed, refs = addr_refs(boutique)
    resolvable = {(svc, env, host) for svc, env, host in refs if host in deployed}
    assert set(topology.graph.edges) == {(svc, host) for svc, _, host in resolvable}
    # one edge per resolvable *_ADDR variable (loadgenerator's init and main container share
    # one FRONTEND_ADDR, counted once per service)
    assert topology.graph.number_of_edges() == len(resolvable) == 16
    assert set(topology.graph) == deployed and len(topology) == 12
    assert ("cartservice", "redis-cart") in topology.graph.edges
    assert topology.depends_on("frontend", "redis-cart")
    assert topology.ancestors("productcatalogservice") == {
        "frontend", "checkoutservice", "recommendationservice", "loadgenerator"}


def test_boutique_undeployed_reference_is_reported_not_fatal(boutique: Path) -> None:
    topology, report = load_kubernetes([boutique])
    assert report.unresolved == (
        UnresolvedRef("frontend", "SHOPPING_ASSISTANT_SERVICE_ADDR", "shoppingassistantservice:80"),
    )
    assert "shoppingassistantservice" not in topology
    assert report.external == () and report.isolated == () and report.unselected == ()
    # frontend-external (the LoadBalancer) selects the same pods: a second name, not a node
    assert report.aliases == (("frontend-external", "frontend"),)
    assert "frontend-external" not in topology
    lines = report.lines()
    assert lines[0] == "kubernetes: 12 services, 16 dependencies"
    assert any("SHOPPING_ASSISTANT_SERVICE_ADDR" in line for line in lines)


def test_demo_services_file_equals_the_manifests_graph(boutique: Path) -> None:
    derived, _ = load_kubernetes(boutique)
    demo = load_services_yaml(DEMO_SERVICES)
    assert set(demo.graph) == set(derived.graph)
    assert set(demo.graph.edges) == set(derived.graph.edges)


def test_demo_services_file_has_a_catalog_for_every_service() -> None:
    demo = load_services_yaml(DEMO_SERVICES)
    for name in demo.graph:
        info = demo.info(name)
        assert info.team and info.tier and info.runbook == f"https://runbooks.example.com/{name}"
    assert demo.info("frontend").user_facing
    assert [n for n in demo.graph if demo.info(n).user_facing] == ["frontend"]
    assert demo.business_tiers["online-shop"] == 1
    assert demo.blast_radius(["redis-cart"]) == {"frontend"}


# --- Kubernetes: synthetic manifests ---------------------------------------------------------


def deployment(name: str, env: dict[str, Any] | None = None, *, kind: str = "Deployment",
               labels: dict[str, str] | None = None, namespace: str | None = None,
               init_env: dict[str, str] | None = None) -> dict[str, Any]:
    def env_list(e: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": k, "valueFrom": v["valueFrom"]} if isinstance(v, dict)
                else {"name": k, "value": v} for k, v in e.items()]

    pod: dict[str, Any] = {"containers": [{"name": "main", "env": env_list(env or {})}]}
    if init_env:
        pod["initContainers"] = [{"name": "init", "env": env_list(init_env)}]
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"template": {"metadata": {"labels": labels or {"app": name}},
                                  "spec": pod}}}


def service(name: str, selector: dict[str, str] | None = None,
            namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    spec = {"selector": selector} if selector is not None else {"type": "ExternalName"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def manifests(tmp_path: Path, *docs: dict[str, Any], name: str = "k8s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.mark.parametrize(("value", "edge"), [
    ("db:5432", True),
    ("db", True),
    ("postgres://app:s3cret@db.prod.svc.cluster.local:5432/orders?sslmode=off", True),
    ("http://db/health", True),
    ("db.prod", True),
    ("db.prod.svc", True),
    ("DB:5432", True),
    ("kafka:9092,db:5432", True),
    ("8080", False),
    ("", False),
    ("$(DB_SERVICE_HOST):5432", False),
    ("localhost:5432", False),
    ("10.0.0.7:5432", False),
    ("[::1]:5432", False),
])
def test_reference_values(tmp_path: Path, value: str, edge: bool) -> None:
    path = manifests(tmp_path, deployment("web", {"DATABASE_URL": value}),
                     deployment("db"), service("db", {"app": "db"}))
    topology, report = load_kubernetes(path)
    assert (("web", "db") in topology.graph.edges) is edge
    if value.startswith("kafka"):
        assert report.unresolved == (UnresolvedRef("web", "DATABASE_URL", value),)
    else:
        assert report.unresolved == ()


def test_only_addr_host_url_names_with_literal_values_count(tmp_path: Path) -> None:
    path = manifests(tmp_path, deployment("web", {
        "DB_HOST": "db",
        "CACHE_ADDR": "cache:6379",
        "DB_NAME": "orders",  # not a reference by name
        "ENABLE_PROFILER": "0",
        "MODE": "db",  # names a service, but the variable is not an address
        "SECRET_URL": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}},
    }), deployment("db"), deployment("cache"))
    topology, report = load_kubernetes(path)
    assert sorted(topology.graph.edges) == [("web", "cache"), ("web", "db")]
    assert report.unresolved == ()


def test_external_hosts_are_reported_separately(tmp_path: Path) -> None:
    path = manifests(tmp_path, deployment("pay", {"STRIPE_URL": "https://api.stripe.com/v1",
                                                  "LEDGER_ADDR": "ledger:443"}))
    topology, report = load_kubernetes(path)
    assert topology.graph.number_of_edges() == 0
    assert report.external == (UnresolvedRef("pay", "STRIPE_URL", "https://api.stripe.com/v1"),)
    assert report.unresolved == (UnresolvedRef("pay", "LEDGER_ADDR", "ledger:443"),)
    assert report.isolated == ("pay",)
    lines = report.lines()
    assert "external: pay STRIPE_URL=https://api.stripe.com/v1 is outside the cluster (no edge)" \
        in lines
    assert "no dependencies either way: pay" in lines


def test_nodes_take_the_service_name_and_workload_names_also_resolve(tmp_path: Path) -> None:
    path = manifests(
        tmp_path,
        deployment("cart-v2", {"STORE_ADDR": "redis-0:6379"}, labels={"app": "cart"}),
        service("carts", {"app": "cart"}),
        deployment("redis-0", kind="StatefulSet", labels={"app": "redis"}),
        service("redis", {"app": "redis"}),
        deployment("web", {"CART_ADDR": "carts:80", "SELF_URL": "http://web:8080"}),
        deployment("node-agent", kind="DaemonSet"),
        service("legacy", {"app": "gone"}),
        service("managed-db"),  # ExternalName: no selector
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}},
    )
    topology, report = load_kubernetes(path)
    assert sorted(topology.graph) == ["carts", "node-agent", "redis", "web"]
    assert sorted(topology.graph.edges) == [("carts", "redis"), ("web", "carts")]
    assert report.unselected == ("legacy", "managed-db")
    assert report.isolated == ("node-agent",)
    assert report.aliases == ()


def test_namespaced_references_prefer_the_named_namespace(tmp_path: Path) -> None:
    path = manifests(
        tmp_path,
        deployment("api", {"DB_HOST": "db.blue.svc.cluster.local"}, namespace="shop"),
        deployment("db", labels={"app": "db", "ns": "blue"}, namespace="blue"),
        service("db", {"app": "db"}, namespace="blue"),
    )
    topology, report = load_kubernetes(path)
    assert list(topology.graph.edges) == [("api", "db")]
    assert report.unresolved == ()


def test_init_container_env_counts_once(tmp_path: Path) -> None:
    path = manifests(tmp_path, deployment("load", {"FRONTEND_ADDR": "web:80"},
                                          init_env={"FRONTEND_ADDR": "web:80",
                                                    "GHOST_ADDR": "ghost:1"}),
                     deployment("web", {"GHOST_ADDR": "ghost:1"}))
    topology, report = load_kubernetes(path)
    assert list(topology.graph.edges) == [("load", "web")]
    assert report.unresolved == (UnresolvedRef("load", "GHOST_ADDR", "ghost:1"),
                                 UnresolvedRef("web", "GHOST_ADDR", "ghost:1"))


def test_folders_files_and_list_objects(tmp_path: Path) -> None:
    folder = tmp_path / "k8s"
    folder.mkdir()
    manifests(folder, deployment("web", {"API_URL": "http://api"}), name="web.yaml")
    (folder / "api.yml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [deployment("api")]}))
    (folder / "README.md").write_text("not a manifest")
    topology, _ = load_kubernetes(folder)
    assert list(topology.graph.edges) == [("web", "api")]
    topology, _ = load_kubernetes([folder / "web.yaml", folder / "api.yml"])
    assert list(topology.graph.edges) == [("web", "api")]


def test_kubernetes_errors_name_the_object(tmp_path: Path) -> None:
    bad = deployment("web")
    bad["spec"]["template"]["spec"]["containers"][0]["env"] = {"A_ADDR": "x"}
    with pytest.raises(ConfigError) as info:
        load_kubernetes(manifests(tmp_path, bad))
    assert info.value.key == "Deployment/web.spec.template.spec.containers[0].env"
    with pytest.raises(ConfigError) as info:
        load_kubernetes(manifests(tmp_path, {"kind": "Deployment", "metadata": {}}))
    assert info.value.key == "documents[0].metadata.name"
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_kubernetes(write(tmp_path, "broken.yaml", "kind: [Deployment\n"))


def test_report_lines_on_an_empty_report() -> None:
    assert TopologyReport().lines() == ["kubernetes: 0 services, 0 dependencies"]


# --- services YAML ---------------------------------------------------------------------------

SERVICES = """\
services:
  frontend:
    depends_on: [cartservice, productcatalogservice]
    team: storefront
    tier: 1
    users: 50000
    business_service: online-shop
    runbook: https://runbooks.example.com/frontend
  cartservice:
    depends_on: [redis-cart]
    team: cart
  productcatalogservice:
business_services:
  online-shop: {tier: 1}
"""


def test_services_yaml(tmp_path: Path) -> None:
    topology = load_services_yaml(write(tmp_path, "services.yaml", SERVICES))
    assert sorted(topology.graph.edges) == [("cartservice", "redis-cart"),
                                            ("frontend", "cartservice"),
                                            ("frontend", "productcatalogservice")]
    assert "redis-cart" in topology  # a dependency need not be listed itself
    assert topology.info("frontend") == ServiceInfo(
        "frontend", "storefront", 1, 50000, "online-shop", "https://runbooks.example.com/frontend")
    assert topology.info("cartservice") == ServiceInfo("cartservice", team="cart")
    assert topology.info("productcatalogservice") == ServiceInfo("productcatalogservice")
    assert topology.business_tiers == {"online-shop": 1}


@pytest.mark.parametrize(("entry", "key"), [
    ("cartservice: {tier: 5}", "services.cartservice.tier"),
    ("cartservice: {tier: '1'}", "services.cartservice.tier"),
    ("cartservice: {tier: true}", "services.cartservice.tier"),
    ("cartservice: {users: -1}", "services.cartservice.users"),
    ("cartservice: {users: 1.5}", "services.cartservice.users"),
    ("cartservice: {team: ''}", "services.cartservice.team"),
    ("cartservice: {runbook: [a]}", "services.cartservice.runbook"),
    ("cartservice: {depends_on: redis-cart}", "services.cartservice.depends_on"),
    ("cartservice: {depends_on: [redis-cart, 7]}", "services.cartservice.depends_on[1]"),
    ("cartservice: {depends_on: [cartservice]}", "services.cartservice.depends_on[0]"),
    ("cartservice: {dependson: [redis-cart]}", "services.cartservice.dependson"),
    ("cartservice: [redis-cart]", "services.cartservice"),
])
def test_services_yaml_errors_name_the_key(tmp_path: Path, entry: str, key: str) -> None:
    path = write(tmp_path, "services.yaml", f"services:\n  {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_services_yaml(path)
    assert info.value.key == key
    assert str(path) in info.value.message


@pytest.mark.parametrize(("text", "key"), [
    ("business_services: {online-shop: {tier: 0}}\nservices: {}\n",
     "business_services.online-shop.tier"),
    ("servics: {}\n", "servics"),
    ("business_services: {}\n", "services"),
    ("services: [a, b]\n", "services"),
])
def test_services_yaml_top_level_errors(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_services_yaml(write(tmp_path, "services.yaml", text))
    assert info.value.key == key


LINKS = """\
services:
  web: {depends_on: [db], users: 100}
  db: {links: [db-replica, web], tier: 1}
  db-replica: {links: [db]}
links:
  - [switch-a, switch-b]
  - [switch-b, db]
  - [db-replica, db]
"""


def test_services_yaml_links(tmp_path: Path) -> None:
    topology = load_services_yaml(write(tmp_path, "services.yaml", LINKS))
    assert list(topology.graph.edges) == [("web", "db")]
    # both spellings, either side, any number of times: one link; db—web is a dependency
    assert sorted(map(sorted, topology.links.edges)) == [
        ["db", "db-replica"], ["db", "switch-b"], ["switch-a", "switch-b"]]
    assert "switch-a" in topology and topology.info("switch-a") == ServiceInfo("switch-a")
    assert topology.linked("db") == {"db-replica", "switch-b"}
    assert topology.callers("db") == {"web"} and topology.callees("db") == frozenset()
    assert topology.neighbours("db") == {"web", "db-replica", "switch-b"}
    assert topology.info("db").tier == 1
    # links carry no user impact: nothing depends on the replica
    assert topology.blast_radius(["db-replica"]) == frozenset()


def test_linked_services_share_a_component(tmp_path: Path) -> None:
    path = write(tmp_path, "services.yaml", """\
        services:
          web: {depends_on: [db]}
          db: {}
          batch: {depends_on: [queue]}
          queue: {}
          lonely: {}
    """)
    apart = load_services_yaml(path)
    assert apart.component("db") != apart.component("queue")
    path.write_text(path.read_text() + "links:\n  - [db, queue]\n")
    joined = load_services_yaml(path)
    assert joined.component("web") == joined.component("batch") == joined.component("queue")
    assert joined.component("lonely") == "lonely"
    assert joined.distance("web", "batch") == 3


@pytest.mark.parametrize(("text", "key"), [
    ("links: {a: b}\n", "links"),
    ("links: [a, b]\n", "links[0]"),
    ("links:\n  - [a, b]\n  - [a, b, c]\n", "links[1]"),
    ("links:\n  - [a]\n", "links[0]"),
    ("links:\n  - [a, '']\n", "links[0]"),
    ("links:\n  - [a, 7]\n", "links[0]"),
    ("links:\n  - [a, null]\n", "links[0]"),
    ("links:\n  - [a, b]\n  - [b, b]\n", "links[1]"),
    ("services:\n  web: {links: db}\n", "services.web.links"),
    ("services:\n  web: {links: [db, '']}\n", "services.web.links[1]"),
    ("services:\n  web: {links: [[db, cache]]}\n", "services.web.links[0]"),
    ("services:\n  web: {links: [web]}\n", "services.web.links[0]"),
])
def test_services_yaml_link_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    if not text.startswith("services"):
        text = "services: {web: {}}\n" + text
    path = write(tmp_path, "services.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_services_yaml(path)
    assert info.value.key == key
    assert str(path) in info.value.message


def test_services_yaml_round_trip_keeps_links(tmp_path: Path) -> None:
    topology = load_services_yaml(write(tmp_path, "services.yaml", LINKS))
    doc = services_yaml(topology)
    assert doc["links"] == [["db", "db-replica"], ["db", "switch-b"], ["switch-a", "switch-b"]]
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    again = load_services_yaml(path)
    assert set(map(frozenset, again.links.edges)) == set(map(frozenset, topology.links.edges))
    assert set(again.graph.edges) == set(topology.graph.edges)
    assert set(again.graph) == set(topology.graph)
    assert again.info("db") == topology.info("db")
    assert "links" not in services_yaml(load_services_yaml(
        write(tmp_path, "plain.yaml", SERVICES)))


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_services_yaml(missing)
    assert info.value.key == str(missing)


# --- GraphML ---------------------------------------------------------------------------------


def test_graphml_round_trip(tmp_path: Path) -> None:
    g = nx.DiGraph()
    g.add_node("frontend", team="storefront", tier=1, users=50000,
               business_service="online-shop", runbook="https://runbooks.example.com/frontend",
               x=10.5)  # drawing attributes are ignored
    g.add_node("cartservice", team="cart", tier="2")  # string-typed attributes are coerced
    g.add_node("redis-cart")
    g.add_edges_from([("frontend", "cartservice"), ("cartservice", "redis-cart")])
    path = tmp_path / "topology.graphml"
    nx.write_graphml(g, path)
    topology = load_graphml(path)
    assert set(topology.graph.edges) == set(g.edges)
    assert topology.info("frontend") == ServiceInfo(
        "frontend", "storefront", 1, 50000, "online-shop", "https://runbooks.example.com/frontend")
    assert topology.info("cartservice") == ServiceInfo("cartservice", team="cart", tier=2)
    assert topology.depends_on("frontend", "redis-cart")


def graphml(edgedefault: str, edges: str, keys: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<graphml xmlns="http://graphml.graphdrawing.org/xmlns">{keys}\n'
            f'<graph id="G" edgedefault="{edgedefault}">\n{edges}\n</graph></graphml>\n')


SOFT_KEY = '<key id="s" for="edge" attr.name="soft" attr.type="boolean"/>'


def test_graphml_undirected_edges_are_links(tmp_path: Path) -> None:
    path = write(tmp_path, "net.graphml", graphml("undirected", """
        <node id="sw1"><data key="t">1</data></node>
        <node id="sw2"/>
        <edge source="sw1" target="sw2"/>
        <edge source="sw2" target="sw1"/>
        <edge source="sw2" target="sw3"/>
        <edge source="sw3" target="sw3"/>
        <edge source="host" target="sw3"/>
    """, keys='<key id="t" for="node" attr.name="tier" attr.type="int"/>'))
    topology = load_graphml(path)
    assert topology.graph.number_of_edges() == 0
    # parallel edges collapse, the self-loop says nothing, an edge's end point is a node
    assert sorted(map(sorted, topology.links.edges)) == [
        ["host", "sw3"], ["sw1", "sw2"], ["sw2", "sw3"]]
    assert sorted(topology.graph) == ["host", "sw1", "sw2", "sw3"]
    assert topology.linked("sw2") == {"sw1", "sw3"} and topology.has_links
    assert topology.info("sw1").tier == 1
    assert topology.distance("sw1", "host") == 3 and not topology.depends_on("sw1", "sw2")
    # what networkx writes for an undirected graph loads the same way
    written = tmp_path / "written.graphml"
    nx.write_graphml(nx.Graph([("a", "b")]), written)
    assert list(load_graphml(written).links.edges) == [("a", "b")]


def test_graphml_mixed_edges_follow_their_directed_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.graphml", graphml("directed", """
        <edge source="web" target="db"/>
        <edge source="web" target="ads"><data key="s">true</data></edge>
        <edge source="web" target="cache"><data key="s">true</data></edge>
        <edge source="web" target="cache"><data key="s">false</data></edge>
        <edge source="db" target="db-replica" directed="false"/>
        <edge source="db" target="web" directed="false"/>
        <edge source="api" target="db" directed="true"/>
    """, keys=SOFT_KEY))
    topology = load_graphml(path)
    assert topology.graph["web"]["db"]["soft"] is False
    assert topology.graph["web"]["ads"]["soft"] is True  # as soft_depends_on in YAML
    assert topology.graph["web"]["cache"]["soft"] is False  # parallel: soft only if all are
    assert topology.blast_radius(["ads"]) == frozenset()
    assert sorted(topology.graph.edges) == [("api", "db"), ("web", "ads"), ("web", "cache"),
                                            ("web", "db")]
    # db—web is already a dependency (the direction is known): that link is dropped
    assert list(topology.links.edges) == [("db", "db-replica")]

    # the other way round: an undirected graph with one directed edge
    path = write(tmp_path, "mostly-links.graphml", graphml("undirected", """
        <edge source="sw1" target="sw2"/>
        <edge source="app" target="sw1" directed="true"/>
        <edge source="sw2" target="sw3" directed="false"/>
    """))
    topology = load_graphml(path)
    assert list(topology.graph.edges) == [("app", "sw1")]
    assert sorted(map(sorted, topology.links.edges)) == [["sw1", "sw2"], ["sw2", "sw3"]]


def test_graphml_compressed(tmp_path: Path) -> None:
    path = tmp_path / "net.graphml.gz"
    path.write_bytes(gzip.compress(graphml("undirected", '<edge source="a" target="b"/>')
                                   .encode()))
    assert list(load_graphml(path).links.edges) == [("a", "b")]
    _, notes = load_topology(TopologySettings(file=path, format="graphml"))
    assert notes == ["graphml: 2 services, 0 dependencies, 1 links"]


def test_graphml_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "bad-directed.graphml", graphml("directed", """
        <edge source="a" target="b" directed="maybe"/>"""))
    with pytest.raises(ConfigError, match=r"not valid GraphML.*directed='maybe'") as info:
        load_graphml(path)
    assert info.value.key == str(path)
    path = write(tmp_path, "bad-soft.graphml", graphml("directed", """
        <edge source="a" target="b"><data key="s">sometimes</data></edge>""",
        keys=SOFT_KEY.replace("boolean", "string")))
    with pytest.raises(ConfigError) as info:
        load_graphml(path)
    assert info.value.key == "edges[a->b].soft"
    bad = tmp_path / "bad-tier.graphml"
    g = nx.DiGraph()
    g.add_node("a", tier=9)
    nx.write_graphml(g, bad)
    with pytest.raises(ConfigError) as info:
        load_graphml(bad)
    assert info.value.key == "nodes.a.tier"
    with pytest.raises(ConfigError, match="not valid GraphML"):
        load_graphml(write(tmp_path, "junk.graphml", "<graphml><graph"))


# --- catalog ---------------------------------------------------------------------------------

CATALOG = """\
services:
  frontend: {team: web-platform, users: 80000}
  cartservice: {tier: 1, runbook: https://runbooks.example.com/cart}
  emailservice: {team: checkout, tier: 3}
business_services:
  online-shop: {tier: 2}
  notifications: {tier: 3}
"""


def test_catalog_overlays_the_graph_and_reports_gaps(tmp_path: Path) -> None:
    graph = load_services_yaml(write(tmp_path, "services.yaml", SERVICES))
    topology, notes = load_catalog(write(tmp_path, "catalog.yaml", CATALOG), graph)
    # catalog values win; what the catalog does not say is kept from the graph file
    assert topology.info("frontend") == ServiceInfo(
        "frontend", "web-platform", 1, 80000, "online-shop",
        "https://runbooks.example.com/frontend")
    assert topology.info("cartservice") == ServiceInfo(
        "cartservice", "cart", 1, runbook="https://runbooks.example.com/cart")
    assert topology.business_tiers == {"online-shop": 2, "notifications": 3}
    # catalog-only services join the graph without dependencies
    assert "emailservice" in topology and topology.graph.degree("emailservice") == 0
    assert set(topology.graph.edges) == set(graph.graph.edges)
    assert notes == [
        "catalog: 1 services not in the dependency graph, added without dependencies: "
        "emailservice",
        "catalog: 2 graph services have no catalog entry: productcatalogservice, redis-cart",
    ]
    assert graph.info("frontend").team == "storefront"  # the input topology is unchanged


def test_catalog_keeps_the_links(tmp_path: Path) -> None:
    graph = load_services_yaml(write(tmp_path, "services.yaml", LINKS))
    topology, _ = load_catalog(write(tmp_path, "catalog.yaml", CATALOG), graph)
    assert set(map(frozenset, topology.links.edges)) == set(map(frozenset, graph.links.edges))
    assert topology.linked("db") == {"db-replica", "switch-b"}
    topology, notes = load_topology(TopologySettings(
        file=tmp_path / "services.yaml", catalog=tmp_path / "catalog.yaml"))
    assert topology.linked("switch-a") == {"switch-b"}
    assert topology.info("frontend").users == 80000
    assert notes[0] == "services: 5 services, 1 dependencies, 3 links"


def test_catalog_errors_name_the_key(tmp_path: Path) -> None:
    graph = load_services_yaml(write(tmp_path, "services.yaml", SERVICES))
    path = write(tmp_path, "catalog.yaml", "services:\n  frontend: {depends_on: [x]}\n")
    with pytest.raises(ConfigError) as info:
        load_catalog(path, graph)
    assert info.value.key == "services.frontend.depends_on"
    assert str(path) in info.value.message


# --- load_topology ---------------------------------------------------------------------------


def test_load_topology_without_files_is_empty() -> None:
    topology, notes = load_topology(TopologySettings())
    assert len(topology) == 0 and notes == []


def test_load_topology_picks_the_loader(tmp_path: Path) -> None:
    services = write(tmp_path, "services.yaml", SERVICES)
    topology, notes = load_topology(TopologySettings(file=services))
    assert topology.graph.number_of_edges() == 3
    assert notes == ["services: 4 services, 3 dependencies"]

    k8s = manifests(tmp_path, deployment("web", {"API_ADDR": "api:80"}), deployment("api"))
    topology, notes = load_topology(TopologySettings(file=k8s))
    assert list(topology.graph.edges) == [("web", "api")]
    assert notes == ["kubernetes: 2 services, 1 dependencies"]

    graphml = tmp_path / "g.graphml"
    nx.write_graphml(nx.DiGraph([("a", "b"), ("b", "a")]), graphml)
    topology, notes = load_topology(TopologySettings(file=graphml))
    assert notes == ["graphml: 2 services, 2 dependencies", "dependency cycle among: a, b"]

    # an explicit format wins over the suffix
    odd = tmp_path / "topology.txt"
    odd.write_text(SERVICES)
    topology, _ = load_topology(TopologySettings(file=odd, format="services"))
    assert len(topology) == 4


def test_load_topology_demo_with_kubernetes_folder_and_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "k8s"
    folder.mkdir()
    manifests(folder, deployment("frontend", {"CART_ADDR": "cartservice:7070"}),
              deployment("cartservice"))
    catalog = write(tmp_path, "catalog.yaml", CATALOG)
    topology, notes = load_topology(TopologySettings(file=folder, catalog=catalog))
    assert topology.info("frontend").users == 80000
    assert "emailservice" in topology
    assert notes[0] == "kubernetes: 2 services, 1 dependencies"
    assert notes[1].startswith("catalog: 1 services not in the dependency graph")


def test_load_topology_catalog_only(tmp_path: Path) -> None:
    catalog = write(tmp_path, "catalog.yaml", CATALOG)
    topology, notes = load_topology(TopologySettings(catalog=catalog))
    assert len(topology) == 3 and topology.graph.number_of_edges() == 0
    assert notes == ["catalog: 3 services, no dependency graph configured"]


@pytest.mark.parametrize(("text", "fmt", "key"), [
    ("hello: world\n", None, "topology.format"),
    ("services: {}\n", "csv", "topology.format"),
    ("services: {a: {tier: 7}}\n", None, "services.a.tier"),
])
def test_load_topology_errors(tmp_path: Path, text: str, fmt: str | None, key: str) -> None:
    path = write(tmp_path, "topology.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_topology(TopologySettings(file=path, format=fmt))
    assert info.value.key == key


def test_load_topology_missing_files_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(TopologySettings(file=tmp_path / "nope.yaml"))
    assert info.value.key == "topology.file"
    with pytest.raises(ConfigError) as info:
        load_topology(TopologySettings(catalog=tmp_path / "nope.yaml"))
    assert info.value.key == "topology.catalog"


def test_soft_dependencies_correlate_but_carry_no_user_impact(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("services:\n"
                    "  web: {depends_on: [cart], soft_depends_on: [ads], users: 1000}\n"
                    "  cart: {tier: 1}\n  ads: {tier: 3}\n")
    topology = load_services_yaml(path)
    assert topology.graph["web"]["ads"]["soft"] is True
    assert topology.depends_on("web", "ads") and "ads" in topology.within("web", 1)
    assert topology.blast_radius(["ads"]) == frozenset()
    assert topology.blast_radius(["cart"]) == frozenset({"web"})
    path.write_text("services:\n  web: {soft_depends_on: ads}\n")
    with pytest.raises(ConfigError, match="soft_depends_on"):
        load_services_yaml(path)
