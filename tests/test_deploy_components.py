"""deploy/k8s's optional components, the config checksum and strict schema validation.

Each component builds on top of the standalone base in a kustomization of the user's own, as
the README says to switch it on; the NetworkPolicy lets only Alertmanager and Prometheus pods
reach augur's port and lets augur reach only them and DNS; an edit of augur.yaml renames the
ConfigMap the pod mounts (the rollout); every built resource passes strict schema validation
against vendored schemas (tests/schema_check.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import schema_check
import yaml
from test_deploy import K8S, SHARDED, SIDECAR, containers, kubectl_build, load_one

COMPONENTS = K8S / "components"
# The dashboards component belongs to the dashboards' tests.
OPTIONAL = ("network-policy", "pod-disruption-budget")


def with_component(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    """The base plus one component, built from a kustomization as a user would write it."""
    here = tmp_path / name
    here.mkdir(exist_ok=True)
    # kustomize takes only relative paths to other kustomizations.
    base, component = (os.path.relpath(p, here) for p in (K8S, COMPONENTS / name))
    (here / "kustomization.yaml").write_text(
        f"resources: [{base}]\ncomponents: [{component}]\n", encoding="utf-8"
    )
    return kubectl_build(here)


def pod_labels(built: list[dict[str, Any]]) -> dict[str, str]:
    (workload,) = [d for d in built if d["kind"] in ("Deployment", "StatefulSet")]
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("name", OPTIONAL)
def test_each_component_adds_only_its_resource(tmp_path: Path, name: str) -> None:
    base = kubectl_build(K8S)
    built = with_component(tmp_path, name)
    added = [d for d in built if d not in base]
    kind = {"network-policy": "NetworkPolicy", "pod-disruption-budget": "PodDisruptionBudget"}
    assert [d["kind"] for d in added] == [kind[name]]
    (resource,) = added
    # It selects augur's pod, and nothing in the base changed.
    selector = resource["spec"]["podSelector" if name == "network-policy" else "selector"]
    assert selector["matchLabels"].items() <= pod_labels(built).items()
    assert [d for d in built if d in base] == base


def test_network_policy_admits_only_alertmanager_and_prometheus(tmp_path: Path) -> None:
    (policy,) = [
        d for d in with_component(tmp_path, "network-policy") if d["kind"] == "NetworkPolicy"
    ]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]  # both default-deny beyond the rules
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]  # 9465: webhook + metrics
    peers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in ingress["from"]}
    assert peers == {"alertmanager", "prometheus"}
    assert all("namespaceSelector" in p for p in ingress["from"])  # not any namespace's pods
    egress = {
        tuple(sorted(p["podSelector"]["matchLabels"].values())): [x["port"] for x in rule["ports"]]
        for rule in spec["egress"]
        for p in rule["to"]
    }
    assert egress == {("prometheus",): [9090], ("alertmanager",): [9093], ("kube-dns",): [53, 53]}


def test_the_readme_patch_lets_dns_reach_nodelocal_dnscache(tmp_path: Path) -> None:
    """The policy allows kube-dns pods only; deploy/k8s/README.md's patch for NodeLocal
    DNSCache (169.254.20.10, a host-network address no podSelector matches) must apply."""
    text = (K8S / "README.md").read_text(encoding="utf-8")
    (patch,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "169.254.20.10" in b]
    here = tmp_path / "nodelocal"
    here.mkdir()
    base, component = (os.path.relpath(p, here) for p in (K8S, COMPONENTS / "network-policy"))
    kustomization = yaml.safe_load(patch)
    kustomization.update(resources=[base], components=[component])
    (here / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    (policy,) = [d for d in kubectl_build(here) if d["kind"] == "NetworkPolicy"]
    added = policy["spec"]["egress"][-1]
    assert added["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]
    assert {(p["port"], p["protocol"]) for p in added["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert len(policy["spec"]["egress"]) == 4  # the shipped rules are all still there


def test_the_sharded_overlay_uses_the_budget_component() -> None:
    (budget,) = [d for d in kubectl_build(SHARDED) if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "augur",
                "app.kubernetes.io/instance": "augur",
            }
        },
    }


def test_a_config_edit_renames_the_configmap_the_pod_mounts(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)

    def mounted(root: Path) -> tuple[str, str]:
        built = kubectl_build(root)
        (cm,) = [d for d in built if d["kind"] == "ConfigMap"]
        (workload,) = [d for d in built if d["kind"] == "Deployment"]
        volumes = workload["spec"]["template"]["spec"]["volumes"]
        (config,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
        assert config == cm["metadata"]["name"]
        return config, cm["data"]["augur.yaml"]

    before, text = mounted(copy)
    config = copy / "base" / "augur.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("level: info", "level: debug"))
    after, changed = mounted(copy)
    assert changed != text and after != before and after.startswith("augur-")


def test_the_sidecar_patch_mounts_the_configmap_the_overlay_builds() -> None:
    # kubectl patch applies prometheus-patch.yaml outside kustomize: no hash suffix to follow.
    (cm,) = [d for d in kubectl_build(SIDECAR) if d["kind"] == "ConfigMap"]
    patch = load_one(SIDECAR / "prometheus-patch.yaml")
    volumes = patch["spec"]["template"]["spec"]["volumes"]
    assert [v["configMap"]["name"] for v in volumes if "configMap" in v] == [cm["metadata"]["name"]]


def test_every_pod_waits_for_the_model_load_with_a_startup_probe() -> None:
    for directory in (K8S, SHARDED, K8S / "overlays" / "tls"):
        for doc in kubectl_build(directory):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                (container,) = containers(doc)
                probe = container["startupProbe"]
                assert probe["httpGet"]["path"] == "/-/healthy"
                # ~30 s measured on a busy node: the budget is six times that.
                assert probe["periodSeconds"] * probe["failureThreshold"] >= 180
                assert probe["httpGet"].get("scheme", "HTTP") == container["livenessProbe"][
                    "httpGet"
                ].get("scheme", "HTTP")


def test_the_sidecar_podmonitor_names_the_job_augur() -> None:
    (monitor,) = [d for d in kubectl_build(SIDECAR) if d["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "augur"} in endpoint[
        "relabelings"
    ]


def scrape_jobs(built: list[dict[str, Any]]) -> set[str]:
    """The `job` label prometheus-operator gives each target of the built monitors: a
    ServiceMonitor's is the selected Service's `jobLabel` label, else the Service's name; a
    PodMonitor's is `<namespace>/<name>` unless a relabeling replaces it."""
    jobs = set()
    for monitor in built:
        spec = monitor.get("spec", {})
        if monitor["kind"] == "ServiceMonitor":
            wanted = spec["selector"]["matchLabels"].items()
            for service in built:
                labels = service["metadata"].get("labels", {})
                if service["kind"] == "Service" and wanted <= labels.items():
                    name = service["metadata"]["name"]
                    jobs.add(labels[spec["jobLabel"]] if "jobLabel" in spec else name)
        elif monitor["kind"] == "PodMonitor":
            for endpoint in spec["podMetricsEndpoints"]:
                job = f"{monitor['metadata'].get('namespace', 'default')}/{monitor['metadata']['name']}"
                for step in endpoint.get("relabelings", []):
                    if step.get("targetLabel") == "job" and step.get("action") == "replace":
                        job = step["replacement"]
                jobs.add(job)
    return jobs


