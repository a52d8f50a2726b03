"""`augur demo`: a real Prometheus, Alertmanager, demo workload and augur, on loopback.

The first thing a new user runs. Six hours of workload history are backfilled before
Prometheus starts, so augur has a past to learn from at once; the workload then injects an
anomaly every few minutes, the first within half a minute, and augur's scores, the
`AugurAnomaly` alert and Alertmanager show it. Alertmanager routes every alert through augur's
webhook; the enriched copies augur posts back go to a receiver in this process, which prints
them. Everything lives in a temporary directory that is removed on exit, and every child
process is stopped whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from subprocess import DEVNULL, STDOUT
from typing import Any, ParamSpec

import aiohttp
import yaml

from exporter import logs
from exporter.config.alerts import EnrichConfig, ModelConfig
from exporter.config.durations import format_duration
from exporter.demo.config import (
    ENRICHED_LOG,
    FIRST_ANOMALY_AFTER,
    HISTORY_SECONDS,
    RULES_YAML,
    SCRAPE_INTERVAL,
    URLS_FILE,
    WORKLOAD_TARGET,
    alertmanager_config,
    augur_config,
    queries,
    scrape_configs,
)
from exporter.demo.procs import (
    INSTALL_HINT,
    MissingBinaryError,
    Process,
    backfill,
    find_binary,
    free_port,
    start_alertmanager,
    start_prometheus,
)
from exporter.demo.receiver import serve as serve_receiver
from exporter.demo.workload import Workload, serve

log = logging.getLogger("augur.demo")
P = ParamSpec("P")

READY_TIMEOUT = 90.0
AUGUR_STOP_SECONDS = 25.0


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (`--duration`, `--keep`, `--listen-host`) and the log flags."""
    logs.add_arguments(parser)
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds of running (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (configs, logs, TSDB) after stopping",
    )
    parser.add_argument(
        "--listen-host",
        choices=("127.0.0.1", "0.0.0.0"),
        default="127.0.0.1",
        help="where the demo's servers listen; 0.0.0.0 also opens them to other machines "
        "(default: 127.0.0.1, this machine only)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `--duration`; 0 on a normal stop, 1 on failure."""
    logs.setup_from(args)
    if args.duration is not None and not args.duration > 0:
        print("augur demo: --duration must be more than 0 seconds", file=sys.stderr)
        return 2
    try:
        for kind in ("prometheus", "promtool", "alertmanager"):
            find_binary(kind)
    except MissingBinaryError:
        print(f"augur demo: {INSTALL_HINT}", file=sys.stderr)
        return 1
    model = ModelConfig().dir
    if not (model / "manifest.json").is_file():
        print(
            f"augur demo: the text model that enriches alerts is not in {model}; run the demo "
            "from a checkout of augur's source (scripts/demo), which has it in models/onnx",
            file=sys.stderr,
        )
        return 1
    try:
        return asyncio.run(_main(args))
    except DemoError as exc:
        print(f"augur demo: {exc}", file=sys.stderr)
        return 1


class _Augur:
    """`augur run` as a child process, logging to a file in the demo's directory."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    @classmethod
    async def start(
        cls, tmp: Path, prometheus: str, alertmanager: str, host: str, port: int, level: str
    ) -> _Augur:
        """Write the demo's augur.yml and start `python -m exporter.cli run` with it."""
        config, address = tmp / "augur.yml", f"{host}:{port}"
        doc = augur_config(prometheus, address, tmp / "augur.db", alertmanager)
        config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        argv = ["-m", "exporter.cli", "run", "--config", str(config), "--web.listen-address"]
        argv += [address, *(["--log.level", level] if level else [])]
        # The demo's augur.yml is complete: a user's AUGUR_* variables must not override it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")}
        log_path = tmp / "augur.log"
        with log_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdin=DEVNULL, stdout=out, stderr=STDOUT, cwd=tmp, env=env
            )
        return cls(proc, port, log_path)

    def failure(self, what: str) -> DemoError:
        """An error saying `what` happened, with the end of augur's log."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        tail = "".join(f"\n    {line}" for line in lines[-15:])
        return DemoError(f"{what}; the end of its log:{tail}")

    async def wait_ready(self, stop: asyncio.Event) -> None:
        """Wait for `/-/ready` (its first successful poll); raise DemoError if it never comes."""
        deadline = time.monotonic() + READY_TIMEOUT
        answer = "no answer"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline and not stop.is_set():
                if self.proc.returncode is not None:
                    raise self.failure(f"augur exited with code {self.proc.returncode}")
                try:
                    async with session.get(self.url + "/-/ready") as resp:
                        if resp.status == 200:
                            return
                        answer = (await resp.text()).strip()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    answer = type(exc).__name__
                await asyncio.sleep(0.5)
        if not stop.is_set():
            raise self.failure(f"augur was not ready after {READY_TIMEOUT:g} s ({answer})")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if augur has not stopped within its 25 s bound."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), AUGUR_STOP_SECONDS)
        except TimeoutError:
            log.warning("augur_killed", extra={"after_seconds": AUGUR_STOP_SECONDS})
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def _started(
    name: str, stack: AsyncExitStack, start: Callable[P, Process], *a: P.args, **kw: P.kwargs
) -> Process:
    try:
        process = await asyncio.to_thread(start, *a, **kw)
    except (RuntimeError, TimeoutError) as exc:
        raise DemoError(f"{name} did not start: {exc}") from None
    stack.push_async_callback(asyncio.to_thread, process.stop)
    return process


async def _ui(prometheus: str) -> str:
    """The base of Prometheus's pages: Debian ships only the classic UI, under /classic."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(prometheus + "/classic/graph", allow_redirects=False) as resp:
                return prometheus + "/classic" if resp.status == 200 else prometheus
    return prometheus


