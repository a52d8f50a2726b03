"""The demo workload: history joins live values, the schedule replays, /metrics is valid."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.procs import MissingBinaryError, Sample, find_binary, free_port
from exporter.demo.workload import (
    HELP,
    INJECTED,
    ROTATION,
    Workload,
    _normal,
    selector,
    serve,
)

T0 = 1_699_999_920.0  # a multiple of the 15 s buckets and of the 180 s period


def by_series(samples: list[Sample]) -> dict[str, float]:
    return {selector(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


@pytest.mark.parametrize("offset", [0.0, 7.3, 14.999, 3600 + 2.5, 86400 * 3 + 11])
def test_a_live_scrape_sees_the_backfilled_value_of_its_bucket(offset: float) -> None:
    t = T0 + offset
    live = Workload(clock=lambda: t).live()
    start = Workload().bucket(t)
    history = Workload().history(start - 3600, start, 15)
    assert {s.timestamp for s in live} == {t}
    assert by_series(live) == by_series([s for s in history if s.timestamp == start])


def test_history_covers_the_range_at_the_step_and_adds_missing_target_labels() -> None:
    history = Workload().history(T0, T0 + 3600, 15, extra_labels={"instance": "w", "job": "d"})
    assert sorted({s.timestamp for s in history}) == [T0 + 15 * i for i in range(241)]
    cpu = {s.labels["instance"] for s in history if s.name == "demo_cpu_usage_ratio"}
    assert cpu == {"app-1", "app-2", "app-3"}, "a series' own instance label wins"
    rates = [s for s in history if s.name == "demo_http_requests_per_second"]
    assert {(s.labels["instance"], s.labels["job"]) for s in rates} == {("w", "d")}


def test_the_schedule_replays_exactly_and_rotates_through_every_injection() -> None:
    epoch = T0 + 45
    a, b = Workload(epoch=epoch), Workload(epoch=epoch)
    seen = []
    for k in range(len(ROTATION) + 2):
        start = epoch + k * 180
        entry = ROTATION[k % len(ROTATION)]
        assert a.next_injection(start - 100) == (start, entry)
        assert a.current_or_next(start - 60) == (start, entry)  # the previous one is over
        assert a.current_or_next(start) == a.current_or_next(start + entry.span - 1)
        assert a.current_or_next(start) == (start, entry)
        assert a.current_or_next(start + entry.span)[0] == start + 180
        for t in range(int(start) - 15, int(start) + 180, 5):
            assert a.active(t) is b.active(t)
        active = [t for t in range(int(start), int(start) + 180, 15) if a.active(t) is entry]
        assert len(active) * 15 == entry.span
        assert a.active(start - 1) is None
        seen.append(entry)
    assert set(seen) == set(ROTATION)
    assert len({(e.selector, e.kind) for e in ROTATION}) == len(ROTATION)


def test_nothing_is_disturbed_before_the_epoch_so_the_backfilled_history_is_normal() -> None:
    epoch = T0 + 45
    workload, calm = Workload(epoch=epoch), Workload(epoch=epoch, rotation=())
    history = workload.history(epoch - 6 * 3600, epoch - 15, 15)
    assert not [s for s in history if s.name == INJECTED and s.value]
    series = [s for s in history if s.name != INJECTED]
    assert series == calm.history(epoch - 6 * 3600, epoch - 15, 15)
    assert workload.active(epoch) is ROTATION[0]
    for t in (epoch - 3 * 180, epoch - 180, epoch - 1, epoch):
        assert workload.next_injection(t) == (epoch, ROTATION[0])
        assert workload.current_or_next(t) == (epoch, ROTATION[0])


def test_the_default_epoch_ties_the_schedule_to_the_wall_clock() -> None:
    # The unix epoch, so every replay of the same hour shows the same anomalies.
    assert Workload().next_injection(T0 + 1) == (T0 + 180, ROTATION[(int(T0) // 180 + 1) % 8])


def test_an_injection_disturbs_its_series_only_and_is_exposed_while_active() -> None:
    chains = 0
    for k, entry in enumerate(ROTATION):
        start = T0 + k * 180
        for t in range(int(start), int(start + entry.span), 5):
            parts = [p for p in entry.parts() if p.delay <= t - start < p.delay + p.duration]
            disturbed = by_series(Workload(epoch=T0).samples_at(t))
            calm = by_series(Workload(epoch=T0, rotation=()).samples_at(t))
            changed = {key for key in calm if calm[key] != disturbed[key]}
            assert changed == {p.selector for p in parts}
            for p in parts:
                assert disturbed[p.selector] == pytest.approx(p.apply(calm[p.selector]))
            flags = [s for s in Workload(epoch=T0).samples_at(t) if s.name == INJECTED and s.value]
            assert [(f.labels["series"], f.labels["kind"]) for f in flags] == [
                (p.selector, p.kind) for p in parts
            ]
        later = Workload(epoch=T0).samples_at(start + entry.span)
        assert not [s for s in later if s.name == INJECTED and s.value]
        chains += len(entry.parts()) > 1
    assert chains == 1  # the disk burst that slows checkout and raises its errors


def test_values_stay_realistic_and_the_disk_never_fills_up() -> None:
    history = Workload().history(T0, T0 + 2 * 86400, 60)
    values: dict[str, list[float]] = {}
    for s in history:
        values.setdefault(s.name, []).append(s.value)
    assert all(0 <= v <= 1 for v in values["demo_cpu_usage_ratio"])
    assert 0.3 < min(values["demo_disk_used_ratio"]) and max(values["demo_disk_used_ratio"]) < 0.95
    assert min(values["demo_http_requests_per_second"]) > 10
    assert 0.01 < min(values["demo_http_request_duration_seconds"])
    # The disk is cleaned up every few hours: the sawtooth drops by more than 10 points.
    sda = [s.value for s in history if s.labels.get("device") == "sda1"]
    assert sum(1 for x, y in itertools.pairwise(sda) if y < x - 0.1) >= 10


def test_the_noise_is_standard_normal_and_keyed_by_series_and_bucket() -> None:
    draws = [_normal("k", i) for i in range(20_000)]
    assert abs(statistics.fmean(draws)) < 0.03
    assert statistics.stdev(draws) == pytest.approx(1.0, abs=0.03)
    assert _normal("k", 5) == _normal("k", 5) != _normal("j", 5)


async def test_metrics_parse_and_pass_promtool(
    promtool_check_metrics: Callable[[bytes], Awaitable[tuple[int, str]]],
) -> None:
    try:
        find_binary("promtool")
    except MissingBinaryError as exc:
        pytest.skip(str(exc))
    t = T0 + 20  # an injection is active
    workload = Workload(clock=lambda: t)
    port = free_port()
    async with serve(workload, "127.0.0.1", port) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            text = await resp.text()
        async with session.get(url + "/") as resp:
            assert "metrics" in await resp.text()

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == set(HELP)
    assert all(f.type == "gauge" for f in families.values())
    scraped = {
        selector(f.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    expected = by_series(workload.live())
    assert scraped.keys() == expected.keys()
    assert all(math.isclose(scraped[k], expected[k], rel_tol=1e-12) for k in expected)
    assert sum(s.value for s in families[INJECTED].samples) == 1

    returncode, out = await promtool_check_metrics(text.encode())
    assert returncode == 0, out
    assert out.strip() == ""
