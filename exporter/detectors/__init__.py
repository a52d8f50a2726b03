"""Anomaly detectors: the protocol, the name -> detector table, and the built-in detectors.

Importing this package registers `zscore`, `ewma`, `quantile`, `rolling`, `arima` and
`ensemble` in `DETECTORS`.
"""

from exporter.detectors import arima, ensemble, ewma, quantile, rolling, zscore
from exporter.detectors.base import (
    DETECTORS,
    Detector,
    DetectorParams,
    Estimate,
    FloatArray,
    Forecaster,
    SeriesKey,
    Stateful,
    StreamScorer,
    Window,
    apply_filters,
    build,
    register,
    score_all,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorParams",
    "Estimate",
    "FloatArray",
    "Forecaster",
    "SeriesKey",
    "Stateful",
    "StreamScorer",
    "Window",
    "apply_filters",
    "arima",
    "build",
    "ensemble",
    "ewma",
    "quantile",
    "register",
    "rolling",
    "score_all",
    "zscore",
]
