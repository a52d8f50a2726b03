"""Run the real Prometheus and Alertmanager binaries on loopback ports.

Used by `augur demo`, the integration tests and the benchmarks, so that all three start
the same real processes in the same way. Nothing here is used by `augur run`.
"""

from __future__ import annotations

import base64
import contextlib
import math
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

INSTALL_HINT = (
    "the Prometheus binaries are missing; on Debian/Ubuntu install them with\n"
    "  sudo apt-get update && sudo apt-get install -y --no-install-recommends "
    "prometheus prometheus-alertmanager"
)

# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs say alertmanager.
_BINARIES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
}


class MissingBinaryError(RuntimeError):
    """A Prometheus/Alertmanager binary is not installed."""


def find_binary(kind: str) -> str:
    """Return the path of the binary for `kind` or raise MissingBinaryError with an install hint."""
    for name in _BINARIES[kind]:
        path = shutil.which(name)
        if path:
            return path
    raise MissingBinaryError(f"{_BINARIES[kind][0]} not found on PATH: {INSTALL_HINT}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """One sample of a series for backfilling: metric name, labels, unix seconds, value."""

    name: str
    labels: Mapping[str, str]
    timestamp: float
    value: float


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def write_openmetrics(samples: Iterable[Sample], path: Path) -> int:
    """Write samples as OpenMetrics text that promtool can backfill; returns the sample count.

    OpenMetrics wants all samples of one metric family together, so samples are grouped by
    name first; within a series they must be in time order.
    """
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for name, group in by_name.items():
            out.write(f"# TYPE {name} gauge\n")
            group.sort(key=lambda s: (sorted(s.labels.items()), s.timestamp))
            for s in group:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
                body = f"{name}{{{labels}}}" if labels else name
                out.write(f"{body} {_format_value(s.value)} {s.timestamp:.3f}\n")
                count += 1
        out.write("# EOF\n")
    return count


def backfill(samples: Iterable[Sample], tsdb_dir: Path) -> int:
    """Create TSDB blocks in `tsdb_dir` from samples with promtool; returns the sample count.

    Run this before Prometheus starts on `tsdb_dir`: blocks added to a running server only
    show up after about a minute.
    """
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "backfill.om"
        count = write_openmetrics(samples, src)
        subprocess.run(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(src),
                str(tsdb_dir),
            ],
            check=True,
            capture_output=True,
        )
    return count


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    # The server's log goes to a file, not a pipe: a pipe nobody reads fills up after a
    # few days of logging and then blocks the server.
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)


def _wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    ca_file: Path | None = None,
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    request = urllib.request.Request(url, headers=dict(headers or {}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log_path.read_text(errors="replace") if log_path.exists() else ""
            name = Path(str(proc.args[0] if isinstance(proc.args, list) else proc.args)).name
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{out[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=1, context=context) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@dataclass
class Process:
    """A started server process with its base URL; `stop()` terminates it."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    argv: list[str]
    """The command line, so `restart()` can run it again."""
    log_path: Path
    """Where the server's own log (its stderr) is written."""
    probe_headers: dict[str, str] = field(default_factory=dict)
    """Headers the readiness probe sends (credentials, when the server requires them)."""
    probe_ca: Path | None = None
    """The CA the readiness probe trusts, when the server speaks TLS."""

    def stop(self, timeout: float = 10) -> None:
        """Terminate the process, killing it if it does not exit in `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, ready_path: str, timeout: float = 30) -> None:
        """Start the same command again on the same port (after stop/kill)."""
        self.proc = _spawn(self.argv, self.log_path)
        _wait_ready(
            self.url + ready_path,
            self.proc,
            self.log_path,
            timeout,
            self.probe_headers,
            self.probe_ca,
        )


def _launch(
    argv: list[str],
    workdir: Path,
    name: str,
    url: str,
    port: int,
    timeout: float,
    probe_headers: Mapping[str, str] | None = None,
    probe_ca: Path | None = None,
) -> Process:
    log_path = workdir / f"{name}.log"
    proc = _spawn(argv, log_path)
    try:
        _wait_ready(url + "/-/ready", proc, log_path, timeout, probe_headers, probe_ca)
    except BaseException:
        proc.kill()
        raise
    return Process(
        url=url,
        port=port,
        proc=proc,
        workdir=workdir,
        argv=argv,
        log_path=log_path,
        probe_headers=dict(probe_headers or {}),
        probe_ca=probe_ca,
    )


def start_prometheus(
    workdir: Path,
    *,
    scrape_targets: Mapping[str, str] | None = None,
    scrape_interval: str = "15s",
    rule_files: Mapping[str, object] | None = None,
    alertmanager_urls: Iterable[str] = (),
    samples: Iterable[Sample] = (),
    port: int | None = None,
    extra_config: Mapping[str, object] | None = None,
    timeout: float = 30,
    listen_host: str = "127.0.0.1",
    web_config: Mapping[str, object] | None = None,
    probe_auth: tuple[str, str] | None = None,
) -> Process:
    """Start a real Prometheus on 127.0.0.1, with optional backfilled history.

    `scrape_targets` maps job name to `host:port`; `rule_files` maps a file name to the rule
    file's YAML document; `alertmanager_urls` are `http://host:port` URLs. `listen_host`
    0.0.0.0 also listens on the other interfaces; it is still reached over 127.0.0.1.
    `web_config` is Prometheus's `--web.config.file` document: with `tls_server_config` the URL
    is https (its `cert_file` is the CA the readiness probe trusts), with `basic_auth_users`
    the probe logs in as `probe_auth` (user, password).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    samples = list(samples)
    if samples:
        backfill(samples, data)
    port = port or free_port()
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in (scrape_targets or {}).items()
        ],
    }
    if rule_files:
        names = []
        for name, doc in rule_files.items():
            (workdir / name).write_text(yaml.safe_dump(doc), encoding="utf-8")
            names.append(str(workdir / name))
        config["rule_files"] = names
    am = [u.split("://", 1)[-1] for u in alertmanager_urls]
    if am:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": am}]}]}
    config.update(extra_config or {})
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    tls = (web_config or {}).get("tls_server_config")
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    probe_ca = Path(str(tls["cert_file"])) if isinstance(tls, Mapping) else None
    probe_headers = {}
    if probe_auth:
        token = base64.b64encode(":".join(probe_auth).encode()).decode()
        probe_headers["Authorization"] = f"Basic {token}"
    argv = [
        find_binary("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={listen_host}:{port}",
        "--web.enable-lifecycle",
        "--rules.alert.resend-delay=1s",
        "--storage.tsdb.retention.time=30d",
        # Alert links (generatorURL) then point at this loopback server, not the hostname.
        f"--web.external-url={url}",
    ]
    if web_config:
        (workdir / "web.yml").write_text(yaml.safe_dump(dict(web_config)), encoding="utf-8")
        argv.append(f"--web.config.file={workdir / 'web.yml'}")
    return _launch(argv, workdir, "prometheus", url, port, timeout, probe_headers, probe_ca)


def start_alertmanager(
    workdir: Path,
    config: Mapping[str, object],
    *,
    port: int | None = None,
    timeout: float = 30,
    listen_host: str = "127.0.0.1",
) -> Process:
    """Start a real Alertmanager on 127.0.0.1 with `config` (a parsed alertmanager.yml).

    `listen_host` 0.0.0.0 also listens on the other interfaces (the cluster port stays off).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    argv = [
        find_binary("alertmanager"),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={listen_host}:{port}",
        # Without this Alertmanager gossips on 0.0.0.0:9094.
        "--cluster.listen-address=",
        f"--web.external-url={url}",
    ]
    return _launch(argv, workdir, "alertmanager", url, port, timeout)


@contextlib.contextmanager
def running(start: Callable[[], Process]) -> Iterator[Process]:
    """Context manager that starts a process with `start()` and always stops it."""
    p = start()
    try:
        yield p
    finally:
        p.stop()
