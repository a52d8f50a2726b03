"""What the Enricher asks Prometheus about one alert, and how it reads each answer.

Three questions, each a range query over a bounded window, all run concurrently under the
enrichment's deadline (enrich.py): `related` (augur's scores of series sharing the alert's
places or the rule's metrics, cause.py), `band` (the value and expected band of the alert's own
series, band.py) and `expression` (the rule's own PromQL, two points, only when trusted).
The answers are read in that order, so the band knows the related step's own series.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.alerts import related_text as rel
from exporter.alerts.band import band_selector, read_band
from exporter.alerts.cause import candidate_selector, rank_causes
from exporter.alerts.facts import Facts
from exporter.alerts.related import expr_reading
from exporter.config.alerts import EnrichConfig
from exporter.prometheus.client import MatrixSeries

OPTIONAL = frozenset({"band"})
"""Questions whose failure is not named in `augur_missing`: they only add to the summary."""
Key = tuple[str, float, float, float]
"""A range query: (PromQL, start, end, step)."""


def plan(f: Facts, cfg: EnrichConfig, now: float) -> list[tuple[str, Key]]:
    """The questions for one alert, as (what, range query), in the order they are read."""
    out: list[tuple[str, Key]] = []
    window = rel.related_window(f, cfg, now)
    if selector := candidate_selector(f.entities, f.rule_metrics):
        query = f"max without (detector) ({selector}) >= {cfg.related_min_score:g}"
        out.append(("related", (query, *window, cfg.related_step)))
    if f.alert.status == "firing" and (
        selector := band_selector(f.entities, f.rule_metrics, f.alert.labels)
    ):
        out.append(("band", (selector, *window, cfg.related_step)))
    if f.expr and not f.expr_not_run:
        # Two points, at the start and `related_before` earlier: a rule over long
        # ranges costs Prometheus a full evaluation per point.
        start, before = f.alert.startsAt.timestamp(), cfg.related_before or 1.0
        out.append(("expression", (f.expr, start - before, start, before)))
    return out


def read(f: Facts, what: str, result: Sequence[MatrixSeries], cfg: EnrichConfig) -> None:
    """Put Prometheus's answer to one question into the alert's facts."""
    if what == "related":
        f.related = rank_causes(
            result,
            f.alert.labels,
            f.entities,
            f.rule_metrics,
            threshold=cfg.related_min_score,
            step=cfg.related_step,
            starts_at=f.alert.startsAt.timestamp(),
        )
    elif what == "band":
        f.band = read_band(result, f.related, f.alert.labels, f.alert.startsAt.timestamp())
    elif len(result) > cfg.max_expr_series:
        f.missing[what] = (
            f"the rule expression gave {len(result)} series, more than "
            f"enrich.max_expr_series ({cfg.max_expr_series})",
            f"规则表达式返回 {len(result)} 个序列，超过上限",
        )
    else:
        f.reading = expr_reading(result, f.alert.labels)
