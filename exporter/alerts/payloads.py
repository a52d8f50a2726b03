"""The alert loop's contract: Alertmanager's webhook payload and what enrichment adds.

The webhook validates payloads with `WebhookPayload`; an `Enricher` turns a group's alerts into
one `Enrichment` each; the outbox stores the source alert's labels merged with the
enrichment's. Everything that is posted back must pass Alertmanager's own checks (valid label
names, UTF-8 values, a non-empty label set), so the same rules are enforced here on input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

ENRICHED_LABEL = "augur_enriched"
"""Set to "true" on every alert augur posts; routes match on it, and augur skips such alerts."""
CATEGORY_LABEL = "category"
ANNOTATIONS = (
    "augur_category",
    "augur_confidence",
    "augur_entities",
    "augur_related",
    "augur_runbook",
    "augur_summary",
)
"""The annotations an enricher adds (the design's enriched-alert contract)."""
MISSING_ANNOTATION = "augur_missing"
"""Says which part of the enrichment could not be computed, and why."""

MAX_LABEL_VALUE_CHARS = 256
MAX_ANNOTATION_CHARS = 4096
"""Bounds for values augur adds: receivers such as Slack or PagerDuty cut long text anyway."""

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
"""Label and annotation names Alertmanager 0.25 accepts."""

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-64a over sorted names and values."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z, fixed width so the text sorts as time does."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


MAX_PROBLEMS_PER_FIELD = 3
"""A field's error says how many bad entries it has and names this many."""
_SHOWN_CHARS = 64


def shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    """`text` quoted for an error message, cut to `limit` characters (attackers send megabytes)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"…({len(text) - limit} more characters)"


def _problems(pairs: Mapping[str, str], what: str) -> list[str]:
    out = []
    for name, value in pairs.items():
        if not LABEL_NAME_RE.match(name):
            out.append(
                f"{what} name {shown(name)} is not valid (Alertmanager wants "
                "[a-zA-Z_][a-zA-Z0-9_]*)"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            out.append(f"{what} {shown(name)}: value is not valid UTF-8 (a lone surrogate)")
    if len(out) > 1:  # the count first: the message is cut at a few hundred characters
        out = [f"{len(out)} problems", *out[:MAX_PROBLEMS_PER_FIELD]]
    return out


def _utc(value: datetime) -> datetime:
    """`value` in UTC; a time whose UTC value is outside years 1-9999 is refused (422)."""
    # Alertmanager always sends an offset; a bare time from another sender is taken as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


def _no_surrogates(value: str) -> str:
    # The JSON parser refuses lone surrogates already; this keeps Python-built payloads honest.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid UTF-8 (a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_no_surrogates)]
"""A string that can be stored and posted: valid UTF-8."""


class WebhookAlert(BaseModel):
    """One alert of a webhook notification, as Alertmanager sends it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: Text = ""
    fingerprint: Text = Field("", max_length=256)
    augur_authenticated: bool = False
    """Set by augur's webhook (whatever the body said): the notification came with the token.
    Only then, or from a trusted generator host, is the rule's expression run in Prometheus."""

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        # Alertmanager drops empty-valued labels: an empty value is the same as no label.
        value = {k: v for k, v in value.items() if v != ""}
        if not value:
            raise ValueError(
                "at least one label with a value is needed (Alertmanager rejects "
                "an empty label set)"
            )
        problems = _problems(value, "label")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        problems = _problems(value, "annotation")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _time(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    def key(self) -> tuple[str, str]:
        """(fingerprint, startsAt): one incident of one source alert, the same on every replica."""
        return (self.fingerprint or fingerprint(self.labels), format_time(self.startsAt))


class WebhookPayload(BaseModel):
    """A webhook notification (version 4) for one alert group."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    groupKey: Text
    truncatedAlerts: int = Field(0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: Text
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert]

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"augur reads webhook payload version 4, got {shown(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What enrichment adds to one alert: labels (augur_enriched, category) and annotations."""

    labels: dict[str, str]
    annotations: dict[str, str]
    settle_at: float | None = None
    """When to look at the related anomalies once more (unix seconds): enriched too early."""


class Enricher(Protocol):
    """Turns alerts into enrichments, one per alert in the same order.

    It should not raise when Prometheus is slow or down (say what is missing instead); if it
    raises or overruns `webhook.enrich_timeout` anyway, the alerts get `minimal_enrichment`.
    """

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        """One enrichment per alert, same order."""
        ...


def minimal_enrichment(reason: str) -> Enrichment:
    """The enrichment of an alert the enricher could not handle: marked, and saying why."""
    text = f"augur could not enrich this alert ({reason}); it is passed on as it came"
    return Enrichment(
        labels={ENRICHED_LABEL: "true"},
        annotations={"augur_summary": text, MISSING_ANNOTATION: reason},
    )


def bound(value: str, limit: int) -> str:
    """`value` as valid UTF-8 text of at most `limit` characters, cut with an ellipsis."""
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def merge(source: WebhookAlert, enrichment: Enrichment) -> tuple[dict[str, str], dict[str, str]]:
    """The enriched alert's labels and augur's annotations, valid for Alertmanager.

    The source's labels win over an enricher's (a user's own `category` stays), empty or
    invalid names are dropped, values are bounded.
    """
    labels = {
        name: bound(str(value), MAX_LABEL_VALUE_CHARS)
        for name, value in enrichment.labels.items()
        if LABEL_NAME_RE.match(name) and str(value)
    }
    labels.update(source.labels)
    labels[ENRICHED_LABEL] = "true"
    annotations = {
        name: bound(str(value), MAX_ANNOTATION_CHARS)
        for name, value in enrichment.annotations.items()
        if LABEL_NAME_RE.match(name)
    }
    return labels, annotations


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST = re.compile(r"""[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>"\x80-\U0010ffff]*""")
"""What Go's url.Parse takes in a host (its shouldEscape for hosts); `%` only in IPv6 zones."""


def generator_url(value: str) -> str:
    """The URL if Alertmanager's API would take it (Go's url.Parse, an absolute URI), else "".

    One generatorURL it refuses makes Alertmanager refuse the whole batch with 422.
    """
    if _BAD_ESCAPE.search(value) or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return ""
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
        return ""
    return value