@pytest.mark.parametrize("directory", [K8S, SHARDED, SIDECAR], ids=["base", "sharded", "sidecar"])
def test_a_name_prefix_keeps_the_job_the_rules_select(tmp_path: Path, directory: Path) -> None:
    """The shipped rules select job="augur" (AugurDown fires on its absence): a user's
    kustomization with a namePrefix renames the Service, and must not rename the job."""
    here = tmp_path / "mine"
    here.mkdir()
    (here / "kustomization.yaml").write_text(
        f"namePrefix: team-\nresources: [{os.path.relpath(directory, here)}]\n", encoding="utf-8"
    )
    built = kubectl_build(here)
    services = [d["metadata"]["name"] for d in built if d["kind"] == "Service"]
    assert all(name.startswith("team-") for name in services)  # the prefix did apply
    assert scrape_jobs(built) == {"augur"}


def test_built_resources_pass_strict_schema_validation(tmp_path: Path) -> None:
    builds = [K8S, SHARDED, SIDECAR, K8S / "overlays" / "tls"]
    docs = [d for directory in builds for d in kubectl_build(directory)]
    for name in OPTIONAL:
        docs += with_component(tmp_path, name)
    for doc in docs:
        assert schema_check.validate(doc) == [], (doc["kind"], doc["metadata"]["name"])
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    }


def test_the_schema_check_rejects_what_the_api_server_would() -> None:
    built = kubectl_build(K8S)
    (deployment,) = [d for d in built if d["kind"] == "Deployment"]
    (container,) = containers(deployment)
    container["startupProbe"]["httpGet"]["paht"] = "/-/healthy"  # a typo kubectl would refuse
    container["securityContext"]["runAsUser"] = "65532"  # a string where an integer goes
    deployment["spec"]["strategy"]["type"] = 3
    assert len(schema_check.validate(deployment)) == 3


def test_the_crd_check_rejects_what_the_operator_would() -> None:
    (monitor,) = [d for d in kubectl_build(K8S) if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["honor_labels"] = True  # the operator spells it honorLabels
    monitor["spec"]["endpoints"][0]["scheme"] = "ftp"
    (rule,) = [d for d in kubectl_build(K8S) if d["kind"] == "PrometheusRule"]
    del rule["spec"]["groups"][0]["name"]
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    assert len(schema_check.validate(monitor)) == 2
    assert len(schema_check.validate(rule)) == 2
