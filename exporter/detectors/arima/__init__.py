"""The `arima` detector: per-series ARIMA models run as one Kalman filter over all series.

`detector` schedules the fits and filters (importing it registers `arima` in `DETECTORS`);
`fit` fits the models in worker processes; `bank` holds the per-series arrays; `kalman` is the
filter the fitted models run as.
"""

from exporter.detectors.arima.detector import ARIMADetector, ARIMAParams

__all__ = ["ARIMADetector", "ARIMAParams"]
