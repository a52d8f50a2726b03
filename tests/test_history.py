"""The in-memory history against a plain model of it: a dict of (key, tick) -> value.

Random writes, refetches and advances (through the spare columns and past them) must leave
the window equal to what the model says a full fetch of the look-back would return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import numpy as np
import pytest

from exporter.config.queries import QueryConfig
from exporter.prometheus.client import PrometheusClient
from exporter.scoring.feed import Feed
from exporter.scoring.history import History, key_of

T = TypeVar("T")

STEP = 60.0


def answer(samples: dict[str, dict[int, float]]) -> list[dict[str, object]]:
    """A decoded `query_range` matrix: per series, `(points, 2)` [time, value] arrays."""
    return [
        {
            "metric": {"instance": name},
            "values": np.array([[tick * STEP, v] for tick, v in sorted(points.items())]),
        }
        for name, points in samples.items()
        if points
    ]


def expected(model: dict[str, dict[int, float]], first: int, last: int) -> dict[str, list[float]]:
    """The rows a full fetch of ticks first..last returns: series with a finite sample there."""
    out = {}
    for name, points in sorted(model.items()):
        row = [points.get(t, np.nan) for t in range(first, last + 1)]
        if np.isfinite(row).any():
            out[name] = row
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_polls_match_a_full_fetch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, names = 20, [f"s{i}" for i in range(8)]
    history = History(STEP, width, max_series=100, slack=3)
    model: dict[str, dict[int, float]] = {}
    tick = 1000
    history.reset(tick)
    for _ in range(120):
        previous = tick
        tick += int(rng.choice([0, 1, 1, 2, 5, 30]))
        history.advance(tick)
        lo = max(history.first, previous - 1) if tick - previous < width else history.first
        fetched: dict[str, dict[int, float]] = {}
        for name in names:
            if rng.random() < 0.3:
                continue  # absent from this answer: its refetched columns become NaN
            points = {
                t: float(rng.normal()) if rng.random() > 0.1 else np.nan
                for t in range(lo, tick + 1)
                if rng.random() > 0.2
            }
            fetched[name] = points
        for name in names:
            kept = {t: v for t, v in model.get(name, {}).items() if t < lo}
            model[name] = kept | fetched.get(name, {})
        # As the feed refetches a long gap: in chunks, the newest first.
        size = int(rng.choice([tick - lo + 1, 1, 3, 7]))
        for hi in range(tick, lo - 1, -size):
            part = {
                n: {t: v for t, v in p.items() if hi - size < t <= hi} for n, p in fetched.items()
            }
            history.write(answer(part), max(lo, hi - size + 1), hi, clear=True, add=100)
        window = history.window()
        want = expected(model, history.first, tick)
        assert [dict(k)["instance"] for k in window.keys] == list(want)
        np.testing.assert_array_equal(
            window.values, np.array(list(want.values())).reshape(-1, width)
        )
        np.testing.assert_array_equal(window.timestamps, STEP * np.arange(history.first, tick + 1))


def test_max_series_and_snapshot_round_trip() -> None:
    history = History(STEP, 4, max_series=2)
    history.reset(10)
    added = history.write(
        answer({"c": {9: 1.0}, "a": {10: 2.0}, "b": {8: 3.0}}), 7, 10, clear=False, add=5
    )
    assert added == [key_of({"instance": "c"}), key_of({"instance": "a"})]  # the cap, in order
    window = history.window()
    assert [dict(k)["instance"] for k in window.keys] == ["a", "c"]  # sorted, as align sorts
    snap = history.dump()
    assert snap is not None and snap.nbytes == 2 * 8 + 2 * 4 * 4
    restored = History(STEP, 4, max_series=2)
    restored.load(snap)
    np.testing.assert_array_equal(restored.window().values, window.values)
    assert restored.window().keys == window.keys
    with pytest.raises(ValueError, match="another shape"):
        History(STEP, 5, max_series=2).load(snap)


async def test_a_restore_refetches_what_a_failed_fetch_left_and_drops_other_shards() -> None:
    """The snapshot of a history whose last fetch failed after the grid advanced: its newest
    columns are empty, so the restored feed fetches again from the newest sample it holds, not
    from the snapshot's grid (the gap would stay NaN). Series the shard no longer owns go."""
    query = QueryConfig.model_validate({"name": "q", "expr": "up", "step": "1m", "lookback": "20m"})
    history = History.of(query)
    tick = 1000
    history.reset(tick)
    full = {t: 1.0 for t in range(history.first, tick + 1)}
    history.write(answer({"a": full, "b": full}), history.first, tick, clear=False, add=10)
    history.advance(tick + 3)  # the poll at tick + 3 advanced the grid, then its fetch failed
    snap = history.dump()
    assert snap is not None and snap.tick == tick + 3

    async def run(fn: Callable[[], T]) -> T:
        return fn()

    feed = Feed(
        cast(PrometheusClient, None),
        query,
        History.of(query),
        owns=lambda labels: labels["instance"] == "a",
    )
    assert await feed.restore(snap, (tick + 4) * STEP, run)
    assert feed.fetched == tick
    assert [dict(k)["instance"] for k in feed.history.window().keys] == ["a"]
