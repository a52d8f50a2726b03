"""The storage and upstream rules fire when they should: `promtool test rules`.

Both places that ship them are tested: the rules block of docs/alertmanager.md and the
PrometheusRule of deploy/k8s (which also has `AugurPrometheusUnreachable`).

`AugurStorageDamaged` for an hour after a file was found damaged, `AugurStorageFailing` while
outbox writes keep failing, `AugurOutboxFull` near `outbox.max_alerts`; none on a healthy
augur.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.demo.procs import find_binary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "alertmanager.md"
K8S = ROOT / "deploy" / "k8s" / "base" / "augur-prometheusrule.yaml"
AUGUR = {"job": "augur", "instance": "augur-0:9465"}


def docs_rules() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (rules,) = [b for b in map(yaml.safe_load, blocks) if "groups" in b]
    assert isinstance(rules, dict)
    return rules


def k8s_rules() -> dict[str, Any]:
    spec = yaml.safe_load(K8S.read_text(encoding="utf-8"))["spec"]
    assert isinstance(spec, dict)
    return spec


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in {**AUGUR, **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def fires(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": {**AUGUR, **labels}}],
    }


def quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def promtool_test(tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]]) -> None:
    for group in rules["groups"]:  # only the annotations' templates differ: not tested here
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    path = tmp_path / "test.yml"
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = subprocess.run(
        [find_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("source", ["docs", "k8s"])
def test_storage_rules_fire_when_they_should(tmp_path: Path, source: str) -> None:
    rules = docs_rules() if source == "docs" else k8s_rules()
    # The PrometheusRule adds severities; the docs' block leaves them to the reader.
    warning = {"severity": "warning"} if source == "k8s" else {}
    critical = {"severity": "critical"} if source == "k8s" else {}
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # The outbox found damaged at 5m: 0 -> 1.
                series("augur_storage_corruptions_total", "0x4 1x100", store="outbox"),
                series("augur_storage_corruptions_total", "0x105", store="state"),
                # Outbox writes fail from 10m to 30m (a full volume), then succeed again.
                series("augur_storage_failures_total", "0x9 1+1x20 21x75", store="outbox"),
                series("augur_storage_failures_total", "0x105", store="state"),
                # The outbox fills up to 95 % of its bound from 40m.
                series("augur_outbox_alerts", "10x39 95000x66"),
                series("augur_outbox_max_alerts", "100000x105"),
            ],
            "alert_rule_test": [
                quiet("AugurStorageDamaged", "4m"),
                fires("AugurStorageDamaged", "6m", store="outbox", **warning),
                fires("AugurStorageDamaged", "60m", store="outbox", **warning),
                quiet("AugurStorageDamaged", "70m"),  # an hour on, it is history
                quiet("AugurStorageFailing", "12m"),  # not yet 5 minutes
                fires("AugurStorageFailing", "20m", store="outbox", **critical),
                quiet("AugurStorageFailing", "45m"),  # the volume took writes again
                quiet("AugurOutboxFull", "30m"),
                quiet("AugurOutboxFull", "42m"),
                fires("AugurOutboxFull", "50m", **warning),
            ],
        }
    ]
    promtool_test(tmp_path, rules, tests)


def test_prometheus_unreachable_fires_from_the_start_and_clears(tmp_path: Path) -> None:
    up = "augur_upstream_up"
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # Never reached Prometheus for the first 10m (0 from augur's start), then up
                # until 30m, down from 30m to 33m (a blip), down again from 40m on.
                series(up, "0x9 1x20 0x3 1x6 0x30", upstream="prometheus"),
            ],
            "alert_rule_test": [
                quiet("AugurPrometheusUnreachable", "3m"),
                fires(
                    "AugurPrometheusUnreachable", "7m", upstream="prometheus", severity="warning"
                ),
                quiet("AugurPrometheusUnreachable", "20m"),
                quiet("AugurPrometheusUnreachable", "34m"),  # shorter than 5m: no page
                fires(
                    "AugurPrometheusUnreachable", "50m", upstream="prometheus", severity="warning"
                ),
            ],
        }
    ]
    promtool_test(tmp_path, k8s_rules(), tests)
