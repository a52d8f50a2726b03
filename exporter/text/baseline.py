"""The keyword baseline: hand-written English regular expressions per category, first match wins.

`augur model eval` scores it next to the model, so the card shows what the model adds over the
rules an operator would write.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A rule set of the kind an operator writes by hand, in English, first match wins: specific
# subjects (certificates, fans, backups, rollouts) before resources, resources before symptoms,
# since "disk write errors" is a disk problem before it is an error. Written from general
# knowledge of alert wording and checked only on the dev split, never on test texts.
KEYWORD_RULES: tuple[tuple[str, str], ...] = (
    (
        "security",
        r"certificate|\bcerts?\b|\bssl\b|\btls\b|unauthori[sz]ed|forbidden|\b40[13]\b|"
        r"login|brute.?force|intrusion|vulnerab|\bcve\b|attack|malware|audit|privilege|"
        r"authenticat|password|secret|firewall|\bwaf\b|suspicious",
    ),
    (
        "hardware",
        r"hardware|\bfans?\b|temperature|overheat|thermal|power supply|\bpsu\b|\bups\b|"
        r"battery|voltage|\bipmi\b|\bbmc\b|chassis|sensor|\bgpu\b|raid controller|"
        r"motherboard|\bnvme\b.*(fail|error)",
    ),
    (
        "data_integrity",
        r"backup|corrupt|checksum|data loss|inconsisten|integrity|replication (broken|stopped|"
        r"failed|error)|restore|snapshot|mismatch|split.?brain|\bwal\b",
    ),
    (
        "deployment",
        r"deploy|rollout|roll.?back|release|\bhelm\b|upgrade|image pull|imagepullbackoff|"
        r"\bargo|canary|config(uration)? (change|reload)|version",
    ),
    (
        "disk",
        r"\bdisks?\b|filesystem|file system|\binodes?\b|\bvolumes?\b|storage|partition|"
        r"mount|\biops\b|\bsmart\b|read.?only|\bpvc?\b|space (left|low)|out of space",
    ),
    ("memory", r"memory|\bmem\b|\boom|out of memory|\bswap|\bheap\b|\brss\b|\becc\b"),
    ("cpu", r"\bcpu|processor|load average|\bload\b|throttl|\bsteal\b|context switch"),
    (
        "network",
        r"network|packet|interface|\beth\d|\bnic\b|bandwidth|\bdns\b|\btcp\b|\budp\b|"
        r"link (down|flap)|\bbgp\b|\broute|\bping\b|connection (refused|reset)|conntrack|"
        r"retransmi|\bvpn\b|ingress|egress",
    ),
    (
        "latency",
        r"latency|slow|response time|\bp9[59]\b|duration|timeout|timed out|\blag\b|delay|"
        r"too long",
    ),
    # added with the `traffic` category (issue 13), written before its test texts were read
    (
        "traffic",
        r"\b(request|query|queries|message|event|call)s?\b.{0,30}\b(rate|volume|per (second|minute)"
        r"|spike|surge|drop)|\bqps\b|\brps\b|req/s|msg/s|traffic (spike|surge|drop)|"
        r"no (incoming )?(requests|traffic|messages)",
    ),
    (
        "availability",
        r"\bdown\b|unavailable|unreachable|crash|restart|not ready|health.?check|absent|"
        r"missing|offline|outage|no (data|response)|stopped|dead",
    ),
    ("errors", r"error|\b5\d\d\b|\b5xx\b|exception|fail|panic|fatal|reject"),
    (
        "saturation",
        r"queue|saturat|\bfull\b|limit|capacity|exhaust|backlog|too many|quota|cardinality|"
        r"pool|connections|pending|usage (is )?high",
    ),
)
BASELINE_FALLBACK = "other"


class KeywordBaseline:
    """English regular expressions per category, first match wins, else `other`."""

    def __init__(self, rules: Sequence[tuple[str, str]] = KEYWORD_RULES) -> None:
        """Compile the (category, pattern) rules, case-insensitively."""
        self.rules = [(cat, re.compile(pattern, re.IGNORECASE)) for cat, pattern in rules]

    def match(self, text: str) -> str | None:
        """The category of the first rule that matches, or None."""
        for category, pattern in self.rules:
            if pattern.search(text):
                return category
        return None

    def predict(self, texts: Sequence[str]) -> list[str]:
        """One category per text."""
        return [self.match(t) or BASELINE_FALLBACK for t in texts]
