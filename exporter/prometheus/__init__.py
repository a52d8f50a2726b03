"""Prometheus's HTTP API: the client (`client`) and the decoding of its answers (`decode`).

It serves the scoring loop, the alert loop and `augur backtest` alike, with augur's
credentials, TLS, timeouts, retries and range splitting.
"""
