"""The scoring loop: poll Prometheus, align each answer, score it, publish the verdicts.

`poller` runs the cycles; `align` puts a `query_range` matrix on the detectors' grid;
`incidents` opens, escalates and closes incidents from the scores; `board` holds the latest
verdicts for /metrics; `state` persists the detectors' state in SQLite across restarts.
"""