def _remove(tmp: Path, keep: bool) -> None:
    if keep:
        print(f"augur demo: kept {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # With the handlers installed a second Ctrl-C cannot interrupt the shutdown half-way.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Each child's stop goes on the stack as soon as it exists, so whatever happens the
        # children are stopped, in reverse order: augur, Prometheus, Alertmanager, then the
        # demo's own receiver and workload.
        async with AsyncExitStack() as stack:
            return await _run(args, stack, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(args: argparse.Namespace, stack: AsyncExitStack, stop: asyncio.Event) -> int:
    host: str = args.listen_host
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="augur-demo-"))
    stack.callback(_remove, tmp, args.keep)

    now = time.time()
    workload = Workload(epoch=Workload().bucket(now + FIRST_ANOMALY_AFTER))
    end = workload.bucket(now) - SCRAPE_INTERVAL
    history = workload.history(end - HISTORY_SECONDS, end, SCRAPE_INTERVAL, WORKLOAD_TARGET)
    try:
        await asyncio.to_thread(backfill, history, tmp / "prometheus" / "data")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()[-1000:]
        raise DemoError(f"promtool could not backfill the history: {detail}") from None
    backfilled = time.monotonic() - started

    workload_port, augur_port = free_port(), free_port()
    workload_url = await stack.enter_async_context(serve(workload, host, workload_port))
    receiver = await stack.enter_async_context(serve_receiver(tmp / ENRICHED_LOG))
    am_config = alertmanager_config(f"http://127.0.0.1:{augur_port}", receiver.url)
    am = await _started(
        "Alertmanager", stack, start_alertmanager, tmp / "alertmanager", am_config, listen_host=host
    )
    prom = await _started(
        "Prometheus",
        stack,
        start_prometheus,
        tmp / "prometheus",
        scrape_interval=f"{SCRAPE_INTERVAL:g}s",
        rule_files={"augur-demo.rules.yml": yaml.safe_load(RULES_YAML)},
        alertmanager_urls=[am.url],
        extra_config={"scrape_configs": scrape_configs(workload_port, augur_port)},
        listen_host=host,
    )
    level = getattr(args, "log_level", None) or ""
    augur = await _Augur.start(tmp, prom.url, am.url, host, augur_port, level)
    stack.push_async_callback(augur.stop)
    await augur.wait_ready(stop)
    if stop.is_set():
        return 0
    startup = time.monotonic() - started

    # After a slow start-up an anomaly may be under way already: then announce that one.
    first_at, first = workload.current_or_next(time.time())
    graph = {"g0.expr": "augur_anomaly_score", "g1.expr": "demo_injected_anomaly"}
    graph |= {f"g{i}.{k}": v for i in (0, 1) for k, v in (("tab", "0"), ("range_input", "30m"))}
    ui = await _ui(prom.url)
    info = {
        "prometheus": prom.url,
        "graph": f"{ui}/graph?{urllib.parse.urlencode(graph)}",
        "alerts": f"{ui}/alerts",
        "alertmanager": am.url,
        "receiver": receiver.url,
        "enriched_log": str(receiver.log_path),
        "augur": f"{augur.url}/metrics",
        "workload": f"{workload_url}/metrics",
        "dir": str(tmp),
        "queries": [q["name"] for q in queries()],
        "pids": {"augur": augur.proc.pid, "prometheus": prom.proc.pid, "alertmanager": am.proc.pid},
        "first_anomaly": {"at": first_at, "series": first.selector, "kind": first.kind},
        "period": workload.period,
        "backfill_seconds": round(backfilled, 3),
        "startup_seconds": round(startup, 3),
    }
    (tmp / URLS_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    print(_banner(info), flush=True)

    children: dict[str, Callable[[], int | None]] = {
        "augur": lambda: augur.proc.returncode,
        "Prometheus": prom.proc.poll,
        "Alertmanager": am.proc.poll,
    }
    deadline = math.inf if args.duration is None else time.monotonic() + args.duration
    while not stop.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(1.0, deadline - time.monotonic()))
        dead = [(name, code) for name, poll in children.items() if (code := poll()) is not None]
        if dead:
            # A Ctrl-C in the terminal reaches the children too: let our own handler land.
            await asyncio.sleep(0.5)
            if not stop.is_set():
                what = "{} exited unexpectedly with code {}".format(*dead[0])
                raise augur.failure(what) if dead[0][0] == "augur" else DemoError(what)
    why = "" if stop.is_set() else f" after {args.duration:g} s (--duration)"
    print(f"augur demo: stopping{why}", file=sys.stderr, flush=True)
    return 0


