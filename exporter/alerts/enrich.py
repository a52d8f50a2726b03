"""The Enricher: what each alert is about, what it touches, what else went wrong, what to do.

For a group of alerts, at once: the text model classifies summary + description (one batch, in
the executor) and picks a runbook; entities come from labels, text and the rule's PromQL; and
Prometheus is asked, all calls concurrent under one deadline, which series augur scores that
share the alert's entities were anomalous around `startsAt` and what the rule's own expression
read. Whatever does not arrive in time is named in the output instead of holding the alert.

Each alert stands alone: what fails for one (a time out of range, an answer that cannot be
read) is named in its own `augur_missing` and spoils nothing else of it or of its batch.

The rule's expression (`g0.expr` of `generatorURL`) is PromQL anyone who can post to the
webhook could write, run with augur's Prometheus credentials and its reading published in the
alert. It is run only for an alert from an authenticated webhook (a token configured and
presented) or a generator host that is the configured Prometheus's or listed in
`enrich.trusted_generator_hosts`; otherwise it is shown, not run. A host is no proof of
origin: only the token is. Its cost is bounded by `enrich.deadline` (passed to Prometheus as
the query's own `timeout`, and the request dropped), two evaluation points, `MAX_EXPR_CHARS`,
`enrich.max_expr_series` (a larger answer gives no reading, and the series past it are not
decoded), and Prometheus's own `--query.max-samples`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from exporter.alerts import enrich_queries as queries
from exporter.alerts import related_text as rel
from exporter.alerts.facts import Facts, Understood, failure, prometheus_reason
from exporter.alerts.payloads import (
    CATEGORY_LABEL,
    ENRICHED_LABEL,
    MISSING_ANNOTATION,
    Enrichment,
    WebhookAlert,
    bound,
    minimal_enrichment,
)
from exporter.alerts.runbook import runbook_text, runbook_url
from exporter.alerts.summary import summary
from exporter.config.alerts import EnrichConfig
from exporter.prometheus.client import PrometheusClient
from exporter.text.encoder import Classification, normalize_alert_text
from exporter.text.entities import extract, is_chinese
from exporter.text.knowledge import KnowledgeBase
from exporter.text.promql import MetricCatalog, promql_metric_names, rule_expr

logger = logging.getLogger("augur.enrich")

ANNOTATION_CHARS = 1000
"""Every annotation augur adds is cut to this many characters."""
_CACHE_SIZE = 512


class Model(Protocol):
    """What enrichment needs of the text model (TextModel and ReloadableModel have it)."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The categories."""
        ...

    @property
    def sha256(self) -> str:
        """Identifies the model; a new one invalidates cached verdicts and embeddings."""
        ...

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """Category and confidence per text."""
        ...

    def embed_and_classify(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Classification]]:
        """Embeddings and verdicts of one encoder pass."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings per text."""
        ...


