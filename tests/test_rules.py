"""The shipped rule files: valid, tested with promtool, in sync with the PrometheusRule.

deploy/prometheus/*.rules.yml are the source; deploy/k8s/base/augur-prometheusrule.yaml is
generated from them by scripts/render_rules.py. Every alert has a promtool case where it fires
and one where it stays quiet, and a runbook in docs/alerts.md that its `runbook_url` links.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from waiting import eventually

from exporter.alerts.payloads import format_time
from exporter.demo.procs import Process, find_binary, free_port

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus"
TESTS = RULES / "tests"
PROMETHEUSRULE = ROOT / "deploy" / "k8s" / "base" / "augur-prometheusrule.yaml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
VMANOMALY_NAMES = {"anomaly_score", "y", "yhat", "yhat_lower", "yhat_upper"}


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.rules.yml"))


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of the rule files, in order (one alert may have several rules)."""
    return [
        rule
        for path in rule_files()
        for group in load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def alerts() -> dict[str, dict[str, Any]]:
    """Every alert of the rule files, by name: the first of its rules."""
    found: dict[str, dict[str, Any]] = {}
    for rule in alert_rules():
        found.setdefault(rule["alert"], rule)
    return found


def test_an_alert_of_several_rules_says_the_same_in_each() -> None:
    """AugurNotPolling is two rules (each condition with its own `for:`): one alert to a
    reader, so the same labels and text, and nowhere else a name used twice by mistake."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    several = {name: rules for name, rules in by_name.items() if len(rules) > 1}
    assert set(several) == {"AugurNotPolling"}
    for rules in several.values():
        first = rules[0]
        for rule in rules[1:]:
            assert rule["labels"] == first["labels"]
            assert rule["annotations"] == first["annotations"]


def test_rule_files_pass_promtool_check() -> None:
    files = rule_files()
    assert [p.name for p in files] == ["augur-alerts.rules.yml", "augur-vmanomaly.rules.yml"]
    out = subprocess.run(
        [find_binary("promtool"), "check", "rules", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("test_file", sorted(TESTS.glob("*.test.yml")), ids=lambda p: p.name)
def test_promtool_rule_tests_pass(test_file: Path) -> None:
    out = subprocess.run(
        [find_binary("promtool"), "test", "rules", test_file.name],
        capture_output=True,
        text=True,
        cwd=TESTS,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS.glob("*.test.yml"):
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alerts())
    assert len(names) == 11
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_every_vmanomaly_name_is_recorded_and_tested() -> None:
    (group,) = load(RULES / "augur-vmanomaly.rules.yml")["groups"]
    assert {r["record"] for r in group["rules"]} == VMANOMALY_NAMES
    tested = set()
    for case in load(TESTS / "augur-vmanomaly.test.yml")["tests"]:
        for check in case.get("promql_expr_test", []):
            tested.update(
                re.findall(r"\b(?:anomaly_score|y|yhat|yhat_lower|yhat_upper)\b", check["expr"])
            )
    assert tested == VMANOMALY_NAMES


def test_prometheusrule_is_what_the_render_script_writes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_rules.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # ... and holds exactly the groups of the rule files, in their order.
    groups = [g for path in rule_files() for g in load(path)["groups"]]
    assert load(PROMETHEUSRULE)["spec"]["groups"] == groups


def test_every_alert_links_its_runbook_in_docs_alerts_md() -> None:
    text = ALERTS_DOC.read_text(encoding="utf-8")
    headings = {h.strip().lower() for h in re.findall(r"^## (.+)$", text, re.M)}
    bases = set()
    for name, rule in alerts().items():
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        bases.add(base)
        # GitHub's anchor for a heading `## AugurDown` is `#augurdown`.
        assert anchor == name.lower() and name.lower() in headings, name
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "Meaning" in section and "What to do" in section, f"{name}: runbook incomplete"
    (base,) = bases
    assert base.endswith("/blob/main/docs/alerts.md")
    # Once pyproject.toml names the repository, the links must point into it.
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"].get("urls", {})
    repos = {
        u.rstrip("/") for u in urls.values() if re.match(r"https://github\.com/[^/]+/[^/]+/?$", u)
    }
    for repo in repos:
        assert base == f"{repo}/blob/main/docs/alerts.md", (
            "change the runbook base in deploy/prometheus (rules and tests), then render_rules.py"
        )


def stage_alert(stage: int, ends: float) -> dict[str, Any]:
    """AnomalousSeries of one series at `stage`, as Prometheus posts it (resolved once `ends`
    is past)."""
    labels = {"job": "augur", "query": "api", "service": "checkout", "severity": "warning"}
    return {
        "labels": {"alertname": "AnomalousSeries", **labels, "stage": str(stage)},
        "annotations": {"summary": "api is anomalous"},
        "startsAt": format_time(datetime.fromtimestamp(ends - 600, UTC)),
        "endsAt": format_time(datetime.fromtimestamp(ends, UTC)),
    }


async def test_an_escalation_notifies_firing_and_resolved_together_without_stage_in_group_by(
    alertmanager_factory: Callable[[dict[str, Any]], Process],
) -> None:
    """docs/alerts.md#anomalousseries: when stage 2 replaces stage 1, the rule drops stage 1
    (resolved) as stage 2 fires. Grouped as docs/alertmanager.md's root route groups
    ([alertname, cluster]), both come in one notification; grouped by every label ('...'),
    stage 1's RESOLVED comes alone, which is what the runbook warns against."""
    notifications: dict[str, list[list[tuple[str, str]]]] = {"grouped": [], "split": []}

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        notifications[request.match_info["name"]].append(
            sorted((a["labels"]["stage"], a["status"]) for a in body["alerts"])
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{name}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fast = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
    hook = f"http://127.0.0.1:{port}"
    am = alertmanager_factory(
        {
            "route": {
                "receiver": "grouped",
                "routes": [
                    {"receiver": "grouped", "group_by": ["alertname", "cluster"], "continue": True}
                    | fast,
                    {"receiver": "split", "group_by": ["..."]} | fast,
                ],
            },
            "receivers": [
                {
                    "name": name,
                    "webhook_configs": [{"url": f"{hook}/{name}", "send_resolved": True}],
                }
                for name in notifications
            ],
        }
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def post(*alerts: dict[str, Any]) -> None:
                async with session.post(f"{am.url}/api/v2/alerts", json=list(alerts)) as r:
                    assert r.status == 200, await r.text()

            await post(stage_alert(1, time.time() + 3600))
            await eventually(lambda: all(notifications.values()))
            # The next evaluation: stage 1 gone (resolved now), stage 2 firing; one post.
            now = time.time()
            await post(stage_alert(1, now - 1), stage_alert(2, now + 3600))
            both = [("1", "resolved"), ("2", "firing")]
            await eventually(lambda: both in notifications["grouped"])
            await eventually(lambda: [("1", "resolved")] in notifications["split"])
    finally:
        await runner.cleanup()
    assert notifications["grouped"] == [[("1", "firing")], both]
    assert both not in notifications["split"]


def test_readme_example_rules_pass_promtool(tmp_path: Path) -> None:
    """README's "Alerting on the score" block: the disk rule names the disk's host, not augur."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Alerting on the score", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    (tmp_path / "rules.yml").write_text(block, encoding="utf-8")
    forecast = (
        'augur_forecast_value{job="augur",instance="augur-0:9465",query="disk_used",'
        'horizon="4h",exported_instance="db-1:9100",mountpoint="/var"}'
    )
    doc = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": forecast, "values": "0.5 0.99x20"}],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "DiskFullIn4Hours", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "DiskFullIn4Hours",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "augur",
                                    "instance": "db-1:9100",
                                    "exported_instance": "db-1:9100",
                                    "query": "disk_used",
                                    "horizon": "4h",
                                    "mountpoint": "/var",
                                    "severity": "critical",
                                },
                                "exp_annotations": {
                                    "summary": "db-1:9100 /var will be full within 4 hours"
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = subprocess.run(
        [find_binary("promtool"), "test", "rules", "test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
