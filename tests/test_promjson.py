"""The fast decoding of range matrices agrees with json.loads, and declines what it cannot read."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from exporter.prometheus.decode import DROPPED, ShapeError, loads
from exporter.prometheus.decode import matrix as decode_matrix


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


def series_doc(n: int) -> list[dict[str, Any]]:
    return [{"metric": {"i": f"{i:03d}"}, "values": [[1, str(i)], [2, "NaN"]]} for i in range(n)]


@pytest.mark.parametrize("compact", [True, False], ids=["fast path", "json.loads"])
def test_matrix_keeps_max_series_and_counts_the_rest(compact: bool) -> None:
    doc = matrix(*series_doc(50))
    body = encode(doc) if compact else json.dumps(doc, indent=1).encode()
    got = decode_matrix(body, max_series=7)
    result = got["data"]["result"]
    assert [s["metric"]["i"] for s in result] == [f"{i:03d}" for i in range(7)]
    assert all(isinstance(s["values"], np.ndarray) for s in result)
    assert got["data"][DROPPED] == 43
    assert decode_matrix(body)["data"].get(DROPPED) is None  # no cap, nothing counted


@pytest.mark.parametrize("compact", [True, False], ids=["fast path", "json.loads"])
def test_matrix_keeps_the_first_of_duplicate_label_sets(compact: bool) -> None:
    twice = [*series_doc(2), {"metric": {"i": "000"}, "values": [[1, "9"]]}]
    doc = matrix(*twice)
    body = encode(doc) if compact else json.dumps(doc, indent=1).encode()
    result = decode_matrix(body, max_series=2)["data"]["result"]
    assert [(s["metric"]["i"], s["values"][0, 1]) for s in result] == [("000", 0.0), ("001", 1.0)]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}, "scalar"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "vector"),
        ({"status": "success", "data": None}, "no data object"),
        (matrix({"metric": {"a": "b"}, "values": [[1, "x"]]}), "sample pairs"),
        (matrix({"metric": {"a": "b"}, "values": [[1, "1", 2]]}), "sample pairs"),
        (matrix({"metric": {"a": ["b"]}, "values": [[1, "1"]]}), "not a string"),
        (matrix({"values": [[1, "1"]]}), "without a label set"),
    ],
)
def test_matrix_refuses_what_is_not_a_matrix(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        decode_matrix(encode(doc))


def test_matrix_passes_an_error_answer_through() -> None:
    doc = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    assert decode_matrix(encode(doc)) == doc
