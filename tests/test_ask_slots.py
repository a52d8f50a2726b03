"""Slot readings the review of issue 16 found wrong: am/pm clocks, Chinese ranges closed by 内,
the day before yesterday, digits inside host names, and the known-name index on a large cluster.
"""

from __future__ import annotations

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
