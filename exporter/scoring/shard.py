"""Which series this replica scores, when several augur processes split the work.

`Shard(count, index)` owns a series when a stable hash of its label set, modulo `count`, is
`index`: N replicas with indices 0..N-1 own every series exactly once, with no coordination
between them. The hash is BLAKE2b over a length-prefixed encoding of the sorted label pairs,
so it is the same in every process, Python version and restart (Python's `hash()` of a str is
salted per process and would move every series on each restart).

`__name__` is left out of the hash. Whether an upstream keeps the metric name on a function's
result differs (Prometheus 3's delayed name removal, VictoriaMetrics' `keep_metric_names`),
and a series whose owner changed with it would lose its detectors' history on both replicas.
Leaving it out never breaks "exactly once": series that differ only by their name share an
owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from exporter.config.shard import ShardConfig

NAME_LABEL = "__name__"


def label_hash(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> int:
    """A 64-bit hash of a label set, the same in every process; `__name__` is ignored."""
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    # Length-prefixed, so no two different label sets encode to the same bytes; one buffer
    # and one digest call per series (this runs for every series of every poll).
    buffer = bytearray()
    for name, value in sorted(pairs):
        if name == NAME_LABEL:
            continue
        for part in (name.encode(), value.encode()):
            buffer += len(part).to_bytes(4, "big")
            buffer += part
    digest = hashlib.blake2b(buffer, digest_size=8, person=b"augur-shard")
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """Replica `index` of `count`: the series it owns."""

    count: int
    index: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, got {self.index}")

    @classmethod
    def from_config(cls, config: ShardConfig) -> Shard:
        """The shard the configuration names (its index resolved when it loaded)."""
        return cls(config.count, config.resolved_index())

    def owns(self, labels: Mapping[str, str]) -> bool:
        """Whether this replica scores the series with these labels."""
        return self.count == 1 or label_hash(labels) % self.count == self.index

    def filter(self) -> Callable[[Mapping[str, str]], bool] | None:
        """`owns`, or None when there is one replica (everything is owned: nothing to check)."""
        return None if self.count == 1 else self.owns
