"""augur: anomaly scores, forecasts and alert enrichment for Prometheus and Alertmanager."""

import os
from importlib.metadata import PackageNotFoundError, version

# Set before numpy loads (importing any submodule loads it). augur parallelises across
# series and processes, never inside one BLAS call; OpenBLAS threads only contend on 2
# cores: statsmodels fits ran 5-10x slower without this (docs/benchmarks.md, ARIMA).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

try:
    __version__ = version("augur")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
