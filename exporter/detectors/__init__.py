"""Anomaly detectors: the protocol, the name -> detector table, and the built-in detectors.

Importing this package registers `zscore` and `ewma` in `DETECTORS`.
"""

from exporter.detectors import ewma, zscore
from exporter.detectors.base import (
    DETECTORS,
    Detector,
    DetectorParams,
    Estimate,
    FloatArray,
    SeriesKey,
    Window,
    apply_filters,
    build,
    register,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorParams",
    "Estimate",
    "FloatArray",
    "SeriesKey",
    "Window",
    "apply_filters",
    "build",
    "ewma",
    "register",
    "zscore",
]
