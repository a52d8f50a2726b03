"""The `outbox` section: how much the alert outbox may hold before it refuses new alerts."""

from __future__ import annotations

from pydantic import Field

from exporter.config.base import Strict


class OutboxConfig(Strict):
    """Bounds of the alert outbox (the SQLite file beside `state.path`)."""

    max_alerts: int = Field(100_000, ge=1)
    """Alerts stored at most; new ones past it get 503 (retried) until delivered ones are
    purged. 600-900 bytes each on disk: 100,000 is 60-90 MB, checked in about a second at
    start."""
