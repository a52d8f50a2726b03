"""PromQL shared by the dashboards: which augur is read, and how copies of it are not counted twice.

Two kinds of augur processes can report the same thing:

* copies: two augurs beside an HA Prometheus pair (the sidecar overlay) score the same series
  and both are scraped; counting both doubles every count;
* shards: the replicas of the sharded overlay each score their own share of the series; their
  counts add up.

Per-series metrics need no care beyond dropping the labels that tell the processes apart
(`REPLICA`): a copy's series then collapse into one, while shards' series stay distinct because
their own labels differ. Per-process numbers (series scored per query, incidents opened) are
joined to `augur_shard_info`'s `index`: copies share an index, so `max` by index keeps one, and
`sum` over the indexes adds the shards (`per_shard`).
"""

from __future__ import annotations

AUGUR = 'job=~"$job", cluster=~"$cluster"'
"""The augur processes the dashboard reads: the `job` and (optional) `cluster` variables."""
REPLICA = "instance, pod"
"""Target labels that differ between two augur processes scraped by one Prometheus."""
RATE = "[$__rate_interval]"


def sel(metric: str, *matchers: str) -> str:
    """`metric{job=~"$job", cluster=~"$cluster", <matchers>}`."""
    return f"{metric}{{{', '.join([AUGUR, *matchers])}}}"


def rate(metric: str, *matchers: str) -> str:
    """`rate()` of an augur counter over Grafana's `$__rate_interval`."""
    return f"rate({sel(metric, *matchers)}{RATE})"


def increase(metric: str, *matchers: str) -> str:
    """`increase()` of an augur counter over `$__rate_interval`: events per graph point."""
    return f"increase({sel(metric, *matchers)}{RATE})"


def per_shard(expr: str, by: str) -> str:
    """Sum `expr` (one value per augur process and `by`) over shards, counting copies once."""
    return (
        f"sum by ({by}) (max by (cluster, job, index, {by}) ({expr} "
        f"* on (cluster, job, instance) group_left (index) {sel('augur_shard_info')}))"
    )


def quantile(q: float, histogram: str, by: str, *matchers: str) -> str:
    """The q-quantile of an augur histogram over `$__rate_interval`, per `by`."""
    return (
        f"histogram_quantile({q}, sum by (le, {by}) "
        f"(rate({sel(histogram + '_bucket', *matchers)}{RATE})))"
    )


SCORE_NOW = "max_over_time({sel}{rate})"
"""The score over the graph's interval: a detection lasting one poll is kept at coarse steps
(the raw gauge sampled at the step would miss it)."""


def score(*matchers: str) -> str:
    """Each series' highest score per detector over the interval, copies collapsed."""
    inner = SCORE_NOW.format(sel=sel("augur_anomaly_score", *matchers), rate=RATE)
    return f"max without ({REPLICA}) ({inner})"


def anomalous(*matchers: str) -> str:
    """The one meaning of "anomalous": a series whose highest score over its detectors
    reached 1 at any poll in the interval. Its value is that score."""
    inner = SCORE_NOW.format(sel=sel("augur_anomaly_score", *matchers), rate=RATE)
    return f"max without (detector, {REPLICA}) ({inner}) >= 1"


def open_incidents(*matchers: str) -> str:
    """Series with an incident open on any detector (the shipped AugurAnomaly alert's rule)."""
    inner = sel("augur_anomaly_incident", *matchers)
    return f"max without (detector, {REPLICA}) ({inner}) >= 1"
