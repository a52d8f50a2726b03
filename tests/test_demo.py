"""`augur demo` end to end: real processes, scores in Prometheus, enriched alerts, a clean stop."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from exporter.config.load import check_files
from exporter.config.root import Config
from exporter.demo.config import (
    ENRICHED_LOG,
    RULES_YAML,
    WORKLOAD_TARGET,
    alertmanager_config,
    augur_config,
    queries,
)
from exporter.demo.procs import INSTALL_HINT, MissingBinaryError, find_binary
from exporter.demo.receiver import DemoReceiver, format_alert
from exporter.demo.receiver import serve as serve_receiver
from exporter.demo.stack import add_arguments
from exporter.demo.stack import run as run_demo_fn
from exporter.demo.workload import ROTATION, Workload

T = TypeVar("T")

# Generous: two shared cores, and the first scores need a poll and two scrapes.
START_TIMEOUT = 120.0
DURATION = 150.0
# From the alert in Alertmanager to its enriched copy at the demo's receiver: two routing
# passes (group_wait 0s each), the model and a few Prometheus queries; seconds when idle.
ENRICH_TIMEOUT = 60.0
# The fixed set of docs/alertmanager.md, spelled out: the test checks the model against it.
CATEGORIES = {
    "cpu", "memory", "disk", "network", "availability", "latency", "traffic", "errors",
    "saturation", "security", "data_integrity", "deployment", "hardware", "other",
}  # fmt: skip


def binaries() -> None:
    try:
        for kind in ("prometheus", "promtool", "alertmanager"):
            find_binary(kind)
    except MissingBinaryError as exc:
        pytest.skip(str(exc))


class Demo:
    """`augur demo` in a subprocess; its output is drained by threads so it never blocks."""

    def __init__(self, *args: str) -> None:
        argv = [sys.executable, "-m", "exporter.cli", "demo", *args]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.threads = [
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for thread in self.threads:
            thread.start()
        self.dir: Path | None = None

    @staticmethod
    def _drain(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)

    def info(self) -> dict[str, Any]:
        """The demo's URLs, from the demo-urls.json named on its `Files:` line."""

        def files_line() -> str | None:
            assert self.proc.poll() is None, f"the demo exited early:\n{self.output()}"
            return next((ln for ln in self.stdout if ln.startswith("Files: ")), None)

        line = eventually(files_line, START_TIMEOUT, "the demo printed its URLs", self)
        self.dir = Path(line.split()[1])
        info: dict[str, Any] = json.loads((self.dir / "demo-urls.json").read_text())
        return info

    def wait(self, timeout: float) -> int:
        """Wait for the demo to exit and for its last output lines to be read."""
        code = self.proc.wait(timeout)
        for thread in self.threads:
            thread.join(10)
        return code

    def leftovers(self) -> list[int]:
        """Processes still running from the demo's directory (the children name it in argv)."""
        if self.dir is None:
            return []
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.dir).encode() in cmdline:
                    out.append(int(entry.name))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in self.threads:
            thread.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        for pid in self.leftovers():  # only after a failed test: never leak the children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_demo() -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        binaries()
        demo = Demo(*args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.close()


def eventually(check: Callable[[], T | None], within: float, what: str, demo: Demo) -> T:
    """Poll `check` until it returns a truthy value; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except urllib.error.HTTPError:
            raise  # an answer, if not the one hoped for: a bad query, not a slow server
        except OSError as exc:  # a server not up yet, or a refused connection
            result, last = None, exc
        if result:
            return result
        last = result if result is not None else last
        time.sleep(1.0)
    raise AssertionError(f"not true after {within:g} s: {what} (last: {last!r})\n{demo.output()}")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200, url
        body = resp.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


def promql(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_demo_config_is_valid_for_augur_promtool_and_amtool(tmp_path: Path) -> None:
    am_url = "http://127.0.0.1:7"
    doc = augur_config("http://127.0.0.1:9", "127.0.0.1:9", tmp_path / "augur.db", am_url)
    config = Config.model_validate(doc)
    assert [q.name for q in config.queries] == [q["name"] for q in queries()]
    assert {q.expr for q in config.queries} == {p.metric for e in ROTATION for p in e.parts()}
    # Enrichment is on, and the model and runbooks it loads are found from a source checkout.
    assert config.alertmanager.urls == [am_url]
    assert check_files(config) == []
    binaries()
    (tmp_path / "rules.yml").write_text(RULES_YAML)
    am = alertmanager_config("http://127.0.0.1:9", "http://127.0.0.1:8/")
    (tmp_path / "am.yml").write_text(yaml.safe_dump(am))
    check = [[find_binary("promtool"), "check", "rules", str(tmp_path / "rules.yml")]]
    if amtool := shutil.which("amtool"):
        check.append([amtool, "check-config", str(tmp_path / "am.yml")])
    for argv in check:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    if amtool:
        # Originals to augur's webhook only, what augur posts back to the demo's receiver only.
        for labels, receiver in (
            (["alertname=AugurAnomaly", "service=search"], "augur"),
            (["alertname=HighRequestLatency", "augur_enriched=false"], "augur"),
            (["alertname=AugurAnomaly", "augur_enriched=true", "category=latency"], "demo"),
        ):
            argv = [amtool, "config", "routes", "test", f"--config.file={tmp_path / 'am.yml'}"]
            done = subprocess.run(argv + labels, capture_output=True, text=True, timeout=60)
            assert done.stdout.strip() == receiver, (labels, done.stdout, done.stderr)
    hooks = {r["name"]: r.get("webhook_configs", [{}])[0] for r in am["receivers"]}
    assert hooks["augur"] == {"url": "http://127.0.0.1:9/webhook", "send_resolved": True}
    assert hooks["demo"] == {"url": "http://127.0.0.1:8/", "send_resolved": True}


def _series(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def promtool_test(tmp_path: Path, rules: dict[str, Any], tests: dict[str, Any]) -> None:
    """Run `promtool test rules` on `rules` with one test group; fail with its report."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [tests]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec))
    argv = [find_binary("promtool"), "test", "rules", str(tmp_path / "test.yml")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]


def test_demo_rules_fire_during_the_injections_only(tmp_path: Path) -> None:
    """The hand-written rules, over one rotation of the workload's own series."""
    binaries()
    # From 15:00 UTC, the daily peak of latency, with ten minutes of normal series first;
    # promtool's time 0 is `begin`.
    epoch, step = 1704121200.0, 15.0
    workload, begin = Workload(epoch=epoch), epoch - 600
    end = epoch + len(ROTATION) * workload.period
    values: dict[str, list[float]] = {}
    for i in range(int((end - begin) / step)):
        for s in workload.samples_at(begin + i * step):
            if s.name in ("demo_http_request_duration_seconds", "demo_disk_used_ratio"):
                key = _series(s.name, {**s.labels, **WORKLOAD_TARGET})
                values.setdefault(key, []).append(s.value)
    checkout = 'demo_http_request_duration_seconds{service="checkout"}'
    burst = next(i for i, e in enumerate(ROTATION) if e.kind == "fill_burst")
    burst_at = epoch + burst * workload.period - begin
    slow = {"service": "checkout", **WORKLOAD_TARGET, "severity": "page"}
    disk = {"device": "sda1", "mountpoint": "/", **WORKLOAD_TARGET, "severity": "page"}
    cases = []
    for i in range(len(next(iter(values.values())))):
        at = i * step
        firing = checkout in {p.selector for p in workload.disturbed(begin + at)}
        cases.append(("HighRequestLatency", at, [slow] if firing else []))
        if not 0 <= at - burst_at < 120:  # predict_linear looks two minutes back
            cases.append(("DiskWillFillIn1Hour", at, []))
    cases += [("DiskWillFillIn1Hour", burst_at + s, [disk]) for s in (0.0, step)]
    # What the rules evaluate is checked here; what they say, in the next test.
    rules = yaml.safe_load(RULES_YAML)
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations")
    tests = {
        "interval": f"{step:g}s",
        "input_series": [{"series": k, "values": " ".join(map(str, v))} for k, v in values.items()],
        "alert_rule_test": [
            {
                "eval_time": f"{at:g}s",
                "alertname": name,
                "exp_alerts": [{"exp_labels": x} for x in exp],
            }
            for name, at, exp in cases
        ],
    }
    promtool_test(tmp_path, rules, tests)


def test_demo_alerts_say_in_plain_words_what_is_wrong(tmp_path: Path) -> None:
    """The text the model classifies: summary and description as Prometheus renders them."""
    binaries()
    incident = "augur_anomaly_incident{{job='augur',query='{}',metric='{}',detector='ensemble',{}}}"
    series = {
        # search's and the disk's incidents are open, app-2's CPU's escalated once (a score
        # twice the one that opened it), auth's is not open: no alert for it.
        incident.format(
            "http_requests",
            "demo_http_requests_per_second",
            "instance='demo-workload',service='search'",
        ): "0 1",
        incident.format("cpu_usage", "demo_cpu_usage_ratio", "instance='app-2'"): "1 2",
        incident.format(
            "disk_used",
            "demo_disk_used_ratio",
            "instance='demo-workload',device='sda1',mountpoint='/'",
        ): "0 1",
        incident.format(
            "http_requests",
            "demo_http_requests_per_second",
            "instance='demo-workload',service='auth'",
        ): "0 0",
        "demo_http_request_duration_seconds{job='workload',instance='demo-workload',service='checkout'}": "0.3 1.25",
        "demo_disk_used_ratio{job='workload',instance='demo-workload',device='sda1',mountpoint='/'}": "0.5 0.5 0.5 0.5 0.5 0.5 0.5 0.5 0.6",
    }
    workload = {"job": "workload", "instance": "demo-workload", "severity": "page"}
    anomaly = {"job": "augur", "instance": "demo-workload", "severity": "warning"}
    stage = "Stage {}: 1 when opened, one more each time it got much worse. The alert resolves once the series is back in its band."
    expected = [
        ("AugurAnomaly", "15s", {**anomaly, "query": "http_requests", "metric": "demo_http_requests_per_second", "service": "search", "stage": "1"}, {
            "summary": "demo_http_requests_per_second of service search is anomalous",
            "description": 'augur opened an incident on the series demo_http_requests_per_second with instance="demo-workload" service="search" (query http_requests): it went far outside the band augur expects from its recent history. ' + stage.format(1),
        }),
        ("AugurAnomaly", "15s", {**anomaly, "query": "cpu_usage", "metric": "demo_cpu_usage_ratio", "instance": "app-2", "stage": "2"}, {
            "summary": "demo_cpu_usage_ratio on app-2 is anomalous and has got much worse",
            "description": 'augur opened an incident on the series demo_cpu_usage_ratio with instance="app-2" (query cpu_usage): it went far outside the band augur expects from its recent history. ' + stage.format(2),
        }),
        ("AugurAnomaly", "15s", {**anomaly, "query": "disk_used", "metric": "demo_disk_used_ratio", "device": "sda1", "mountpoint": "/", "stage": "1"}, {
            "summary": "demo_disk_used_ratio of / on sda1 is anomalous",
            "description": 'augur opened an incident on the series demo_disk_used_ratio with device="sda1" instance="demo-workload" mountpoint="/" (query disk_used): it went far outside the band augur expects from its recent history. ' + stage.format(1),
        }),
        ("HighRequestLatency", "15s", {**workload, "service": "checkout"}, {
            "summary": "p99 latency of checkout is 1.25s, above 800 ms",
            "description": "1 in 100 requests to checkout on demo-workload takes longer than 1.25s; it should stay under 800 ms.",
        }),
        ("DiskWillFillIn1Hour", "2m", {**workload, "device": "sda1", "mountpoint": "/"}, {
            "summary": "Filesystem / on sda1 will be full within an hour at this rate",
            "description": "At the rate of the last 2 minutes, / (sda1) on demo-workload runs out of space within an hour.",
        }),
    ]  # fmt: skip
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, at, labels, notes in expected:
        cases.setdefault((name, at), []).append({"exp_labels": labels, "exp_annotations": notes})
    tests = {
        "interval": "15s",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": alerts}
            for (name, at), alerts in cases.items()
        ],
    }
    promtool_test(tmp_path, yaml.safe_load(RULES_YAML), tests)


