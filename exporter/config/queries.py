"""The queries: which PromQL expressions are scored, by which detectors, over what window.

A query names its detectors from the registry (`exporter.detectors`); each detector's
settings are validated by the model it declares there. `DEFAULT_QUERIES` are scored when the
file lists none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from exporter.config.base import Strict, located
from exporter.config.durations import Duration, format_duration, parse_duration
from exporter.detectors import DETECTORS, DetectorParams

DEFAULT_RECOVERY = 3600.0
"""Seconds back in band after which an incident closes (the query's `recovery`)."""

DEFAULT_ESCALATION = 2.0
"""How many times the opening (or last escalating) score makes an open incident worse."""


def _detectors(value: Any) -> dict[str, DetectorParams]:
    """Accept `[zscore, ewma]` or `{zscore: {window: 60}, ewma: {}}` and validate params."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("write detectors as a list of names or a mapping name -> settings")
        value = dict.fromkeys(value)
    if not isinstance(value, Mapping):
        raise ValueError("write detectors as a list of names or a mapping name -> settings")
    if not value:
        raise ValueError("at least one detector is needed")
    out: dict[str, DetectorParams] = {}
    for name, params in value.items():
        spec = DETECTORS.get(str(name))
        if spec is None:
            known = ", ".join(sorted(DETECTORS))
            raise ValueError(f'unknown detector "{name}" (known: {known})')
        if isinstance(params, DetectorParams):
            out[name] = params
            continue
        try:
            out[name] = spec.params.model_validate(params or {})
        except ValidationError as exc:
            raise ValueError("; ".join(located(exc.errors(), prefix=str(name)))) from None
    return out


_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class QueryConfig(Strict):
    """One PromQL expression whose series are scored on every cycle."""

    name: str
    expr: str
    # The shipped default: the ensemble over three days at 5-minute steps, enough for it to
    # warm up at once and to see a daily pattern.
    detectors: Annotated[dict[str, DetectorParams], BeforeValidator(_detectors)] = Field(
        default_factory=lambda: _detectors(["ensemble"])
    )
    lookback: Duration = Field(3 * 86400.0, gt=0)
    step: Duration = Field(300.0, gt=0)
    direction: Literal["up", "down", "both"] = "both"
    min_deviation: float = Field(0.0, ge=0)
    min_relative_deviation: float = Field(0.0, ge=0)
    labels: list[str] | None = None
    max_series: int = Field(1000, ge=1)
    valid_range: tuple[float, float] | None = None
    seasonality: str = "auto"
    horizons: list[Duration] = Field(default_factory=list)
    recovery: Duration = Field(DEFAULT_RECOVERY, ge=0)
    """How long a series must score below 1 before its incident closes."""
    escalation: float = Field(DEFAULT_ESCALATION, gt=1, allow_inf_nan=False)
    """An open incident is raised a stage by a score this many times the one that opened it."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        for label in value or []:
            if not _LABEL_RE.match(label):
                raise ValueError(f"not a valid label name: {label!r}")
        return value

    @field_validator("seasonality")
    @classmethod
    def _seasonality(cls, value: str) -> str:
        if value not in ("none", "auto"):
            try:
                parse_duration(value)
            except ValueError:
                raise ValueError(
                    f"write none, auto or a period such as 1d or 1w, got {value!r}"
                ) from None
        return value

    @field_validator("valid_range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"write [low, high] with low < high, got {list(value)}")
        return value

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, value: list[float]) -> list[float]:
        if any(h <= 0 for h in value):
            raise ValueError("every horizon must be a positive duration such as 1h")
        return sorted(set(value))

    @model_validator(mode="after")
    def _window(self) -> QueryConfig:
        if self.lookback < 2 * self.step:
            raise ValueError(
                f"lookback ({format_duration(self.lookback)}) must cover at least two steps "
                f"({format_duration(self.step)})"
            )
        period = self.season_seconds()
        if isinstance(period, float) and period < 2 * self.step:
            raise ValueError(
                f"seasonality ({self.seasonality}) must span at least two steps "
                f"({format_duration(self.step)})"
            )
        return self

    def season_seconds(self) -> float | str | None:
        """The seasonality as the detectors' wrapper takes it: None, "auto" or a period."""
        if self.seasonality == "none":
            return None
        if self.seasonality == "auto":
            return "auto"
        return parse_duration(self.seasonality)


DEFAULT_QUERIES: tuple[QueryConfig, ...] = (
    QueryConfig(name="process_cpu", expr="rate(process_cpu_seconds_total[5m])"),
    QueryConfig(name="process_memory", expr="process_resident_memory_bytes"),
    QueryConfig(
        name="node_cpu_busy",
        expr='1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
    ),
    QueryConfig(
        name="node_memory_available_ratio",
        expr="node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    QueryConfig(name="scrape_duration", expr="scrape_duration_seconds"),
)
"""What is scored when the file names no queries: process and node basics, if present."""
