"""The Enricher: what each alert is about, what it touches, what else went wrong, what to do.

For a group of alerts, at once: the text model classifies summary + description (one batch, in
the executor) and picks a runbook; entities come from labels, text and the rule's PromQL; and
Prometheus is asked, all calls concurrent under one deadline, which series augur scores that
share the alert's entities were anomalous around `startsAt` and what the rule's own expression
read. Whatever does not arrive in time is named in the output instead of holding the alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from exporter.alerts.models import (
    CATEGORY_LABEL,
    ENRICHED_LABEL,
    MISSING_ANNOTATION,
    Duration,
    Enrichment,
    WebhookAlert,
    bound,
)
from exporter.text.encoder import Classification, normalize_alert_text
from exporter.text.entities import Entities, MetricCatalog, extract, is_chinese, rule_expr
from exporter.text.knowledge import DEFAULT_DIR, MIN_SCORE, KnowledgeBase, RunbookMatch

if TYPE_CHECKING:  # exporter.prometheus imports exporter.config, which may import this module
    from exporter.prometheus import PrometheusClient

logger = logging.getLogger("augur.enrich")

ANNOTATION_CHARS = 1000
"""Every annotation augur adds is cut to this many characters."""
_CACHE_SIZE = 512
_SCORE = "augur_anomaly_score"
_NAMING = ("instance", "pod", "service", "node", "device", "mountpoint", "container")
Reason = tuple[str, str]
"""Why something is missing, in English and in Chinese."""
Understood = tuple[Classification, RunbookMatch | None]


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


class EnrichConfig(BaseModel):
    """How alerts are enriched: runbooks, the Prometheus deadline, the related-series window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    knowledge_dir: Path = DEFAULT_DIR
    runbook_base_url: str | None = None
    runbook_min_score: float = Field(MIN_SCORE, ge=0.0, le=2.0)
    deadline: Duration = Field(0.5, gt=0)
    model_timeout: Duration = Field(2.0, gt=0)
    related_before: Duration = Field(900.0, ge=0)
    related_after: Duration = Field(300.0, ge=0)
    related_step: Duration = Field(15.0, gt=0)
    related_min_score: float = Field(1.0, ge=0)
    max_related: int = Field(5, ge=0, le=50)
    metric_names_ttl: Duration = Field(300.0, gt=0)


@dataclass(frozen=True, slots=True)
class Related:
    """A scored series sharing the alert's entities: its peak score, when it turned anomalous."""

    labels: Mapping[str, str]
    peak: float
    first: float

    @property
    def metric(self) -> str:
        """The scored series' metric name (or its query's name)."""
        return self.labels.get("metric") or self.labels.get("query") or _SCORE

    def name(self) -> str:
        """`metric{instance="pg-1:9100",device="sda"}`, with the labels that name the series."""
        # exported_instance is the series' own instance; a plain one beside it is augur's.
        own = {k: v for k, v in self.labels.items() if k in _NAMING}
        for key, value in self.labels.items():
            if key.startswith("exported_") and key[len("exported_") :] in _NAMING:
                own[key[len("exported_") :]] = value
        shown = sorted(own.items(), key=lambda kv: _NAMING.index(kv[0]))
        inner = ",".join(f'{k}="{v}"' for k, v in shown[:3])
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass(frozen=True, slots=True)
class Reading:
    """The rule expression's value at the alert's start and at the start of the window."""

    value: float
    at: float
    earlier: float
    earlier_at: float


@dataclass
class _Facts:
    alert: WebhookAlert
    text: str
    zh: bool
    entities: Entities
    expr: str
    understood: Understood | None = None
    related: list[Related] | None = None
    reading: Reading | None = None
    missing: dict[str, Reason] = field(default_factory=dict)