def _banner(info: Mapping[str, Any]) -> str:
    first = info["first_anomaly"]
    at = time.strftime("%H:%M:%S", time.localtime(first["at"]))
    wait = max(0.0, first["at"] - time.time())
    period, filled, up = info["period"] / 60, info["backfill_seconds"], info["startup_seconds"]
    settle = format_duration(EnrichConfig().related_settle)  # the demo keeps the default
    return f"""
augur demo is running (stop it with Ctrl-C)

  Prometheus    {info["graph"]}
  alerts        {info["alerts"]}
  Alertmanager  {info["alertmanager"]}
  augur         {info["augur"]}
  workload      {info["workload"]}
  receiver      {info["receiver"]}  (the enriched alerts, printed below too)

What to look at
  * augur_anomaly_score, one line per series and detector: 0..1 is normal, 1 or more is
    anomalous. The graph shows it above demo_injected_anomaly, which is 1 while the
    workload disturbs a series on purpose: for about a minute, every {period:g} minutes.
    The first: {first["kind"]} on {first["series"]} at {at} (in {wait:.0f} s)
  * The AugurAnomaly alert fires once per incident augur opens (augur_anomaly_incident: a
    series' first score of 1 or more, closed once it is back in band): see "alerts" and
    Alertmanager. augur runs its shipped default detector, with no filters; an alert on a
    series that was not disturbed is a false positive. Two hand-written rules fire as well:
    HighRequestLatency on checkout's latency jump, DiskWillFillIn1Hour on the disk fill burst.
  * One disturbance is a causal chain: a disk burst on checkout's host (app-1), then checkout's
    latency 30 s later, then its errors. Their enriched alerts name the disk as the "cause"
    (the first series of their place to turn anomalous) and "follow" the earlier alerts.
    Summaries say how far outside its expected band the series went (augur_observed_value
    against augur_expected_*); an alert enriched before the evidence arrived is looked at
    once more {settle} after its start and printed again as UPDATED if that changed it.
  * Alertmanager sends each alert to augur, which enriches it (category, entities, related
    anomalies, runbook, a one-sentence summary) and posts it back with augur_enriched="true";
    that label routes it to the demo's receiver. Each enriched alert is printed below as it
    arrives (FIRING, then RESOLVED) and logged to {ENRICHED_LOG}.
  * {HISTORY_SECONDS / 3600:g} h of history were backfilled in {filled:.1f} s, so augur
    scored from its first poll; everything was up in {up:.1f} s.

Files: {info["dir"]}  (augur.yml, augur.log, {ENRICHED_LOG}, {URLS_FILE})
"""
