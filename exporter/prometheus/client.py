"""Async client for the Prometheus HTTP API (Thanos and Mimir too: only the API is used).

Every call goes through one semaphore, is retried with exponential backoff and full jitter when
the failure is transient (5xx, 429, timeouts, connection errors) and fails at once otherwise,
and reports a single error type, `PrometheusError`. Range queries longer than Prometheus allows
(11,000 points per series) are split on the step grid and merged back per series.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np
from yarl import URL

from exporter.config.prometheus import PrometheusConfig
from exporter.prometheus import decode
from exporter.prometheus.answer import PrometheusError as PrometheusError
from exporter.prometheus.answer import data_of, read_body
from exporter.prometheus.session import make_session as make_session

logger = logging.getLogger("augur.prometheus")

MAX_POINTS_PER_REQUEST = 11_000
"""Prometheus refuses range queries with more points per series than this."""

_INLINE_JSON_BYTES = 256 * 1024
_MAX_REMEMBERED_WARNINGS = 1000

Form = Sequence[tuple[str, str]]
MatrixSeries = dict[str, Any]
"""One series of a range query's JSON result: `{"metric": {...}, "values": [[t, "v"], ...]}`."""
SeriesKey = tuple[tuple[str, str], ...]
Decoder = Callable[[bytes | bytearray], Any]
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024


class Matrix(list[MatrixSeries]):
    """A range query's series; `dropped` counts those past `max_series`, never decoded."""

    dropped: int = 0


@dataclass(frozen=True, slots=True)
class QueryResult:
    """An instant query's answer: `result_type` is vector, matrix, scalar or string."""

    result_type: str
    result: list[Any]


def _describe_query(expr: str) -> str:
    """The query as an error message names it: one line, at most 120 characters."""
    text = " ".join(expr.split())
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _merge(parts: Sequence[list[MatrixSeries]]) -> list[MatrixSeries]:
    """Join per-chunk matrices into one, each series' points in time order."""
    merged: dict[SeriesKey, MatrixSeries] = {}
    for part in parts:
        for series in part:
            key: SeriesKey = tuple(sorted(series["metric"].items()))
            into = merged.setdefault(key, series)
            if into is series:
                continue
            # Chunks are disjoint and in time order, so appending never repeats a timestamp.
            if "values" in series:
                have, more = into.get("values"), series["values"]
                if isinstance(have, np.ndarray) and isinstance(more, np.ndarray):
                    into["values"] = np.concatenate([have, more])
                else:  # the general parser's lists (an answer the fast path declined)
                    into["values"] = [*(have if have is not None else ()), *more]
            if "histograms" in series:
                into.setdefault("histograms", []).extend(series["histograms"])
    # Prometheus sorts a matrix by label set; a split answer must read like an unsplit one.
    return [merged[key] for key in sorted(merged)]