def _hosts(url: str) -> tuple[str, str]:
    """A URL's host and host:port (the host again without a port), lower case."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "", ""
    host = (parts.hostname or "").lower()
    return host, f"{host}:{port}" if port else host


class AlertEnricher:
    """The `Enricher` of the alert loop: category, entities, related anomalies, runbook, summary.

    Call `start()` once (it loads the runbooks off the loop) and `close()` at shutdown. The model
    runs only in `executor`. Give it a PrometheusClient of its own with `retries=1`: the
    deadline cuts every call short anyway, and the scoring loop's calls do not queue before it.
    """

    def __init__(
        self,
        model: Model,
        prometheus: PrometheusClient,
        config: EnrichConfig | None = None,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        on_stage: Callable[[str, float], None] | None = None,
        external_url: str | None = None,
    ) -> None:
        self.config = cfg = config or EnrichConfig()
        self.model = model
        self.prometheus = prometheus
        self.executor = executor
        self.clock = clock
        self.on_stage = on_stage
        """Told each stage's seconds per batch: `model` (when it ran: repeats are cached) and
        `prometheus` (when there was something to ask). The two run concurrently."""
        self.knowledge = KnowledgeBase(
            cfg.knowledge_dir,
            model,
            base_url=cfg.runbook_base_url,
            # augur's own runbook pages (web.external_url), when runbook_base_url is not set
            pages_url=f"{external_url.rstrip('/')}/runbooks/" if external_url else None,
            categories=model.labels,
            min_score=cfg.runbook_min_score,
        )
        self.catalog = MetricCatalog(prometheus, ttl=cfg.metric_names_ttl)
        own = urlsplit(getattr(prometheus, "base_url", "")).hostname
        self.trusted_hosts = frozenset(
            h.lower() for h in (*cfg.trusted_generator_hosts, *([own] if own else []))
        )
        # The same text gets the same verdict: flapping alerts and repeats skip the model.
        self._cache: OrderedDict[tuple[str, str, bool], Understood] = OrderedDict()
        self._cache_model = ""

    async def start(self) -> list[str]:
        """Load the runbooks, start fetching metric names; returns the runbooks' problems."""
        loop = asyncio.get_running_loop()
        problems = await loop.run_in_executor(self.executor, self.knowledge.load)
        self._cache.clear()
        self.catalog.refresh_soon()
        return problems

    async def close(self) -> None:
        """Stop the background metric-name refresh."""
        await self.catalog.close()

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        """One enrichment per alert, in order; an alert augur enriched already gets nothing."""
        started = time.perf_counter()
        facts: dict[int, Facts] = {}
        failed: dict[int, str] = {}
        for i, alert in enumerate(alerts):
            if ENRICHED_LABEL not in alert.labels:
                try:
                    facts[i] = self._facts(alert)
                except Exception as exc:  # one odd alert must not spoil the others
                    failed[i] = failure("reading the alert", exc)
        todo = list(facts.values())
        if todo:
            await asyncio.gather(self._understand(todo), self._ask_prometheus(todo))
        now = self.clock()
        missing = {w: r[0] for f in todo for w, r in f.missing.items()}
        logger.log(
            logging.WARNING if missing or failed else logging.DEBUG,
            "alerts_enriched",
            extra={
                "alerts": len(todo),
                "seconds": round(time.perf_counter() - started, 4),
                "missing": missing,
                "failed": len(failed),
            },
        )
        out = []
        for i in range(len(alerts)):
            if i in facts:
                try:
                    out.append(self._enrichment(facts[i], now))
                    continue
                except Exception as exc:
                    failed[i] = failure("writing the enrichment", exc)
            out.append(minimal_enrichment(failed[i]) if i in failed else Enrichment({}, {}))
        return out

    async def resettle(self, alerts: Sequence[tuple[WebhookAlert, str]]) -> list[dict[str, str]]:
        """The related annotations and the summary again for (alert, its `augur_related`); {}
        when the related series are still unknown.

        The summary is rewritten so that it names a cause found only now; its category is the
        text model's again (cached: the same text gets the same verdict), the rule's reading
        the first enrichment's. Without a category, or with another than the `category` label
        posted first, it is left as first written.
        """
        todo = [self._facts(alert) for alert, _ in alerts]
        for f, (_, before) in zip(todo, alerts, strict=True):
            # augur's scores only: the rule's reading stays as first written
            f.expr_not_run = "read at the first enrichment"
            f.reading = rel.first_reading(before, f, self.config)
        await asyncio.gather(self._understand(todo), self._ask_prometheus(todo))
        now = self.clock()
        out: list[dict[str, str]] = []
        for f, (_, before) in zip(todo, alerts, strict=True):
            if f.related is None or "related" in f.missing:
                out.append({})
                continue
            notes = {
                "augur_related": rel.keep_reading(rel.related_text(f, self.config, now), before),
                "augur_cause": rel.cause_text(f, now),
            }
            first = f.alert.labels.get(CATEGORY_LABEL)  # as posted first: it stays
            if f.understood is not None and f.understood[0].category == (
                first or f.understood[0].category
            ):
                notes["augur_summary"] = bound(summary(f, now), ANNOTATION_CHARS)
            out.append(notes)
        return out

    def _facts(self, alert: WebhookAlert) -> Facts:
        notes = alert.annotations
        texts = [notes.get("summary", ""), notes.get("description") or notes.get("message", "")]
        expr = rule_expr(alert.generatorURL)
        entities = extract(alert.labels, texts, expr=expr, known_metric=self.catalog.known)
        text = normalize_alert_text(texts[0], texts[1], alert.labels.get("alertname", ""))
        facts = Facts(alert, text, is_chinese(" ".join(texts)), entities, expr)
        facts.rule_metrics = tuple(promql_metric_names(expr))
        if expr and not alert.augur_authenticated:
            host, host_port = _hosts(alert.generatorURL)
            if not self.trusted_hosts & {host, host_port}:
                facts.expr_not_run = (
                    f"the webhook was not authenticated and {bound(host_port, 100) or 'its host'}"
                    " is not a trusted generator host (enrich.trusted_generator_hosts)"
                )
        return facts

    async def _understand(self, facts: Sequence[Facts]) -> None:
        if self._cache_model != self.model.sha256:  # a reloaded model may judge differently
            self._cache.clear()
            self._cache_model = self.model.sha256
        keys = [(f.text, f.alert.labels.get("alertname", ""), f.zh) for f in facts]
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        reason = ("the text model gave no answer", "文本模型没有结果")
        if todo:
            timeout = self.config.model_timeout
            try:
                job = asyncio.get_running_loop().run_in_executor(self.executor, self._model, todo)
                with self._stage("model"):
                    results = await asyncio.wait_for(job, timeout)
            except TimeoutError:
                reason = (
                    f"the text model did not answer within {timeout:g} s",
                    f"文本模型在 {timeout:g} 秒内未响应",
                )
            except Exception as exc:  # a broken model must not hold the alert back
                logger.warning("text_model_failed", extra={"error": repr(exc)})
                reason = (f"the text model failed: {exc!r}", f"文本模型出错：{exc!r}")
            else:
                self._cache.update(zip(todo, results, strict=True))
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        for f, key in zip(facts, keys, strict=True):
            f.understood = self._cache.get(key)
            if f.understood is None:
                f.missing["category"] = reason
            else:
                self._cache.move_to_end(key)

    def _model(self, keys: Sequence[tuple[str, str, bool]]) -> list[Understood]:
        """Category, then runbook, for each (text, alertname, zh); runs in the executor."""
        texts = [text for text, _, _ in keys]
        # One encoder pass serves both: it is ~95 % of an enrichment's time.
        embeddings, classes = self.model.embed_and_classify(texts)
        runbooks = self.knowledge.best_many(
            texts,
            [c.category for c in classes],
            ["zh" if zh else "en" for _, _, zh in keys],
            [name for _, name, _ in keys],
            embeddings=embeddings,
        )
        return list(zip(classes, runbooks, strict=True))

    async def _ask_prometheus(self, facts: Sequence[Facts]) -> None:
        cfg = self.config
        plan: list[tuple[Facts, str, queries.Key]] = []
        for f in facts:
            try:
                plan += [(f, what, key) for what, key in queries.plan(f, cfg, self.clock())]
            except Exception as exc:
                f.missing["related"] = (failure("planning", exc), "无法查询 Prometheus")
        expressions = {key for _, what, key in plan if what == "expression"}
        calls = {
            key: asyncio.create_task(
                # A rule's expression: Prometheus stops evaluating it at the deadline, and
                # series past the bound are not even decoded.
                self.prometheus.range_matrix(
                    *key, max_series=cfg.max_expr_series + 1, eval_timeout=cfg.deadline
                )
                if key in expressions
                else self.prometheus.query_range(*key)
            )
            for key in dict.fromkeys(key for _, _, key in plan)  # alerts of a group often share one
        }
        try:
            if calls:
                with self._stage("prometheus"):
                    await asyncio.wait(calls.values(), timeout=cfg.deadline)
        finally:
            for task in calls.values():
                task.cancel()
            await asyncio.gather(*calls.values(), return_exceptions=True)
        for f, what, key in plan:
            task = calls[key]
            if what in queries.OPTIONAL and (task.cancelled() or task.exception() is not None):
                continue  # an addition to the summary: without it the summary is as before
            if task.cancelled() or task.exception() is not None:
                error = None if task.cancelled() else task.exception()
                f.missing[what] = prometheus_reason(error, cfg.deadline)
                continue
            try:
                queries.read(f, what, task.result(), cfg)
            except Exception as exc:  # a malformed answer spoils only this alert's part
                if what in queries.OPTIONAL:
                    continue
                f.missing[what] = (
                    failure("reading Prometheus's answer", exc),
                    "无法读取 Prometheus 的响应",
                )

    @contextlib.contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.on_stage is not None:
                self.on_stage(name, time.perf_counter() - started)

    def _enrichment(self, f: Facts, now: float) -> Enrichment:
        cls, runbook = f.understood or (None, None)
        category = cls.category if cls else "other"
        notes = {
            "augur_category": category,
            "augur_confidence": f"{cls.confidence:.2f}" if cls else "0",
        }
        texts: dict[str, Callable[[], str]] = {
            "augur_entities": lambda: f.entities.to_json(ANNOTATION_CHARS),
            "augur_related": lambda: rel.related_text(f, self.config, now),
            "augur_cause": lambda: rel.cause_text(f, now),
            "augur_runbook": lambda: runbook_text(f, runbook, self.knowledge),
            "augur_summary": lambda: summary(f, now),
        }
        for name, text in texts.items():
            try:  # e.g. a time out of range for one part: the other parts still go out
                notes[name] = text()
            except Exception as exc:
                reason = failure("writing it", exc)
                f.missing[name.removeprefix("augur_")] = (reason, reason)
                notes[name] = f.alert.annotations.get("summary", "") if "summary" in name else ""
        if url := runbook_url(f, runbook):
            notes["runbook_url"] = url
        if f.missing:
            notes[MISSING_ANNOTATION] = "; ".join(f"{k}: {r[0]}" for k, r in f.missing.items())
        return Enrichment(
            labels={ENRICHED_LABEL: "true", CATEGORY_LABEL: category},
            annotations={
                k: bound(v, ANNOTATION_CHARS) for k, v in notes.items() if v or k != "augur_cause"
            },
            settle_at=rel.settle_at(f, self.config, now),
        )
