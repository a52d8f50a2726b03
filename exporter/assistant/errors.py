"""The three ways a question can fail to get an answer table, each saying why to the user."""

from __future__ import annotations


class SlotError(ValueError):
    """A slot value is not one Prometheus knows (or is not a valid number or duration).

    `closest` lists real values near the one given, best first, for the user to pick from.
    """

    def __init__(self, slot: str, message: str, closest: list[str] | None = None) -> None:
        super().__init__(message)
        self.slot = slot
        self.closest = closest or []


class NoData(Exception):
    """The query ran and found nothing; `sentence` says so in the question's language."""

    def __init__(self, sentence: str, promql: list[str]) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.promql = promql


class NotAvailable(Exception):
    """This Prometheus lacks what the intent reads (a metric family, an Alertmanager URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