def _rx(value: str) -> str:
    """`value` as a literal in an RE2 regex (Python's re.escape writes escapes RE2 refuses)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def related_selector(entities: Entities) -> str:
    """PromQL for augur's scores of series sharing the alert's machines, pods or services.

    Scraped without honor_labels, a series' own `instance` or `pod` is `exported_instance` or
    `exported_pod`, so both spellings are asked for.
    """
    alternatives = {
        kind: "|".join(_rx(v) for v in values)
        for kind, values in (
            ("machine", entities.machines()),
            ("url", entities.url),
            ("pod", entities.pod),
            ("service", entities.service),
        )
        if values
    }
    labels = {
        "machine": ("node", "exported_node", "host"),
        "url": ("instance", "exported_instance"),
        "pod": ("pod", "exported_pod"),
        "service": ("service", "exported_service"),
    }
    matchers = [
        f"{label}=~{json.dumps(rx, ensure_ascii=False)}"  # a JSON string is a PromQL string
        for kind, rx in alternatives.items()
        for label in labels[kind]
    ]
    if "machine" in alternatives:
        port = json.dumps(f"(?:{alternatives['machine']})(?::[0-9]+)?", ensure_ascii=False)
        matchers += [f"instance=~{port}", f"exported_instance=~{port}"]
    return " or ".join(f"{_SCORE}{{{m}}}" for m in matchers)


def _points(series: Mapping[str, Any]) -> np.ndarray:
    values = np.asarray(series.get("values", ()), dtype=np.float64).reshape(-1, 2)
    return values[np.isfinite(values[:, 1])]


def _within(labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    return all(
        alert_labels.get(k) == v for k, v in labels.items() if k not in ("__name__", "detector")
    )


def rank_related(
    result: Sequence[Mapping[str, Any]], alert_labels: Mapping[str, str], threshold: float
) -> list[Related]:
    """Anomalous series, the first to turn anomalous first, then the highest; not the alert's."""
    out = []
    for series in result:
        if _within(series["metric"], alert_labels):
            continue  # the alert is about this very series, not related to it
        points = _points(series)
        anomalous = points[points[:, 1] >= threshold]
        if len(anomalous):
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            out.append(Related(labels, float(anomalous[:, 1].max()), float(anomalous[0, 0])))
    return sorted(out, key=lambda r: (r.first, -r.peak))


def expr_reading(
    result: Sequence[Mapping[str, Any]], alert_labels: Mapping[str, str]
) -> Reading | None:
    """The rule's values for this alert's series: the one whose labels the alert carries."""
    mine = [s for s in result if _within(s["metric"], alert_labels)]
    if not mine and len(result) == 1:
        mine = list(result)  # the rule's labels replaced the series' own: take the only one
    points = _points(mine[0]) if mine else np.zeros((0, 2))
    if not len(points):
        return None
    (first_at, first), (last_at, last) = points[0], points[-1]
    return Reading(float(last), float(last_at), float(first), float(first_at))