def test_the_receiver_prints_an_alert_again_only_when_augur_changed_what_it_says(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    receiver = DemoReceiver(tmp_path / "alerts.jsonl", out)
    receiver.receive([ENRICHED])
    receiver.receive([ENRICHED])  # Alertmanager's repeat: not printed again
    assert out.getvalue().count("FIRING") == 1 and "UPDATED" not in out.getvalue()
    named = {**NOTES, "augur_summary": NOTES["augur_summary"][:-1] + "; likely cause: disk."}
    receiver.receive([{**ENRICHED, "annotations": named}])  # the settle-time look's re-post
    receiver.receive([{**ENRICHED, "annotations": named}])
    assert out.getvalue().count("UPDATED") == 1
    assert "likely cause: disk." in out.getvalue().split("UPDATED")[1]
    receiver.receive([RESOLVED])
    assert out.getvalue().count("RESOLVED") == 1
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 5  # every one logged


NOTES = {
    "augur_category": "latency",
    "augur_confidence": "0.98",
    "augur_entities": '{"instance":["demo-workload"],"service":["search"]}',
    "augur_related": 'demo_http_request_duration_seconds{instance="demo-workload",service="search"} score 2.40, anomalous since 03:02 UTC\ndemo_disk_used_ratio{instance="demo-workload",device="sda1"} score 1.10, anomalous since 03:02 UTC\nrule expression: 1 at 03:02 UTC',
    "augur_runbook": "Latency high: slow responses — /src/exporter/runbooks/latency.en.md (score 0.97)",
    "augur_summary": "Latency: demo_http_requests_per_second of service search is anomalous on demo-workload.",
    "summary": "demo_http_requests_per_second of service search is anomalous",
}  # fmt: skip
ENRICHED = {
    "status": "firing",
    "labels": {"alertname": "AugurAnomaly", "augur_enriched": "true", "category": "latency", "instance": "demo-workload", "job": "augur", "metric": "demo_http_requests_per_second", "query": "http_requests", "service": "search", "severity": "warning", "stage": "1"},
    "annotations": NOTES,
    "startsAt": "2026-11-29T03:02:07.217Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "fingerprint": "a1272a402dd0ae36",
}  # fmt: skip
RESOLVED = {**ENRICHED, "status": "resolved", "endsAt": "2026-11-29T03:03:52.217123456Z"}


def test_an_enriched_alert_prints_as_a_compact_block() -> None:
    arrived = time.mktime((2026, 11, 29, 3, 2, 7, 0, 0, -1))
    assert format_alert(ENRICHED, arrived) == (
        "03:02:07  FIRING    AugurAnomaly  service=search instance=demo-workload metric=demo_http_requests_per_second\n"
        "  category  latency (confidence 0.98)\n"
        "  summary   Latency: demo_http_requests_per_second of service search is anomalous on demo-workload.\n"
        '  related   demo_http_request_duration_seconds{instance="demo-workload",service="search"} score 2.40, anomalous since 03:02 UTC  (+1 more)\n'
        "  runbook   Latency high: slow responses"
    )
    assert format_alert(RESOLVED, arrived + 105) == (
        "03:03:52  RESOLVED  AugurAnomaly  service=search instance=demo-workload metric=demo_http_requests_per_second  (latency, after 1m45s)"
    )
    missing = {
        **NOTES,
        "augur_related": "unavailable: Prometheus is unreachable",
        "augur_missing": "related: Prometheus is unreachable",
    }
    chained = {
        **NOTES,
        "augur_cause": 'likely cause: demo_disk_io_utilization_ratio{instance="app-1"} anomalous since 03:01:30 UTC (peak 4.02)',
        "augur_follows": "follows: AugurAnomaly on checkout (03:01 UTC)",
    }
    block = format_alert({**ENRICHED, "annotations": chained}, arrived).splitlines()
    assert block[4:7] == [
        '  cause     demo_disk_io_utilization_ratio{instance="app-1"} anomalous since 03:01:30 UTC (peak 4.02)',
        "  follows   AugurAnomaly on checkout (03:01 UTC)",
        "  runbook   Latency high: slow responses",
    ]
    updated = format_alert({**ENRICHED, "annotations": chained}, arrived, updated=True)
    assert updated.startswith("03:02:07  UPDATED   AugurAnomaly  service=search ")
    block = format_alert({**ENRICHED, "annotations": missing}, arrived).splitlines()
    assert block[3:] == [
        "  related   unavailable: Prometheus is unreachable",
        "  runbook   Latency high: slow responses",
        "  missing   related: Prometheus is unreachable",
    ]


async def test_the_receiver_prints_each_state_once_and_logs_every_alert(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / ENRICHED_LOG
    async with serve_receiver(log, out) as receiver, aiohttp.ClientSession() as session:
        assert receiver.url.startswith("http://127.0.0.1:") and log.read_text() == ""
        # Alertmanager repeats a firing alert every repeat_interval; then it resolves.
        for alert in (ENRICHED, ENRICHED, RESOLVED):
            async with session.post(receiver.url, json={"version": "4", "alerts": [alert]}) as resp:
                assert resp.status == 200
        for bad in (b"not json", b'{"alerts": 1}', b"[]"):
            async with session.post(receiver.url, data=bad) as resp:
                assert resp.status == 400, bad
        async with session.get(receiver.url) as resp:
            page = await resp.text()
    printed = out.getvalue()
    assert printed.count("FIRING") == 1 and printed.count("RESOLVED") == 1, printed
    assert printed.index("FIRING") < printed.index("RESOLVED")
    assert "FIRING    AugurAnomaly" in page and "RESOLVED  AugurAnomaly" in page
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [a["status"] for a in logged] == ["firing", "firing", "resolved"]
    assert all(a["labels"] == ENRICHED["labels"] and a["received"] > 0 for a in logged)


def test_missing_binaries_print_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_demo_fn(parser.parse_args(["--duration", "5"])) == 1
    err = capsys.readouterr().err
    assert INSTALL_HINT in err and "Traceback" not in err
    assert run_demo_fn(parser.parse_args(["--duration", "0"])) == 2
    assert "--duration" in capsys.readouterr().err


@pytest.mark.integration
def test_the_demo_scores_flags_alerts_and_enriches_then_stops_by_itself(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--duration", f"{DURATION:g}")
    info = demo.info()
    printed = time.monotonic()
    prometheus = info["prometheus"]
    for key in ("graph", "alerts", "alertmanager", "augur", "workload", "receiver"):
        assert get(info[key]), key
    assert demo.dir is not None and info["enriched_log"] == str(demo.dir / ENRICHED_LOG)

    # The history was backfilled before Prometheus started: six hours at 15 s.
    count = promql(prometheus, 'count_over_time(demo_cpu_usage_ratio{instance="app-1"}[6h])')
    assert float(count[0]["value"][1]) > 1300

    def scored() -> set[tuple[str, str]] | None:
        found = promql(prometheus, "count by (query, detector) (augur_anomaly_score)")
        pairs = {(r["metric"]["query"], r["metric"]["detector"]) for r in found}
        want = {(q, "ensemble") for q in info["queries"]}
        return pairs if pairs >= want else None

    eventually(
        scored, START_TIMEOUT, "augur_anomaly_score of the default detector, every query", demo
    )

    # The first injected anomaly must be flagged by the default detector, in Prometheus and as
    # an AugurAnomaly alert (an incident opened) in Alertmanager.
    first = info["first_anomaly"]
    entry = next(e for e in ROTATION if e.selector == first["series"])
    query = {q["expr"]: q["name"] for q in queries()}[entry.metric]
    matchers = ",".join([f'query="{query}"', *(f'{k}="{v}"' for k, v in entry.labels)])
    within = first["at"] + entry.duration + 90 - time.time()
    score = f"augur_anomaly_score{{{matchers}}}"
    injected = f"max_over_time(demo_injected_anomaly{{series='{entry.selector}'}}[10m]) == 1"
    eventually(lambda: promql(prometheus, injected), within, f"{entry.selector} injected", demo)

    def flagged() -> list[dict[str, Any]] | None:
        since = int(time.time() - first["at"])  # only scores from after the injection began
        if since <= 0:
            return None
        return promql(prometheus, f"max(max_over_time({score}[{since}s])) >= 1")

    eventually(flagged, within, f"augur flagged {entry.selector}", demo)

    def alerted() -> bool:
        alerts = get(info["alertmanager"] + "/api/v2/alerts")
        return any(
            a["labels"].get("alertname") == "AugurAnomaly" and a["labels"].get("query") == query
            for a in alerts
        )

    eventually(alerted, 90, f"an AugurAnomaly alert for {query} in Alertmanager", demo)

    # Alertmanager routed it to augur's webhook; augur enriched it with the text model and
    # posted it back, and Alertmanager routed the enriched copy to the demo's receiver.
    def enriched() -> dict[str, Any] | None:
        for line in Path(info["enriched_log"]).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                alert: dict[str, Any] = json.loads(line)
                labels = alert["labels"]
                if labels.get("alertname") == "AugurAnomaly" and labels.get("query") == query:
                    return alert
        return None

    alert = eventually(enriched, ENRICH_TIMEOUT, f"{query}'s alert at the receiver", demo)
    labels, notes = alert["labels"], alert["annotations"]
    assert labels["augur_enriched"] == "true", alert
    assert notes["augur_category"] in CATEGORIES and labels["category"] == notes["augur_category"]
    assert 0 < float(notes["augur_confidence"]) <= 1, alert
    assert notes["augur_summary"].strip() and notes["augur_runbook"], alert
    assert entry.metric in notes["augur_entities"], alert
    # ... and printed it to the terminal.
    words = ["FIRING", "AugurAnomaly", *(f"{k}={v}" for k, v in entry.labels)]

    def block_printed() -> str | None:
        lines = list(demo.stdout)
        for i, line in enumerate(lines):
            if all(w in line.split() for w in words) and len(lines) >= i + 5:
                return "".join(lines[i : i + 5])
        return None

    block = eventually(block_printed, 10, f"a FIRING block for {entry.selector}", demo)
    assert f"category  {notes['augur_category']} (confidence" in block, block
    assert f"summary   {notes['augur_summary']}" in block, block

    # --duration ends the demo: exit 0, every child stopped, the directory removed.
    assert demo.wait(DURATION + 60 - (time.monotonic() - printed)) == 0, demo.output()
    assert "stopping after" in "".join(demo.stderr)
    assert demo.dir is not None and not demo.dir.exists()
    assert demo.leftovers() == []
    for pid in info["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.integration
def test_sigterm_stops_everything_and_keep_keeps_the_files(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--keep")
    info = demo.info()
    assert get(info["augur"].replace("/metrics", "/-/ready"))
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.wait(60) == 0, demo.output()
    assert demo.leftovers() == []
    assert demo.dir is not None
    try:
        assert (demo.dir / "augur.log").exists() and (demo.dir / "augur.yml").exists()
        assert (demo.dir / ENRICHED_LOG).exists()
        assert yaml.safe_load((demo.dir / "augur.yml").read_text())["web"]["listen_address"]
    finally:
        shutil.rmtree(demo.dir, ignore_errors=True)
