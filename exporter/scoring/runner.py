"""One configured query: its detectors, its incidents, and what of them survives a restart.

The poller owns the cycle; a `QueryRunner` owns what one query scores with: its detectors
(built once, so they keep state), each detector's open incidents, the false-positive filters
applied to every verdict, the forecasts at the query's horizons, and the list of snapshots
the state store keeps for it.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exporter.config.queries import QueryConfig
from exporter.detectors import (
    Detector,
    Estimate,
    FloatArray,
    Forecaster,
    Stateful,
    Window,
    apply_filters,
    build,
)
from exporter.detectors.seasonal import wrap
from exporter.scoring.incidents import IncidentBook, Stages
from exporter.scoring.state import settings_hash
from exporter.scoring.warmup import QueryStatus, observe


@dataclass
class QueryRunner:
    """One configured query with its detectors (built once, so they can keep state)."""

    config: QueryConfig
    detectors: dict[str, Detector]
    incidents: dict[str, IncidentBook]
    failing: int = 0  # polls failed in a row, so a failure streak is logged once
    in_flight: Future[Any] | None = None  # the last CPU call; it may outlive its timeout
    status: QueryStatus = field(init=False)
    """Series seen, scored and warming up as of the last successful poll."""

    def __post_init__(self) -> None:
        self.status = QueryStatus(self.config)

    @classmethod
    def build(cls, config: QueryConfig) -> QueryRunner:
        """Instantiate the query's detectors, wrapped for its seasonality if it has one."""
        season = config.season_seconds()
        return cls(
            config,
            {
                name: wrap(build(name, p), season, config.step)
                for name, p in config.detectors.items()
            },
            {name: IncidentBook(config.recovery, config.escalation) for name in config.detectors},
        )

    def score(self, window: Window) -> dict[str, Estimate]:
        """Run every detector on the window and apply the query's false-positive filters.

        A verdict with anything non-finite in it (1e308 - -1e308 overflows) is not exported:
        its score becomes NaN, which the board leaves out.
        """
        newest = window.values[:, -1]
        # Overflow on hostile values is expected and scrubbed below, not worth a warning.
        with np.errstate(all="ignore"):
            out = {
                name: _finite(
                    apply_filters(
                        detector.score(window),
                        newest,
                        direction=self.config.direction,
                        min_deviation=self.config.min_deviation,
                        min_relative_deviation=self.config.min_relative_deviation,
                        valid_range=self.config.valid_range,
                    )
                )
                for name, detector in self.detectors.items()
            }
        # Here, on the scoring thread: the warm-up reads the detectors' state.
        self.status.pending = observe(self.detectors, window, out)
        return out

    def track(self, window: Window, estimates: dict[str, Estimate]) -> dict[str, Stages]:
        """Advance each detector's incidents by the newest scores."""
        ts = float(window.timestamps[-1])
        return {
            name: self.incidents[name].update(window.keys, est.score, ts)
            for name, est in estimates.items()
        }

    def forecast(self, window: Window) -> FloatArray | None:
        """Forecasts at the query's horizons from its first forecasting detector, if any."""
        if not self.config.horizons:
            return None
        for detector in self.detectors.values():
            if isinstance(detector, Forecaster):
                steps = [max(1, round(h / window.step)) for h in self.config.horizons]
                with np.errstate(all="ignore"):
                    values: FloatArray = detector.forecast(window, steps)
                if self.config.valid_range is not None:
                    values = np.clip(values, *self.config.valid_range)
                return np.where(np.isfinite(values), values, np.nan)  # NaN: not exported
        return None

    def settings(self, name: str) -> str:
        """The hash of what detector `name` depends on, for its snapshots."""
        q = self.config
        return settings_hash(
            [q.detectors[name].model_dump(), q.seasonality, q.step, q.lookback, q.expr]
        )

    def snapshots(self) -> list[tuple[str, Stateful, str]]:
        """What is worth keeping across restarts: (name in the store, object, settings hash).

        The stateful detectors, and every detector's open incidents (under `<detector>/incidents`,
        kept whatever the settings, so a restart does not notify again about an open incident).
        """
        out: list[tuple[str, Stateful, str]] = [
            (name, detector, self.settings(name))
            for name, detector in self.detectors.items()
            if isinstance(detector, Stateful)
        ]
        out += [
            (f"{name}/incidents", book, settings_hash([self.config.expr]))
            for name, book in self.incidents.items()
        ]
        return out


def _finite(estimate: Estimate) -> Estimate:
    """The estimate with the score of every series that has a non-finite part set to NaN."""
    parts = (estimate.score, estimate.expected, estimate.lower, estimate.upper)
    bad = ~np.logical_and.reduce([np.isfinite(p) for p in parts])
    if not bad.any():
        return estimate
    score = estimate.score.copy()
    score[bad] = np.nan
    return Estimate(
        score=score, expected=estimate.expected, lower=estimate.lower, upper=estimate.upper
    )
