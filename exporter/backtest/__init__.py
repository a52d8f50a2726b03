"""`augur backtest`: the daemon's detectors run offline over CSV files, NAB or Prometheus history.

`command` is the command (flags, scoring, NAB's report); `inputs` reads CSV folders and the
settings file; `history` pulls a Prometheus range with augur's client and credentials;
`nab` is the Numenta Anomaly Benchmark's scorer, which the report uses.
"""
