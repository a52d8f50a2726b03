"""Whether Prometheus answers: the upstream gauge, its failure counts, one log line a streak.

The scoring loop reports every call's outcome here (`answered`, `failed`) and `settle`s once a
cycle: Prometheus is up when any call got an answer from it (an error about one query is an
answer), down when calls failed and none was answered. Logs say so once per change: one
warning when a failure streak starts, one info line with its count when it ends; the calls
in between are counted, not logged. While it is down, `retry_delay` spaces the probes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.prometheus.answer import PrometheusError
from exporter.self_metrics import SelfMetrics

log = logging.getLogger("augur.upstream")

FIRST_RETRY = 1.0
"""Seconds before the first probe of a Prometheus found down; doubled per failed probe."""

_REASONS = {"connection", "timeout", "http", "bad_response", "too_large"}


def reason(exc: PrometheusError) -> str:
    """The `reason` label of a failure: the error's type, `http` for any other 5xx or 429, or
    `api_error` for Prometheus's own answer that the query failed."""
    if exc.error_type in _REASONS:
        return exc.error_type
    if exc.status is not None and (exc.status >= 500 or exc.status == 429):
        return "http"
    return "api_error"


class UpstreamHealth:
    """The state of one upstream (`prometheus`) as its callers see it."""

    def __init__(
        self,
        upstream: str,
        metrics: SelfMetrics,
        *,
        max_delay: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.max_delay = max_delay
        self.clock = clock
        self.up: bool | None = None
        """None until the first settled cycle, then whether the upstream answered."""
        self.failed_calls = 0
        """Calls failed since the streak began (0 while up)."""
        self.down_rounds = 0
        """Settled rounds (cycles, probes) found down in a row; the backoff's exponent."""
        self._down_since = 0.0
        self._answers = 0
        self._fault: PrometheusError | None = None
        metrics.upstream_up.labels(upstream).set(0)

    def answered(self) -> None:
        """A call got an answer (possibly an error about the query itself)."""
        self._answers += 1
        self.metrics.upstream_last_success.labels(self.upstream).set(self.clock())

    def failed(self, exc: PrometheusError) -> None:
        """A call failed after its retries: counted by reason; a fault of the upstream's own
        counts towards its being down, anything else shows it answered."""
        self.metrics.upstream_failures.labels(self.upstream, reason(exc)).inc()
        if exc.upstream_fault:
            self.failed_calls += 1
            self._fault = self._fault or exc
        else:
            self.answered()

    def settle(self) -> bool | None:
        """Decide up or down from the calls since the last settle; log only a change."""
        answers, fault = self._answers, self._fault
        self._answers, self._fault = 0, None
        if answers:
            if self.up is False:
                log.info(
                    "prometheus_recovered",
                    extra={
                        "failed_calls": self.failed_calls,
                        "down_seconds": round(self.clock() - self._down_since, 1),
                    },
                )
            self.up, self.failed_calls, self.down_rounds = True, 0, 0
            self.metrics.upstream_up.labels(self.upstream).set(1)
        elif fault is not None:
            if self.up is not False:
                self._down_since = self.clock()
                log.warning(
                    "prometheus_down",
                    extra={
                        "error": str(fault),
                        "hint": "probing with backoff; one line when it is back (see "
                        "augur_upstream_up and augur_upstream_failures_total meanwhile)",
                    },
                )
            self.up = False
            self.down_rounds += 1
            self.metrics.upstream_up.labels(self.upstream).set(0)
        return self.up

    def retry_delay(self) -> float:
        """Seconds to the next probe while down: 1 s doubling per round found down, at most
        the poll interval, so a restarted Prometheus is found within one interval or sooner."""
        exponent = min(max(self.down_rounds - 1, 0), 30)
        return min(self.max_delay, FIRST_RETRY * 2.0**exponent)
