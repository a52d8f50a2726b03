"""The template variables the dashboards share: which cluster, which augur job, which query."""

from __future__ import annotations

from grafana import Json, query_variable


def cluster() -> Json:
    """Optional: a `cluster` label (external label or target label) that may not exist at all.

    With no such label the variable has no values and stays on All, whose `.*` also matches a
    series without the label, so the dashboards work unchanged.
    """
    return query_variable(
        "cluster",
        "Cluster",
        "label_values(augur_build_info, cluster)",
        description="The cluster label of augur's series, if your Prometheus adds one.",
    )


def job() -> Json:
    """The scrape job(s) of augur: separates two augur deployments read by one Prometheus."""
    return query_variable(
        "job",
        "Job",
        'label_values(augur_build_info{cluster=~"$cluster"}, job)',
        description="The Prometheus job that scrapes augur.",
    )


def instance() -> Json:
    """One augur process (a replica, a shard, a copy beside each Prometheus of an HA pair)."""
    return query_variable(
        "instance",
        "Instance",
        'label_values(augur_build_info{job=~"$job", cluster=~"$cluster"}, instance)',
        description="augur processes: the scrape target's instance label.",
    )


def query(*, multi: bool = True) -> Json:
    """augur's queries (from augur_polls_total: a query that never scored is listed too)."""
    return query_variable(
        "query",
        "Query",
        'label_values(augur_polls_total{job=~"$job", cluster=~"$cluster"}, query)',
        multi=multi,
        all_value=".*" if multi else None,
        description="The `name` of a query in augur's configuration.",
    )
