"""The storage rules of docs/alertmanager.md fire when they should: `promtool test rules`.

`AugurStorageDamaged` for an hour after a file was found damaged, `AugurStorageFailing` while
outbox writes keep failing, `AugurOutboxFull` near `outbox.max_alerts`; none on a healthy
augur.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from exporter.demo.procs import find_binary

DOCS = Path(__file__).resolve().parent.parent / "docs" / "alertmanager.md"
AUGUR = {"job": "augur", "instance": "augur-0:9465"}


def docs_rules() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (rules,) = [b for b in map(yaml.safe_load, blocks) if "groups" in b]
    assert isinstance(rules, dict)
    return rules


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


def test_storage_rules_fire_when_they_should(tmp_path: Path) -> None:
    rules = docs_rules()
    for group in rules["groups"]:  # only the annotations' templates differ: not tested here
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
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
                fires("AugurStorageDamaged", "6m", store="outbox"),
                fires("AugurStorageDamaged", "60m", store="outbox"),
                quiet("AugurStorageDamaged", "70m"),  # an hour on, it is history
                quiet("AugurStorageFailing", "12m"),  # not yet 5 minutes
                fires("AugurStorageFailing", "20m", store="outbox"),
                quiet("AugurStorageFailing", "45m"),  # the volume took writes again
                quiet("AugurOutboxFull", "30m"),
                quiet("AugurOutboxFull", "42m"),
                fires("AugurOutboxFull", "50m"),
            ],
        }
    ]
    path = tmp_path / "test.yml"
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = subprocess.run(
        [find_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
