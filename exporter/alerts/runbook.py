"""The `augur_runbook` annotation, and Alertmanager's conventional `runbook_url` when missing.

`augur_runbook` names the runbook to read and links it: the rule's own `runbook_url` first
when the alert has one (augur's best match after it, as "also"), else augur's best match, e.g.
`Latency high: slow responses — https://augur.example.com/runbooks/latency?lang=en (match
0.97)`, or why there is none. The link is the runbook's front-matter `url`, or the file under
`enrich.runbook_base_url`, or augur's own page of it under `web.external_url`.
"""

from __future__ import annotations

from exporter.alerts.facts import Facts
from exporter.text.knowledge import KnowledgeBase, RunbookMatch


def runbook_text(f: Facts, runbook: RunbookMatch | None, knowledge: KnowledgeBase) -> str:
    """The rule's own `runbook_url` first, then augur's best match: its title and link."""
    own = f.alert.annotations.get("runbook_url", "").strip()
    best = ""
    if runbook is not None:
        best = f"{runbook.title} — {runbook.location} (match {runbook.score:.2f})"
    if own:
        also = best if runbook is not None and runbook.location != own else ""
        return f"the rule's runbook: {own}" + (f"; also: {also}" if also else "")
    if best:
        return best
    if "category" in f.missing:
        return f"unavailable: {f.missing['category'][0]}"
    if not knowledge.runbooks:
        return f"none: no runbooks loaded from {knowledge.directory}"
    return f"none: no runbook scored {knowledge.min_score:g} or more"


def runbook_url(f: Facts, runbook: RunbookMatch | None) -> str:
    """`runbook_url` for an alert without one (Alertmanager templates, PagerDuty and Grafana
    OnCall read it): augur's match when it is a link, not a file path; else ``."""
    if runbook is None or f.alert.annotations.get("runbook_url", "").strip():
        return ""
    return runbook.location if runbook.location.startswith(("https://", "http://")) else ""
