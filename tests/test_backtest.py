"""`augur backtest` end to end: NAB files, bad inputs, and a real Prometheus."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from exporter import cli
from exporter.backtest import nab
from exporter.config.queries import QueryConfig
from exporter.demo.procs import Process, Sample, free_port
from exporter.scoring.incidents import detections

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
SUBSET = ("realKnownCause/rogue_agent_key_hold.csv", "realTraffic/speed_7578.csv")


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main(["backtest", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def nab_subset(tmp_path: Path) -> Path:
    """A NAB-shaped folder with two real files and the labels of just those two."""
    if not NAB_DIR.is_dir():
        pytest.skip(f"NAB corpus not found at {NAB_DIR}")
    root = tmp_path / "nab"
    for name in SUBSET:
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB_DIR / "data" / name, root / "data" / name)
    labels = json.loads((NAB_DIR / "labels" / "combined_windows.json").read_text())
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({n: labels[n] for n in SUBSET})
    )
    return root


@pytest.fixture
def ensemble_config(tmp_path: Path) -> Path:
    """The ensemble alone with automatic seasonality, as the daemon's default query has them."""
    path = tmp_path / "ensemble.yml"
    path.write_text("queries:\n  - {name: q, expr: up, seasonality: auto, detectors: [ensemble]}\n")
    return path


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_nab_subset_writes_mirrored_csvs_and_prints_the_scores(
    nab_subset: Path, ensemble_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys, "--nab", nab_subset, "--config", ensemble_config, "--out", out
    )
    assert code == 0, stderr
    for name in SUBSET:
        rows = read_rows(out / name)
        source = read_rows(nab_subset / "data" / name)
        assert rows[0] == [
            "timestamp",
            "value",
            "anomaly_score",
            "expected",
            "lower",
            "upper",
            "detection",
        ]
        assert len(rows) == len(source)
        assert [r[:2] for r in rows[1:]] == [[t, repr(float(v))] for t, v in source[1:]]
        scores = [float(r[2]) for r in rows[1:] if r[2]]
        assert len(scores) > 0.8 * len(rows) and min(scores) >= 0
    assert "2 series, 3,009 rows, 1 detector(s)" in stdout
    assert "NAB score: 2 of 2 files labelled, 6 windows" in stdout
    for label in ("ensemble detections", "ensemble score >= 1", "ensemble score optimised"):
        line = next(x for x in stdout.splitlines() if x.startswith(label)).split()
        assert all(-100 <= float(v) <= 100 for v in line[-3:])
    assert "realKnownCause" in stdout and "realTraffic" in stdout
    assert "[2/2]" in stderr  # progress


