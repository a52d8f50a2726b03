"""`augur demo` end to end: real processes, scores in Prometheus, alerts, a clean stop."""

from __future__ import annotations

import argparse
import contextlib
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

import pytest
import yaml

from exporter.config import Config
from exporter.demo import ALERTMANAGER_YAML, RULES_YAML, add_arguments, augur_config, queries
from exporter.demo import run_demo as run_demo_fn
from exporter.procs import INSTALL_HINT, MissingBinaryError, find_binary
from exporter.workload import ROTATION

T = TypeVar("T")

# Generous: two shared cores, and the first scores need a poll and two scrapes.
START_TIMEOUT = 120.0
DURATION = 150.0


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
    config = Config.model_validate(augur_config("http://127.0.0.1:9", "127.0.0.1:9", tmp_path))
    assert [q.name for q in config.queries] == [q["name"] for q in queries()]
    assert {q.expr for q in config.queries} == {entry.metric for entry in ROTATION}
    binaries()
    (tmp_path / "rules.yml").write_text(RULES_YAML)
    (tmp_path / "am.yml").write_text(ALERTMANAGER_YAML)
    check = [[find_binary("promtool"), "check", "rules", str(tmp_path / "rules.yml")]]
    if amtool := shutil.which("amtool"):
        check.append([amtool, "check-config", str(tmp_path / "am.yml")])
    for argv in check:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


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
def test_the_demo_scores_flags_and_alerts_then_stops_by_itself(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--duration", f"{DURATION:g}")
    info = demo.info()
    printed = time.monotonic()
    prometheus = info["prometheus"]
    for key in ("graph", "alerts", "alertmanager", "augur", "workload"):
        assert get(info[key]), key

    # The history was backfilled before Prometheus started: six hours at 15 s.
    count = promql(prometheus, 'count_over_time(demo_cpu_usage_ratio{instance="app-1"}[6h])')
    assert float(count[0]["value"][1]) > 1300

    def scored() -> set[tuple[str, str]] | None:
        found = promql(prometheus, "count by (query, detector) (augur_anomaly_score)")
        pairs = {(r["metric"]["query"], r["metric"]["detector"]) for r in found}
        want = {(q, d) for q in info["queries"] for d in ("zscore", "ewma")}
        return pairs if pairs >= want else None

    eventually(scored, START_TIMEOUT, "augur_anomaly_score for every query and detector", demo)

    # The first injected anomaly must be flagged by at least one detector, in Prometheus and
    # as an AugurAnomaly alert in Alertmanager.
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
        assert yaml.safe_load((demo.dir / "augur.yml").read_text())["web"]["listen_address"]
    finally:
        shutil.rmtree(demo.dir, ignore_errors=True)
