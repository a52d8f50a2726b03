"""What this Prometheus holds: its metric names and label values, cached for a few seconds.

A question reads the metric names once to pick a template family and a few label lists to
check its slots; answering ten questions a minute must not list every name ten times.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

from exporter.prometheus.client import PrometheusClient

TTL_SECONDS = 30.0
"""How long a metric-name or label-value list is trusted before it is read again."""


class Discovery:
    """Cached `/api/v1/label/<name>/values` lists of one Prometheus."""

    def __init__(
        self,
        client: PrometheusClient,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._values: dict[str, tuple[float, frozenset[str]]] = {}

    async def values(self, label: str) -> frozenset[str]:
        """All values of `label` (`__name__` for the metric names)."""
        now = self._clock()
        cached = self._values.get(label)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        found = frozenset(await self.client.label_values(label))
        self._values[label] = (now, found)
        return found

    async def labels_of(self, metric: str) -> frozenset[str]:
        """The label names the series of `metric` carry."""
        key = "\x00labels:" + metric  # no label is named so: apart from the value lists
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        found = frozenset(await self.client.label_names([metric]))
        self._values[key] = (now, found)
        return found

    async def metric_names(self) -> frozenset[str]:
        """The metric names this Prometheus holds."""
        return await self.values("__name__")


_BY_CLIENT: weakref.WeakKeyDictionary[PrometheusClient, Discovery] = weakref.WeakKeyDictionary()


def discovery_for(client: PrometheusClient) -> Discovery:
    """The cache of `client`'s Prometheus, made on first use and dropped with the client."""
    found = _BY_CLIENT.get(client)
    if found is None:
        found = _BY_CLIENT[client] = Discovery(client)
    return found