def test_printed_scores_are_nabs_scores_of_the_written_csvs(
    nab_subset: Path, ensemble_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    labels = nab_subset / "labels" / "combined_windows.json"
    code, stdout, _ = run(
        capsys,
        "--data",
        nab_subset / "data",
        "--labels",
        labels,
        "--config",
        ensemble_config,
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    windows = nab.load_windows(nab_subset / "labels" / "combined_windows.json")
    scores, fired = {}, {}
    for name in SUBSET:
        rows = read_rows(out / name)[1:]
        stamps = np.array([r[0] for r in rows], dtype="datetime64[us]")
        scores[name] = (stamps, np.array([float(r[2]) if r[2] else math.nan for r in rows]))
        fired[name] = (stamps, np.array([float(r[6]) for r in rows]))
        # The detections are the incidents of the written scores (recovery 1h by default).
        seconds = (stamps - stamps[0]) / np.timedelta64(1, "s")
        expected, _ = detections(seconds.astype(np.float64), scores[name][1], 3600.0, 2.0)
        assert fired[name][1].tolist() == expected.tolist()
        assert 0 < expected.sum() < np.count_nonzero(scores[name][1] >= 1)
    for label, columns in (("ensemble score >= 1", scores), ("ensemble detections", fired)):
        want = [
            nab.score_corpus(columns, windows, p, 1.0).normalized for p in nab.PROFILES.values()
        ]
        line = next(x for x in stdout.splitlines() if x.startswith(label)).split()
        assert [float(v) for v in line[-3:]] == pytest.approx(want, abs=0.051)


def test_without_a_config_the_daemons_default_detectors_run(
    nab_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = run(capsys, "--nab", nab_subset, "--out", tmp_path / "out", "--quiet")
    assert code == 0
    names = list(QueryConfig(name="x", expr="up").detectors)
    for name in names:
        assert f"{name} detections" in stdout
        # One detector mirrors the input layout; several get a folder each.
        folder = tmp_path / "out" / (name if len(names) > 1 else "")
        assert (folder / SUBSET[0]).is_file()


def test_a_config_selects_detectors_and_jobs_give_the_same_results(
    nab_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "augur.yml"
    config.write_text(
        "prometheus: {url: 'http://x:9090'}\n"
        "queries:\n"
        "  - name: q\n    expr: up\n    seasonality: auto\n"
        "    detectors: {ensemble: {}, zscore: {robust: true, window: 500}}\n"
    )
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        code, stdout, stderr = run(
            capsys, "--nab", nab_subset, "--config", config, "--out", out, "--jobs", jobs, "--quiet"
        )
        assert code == 0, stderr
        assert "ensemble detections" in stdout and "zscore detections" in stdout
        outs.append(out)
    for name in SUBSET:
        for detector in ("ensemble", "zscore"):
            assert read_rows(outs[0] / detector / name) == read_rows(outs[1] / detector / name)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: ["--data", d / "missing"], "no such directory"),
        (lambda d: ["--data", d / "empty"], "no .csv files"),
        (lambda d: [], "exactly one of --data"),
        (lambda d: ["--data", d / "bad_value"], "bad_value/x.csv:3: value 'abc' is not a number"),
        (lambda d: ["--data", d / "bad_time"], "bad_time/x.csv:2: timestamp 'yesterday'"),
        (lambda d: ["--data", d / "short_row"], "short_row/x.csv:2: expected timestamp,value"),
        (
            lambda d: ["--data", d / "good", "--config", d / "unknown.yml"],
            'queries[0].detectors: unknown detector "arma"',
        ),
        (lambda d: ["--data", d / "good", "--config", d / "nope.yml"], "cannot read the file"),
        (
            lambda d: ["--data", d / "good", "--labels", d / "labels.json"],
            "labels do not fit the data",
        ),
        (lambda d: ["--data", d / "good", "--jobs", "0"], "--jobs must be at least 1"),
        (
            lambda d: ["--prometheus", "http://127.0.0.1:1", "--start", "later"],
            "--start: timestamp 'later'",
        ),
    ],
)
def test_bad_inputs_exit_2_with_a_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], list[str | Path]],
    message: str,
) -> None:
    files = {
        "bad_value/x.csv": "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n",
        "bad_time/x.csv": "timestamp,value\nyesterday,1\n",
        "short_row/x.csv": "timestamp,value\n2024-01-01 00:00:00\n",
        "good/c/x.csv": "timestamp,value\n"
        + "".join(f"{1_700_000_000 + 60 * i},{i % 7}\n" for i in range(50)),
        "unknown.yml": "queries:\n  - {name: q, expr: up, detectors: [arma]}\n",
        "labels.json": json.dumps(
            {"c/x.csv": [["2020-01-01 00:00:00.000000", "2020-01-02 00:00:00.000000"]]}
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(capsys, *make(tmp_path))
    assert code == 2
    assert stderr.startswith("augur backtest: ") and message in stderr, stderr


def test_an_unreachable_prometheus_is_a_runtime_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(
        capsys, "--prometheus", f"http://127.0.0.1:{free_port()}", "--query", "up"
    )
    assert code == 1
    assert "cannot reach Prometheus" in stderr


@pytest.mark.integration
def test_prometheus_history_is_pulled_in_chunks_and_scored(
    prometheus_factory: Callable[..., Process],
    ensemble_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two days at 15 s (11,520 points a series) need two query_range requests."""
    end = math.floor(time.time() / 60) * 60 - 120
    start = end - 2 * 86400
    stamps = np.arange(start, end + 1, 15.0)
    rng = np.random.default_rng(3)
    samples = []
    spikes = {"a": len(stamps) - 2000, "b": len(stamps) - 500}
    for svc, at in spikes.items():
        values = 100 + 20 * np.sin(2 * np.pi * stamps / 86400) + rng.normal(0, 1, len(stamps))
        values[at] += 40
        samples += [
            Sample("augur_bt_requests", {"svc": svc}, float(t), float(v))
            for t, v in zip(stamps, values, strict=True)
        ]
    prom = prometheus_factory(samples=samples)
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys,
        "--prometheus",
        prom.url,
        "--query",
        "augur_bt_requests",
        "--start",
        str(start),
        "--end",
        str(end),
        "--step",
        "15s",
        "--config",
        ensemble_config,
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, stderr
    assert "2 series, 23,042 rows" in stdout
    for svc, at in spikes.items():
        rows = read_rows(out / f"__name__=augur_bt_requests,svc={svc}.csv")[1:]
        assert len(rows) == len(stamps)
        scores = np.array([float(r[2]) if r[2] else math.nan for r in rows])
        assert scores[at] >= 1
        assert np.count_nonzero(scores >= 1) <= 3
        assert float(rows[at][1]) == pytest.approx(float(rows[at - 1][1]) + 40, abs=8)


PASSWORD = "augur-backtest"
PASSWORD_BCRYPT = "$2b$04$augurbacktestsaltsalt.gNPKBFQgwXVuobC/7du7qdwqicC9Kpu"
"""bcrypt of PASSWORD (cost 4), as Prometheus's `basic_auth_users` wants it."""


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a TLS certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.integration
def test_prometheus_history_is_pulled_with_augurs_credentials_and_ca(
    prometheus_factory: Callable[..., Process],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Prometheus that speaks only TLS and wants basic auth: the settings file's `prometheus`
    section (password file, CA bundle) gets the history; without either it is refused."""
    cert, key = _self_signed(tmp_path)
    end = math.floor(time.time() / 60) * 60 - 120
    samples = [Sample("augur_bt_auth", {}, float(t), 1.0) for t in range(end - 3600, end + 1, 60)]
    prom = prometheus_factory(
        samples=samples,
        web_config={
            "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
            "basic_auth_users": {"augur": PASSWORD_BCRYPT},
        },
        probe_auth=("augur", PASSWORD),
    )
    assert prom.url.startswith("https://")
    (tmp_path / "password").write_text(PASSWORD)
    settings = {
        "both": f"basic_auth: {{username: augur, password_file: {tmp_path / 'password'}}}\n"
        f"  tls: {{ca_file: {cert}}}\n",
        "no_auth": f"tls: {{ca_file: {cert}}}\n",
        "no_ca": f"basic_auth: {{username: augur, password_file: {tmp_path / 'password'}}}\n",
    }
    results = {}
    for name, section in settings.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(f"prometheus:\n  url: http://ignored:9090\n  {section}")
        argv: list[str | Path] = [
            "--prometheus",
            prom.url,
            "--query",
            "augur_bt_auth",
            "--config",
            path,
        ]
        results[name] = run(
            capsys, *argv, "--start", str(end - 3600), "--end", str(end), "--step", "1m"
        )
    code, stdout, stderr = results["both"]
    assert code == 0, stderr
    assert "1 series, 61 rows" in stdout
    code, _, stderr = results["no_auth"]
    assert code == 1 and "HTTP 401" in stderr, stderr
    code, _, stderr = results["no_ca"]
    assert code == 1 and "cannot reach Prometheus" in stderr and "certificate" in stderr, stderr
    # The environment carries the settings as it does for `augur run`: the password here.
    monkeypatch.setenv("AUGUR_PROMETHEUS_BASIC_AUTH_USERNAME", "augur")
    monkeypatch.setenv("AUGUR_PROMETHEUS_BASIC_AUTH_PASSWORD", PASSWORD)
    argv[-1] = tmp_path / "no_auth.yml"
    code, stdout, stderr = run(capsys, *argv, "--start", str(end - 3600), "--end", str(end))
    assert code == 0, stderr
    assert "1 series, 13 rows" in stdout  # at the default query's 5 m step