class PrometheusClient:
    """Prometheus HTTP API calls with retries, bounded concurrency and range splitting.

    The session is borrowed, not owned: whoever made it closes it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        retries: int = 3,
        max_concurrency: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        max_points_per_request: int = MAX_POINTS_PER_REQUEST,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        executor: Executor | None = None,
        on_retry: Callable[[str], None] | None = None,
        on_request: Callable[[str, float], None] | None = None,
    ) -> None:
        if max_points_per_request < 1:
            raise ValueError("max_points_per_request must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.on_retry = on_retry
        """Called with the endpoint before each retry, e.g. to count retries in a metric."""
        self.on_request = on_request
        """Called with the endpoint and the seconds of every HTTP request (each attempt,
        failed ones included: the answer read, not decoded), e.g. for a latency histogram."""
        self._session = session
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_points = max_points_per_request
        self.max_response_bytes = max_response_bytes
        """Answers longer than this (compressed or not) are refused while they are read."""
        self.executor = executor
        """Where large JSON answers are decoded; None means the loop's default executor."""
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # Credentials embedded in the URL must not reach logs or error messages.
        self._safe_url = str(URL(self.base_url).with_user(None))
        self._warned: set[str] = set()

    @classmethod
    def from_config(
        cls,
        cfg: PrometheusConfig,
        session: aiohttp.ClientSession,
        *,
        executor: Executor | None = None,
        on_retry: Callable[[str], None] | None = None,
        on_request: Callable[[str, float], None] | None = None,
    ) -> PrometheusClient:
        """A client for the configured Prometheus, using `session` (see `make_session`)."""
        return cls(
            session,
            cfg.url,
            retries=cfg.retries,
            max_concurrency=cfg.max_concurrency,
            max_response_bytes=cfg.max_response_bytes,
            executor=executor,
            on_retry=on_retry,
            on_request=on_request,
        )

    async def query(
        self, expr: str, time: float | None = None, *, eval_timeout: float | None = None
    ) -> QueryResult:
        """Evaluate `expr` at `time` (unix seconds; Prometheus's now when None), stopped by
        Prometheus after `eval_timeout` seconds when given (its `timeout` parameter)."""
        form = [("query", expr)]
        if time is not None:
            form.append(("time", _seconds(round(time * 1000))))
        if eval_timeout is not None:
            form.append(("timeout", _seconds(max(1, round(eval_timeout * 1000)))))
        data = await self._call("/api/v1/query", form)
        return QueryResult(result_type=data["resultType"], result=data["result"])

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[MatrixSeries]:
        """The matrix of `expr` from `start` to `end` (unix seconds) every `step` seconds."""
        return await self.range_matrix(expr, start, end, step)

    async def range_matrix(
        self,
        expr: str,
        start: float,
        end: float,
        step: float,
        *,
        max_series: int | None = None,
        eval_timeout: float | None = None,
        keep: decode.Keep | None = None,
    ) -> Matrix:
        """`query_range`, keeping at most `max_series` series of those `keep` accepts (all when
        None): the others are stepped over undecoded; those past the cap count in `dropped`.

        `eval_timeout` is Prometheus's own evaluation timeout for the query (its `timeout`
        parameter): Prometheus stops evaluating it then, whatever the client does.
        """
        start_ms, end_ms, step_ms = round(start * 1000), round(end * 1000), round(step * 1000)
        if step_ms <= 0 or end_ms < start_ms:
            points = 1  # not splittable: let Prometheus say what is wrong with the arguments
        else:
            points = (end_ms - start_ms) // step_ms + 1
        args = (max_series, eval_timeout, keep)
        if points <= self._max_points:
            return await self._range(expr, start_ms, end_ms, step_ms, *args)
        span = self._max_points * step_ms
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        self._range(expr, lo, min(lo + span - step_ms, end_ms), step_ms, *args)
                    )
                    for lo in range(start_ms, end_ms + 1, span)
                ]
        except ExceptionGroup as failed:
            # The group already cancelled the other chunks; callers expect one plain error.
            raise failed.exceptions[0] from None
        merged = Matrix(_merge([task.result() for task in tasks]))
        # Chunks may keep different series; at least this many were past the cap.
        merged.dropped = max(task.result().dropped for task in tasks)
        if max_series is not None and len(merged) > max_series:
            merged.dropped += len(merged) - max_series
            del merged[max_series:]
        return merged

    async def series(
        self, match: Sequence[str], start: float | None = None, end: float | None = None
    ) -> list[dict[str, str]]:
        """Label sets of the series that match any of the `match` selectors."""
        form = [("match[]", selector) for selector in match]
        if start is not None:
            form.append(("start", _seconds(round(start * 1000))))
        if end is not None:
            form.append(("end", _seconds(round(end * 1000))))
        result: list[dict[str, str]] = await self._call("/api/v1/series", form)
        return result

    async def label_names(self, match: Sequence[str] = ()) -> list[str]:
        """All label names Prometheus knows, or those of the series matching any of `match`."""
        form = [("match[]", selector) for selector in match]
        result: list[str] = await self._call("/api/v1/labels", form or None)
        return result

    async def label_values(self, name: str) -> list[str]:
        """All values of label `name`."""
        path = f"/api/v1/label/{quote(name, safe='')}/values"
        # The label name stays out of the endpoint so a retry metric keeps bounded labels.
        result: list[str] = await self._call(path, endpoint="/api/v1/label/:name/values")
        return result

    async def metric_names(self) -> list[str]:
        """All metric names (the values of `__name__`)."""
        return await self.label_values("__name__")

    async def _range(
        self,
        expr: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        max_series: int | None,
        eval_timeout: float | None = None,
        keep: decode.Keep | None = None,
    ) -> Matrix:
        form = [
            ("query", expr),
            ("start", _seconds(start_ms)),
            ("end", _seconds(end_ms)),
            ("step", _seconds(step_ms)),
        ]
        if eval_timeout is not None:
            form.append(("timeout", _seconds(max(1, round(eval_timeout * 1000)))))
        data = await self._call(
            "/api/v1/query_range",
            form,
            decoder=functools.partial(decode.matrix, max_series=max_series, keep=keep),
            what=_describe_query(expr),
        )
        out = Matrix(data["result"])
        out.dropped = data.get(decode.DROPPED, 0)
        return out

    async def _call(
        self,
        path: str,
        form: Form | None = None,
        *,
        endpoint: str = "",
        decoder: Decoder = decode.loads,
        what: str = "",
    ) -> Any:
        """One API call with retries; returns the answer's `data`."""
        endpoint = endpoint or path
        attempt = 0
        while True:
            try:
                # The slot is held per attempt, not across backoff sleeps.
                async with self._semaphore:
                    return await self._attempt(path, endpoint, form, decoder, what or endpoint)
            except PrometheusError as exc:
                if not exc.retryable or attempt >= self._retries:
                    raise
                attempt += 1
                ceiling = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
                delay = random.uniform(0, ceiling)
                # Debug: whoever called reports the outcome once; a line per attempt of every
                # query while Prometheus is down was most of a down Prometheus's log spam.
                logger.debug(
                    "prometheus_retry",
                    extra={
                        "url": self._safe_url + path,
                        "attempt": attempt,
                        "error": str(exc),
                        "delay_seconds": round(delay, 3),
                    },
                )
                if self.on_retry is not None:
                    self.on_retry(endpoint)
                await asyncio.sleep(delay)

    async def _attempt(
        self, path: str, endpoint: str, form: Form | None, decoder: Decoder, what: str
    ) -> Any:
        # POST because long PromQL does not fit in a URL; Prometheus accepts forms on all three.
        method = "GET" if form is None else "POST"
        started = time.perf_counter()
        try:
            # The session's total timeout bounds this whole block, reading the body included.
            async with self._session.request(method, self.base_url + path, data=form) as resp:
                body = await read_body(resp, self.max_response_bytes, what, endpoint)
                status, content_type = resp.status, resp.content_type
        except TimeoutError as exc:
            total = self._session.timeout.total
            raise PrometheusError(
                f"no answer from {self._safe_url} within {total} s; raise prometheus.timeout "
                "or make the query cheaper",
                error_type="timeout",
                retryable=True,
                endpoint=endpoint,
            ) from exc
        except aiohttp.ClientError as exc:
            raise PrometheusError(
                f"cannot talk to {self._safe_url}: {exc or type(exc).__name__}; check "
                "prometheus.url and that Prometheus is up",
                error_type="connection",
                retryable=True,
                endpoint=endpoint,
            ) from exc
        finally:
            if self.on_request is not None:
                self.on_request(endpoint, time.perf_counter() - started)
        payload: Any = None
        shape: decode.ShapeError | None = None
        if "json" in content_type:
            try:
                payload = await self._decode(body, decoder)
            except decode.ShapeError as exc:
                shape = exc
            except ValueError:  # not JSON (UnicodeDecodeError is one too)
                payload = None
            except RecursionError:  # JSON nested past Python's stack: not Prometheus's
                payload = None
        if isinstance(payload, dict) and payload.get("warnings"):
            self._log_warnings(path, [str(w) for w in payload["warnings"]])
        return data_of(payload, shape, status, content_type, body, endpoint)

    async def _decode(self, body: bytearray, decoder: Decoder) -> Any:
        if len(body) <= _INLINE_JSON_BYTES:
            return decoder(body)
        # A 20 MB range answer takes long enough to parse that the loop must not do it.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, decoder, body)

    def _log_warnings(self, path: str, warnings: list[str]) -> None:
        new = [w for w in warnings if w not in self._warned]
        if not new:
            return
        if len(self._warned) >= _MAX_REMEMBERED_WARNINGS:
            self._warned.clear()
        self._warned.update(new)
        logger.debug("prometheus_warnings", extra={"url": self._safe_url + path, "warnings": new})
