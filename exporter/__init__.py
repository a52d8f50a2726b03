"""augur: anomaly scores, forecasts and alert enrichment for Prometheus and Alertmanager."""

import os
from importlib.metadata import PackageNotFoundError, version

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""augur's one BLAS-threads policy: each defaults to 1 here, a value the user set is kept.

augur parallelises across series and processes (its executors, the ARIMA fit pool, backtest's
workers), never inside one BLAS call, so more BLAS threads only contend for the same cores
(docs/benchmarks.md, ARIMA). A BLAS reads these once, as it loads: they are set here, before
any submodule imports numpy, and every process augur starts inherits them from this one.
"""
for _var in BLAS_THREAD_VARS:
    os.environ.setdefault(_var, "1")

try:
    __version__ = version("augur")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
