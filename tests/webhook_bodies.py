"""Webhook bodies as an Alertmanager replica sends them, for the tests that post to augur."""

from __future__ import annotations

from typing import Any


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A version-4 webhook body firing these source alerts."""
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:1",
        "alerts": [{**a, "status": "firing", "endsAt": "0001-01-01T00:00:00Z"} for a in alerts],
    }
