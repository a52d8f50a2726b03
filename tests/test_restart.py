"""ARIMA inside the daemon against a real Prometheus: forecasts, and state that survives restarts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from serving import running

from exporter.app import POLLER, REGISTRY
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port
from exporter.detectors.arima import ARIMADetector
from exporter.scoring.board import ScoreBoard

pytestmark = pytest.mark.integration

STEP = 60.0


def history(now: float) -> list[Sample]:
    """Six hours per host: two AR(1) loads and one disk filling at a steady rate."""
    rng = np.random.default_rng(11)
    n = 360
    ts = now - 5 - STEP * np.arange(n)[::-1]
    samples = []
    for host in ("a", "b"):
        x = np.zeros(n)
        for i in range(1, n):
            x[i] = 0.7 * x[i - 1] + rng.normal(0, 1)
        samples += [
            Sample("load", {"host": host}, float(t), float(50 + v))
            for t, v in zip(ts, x, strict=True)
        ]
    disk = 0.40 + 0.0005 * np.arange(n) + rng.normal(0, 0.0005, n)  # +3 % an hour
    samples += [
        Sample("load", {"host": "disk"}, float(t), float(v)) for t, v in zip(ts, disk, strict=True)
    ]
    return samples


def config(prom: Process, state: Path) -> Config:
    return Config.model_validate(
        {
            "prometheus": {"url": prom.url, "timeout": "10s"},
            "poll": {"interval": "1s"},
            "web": {"listen_address": f"127.0.0.1:{free_port()}"},
            "state": {"path": str(state)},
            "queries": [
                {
                    "name": "load",
                    "expr": "load",
                    "lookback": "6h",
                    "step": "1m",
                    # workers 0: fits run in the scoring thread, so the test knows when.
                    "detectors": {"arima": {"workers": 0, "fit_window": 300, "min_points": 30}},
                    "horizons": ["1h"],
                    "seasonality": "none",
                }
            ],
        }
    )


async def first_cycle(app: web.Application) -> ARIMADetector:
    poller = app[POLLER]
    await asyncio.wait_for(poller.succeeded_once.wait(), 60)
    detector = poller.runners[0].detectors["arima"]
    assert isinstance(detector, ARIMADetector)
    return detector


def scores(board: ScoreBoard) -> dict[str, float]:
    return {labels["host"]: values[0] for labels, values in board.rows()}


def forecasts(board: ScoreBoard) -> dict[str, float]:
    return {labels["host"]: value for labels, value in board.forecasts()}


async def test_state_is_restored_without_refitting(
    prometheus_factory: Callable[..., Process], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="augur")
    prom = prometheus_factory(samples=history(time.time()))
    state = tmp_path / "state" / "augur.db"
    cfg = config(prom, state)

    async with running(cfg) as app:
        detector = await first_cycle(app)
        assert detector.fits >= 3  # a cold start fits every series
        text = generate_latest(app[REGISTRY]).decode()
        assert (
            f'augur_detector_fits_total{{detector="arima",query="load"}} {detector.fits}.0' in text
        )
        board = app[POLLER].board
        first_scores = scores(board)
        assert set(first_scores) == {"a", "b", "disk"}
        assert all(s == s for s in first_scores.values())
        # The disk is forecast to keep filling: about +3 % in the next hour.
        now_value = 0.40 + 0.0005 * 359
        assert 0.02 < forecasts(board)["disk"] - now_value < 0.04

    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT query, detector, version FROM detector_state").fetchall()
    assert sorted(rows) == [("load", "arima", 1), ("load", "arima/incidents", 1)]
    with sqlite3.connect(state) as db:  # snapshots of a query no longer configured
        db.execute(
            "INSERT INTO detector_state SELECT 'gone', * FROM (SELECT detector, version, "
            "fingerprint, saved_at, state FROM detector_state)"
        )

    async with running(cfg) as app:
        detector = await first_cycle(app)
        # The snapshot was restored: the first cycle scored every series without any fit.
        assert detector.fits == 0
        restored = scores(app[POLLER].board)
        assert set(restored) == {"a", "b", "disk"}
        assert all(s == s for s in restored.values())
    assert any(r.getMessage() == "state_restored" for r in caplog.records)
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT query, detector FROM detector_state").fetchall()
    assert sorted(rows) == [("load", "arima"), ("load", "arima/incidents")]  # "gone" deleted


async def test_incompatible_snapshot_is_discarded_not_fed(
    prometheus_factory: Callable[..., Process], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prom = prometheus_factory(samples=history(time.time()))
    state = tmp_path / "augur.db"
    cfg = config(prom, state)
    async with running(cfg) as app:
        await first_cycle(app)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE detector_state SET version = 99")
    async with running(cfg) as app:
        detector = await first_cycle(app)
        assert detector.fits >= 3  # started cold instead
    discarded = [r for r in caplog.records if r.getMessage() == "state_discarded"]
    assert discarded and "snapshot version 99" in discarded[0].__dict__["reason"]
