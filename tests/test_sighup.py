"""SIGHUP swaps the text model of a running `augur run`, and a bad file never replaces a good one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from model_files import copy_model, flip_byte, swap_head_rows
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from exporter.demo.procs import Process, free_port
from exporter.text.encoder import sha256_file

pytestmark = pytest.mark.integration


def model_info(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.labels["sha256"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "augur_model_info"
    }


def test_sighup_reloads_the_model_and_refuses_a_corrupt_one(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    prom = prometheus_factory()
    am = alertmanager_factory({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]})
    model_dir = copy_model(tmp_path / "onnx")
    port = free_port()
    cfg = tmp_path / "augur.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": prom.url},
                "poll": {"interval": "2s"},
                "state": {"path": str(tmp_path / "augur.db")},
                "alertmanager": {"urls": [am.url]},
                "model": {"dir": str(model_dir)},
                "queries": [
                    {
                        "name": "up",
                        "expr": "up",
                        "detectors": ["zscore"],
                        "lookback": "1h",
                        "step": "1m",
                    }
                ],
            }
        )
    )
    log = (tmp_path / "augur.log").open("w")
    proc = subprocess.Popen(
        augur_run_argv(cfg, port),
        stderr=log,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")},
    )
    try:
        first = sha256_file(model_dir / "manifest.json")
        wait_until(lambda: model_info(port) == {first})

        swap_head_rows(model_dir, "cpu", "disk")
        second = sha256_file(model_dir / "manifest.json")
        assert second != first
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: model_info(port) == {second})

        flip_byte(model_dir / "head.json")  # no longer matches the manifest
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "model_reload_failed" in (tmp_path / "augur.log").read_text())
        assert model_info(port) == {second}  # the verified model keeps serving
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(25) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    events = [
        json.loads(line)["event"] for line in (tmp_path / "augur.log").read_text().splitlines()
    ]
    assert (
        "model_loaded" in events and "model_reloaded" in events and "model_reload_failed" in events
    )
