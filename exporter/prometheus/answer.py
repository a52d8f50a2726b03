"""One Prometheus answer: reading its body under a size cap, and what it means.

Reading is bounded before anything is decoded: a `Content-Length` (the compressed size, when
gzip) over the cap is refused before a byte is read, and the decompressed body is counted
while it streams in, so an answer costs at most `max_response_bytes` however large it is.
What the answer means is one of: its `data`, or a `PrometheusError` saying why not.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from exporter.prometheus.decode import ShapeError

_CHUNK_BYTES = 1 << 20
_SNIPPET_CHARS = 200
_UPSTREAM_FAULTS = frozenset({"connection", "timeout", "bad_response", "http"})


class PrometheusError(Exception):
    """A Prometheus API call failed; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str = "error",
        retryable: bool = False,
        endpoint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.retryable = retryable
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f"Prometheus {self.endpoint}" if self.endpoint else "Prometheus"
        http = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where} failed{http}: {self.error_type}: {self.message}"

    @property
    def upstream_fault(self) -> bool:
        """Whether Prometheus itself is down or unusable, rather than this one query wrong.

        Unreachable, timed out, 5xx/429, or an answer that is not Prometheus's JSON (a proxy's
        page; a 401 or 404 from something else at that URL): the upstream is down. A 4xx with
        Prometheus's error JSON, or an answer over the size cap, comes from a working one.
        """
        return self.retryable or self.error_type in _UPSTREAM_FAULTS


def too_large(
    what: str, size: int | None, limit: int, endpoint: str, status: int
) -> PrometheusError:
    """The error of an answer past `prometheus.max_response_bytes` (`size` if it said it)."""
    length = f"is {size} bytes, over" if size is not None else "is longer than"
    return PrometheusError(
        f"the answer to {what} {length} prometheus.max_response_bytes ({limit}); narrow the "
        "query (fewer series, a shorter lookback or a longer step) or raise the limit",
        status=status,
        error_type="too_large",
        endpoint=endpoint,
    )


async def read_body(
    resp: aiohttp.ClientResponse, limit: int, what: str, endpoint: str
) -> bytearray:
    """The decompressed body of `resp`, refused with a `too_large` error past `limit` bytes."""
    length = resp.content_length
    if length is not None and length > limit:
        raise too_large(what, length, limit, endpoint, resp.status)
    body = bytearray()
    # aiohttp inflates gzip a bounded chunk at a time, so a bomb stops here at the limit too.
    async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
        if len(body) + len(chunk) > limit:
            raise too_large(what, None, limit, endpoint, resp.status)
        body += chunk
    return body


def snippet(body: bytes | bytearray) -> str:
    """The start of a body, on one line, for an error message."""
    return " ".join(bytes(body[:_SNIPPET_CHARS]).decode("utf-8", "replace").split())


def data_of(
    payload: Any,
    shape: ShapeError | None,
    status: int,
    content_type: str,
    body: bytearray,
    endpoint: str,
) -> Any:
    """The `data` of a decoded answer (`payload`, None if it was not JSON), or its error."""
    retryable = status >= 500 or status == 429
    if shape is not None:
        raise PrometheusError(
            f"the answer is not what the API returns: {shape}",
            status=status,
            error_type="bad_response",
            endpoint=endpoint,
        )
    if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
        kind = content_type or "no content type"
        if 200 <= status < 300:
            raise PrometheusError(
                f"expected a Prometheus JSON answer, got {kind}: {snippet(body)!r}; check that "
                "prometheus.url points at the Prometheus API, not at a login page or a proxy",
                status=status,
                error_type="bad_response",
                endpoint=endpoint,
            )
        raise PrometheusError(
            f"{kind}: {snippet(body)!r}",
            status=status,
            error_type="http",
            retryable=retryable,
            endpoint=endpoint,
        )
    if payload["status"] == "error":
        raise PrometheusError(
            str(payload.get("error") or "no error message"),
            status=status,
            error_type=str(payload.get("errorType") or "error"),
            retryable=retryable,
            endpoint=endpoint,
        )
    return payload.get("data")