def _clock(ts: float, now: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(
        "%H:%M UTC" if abs(now - ts) < 86400 else "%Y-%m-%d %H:%M UTC"
    )


def _num(value: float) -> str:
    return f"{value:.3g}"


_WORDS = {
    "cpu": ("CPU", "CPU"),
    "memory": ("Memory", "内存"),
    "disk": ("Disk", "磁盘"),
    "network": ("Network", "网络"),
    "availability": ("Availability", "可用性"),
    "latency": ("Latency", "延迟"),
    "errors": ("Errors", "错误"),
    "saturation": ("Saturation", "资源饱和"),
    "security": ("Security", "安全"),
    "data_integrity": ("Data integrity", "数据完整性"),
    "deployment": ("Deployment", "发布"),
    "hardware": ("Hardware", "硬件"),
    "other": ("Alert", "告警"),
}
_PHRASES = (
    {
        "head": "{}: {}",
        "on": " on {}",
        "rule": "rule value {} (was {} at {})",
        "value": "rule value {}",
        "related": "related: {name} anomalous (score {score:.1f}) since {since}",
        "more": " and {} more",
        "unknown": "{} unknown ({})",
        "and": ", ",
        "sep": "; ",
        "end": ".",
        "related_what": "related series",
        "expression_what": "rule value",
        "category_what": "category and runbook",
    },
    {
        "head": "{}：{}",
        "on": "（{}）",
        "rule": "规则值 {0}（{2} 时为 {1}）",
        "value": "规则值 {}",
        "related": "相关：{name} 自 {since} 起异常（分数 {score:.1f}）",
        "more": "，另有 {} 个序列",
        "unknown": "{}未知（{}）",
        "and": "、",
        "sep": "；",
        "end": "。",
        "related_what": "相关序列",
        "expression_what": "规则值",
        "category_what": "分类与手册",
    },
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _lead(alert: WebhookAlert) -> str:
    notes = alert.annotations
    text = _CONTROL.sub(" ", notes.get("summary") or notes.get("description") or "")
    text = " ".join(text.split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0] or alert.labels.get("alertname", "alert")
    return text.rstrip(".。 ")[:200]


def _where(e: Entities) -> str:
    if e.pod:
        return f"{e.namespace[0]}/{e.pod[0]}" if e.namespace else e.pod[0]
    return next((names[0] for names in (e.machines(), e.service, e.job) if names), "")


def summary(f: _Facts, now: float) -> str:
    """One sentence in the alert's own language, built from the facts gathered for it."""
    p, e, lead, where = _PHRASES[f.zh], f.entities, _lead(f.alert), _where(f.entities)
    word = _WORDS.get(f.understood[0].category if f.understood else "other", _WORDS["other"])[f.zh]
    parts = [lead if word.lower() in lead.lower() else p["head"].format(word, lead)]
    if where and where not in lead:
        parts[0] += p["on"].format(where)
    place = next((x for x in (*e.mountpoint, *e.device) if x not in lead), "")
    share = next((x for x in e.percentage if x not in lead), "")
    if place or share:
        parts.append(f"{place} {share}".strip())
    if (r := f.reading) and _num(r.value) not in lead:
        at, then = _clock(r.earlier_at, now), _num(r.earlier)
        parts.append(p["rule" if r.earlier_at < r.at else "value"].format(_num(r.value), then, at))
    if f.related:
        top, more = f.related[0], len(f.related) - 1
        since = _clock(top.first, now)
        parts.append(p["related"].format(name=top.metric, score=top.peak, since=since))
        parts[-1] += p["more"].format(more) if more else ""
    by_reason: dict[Reason, list[str]] = {}
    for what, reason in f.missing.items():
        by_reason.setdefault(reason, []).append(p[f"{what}_what"])
    for reason, whats in by_reason.items():
        parts.append(p["unknown"].format(p["and"].join(whats), reason[f.zh]))
    return p["sep"].join(parts) + p["end"]


def _prometheus_reason(exc: BaseException | None, deadline: float) -> Reason:
    if exc is None:
        return (
            f"Prometheus did not answer within {deadline:g} s",
            f"Prometheus 在 {deadline:g} 秒内未响应",
        )
    # PrometheusError, told by its attribute: importing it here would close an import cycle.
    if getattr(exc, "error_type", "") in ("connection", "timeout"):
        return "Prometheus is unreachable", "无法连接 Prometheus"
    return f"Prometheus failed: {exc}", f"Prometheus 出错：{exc}"


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
    ) -> None:
        self.config = cfg = config or EnrichConfig()
        self.model = model
        self.prometheus = prometheus
        self.executor = executor
        self.clock = clock
        self.knowledge = KnowledgeBase(
            cfg.knowledge_dir,
            model,
            base_url=cfg.runbook_base_url,
            categories=model.labels,
            min_score=cfg.runbook_min_score,
        )
        self.catalog = MetricCatalog(prometheus, ttl=cfg.metric_names_ttl)
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
        facts = {i: self._facts(a) for i, a in enumerate(alerts) if ENRICHED_LABEL not in a.labels}
        todo = list(facts.values())
        if todo:
            await asyncio.gather(self._understand(todo), self._ask_prometheus(todo))
        now = self.clock()
        missing = {w: r[0] for f in todo for w, r in f.missing.items()}
        logger.log(
            logging.WARNING if missing else logging.DEBUG,
            "alerts_enriched",
            extra={
                "alerts": len(todo),
                "seconds": round(time.perf_counter() - started, 4),
                "missing": missing,
            },
        )
        return [
            self._enrichment(facts[i], now) if i in facts else Enrichment({}, {})
            for i in range(len(alerts))
        ]

    def _facts(self, alert: WebhookAlert) -> _Facts:
        notes = alert.annotations
        texts = [notes.get("summary", ""), notes.get("description") or notes.get("message", "")]
        expr = rule_expr(alert.generatorURL)
        entities = extract(alert.labels, texts, expr=expr, known_metric=self.catalog.known)
        text = normalize_alert_text(texts[0], texts[1], alert.labels.get("alertname", ""))
        return _Facts(alert, text, is_chinese(" ".join(texts)), entities, expr)

    async def _understand(self, facts: Sequence[_Facts]) -> None:
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

    def _window(self, f: _Facts) -> tuple[float, float]:
        """`related_before` before the alert's start to `related_after` after (not past now)."""
        cfg, start = self.config, f.alert.startsAt.timestamp()
        begin = math.floor((start - cfg.related_before) / cfg.related_step) * cfg.related_step
        end = math.ceil(min(start + cfg.related_after, self.clock()) / cfg.related_step)
        return begin, max(begin, end * cfg.related_step)

    async def _ask_prometheus(self, facts: Sequence[_Facts]) -> None:
        cfg = self.config
        plan: list[tuple[_Facts, str, tuple[str, float, float, float]]] = []
        for f in facts:
            if selector := related_selector(f.entities):
                query = f"max without (detector) ({selector}) >= {cfg.related_min_score:g}"
                plan.append((f, "related", (query, *self._window(f), cfg.related_step)))
            if f.expr:
                # Two points, at the start and `related_before` earlier: a rule over long
                # ranges costs Prometheus a full evaluation per point.
                start, before = f.alert.startsAt.timestamp(), cfg.related_before or 1.0
                plan.append((f, "expression", (f.expr, start - before, start, before)))
        calls = {
            key: asyncio.create_task(self.prometheus.query_range(*key))
            for key in dict.fromkeys(key for _, _, key in plan)  # alerts of a group often share one
        }
        try:
            if calls:
                await asyncio.wait(calls.values(), timeout=cfg.deadline)
        finally:
            for task in calls.values():
                task.cancel()
            await asyncio.gather(*calls.values(), return_exceptions=True)
        for f, what, key in plan:
            task = calls[key]
            if task.cancelled() or task.exception() is not None:
                exc = None if task.cancelled() else task.exception()
                f.missing[what] = _prometheus_reason(exc, cfg.deadline)
            elif what == "related":
                f.related = rank_related(task.result(), f.alert.labels, cfg.related_min_score)
            else:
                f.reading = expr_reading(task.result(), f.alert.labels)

    def _enrichment(self, f: _Facts, now: float) -> Enrichment:
        cls, runbook = f.understood or (None, None)
        category = cls.category if cls else "other"
        notes = {
            "augur_category": category,
            "augur_confidence": f"{cls.confidence:.2f}" if cls else "0",
            "augur_entities": f.entities.to_json(ANNOTATION_CHARS),
            "augur_related": self._related_text(f, now),
            "augur_runbook": self._runbook_text(f, runbook),
            "augur_summary": summary(f, now),
        }
        if f.missing:
            notes[MISSING_ANNOTATION] = "; ".join(f"{k}: {r[0]}" for k, r in f.missing.items())
        return Enrichment(
            labels={ENRICHED_LABEL: "true", CATEGORY_LABEL: category},
            annotations={k: bound(v, ANNOTATION_CHARS) for k, v in notes.items()},
        )

    def _related_text(self, f: _Facts, now: float) -> str:
        """One line per related series, most telling first, then the rule's own values."""
        lines = [
            f"{r.name()} score {r.peak:.2f}, anomalous since {_clock(r.first, now)}"
            for r in (f.related or [])[: self.config.max_related]
        ]
        if "related" in f.missing:
            lines.append(f"unavailable: {f.missing['related'][0]}")
        elif f.related is None:
            lines.append("none: the alert names no instance, host, pod or service to look for")
        elif not f.related:
            begin, end = self._window(f)
            e = f.entities
            lines.append(
                f"none: no series of {', '.join(e.pod or e.machines() or e.service or e.url)} "
                f"scored >= {self.config.related_min_score:g} "
                f"between {_clock(begin, now)} and {_clock(end, now)}"
            )
        if r := f.reading:
            lines.append(f"rule expression: {_num(r.value)} at {_clock(r.at, now)}")
            if r.earlier_at < r.at:
                lines[-1] += f" ({_num(r.earlier)} at {_clock(r.earlier_at, now)})"
        elif "expression" in f.missing:
            lines.append(f"rule expression unavailable: {f.missing['expression'][0]}")
        return "\n".join(lines)

    def _runbook_text(self, f: _Facts, runbook: RunbookMatch | None) -> str:
        if runbook is not None:
            return f"{runbook.title} — {runbook.location} (score {runbook.score:.2f})"
        if "category" in f.missing:
            return f"unavailable: {f.missing['category'][0]}"
        if not self.knowledge.runbooks:
            return f"none: no runbooks loaded from {self.knowledge.directory}"
        return f"none: no runbook scored {self.knowledge.min_score:g} or more"
