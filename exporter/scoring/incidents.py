"""Incidents: when a series' anomaly opens, gets worse and ends — what a notification is about.

The anomaly score is the truth about the newest point and nothing else. An incident turns a
run of anomalous points into one event someone is told about:

- it **opens** at the first score >= 1 of a series that has no open incident;
- it **escalates** (its stage goes up by one) when a score reaches `escalation` times the score
  that opened it or last escalated it: an incident getting much worse is news again;
- it **closes** at the first score below 1 that comes `recovery` seconds or more after the
  series' last score >= 1, so a series that flickers around its band stays one incident.

A missing score (NaN) neither extends nor closes an incident, and a score >= 1 that comes
`recovery` or more after the last one (a gap, a restart) opens a new incident (with `recovery`
0, an incident closes at its first score below 1 and consecutive scores >= 1 stay one). Opening and
escalating are the *detections* (`augur backtest`'s `detection` column, what NAB is scored
on); the stage is what `augur_anomaly_incident` exports (0 none, 1 open, 2 and up after each
escalation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.config.queries import DEFAULT_ESCALATION, DEFAULT_RECOVERY
from exporter.detectors.base import FloatArray, SeriesKey


@dataclass
class Incident:
    """One open incident of one series."""

    opened: float
    """Unix time of the point that opened it."""
    stage: int
    """1 when opened, +1 at every escalation."""
    reference: float
    """The score that opened it or last escalated it."""
    last_anomalous: float
    """Unix time of the series' latest score >= 1."""


def advance(
    incident: Incident | None, ts: float, score: float, recovery: float, escalation: float
) -> tuple[Incident | None, bool]:
    """The incident after a score of `score` at `ts`, and whether this point is a detection."""
    if not score == score:  # NaN: no evidence either way
        return incident, False
    gap = recovery > 0 and ts - (incident.last_anomalous if incident else ts) >= recovery
    if incident is None or (score >= 1 and gap):
        if score >= 1:
            return Incident(opened=ts, stage=1, reference=score, last_anomalous=ts), True
        return None, False
    if score >= 1:
        incident.last_anomalous = ts
        if score >= escalation * incident.reference:
            incident.stage += 1
            incident.reference = score
            return incident, True
        return incident, False
    if ts - incident.last_anomalous >= recovery:
        return None, False
    return incident, False


def detections(
    times: FloatArray, scores: FloatArray, recovery: float, escalation: float
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int16]]:
    """Per point of one series: 1 where an incident opens or escalates, and the stage after it."""
    fired = np.zeros(len(scores), dtype=np.int8)
    stage = np.zeros(len(scores), dtype=np.int16)
    incident: Incident | None = None
    for i, (ts, score) in enumerate(zip(times.tolist(), scores.tolist(), strict=True)):
        incident, fired[i] = advance(incident, ts, score, recovery, escalation)
        stage[i] = incident.stage if incident else 0
    return fired, stage


@dataclass(frozen=True)
class Stages:
    """One poll of one detector's incidents: arrays of shape `(series,)` and two counts."""

    stage: npt.NDArray[np.int16]
    """0 no incident, 1 open, 2 and up after each escalation."""
    started: FloatArray
    """Unix time the open incident opened; NaN where none is open."""
    opened: int
    escalated: int


class IncidentBook:
    """The open incidents of one query's detector, keyed by series; snapshotted like a detector.

    Only series with an open incident are kept, so a poll costs a Python step per series that
    scores >= 1 or has an incident open, not per series.
    """

    state_version = 1

    def __init__(
        self, recovery: float = DEFAULT_RECOVERY, escalation: float = DEFAULT_ESCALATION
    ) -> None:
        self.recovery = recovery
        self.escalation = escalation
        self.open: dict[SeriesKey, Incident] = {}

    def update(self, keys: Sequence[SeriesKey], scores: FloatArray, ts: float) -> Stages:
        """Advance every series by its newest score at `ts`."""
        stage = np.zeros(len(keys), dtype=np.int16)
        started = np.full(len(keys), np.nan)
        opened = escalated = 0
        with np.errstate(invalid="ignore"):
            candidates = np.flatnonzero(np.asarray(scores) >= 1).tolist()
        watch = set(candidates)
        if self.open:
            present = {key: i for i, key in enumerate(keys)}
            watch.update(present[key] for key in self.open if key in present)
            # A series that stopped being returned closes once it would have recovered.
            for key in [k for k in self.open if k not in present]:
                if ts - self.open[key].last_anomalous >= self.recovery:
                    del self.open[key]
        for i in sorted(watch):
            key = keys[i]
            before = self.open.get(key)
            after, fired = advance(before, ts, float(scores[i]), self.recovery, self.escalation)
            if after is None:
                self.open.pop(key, None)
                continue
            self.open[key] = after
            stage[i], started[i] = after.stage, after.opened
            if fired:
                opened += after.stage == 1
                escalated += after.stage > 1
        return Stages(stage, started, opened, escalated)

    def dump_state(self) -> dict[str, Any]:
        """The open incidents, keyed by the JSON of the series' labels."""
        return {
            json.dumps(key): [i.opened, i.stage, i.reference, i.last_anomalous]
            for key, i in self.open.items()
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore `dump_state`'s snapshot."""
        self.open = {
            tuple(tuple(pair) for pair in json.loads(key)): Incident(
                float(opened), int(stage), float(reference), float(last)
            )
            for key, (opened, stage, reference, last) in state.items()
        }
