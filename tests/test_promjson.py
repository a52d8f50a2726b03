"""The fast decoding of range matrices agrees with json.loads, and declines what it cannot read."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from exporter.prometheus.decode import loads


def plain(doc: dict[str, Any]) -> Any:
    return json.loads(json.dumps(doc, separators=(",", ":")))


def matrix(*series: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}, **extra}


def encode(doc: dict[str, Any]) -> bytes:
    # Prometheus writes compact JSON with no spaces; that is what the fast path expects.
    return json.dumps(doc, separators=(",", ":")).encode()


def same(fast: Any, slow: Any) -> None:
    assert fast.keys() == slow.keys()
    assert fast["data"]["resultType"] == slow["data"]["resultType"]
    for f, s in zip(fast["data"]["result"], slow["data"]["result"], strict=True):
        assert f["metric"] == s["metric"]
        assert isinstance(f["values"], np.ndarray) and f["values"].shape == (len(s["values"]), 2)
        for (ft, fv), (st, sv) in zip(f["values"], s["values"], strict=True):
            assert ft == st
            assert (math.isnan(fv) and sv == "NaN") or fv == float(sv)


def test_matrix_values_become_float_arrays() -> None:
    doc = matrix(
        {
            "metric": {"__name__": "up", "job": 'we"ird}]]', "i": "日本"},
            "values": [
                [1700000000, "1"],
                [1700000015.5, "NaN"],
                [1700000030, "+Inf"],
                [1700000045, "-1e-7"],
            ],
        },
        {"metric": {}, "values": [[1700000000, "2"]]},
    )
    fast = loads(encode(doc))
    same(fast, plain(doc))
    assert math.isinf(fast["data"]["result"][0]["values"][2][1])


def test_warnings_and_empty_results_survive() -> None:
    doc = matrix({"metric": {"a": "b"}, "values": [[1, "1"]]}, warnings=["slow query"])
    fast = loads(encode(doc))
    assert fast["warnings"] == ["slow query"]
    same(fast, plain(doc))
    assert loads(encode(matrix()))["data"]["result"] == []


@pytest.mark.parametrize(
    "doc",
    [
        matrix({"metric": {"a": "b"}, "histograms": [[1, {"count": "1"}]]}),
        matrix({"values": [[1, "1"]], "metric": {"a": "b"}}),
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
    ],
    ids=["native-histograms", "other-key-order", "vector", "error"],
)
def test_anything_else_goes_through_json_loads(doc: dict[str, Any]) -> None:
    assert loads(encode(doc)) == plain(doc)
