"""Decode Prometheus API answers, with a compact fast path for range matrices.

`json.loads` turns a 2,000-series x 720-point `query_range` answer into 1.4 M two-element
lists: about 600 MB, and enough tracked objects that every garbage collection pass while
they live stalls the whole process (the event loop included) for a second or more. The
fast path keeps the label sets as dicts but turns each series' `values` into one float64
array of shape `(points, 2)` (timestamp, value), so a series costs one array, not 720 lists.
Anything that does not look exactly like a plain matrix answer (native histograms, an
unexpected key order) goes through `json.loads` unchanged.

`matrix` reads a `query_range` answer for the scoring loop: it checks the shape (a matrix of
label sets and sample pairs, whatever parser read it), keeps the first of duplicate label
sets, and stops building series past `max_series`: those are stepped over as text, never
parsed into arrays, and counted in the answer's `data["droppedSeries"]`. A `keep` predicate on
the label set (a shard's, or the series a history still lacks) skips the others the same way,
uncounted: they are not this caller's to keep.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_HEAD = '{"status":"success","data":{"resultType":"matrix","result":['
_METRIC = '{"metric":'
_VALUES = ',"values":['
_DECODER = json.JSONDecoder()
DROPPED = "droppedSeries"
"""The key of a decoded matrix answer's `data` counting the series past `max_series`."""

Body = bytes | bytearray
Keep = Callable[[Mapping[str, str]], bool]
"""Whether a series (by its label set) belongs in the decoded answer."""


class ShapeError(ValueError):
    """A successful answer that is not the matrix a range query returns."""


def loads(body: Body) -> Any:
    """Parse a Prometheus API answer; matrix `values` come back as `(points, 2)` arrays."""
    text = body.decode("utf-8")
    if text.startswith(_HEAD):
        try:
            return _matrix(text, None)
        except (ValueError, IndexError):
            pass  # not the shape the fast path knows: let the general parser decide
    return json.loads(text)


def matrix(body: Body, max_series: int | None = None, keep: Keep | None = None) -> Any:
    """Parse a `query_range` answer: a checked matrix of at most `max_series` series, only
    those `keep` accepts (all when None).

    An error answer is returned as it is; a successful one that is not a matrix raises
    `ShapeError` saying what it is instead.
    """
    text = body.decode("utf-8")
    if text.startswith(_HEAD):
        try:
            return _matrix(text, max_series, keep)
        except (ValueError, IndexError):
            pass
    doc = json.loads(text)
    if isinstance(doc, dict) and doc.get("status") == "success":
        _check(doc, max_series, keep)
    return doc


def _matrix(text: str, max_series: int | None, keep: Keep | None = None) -> Any:
    pos = len(_HEAD)
    result: list[dict[str, Any]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    dropped = 0
    while text[pos] != "]":
        if not text.startswith(_METRIC, pos):
            raise ValueError("unexpected series layout")
        metric, pos = _DECODER.raw_decode(text, pos + len(_METRIC))
        if not isinstance(metric, dict) or not text.startswith(_VALUES, pos):
            raise ValueError("unexpected series layout")
        start = pos + len(_VALUES)
        if text[start] == "]":
            raise ValueError("a series without samples")
        # Sample pairs hold only numbers and quoted numbers, so the first "]]" closes them.
        end = text.index("]]", start) + 1
        if text[end + 1] != "}":
            raise ValueError("unexpected series layout")
        key = _key(metric)
        if key not in seen:
            seen.add(key)
            if keep is not None and not keep(metric):
                pass  # another shard's, or one the caller has: its samples stay text
            elif max_series is None or len(result) < max_series:
                result.append({"metric": metric, "values": _pairs(text[start:end])})
            else:
                dropped += 1  # stepped over: its samples never become an array
        pos = end + 2
        if text[pos] == ",":
            pos += 1
    # The envelope's tail (warnings, infos) is parsed normally, around an empty result.
    envelope = json.loads(text[: len(_HEAD)] + text[pos:])
    envelope["data"]["result"] = result
    if max_series is not None:
        envelope["data"][DROPPED] = dropped
    return envelope


def _key(metric: dict[Any, Any]) -> frozenset[tuple[str, str]]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise ShapeError("a label set with a value that is not a string")
    return frozenset(metric.items())


def _pairs(block: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """`[1700000000,"1.5"],[1700000015,"NaN"]` -> [[1700000000, 1.5], [1700000015, nan]]."""
    flat = block.replace('"', "").replace("[", "").replace("]", "").split(",")
    if len(flat) % 2:
        raise ValueError("odd number of fields in sample pairs")
    # numpy parses "NaN", "+Inf" and "-Inf" as Prometheus writes them.
    return np.array(flat, dtype=np.float64).reshape(-1, 2)


def _check(doc: dict[str, Any], max_series: int | None, keep: Keep | None = None) -> None:
    """Check that a successful answer is a matrix; its `values` become `(points, 2)` arrays."""
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ShapeError(f"no data object in the answer (got {type(data).__name__})")
    kind = data.get("resultType")
    if kind != "matrix":
        raise ShapeError(f"resultType {kind!r} where a range query returns a matrix")
    series = data.get("result")
    if not isinstance(series, list):
        raise ShapeError(f"result is a {type(series).__name__}, not a list of series")
    result: list[dict[str, Any]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    dropped = 0
    for item in series:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise ShapeError("a series without a label set")
        key = _key(item["metric"])
        if key in seen:
            continue
        seen.add(key)
        if keep is not None and not keep(item["metric"]):
            continue
        if max_series is not None and len(result) >= max_series:
            dropped += 1
            continue
        if "values" in item:
            item["values"] = _array(item["values"])
        result.append(item)
    data["result"] = result
    if max_series is not None:
        data[DROPPED] = dropped


def _array(values: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    if not isinstance(values, list):
        raise ShapeError(f"values is a {type(values).__name__}, not a list of pairs")
    if not values:
        return np.empty((0, 2))
    try:
        pairs = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise ShapeError('sample pairs that are not [time, "value"]') from None
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ShapeError('sample pairs that are not [time, "value"]')
    return pairs
