"""The deployment artefacts: kustomize manifests, alert rules and the Grafana dashboard.

They are checked against what augur really is: the ConfigMap against the config schema, the
rules and the dashboard's PromQL with the real promtool, every metric name they use against
the README's metric table, the kustomizations with the real kubectl when it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from exporter.config.base import ConfigError
from exporter.config.load import load
from exporter.config.root import Config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
SIDECAR = K8S / "overlays" / "sidecar"
SHARDED = K8S / "overlays" / "sharded"
README = ROOT / "README.md"

# Patches for workloads kustomize does not build here (the user's Prometheus): applied with
# `kubectl patch`, so no kustomization lists them.
EXTERNAL_PATCHES = {SIDECAR / "prometheus-patch.yaml"}

METRIC_RE = re.compile(r"\baugur_[a-zA-Z0-9_]+")


def load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def load_one(path: Path) -> dict[str, Any]:
    docs = load_all(path)
    assert len(docs) == 1, f"{path}: one resource per file, found {len(docs)}"
    doc: dict[str, Any] = docs[0]
    return doc


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def readme_metrics() -> set[str]:
    """Metric names in the first column of the README's table under `## Metrics`."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `augur_"):
            names.update(METRIC_RE.findall(line.split("|")[1]))
    assert "augur_anomaly_score" in names, "the README's metric table was not found"
    return names


def metric_names(expr: str) -> set[str]:
    """augur metric names in a PromQL expression, histogram series named by their family."""
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in METRIC_RE.findall(expr)}


def rules() -> dict[str, Any]:
    spec: dict[str, Any] = load_one(BASE / "augur-prometheusrule.yaml")["spec"]
    return spec


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return found


# --- kustomize layout --------------------------------------------------------------------------


def generated_from() -> set[Path]:
    """Files a kustomization turns into a resource (configMapGenerator), not resources."""
    found = set()
    for kustomization in kustomizations():
        for generator in load_one(kustomization).get("configMapGenerator", []):
            found |= {
                (kustomization.parent / f.split("=")[-1]).resolve()
                for f in generator.get("files", [])
            }
    return found


def test_every_manifest_parses_into_resources() -> None:
    files = sorted(p for p in K8S.rglob("*.yaml") if p.resolve() not in generated_from())
    assert len(files) >= 9
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict) and doc.get("kind"), f"{path}: not a resource"
            if doc["kind"] not in ("Kustomization", "Component"):
                assert doc.get("apiVersion") and doc.get("metadata", {}).get("name"), path


