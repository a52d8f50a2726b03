"""Slot readings the review of issue 16 found wrong: am/pm clocks, Chinese ranges closed by 内,
the day before yesterday, digits inside host names, and the known-name index on a large cluster.
"""

from __future__ import annotations

import re

import pytest

from exporter.assistant import slots


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("what changed at 2:30pm", "14:30"),
        ("what changed at 2:30 p.m.", "14:30"),
        ("what changed at 11:15am", "11:15"),
        ("what changed at 12:05am", "00:05"),
        ("what changed at 14:05", "14:05"),
        ("前天发生了什么", "-48h"),
    ],
)
def test_instant(question: str, expected: str) -> None:
    assert slots.instant(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("24小时内错误率最高的服务", "24h"),
        ("3天内重启过的pod", "3d"),
        ("这一小时的错误率", "1h"),
        ("两小时以内的告警", "2h"),
        ("一周之内的异常", "7d"),
        ("未来 24 小时内会写满的磁盘", "24h"),
        ("过去 1 小时内响过的告警", "1h"),
        ("前天的告警", None),  # a day two days ago, not the 24 h up to now
        ("alerts the day before yesterday", None),
        ("昨天的告警", "24h"),
    ],
)
def test_range(question: str, expected: str | None) -> None:
    assert slots.time_range(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("is db-07 disk filling up", None),
        ("web_2 hosts", None),
        ("v1.3 pods", None),
        ("db-07 的 3 台服务器", "3"),
        ("3 busiest hosts", "3"),
        ("top 4 pods", "4"),
    ],
)
def test_topk_ignores_digits_in_names(question: str, expected: str | None) -> None:
    assert slots.topk(question) == expected


def _old_find_known(question: str, values: tuple[str, ...]) -> str | None:
    """The per-value regex the index replaced (issue 16), as a reference for what it finds."""
    found = []
    for value in sorted(set(values), key=len, reverse=True):
        pattern = r"(?<![A-Za-z0-9_.-])" + re.escape(value) + r"(?::\d{1,5})?(?![A-Za-z0-9_-])"
        if m := re.search(pattern, question, re.IGNORECASE):
            found.append((m.start(), -len(value), value))
    return sorted(found)[0][2] if found else None


def _world(n_hosts: int, n_pods: int) -> slots.Known:
    return slots.Known(
        hosts=(*(f"node-{i:04d}.dc1" for i in range(n_hosts)), "db-01", "db-01.example", "DB-02"),
        services=("checkout", "payments", "node exporter", "订单服务"),
        pods=tuple(f"checkout-{i:05d}-x{i % 7}" for i in range(n_pods)),
    )


SMALL = _world(30, 200)
"""Small enough for the old regex to be the reference."""
LARGE = _world(3000, 20000)
"""A real cluster's size (review 16 item 5)."""


@pytest.mark.parametrize(
    "question",
    [
        "cpu of db-01 now",
        "cpu of DB-01 now",
        "cpu of db-01.",
        "cpu of db-01.example.com",
        "cpu of db-01.example",
        "memory of host:db-02",
        "web-02:9100 and db-01:9100 memory",
        "db-010 is not db-01",
        "xdb-01 is not a host",
        "db-01-replica is not db-01",
        "node-0029.dc1 and node-0001.dc1",
        "服务checkout的错误率",
        "node exporter errors",
        "订单服务 的错误率",
        "restarts of checkout-00199-x3 in payments",
        "nothing known here",
    ],
)
def test_index_finds_what_the_regex_found(question: str) -> None:
    got = slots.names(question, SMALL)
    for slot, values in SMALL.by_slot.items():
        expected = _old_find_known(question, values)
        if expected is not None:
            assert got.get(slot, "").lower() == expected.lower(), slot


def test_index_prefers_the_exact_spelling_and_is_built_once() -> None:
    known = slots.Known(hosts=("Web-01", "web-01"))
    assert slots.names("cpu of web-01", known)["host"] == "web-01"
    assert slots.names("cpu of WEB-01", known)["host"] == "Web-01"
    assert known.index is known.index
    assert slots.names("cpu of web-01", known) == {"host": "web-01"}  # the cached answer, a copy


def test_index_on_a_large_cluster() -> None:
    got = slots.names("restarts of checkout-19999-x0 on node-2999.dc1 in payments", LARGE)
    assert got == {"pod": "checkout-19999-x0", "host": "node-2999.dc1", "service": "payments"}


def test_a_long_run_of_cut_points_makes_few_candidates() -> None:
    """Candidates are bounded per start: a hostile run cannot make a quadratic number."""
    question = "a:" * 999 + "db-01"
    assert len(slots._runs(question)) <= 1000 * 16
    assert slots.names(question, SMALL)["host"] == "db-01"
