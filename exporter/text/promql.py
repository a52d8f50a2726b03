"""What an alert rule's PromQL selects, and whether Prometheus knows those metrics.

Alertmanager passes the rule's expression along in `generatorURL` (`g0.expr`); the metric names
in it are the most direct entities of an alert, and `MetricCatalog` checks names found in free
text against the ones Prometheus really has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("augur.promql")

_PROMQL_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z0-9]*)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|\S)""",
    re.VERBOSE | re.DOTALL,
)
_GROUPING = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right"))
_KEYWORDS = frozenset(("and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"))
_AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio".split()
)
MAX_EXPR_CHARS = 20_000


def rule_expr(generator_url: str) -> str:
    """The rule's PromQL from an alert's `generatorURL` (its `g0.expr`), or "" without one."""
    try:
        query = urlsplit(generator_url).query
    except ValueError:
        return ""
    return parse_qs(query).get("g0.expr", [""])[0][:MAX_EXPR_CHARS]


def promql_tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token: `string`, `number`, `ident` or `op`; blanks and comments
    skipped. A tokenizer, not a parser: broken PromQL yields what can be read."""
    return [
        (m.lastgroup or "", m.group())
        for m in _PROMQL_TOKEN.finditer(expr[:MAX_EXPR_CHARS])
        if m.lastgroup != "skip"
    ]


def promql_metric_names(expr: str) -> list[str]:
    """Metric names a PromQL expression selects, in order of appearance.

    A small tokenizer, not a parser: an identifier is a metric name unless it calls a function
    or aggregation (a `(` follows), is a keyword, a label name inside `{}` or a grouping list, or
    a duration inside `[]`. `{__name__="x"}` names `x`. Broken PromQL yields what can be read.
    """
    tokens = promql_tokens(expr)
    names: dict[str, None] = {}
    braces = brackets = parens = 0
    label_list: int | None = None  # paren depth of an open `by (...)`-style label list
    grouping = False
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if grouping and text != "(":
            grouping = False
        if kind == "op":
            if text in "{}":
                braces = max(0, braces + (1 if text == "{" else -1))
            elif text in "[]":
                brackets = max(0, brackets + (1 if text == "[" else -1))
            elif text == "(":
                parens += 1
                if grouping:
                    label_list, grouping = parens, False
            elif text == ")":
                label_list = None if label_list == parens else label_list
                parens = max(0, parens - 1)
            continue
        if kind != "ident" or brackets or label_list is not None:
            continue
        if braces:
            after = tokens[i + 2] if i + 2 < len(tokens) else ("", "")
            if text == "__name__" and following == "=" and after[0] == "string":
                names[after[1][1:-1]] = None
        elif text.lower() in _GROUPING:
            grouping = True
        elif text.lower() in _KEYWORDS or following == "(":
            continue
        elif text.lower() not in _AGGREGATIONS or following.lower() not in _GROUPING:
            names[text] = None  # `sum by (x) (...)` is the one call not followed by `(`
    return list(names)


class MetricNameSource(Protocol):
    """Anything that lists Prometheus's metric names (PrometheusClient does)."""

    async def metric_names(self) -> list[str]:
        """All metric names Prometheus knows."""
        ...


class MetricCatalog:
    """Prometheus's own metric names, cached for `ttl` seconds and refreshed in the background.

    `known` never waits: it answers from the cache (None before the first answer) and, when the
    cache is stale, starts a refresh that later lookups will see.
    """

    def __init__(
        self,
        source: MetricNameSource,
        *,
        ttl: float = 300.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._names: frozenset[str] | None = None
        self._fresh_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """Whether Prometheus has answered at least once."""
        return self._names is not None

    def known(self, name: str) -> bool | None:
        """Whether Prometheus has a metric `name`; None while the list is not known yet."""
        self.refresh_soon()
        return None if self._names is None else name in self._names

    def refresh_soon(self) -> None:
        """Start a background refresh if the cache is stale and none is running."""
        if (self._task and not self._task.done()) or self._clock() < self._fresh_until:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next lookup in one will
            self._task = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> None:
        """Fetch the names now; on failure keep the old list and try again in a while."""
        try:
            async with asyncio.timeout(self.timeout):
                names = await self._source.metric_names()
        except Exception as exc:  # a background refresh must never take the caller down
            # Try again soon, but not on every lookup while Prometheus is down.
            self._fresh_until = self._clock() + min(self.ttl, 30.0)
            logger.warning("metric_names_failed", extra={"error": str(exc) or repr(exc)})
            return
        self._names = frozenset(names)
        self._fresh_until = self._clock() + self.ttl

    async def close(self) -> None:
        """Cancel a running refresh."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