@pytest.mark.parametrize("kustomization", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_exactly_its_files(kustomization: Path) -> None:
    here = kustomization.parent
    spec = load_one(kustomization)
    listed = list(spec.get("resources", []))
    listed += [p["path"] for p in spec.get("patches", []) if "path" in p]
    for generator in spec.get("configMapGenerator", []):
        listed += [f.split("=")[-1] for f in generator.get("files", [])]
    listed += [c for c in spec.get("components", [])]
    for ref in listed:
        assert (here / ref).exists(), f"{kustomization}: {ref} does not exist"
    files = {p for p in here.glob("*.yaml") if p.name != "kustomization.yaml"}
    listed_files = {(here / ref).resolve() for ref in listed if (here / ref).is_file()}
    assert listed_files == {p.resolve() for p in files - EXTERNAL_PATCHES}


def test_base_has_one_resource_per_file_named_for_its_kind() -> None:
    files = sorted(BASE.glob("augur-*.yaml"))
    kinds = {"ConfigMap"}  # generated from augur.yaml
    for path in files:
        kind = load_one(path)["kind"]
        assert path.name == f"augur-{kind.lower()}.yaml"
        kinds.add(kind)
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    # The common labels come from components/common, on every resource kustomize builds.
    for directory in (K8S, SIDECAR, SHARDED, K8S / "overlays" / "tls"):
        for doc in kubectl_build(directory):
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "augur", doc["kind"]
            assert labels["app.kubernetes.io/instance"] == "augur", doc["kind"]
            assert labels["app.kubernetes.io/version"] == version(), doc["kind"]


def version() -> str:
    """augur's version, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    assert found
    return found.group(1)


def test_the_version_is_set_in_one_place() -> None:
    common = load_one(K8S / "components" / "common" / "kustomization.yaml")
    (pairs,) = [entry["pairs"] for entry in common["labels"]]
    (image,) = common["images"]
    assert pairs["app.kubernetes.io/version"] == image["newTag"] == version()
    # The image of every built pod carries it; the sidecar patch, applied outside kustomize,
    # spells it out and must agree.
    for directory in (K8S, SHARDED):
        for doc in kubectl_build(directory):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                assert [c["image"] for c in containers(doc)] == [f"augur:{version()}"]
    (patched,) = containers(load_one(SIDECAR / "prometheus-patch.yaml"))
    assert patched["image"] == f"augur:{version()}"
    for path in K8S.rglob("*.yaml"):
        if path.parent.name != "common" and path.name != "prometheus-patch.yaml":
            assert version() not in path.read_text(encoding="utf-8").split("kustomize edit")[0], (
                path
            )


def test_kubectl_builds_the_base_and_the_sidecar(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")

    def build(directory: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    standalone = {d["kind"] for d in build(K8S)}
    assert standalone == {
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    }
    sidecar = build(SIDECAR)
    assert {d["kind"] for d in sidecar} == {"ConfigMap", "PodMonitor", "PrometheusRule"}
    assert {d["metadata"]["namespace"] for d in sidecar} == {"monitoring"}

    # The sidecar patch on a plain Prometheus StatefulSet keeps Prometheus and adds augur.
    shutil.copy(SIDECAR / "prometheus-patch.yaml", tmp_path)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "prometheus"},
        "spec": {
            "selector": {"matchLabels": {"app": "prometheus"}},
            "template": {
                "metadata": {"labels": {"app": "prometheus"}},
                "spec": {
                    "containers": [{"name": "prometheus", "image": "prom/prometheus"}],
                    "volumes": [{"name": "config", "configMap": {"name": "prometheus"}}],
                },
            },
        },
    }
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(statefulset), encoding="utf-8")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [prometheus.yaml]\npatches: [{path: prometheus-patch.yaml}]\n",
        encoding="utf-8",
    )
    (patched,) = build(tmp_path)
    pod = patched["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["augur", "prometheus"]
    assert {v["name"] for v in pod["volumes"]} == {
        "config",
        "augur-config",
        "augur-state",
        "augur-tmp",
        "augur-webhook-token",
    }


# --- the pod --------------------------------------------------------------------------------


def assert_restricted(container: dict[str, Any]) -> None:
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 65532 and ctx["runAsGroup"] == 65532
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind
    assert ":latest" not in container["image"]


def mounts(container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    by_name = {v["name"]: v for v in volumes}
    return {m["mountPath"]: by_name[m["name"]] for m in container["volumeMounts"]}


def test_deployment_runs_under_the_restricted_profile() -> None:
    deployment = load_one(BASE / "augur-deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert_restricted(container)
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["ports"] == [{"name": "http", "containerPort": 9465, "protocol": "TCP"}]
    at = mounts(container, pod["volumes"])
    assert "emptyDir" in at["/tmp"]
    assert at["/etc/augur"]["configMap"]["name"] == "augur"
    # The state file (and the alert outbox beside it) lives on the state claim, so a
    # rescheduled pod keeps it; one writer at a time, so the old pod stops first.
    cfg = config_from_configmap()
    claim = at[str(PurePosixPath(cfg.state.path).parent)]["persistentVolumeClaim"]["claimName"]
    pvc = load_one(BASE / "augur-persistentvolumeclaim.yaml")
    assert claim == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["fsGroup"] == 65532  # the claim's files are augur's
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service = load_one(BASE / "augur-service.yaml")
    assert service["spec"]["selector"] == selector


def test_sidecar_container_matches_the_standalone_one() -> None:
    patch = load_one(SIDECAR / "prometheus-patch.yaml")
    (container,) = containers(patch)
    assert_restricted(container)
    (standalone,) = containers(load_one(BASE / "augur-deployment.yaml"))
    assert container["resources"] == standalone["resources"]
    assert container["image"] == f"{standalone['image']}:{version()}"
    # The port opens after the model load: both wait for it the same way.
    probe = {**standalone["startupProbe"], "httpGet": {**standalone["startupProbe"]["httpGet"]}}
    probe["httpGet"]["port"] = "augur"
    assert container["startupProbe"] == probe
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "AUGUR_PROMETHEUS_URL": "http://127.0.0.1:9090",
        # tests/test_deploy_security.py checks the token's Secret and mount.
        "AUGUR_WEBHOOK_BEARER_TOKEN_FILE": "/var/run/secrets/augur-webhook/token",
    }
    at = mounts(container, patch["spec"]["template"]["spec"]["volumes"])
    assert "emptyDir" in at["/tmp"] and "emptyDir" in at["/var/lib/augur"]
    assert at["/etc/augur"]["configMap"]["name"] == "augur"
    cfg = config_from_configmap(environ={"AUGUR_PROMETHEUS_URL": env["AUGUR_PROMETHEUS_URL"]})
    assert cfg.prometheus.url == "http://127.0.0.1:9090"


def config_from_configmap(environ: dict[str, str] | None = None) -> Config:
    """The ConfigMap's augur.yaml loaded by augur's own loader (through a temporary file)."""
    (generator,) = load_one(BASE / "kustomization.yaml")["configMapGenerator"]
    assert generator["files"] == ["augur.yaml"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "augur.yaml"
        path.write_text((BASE / "augur.yaml").read_text(encoding="utf-8"), encoding="utf-8")
        return load(path, environ=environ or {})


def test_configmap_holds_a_valid_config_without_secrets() -> None:
    cfg = config_from_configmap()
    assert cfg.prometheus.url.startswith("http")
    assert cfg.web.host_port()[1] == 9465
    assert cfg.prometheus.bearer_token_file is None  # the Secret is an opt-in example
    assert not cfg.queries  # the built-in defaults, until the user lists queries


# --- the sharded overlay --------------------------------------------------------------------


def kubectl_build(directory: Path) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize` builds from `directory` (skips without kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_sharded_pod_is_the_standalone_pod_with_shard_settings() -> None:
    statefulset = load_one(SHARDED / "augur-statefulset.yaml")
    deployment = load_one(BASE / "augur-deployment.yaml")
    assert statefulset["kind"] == "StatefulSet"
    pod, base_pod = statefulset["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    (container,), (standalone,) = pod["containers"], base_pod["containers"]
    assert_restricted(container)
    # Hardening, probes, resources, image, mounts: all the base's; only the env grows.
    without_env = {k: v for k, v in container.items() if k != "env"}
    assert without_env == {k: v for k, v in standalone.items() if k != "env"}
    env = env_values(container)
    assert env.items() >= env_values(standalone).items()
    rest = ("volumes", "containers")
    assert {k: v for k, v in pod.items() if k not in rest} == {
        k: v for k, v in base_pod.items() if k not in rest
    }
    assert statefulset["spec"]["template"]["metadata"] == deployment["spec"]["template"]["metadata"]
    # The single claim becomes one per replica, mounted where state.path lives.
    state = [v for v in base_pod["volumes"] if v["name"] == "state"]
    assert pod["volumes"] == [v for v in base_pod["volumes"] if v not in state]
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    cfg = config_from_configmap()
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == template["metadata"]["name"]]
    assert mount["mountPath"] == str(PurePosixPath(cfg.state.path).parent)
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_sharded_replicas_cover_every_index_once() -> None:
    statefulset = load_one(SHARDED / "augur-statefulset.yaml")
    (container,) = containers(statefulset)
    env = env_values(container)
    replicas = statefulset["spec"]["replicas"]
    assert replicas >= 2
    assert env["AUGUR_SHARD_COUNT"] == str(replicas), "replicas and the shard count differ"
    assert env["AUGUR_SHARD_INDEX"] == "from-hostname"
    name = statefulset["metadata"]["name"]
    env = {k: v for k, v in env.items() if k.startswith("AUGUR_SHARD_")}
    # Each pod, named as the StatefulSet names it, loads the ConfigMap as a distinct shard.
    indices = set()
    for ordinal in range(replicas):
        cfg = config_from_configmap(environ={**env, "HOSTNAME": f"{name}-{ordinal}"})
        assert cfg.shard.count == replicas
        indices.add(cfg.shard.resolved_index())
    assert indices == set(range(replicas))
    # One pod too many (replicas raised alone) refuses to start rather than score twice.
    with pytest.raises(ConfigError, match=re.escape("shard.index: is")):
        config_from_configmap(environ={**env, "HOSTNAME": f"{name}-{replicas}"})


def test_sharded_overlay_scrapes_each_replica_once_and_posts_to_any() -> None:
    built = kubectl_build(SHARDED)
    kinds = sorted(d["kind"] for d in built)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "Service",
            "Service",
            "StatefulSet",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "PrometheusRule",
        ]
    ), "the Deployment and the single claim are replaced"
    by_kind = {d["kind"]: d for d in built}
    statefulset = by_kind["StatefulSet"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    services = {d["metadata"]["name"]: d for d in built if d["kind"] == "Service"}
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod_labels.items()
    # The ServiceMonitor picks exactly one Service, the headless one: every pod once.
    monitor = by_kind["ServiceMonitor"]
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    scraped = [n for n, s in services.items() if wanted <= s["metadata"]["labels"].items()]
    assert scraped == [headless["metadata"]["name"]]
    # ... and keeps job="augur", as the base's Service name gave it.
    assert headless["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "augur"
    # Alertmanager posts to `augur`: any ready replica, the same one for the same client.
    webhook = services["augur"]
    assert webhook["spec"]["sessionAffinity"] == "ClientIP"
    assert webhook["spec"]["publishNotReadyAddresses"] is False
    budget = by_kind["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


# The rules: tests/test_rules.py.


def test_metric_names_exist_in_the_readme() -> None:
    """Every augur metric the rules use is in the README's table (the dashboards' are checked
    in tests/test_dashboards.py)."""
    documented = readme_metrics()
    for group in rules()["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                assert name in documented, (
                    f"rule {rule.get('alert', rule.get('record'))} uses {name}"
                )
