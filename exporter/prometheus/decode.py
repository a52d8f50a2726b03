"""Decode Prometheus API answers, with a compact fast path for range matrices.

`json.loads` turns a 2,000-series x 720-point `query_range` answer into 1.4 M two-element
lists: about 600 MB, and enough tracked objects that every garbage collection pass while
they live stalls the whole process (the event loop included) for a second or more. The
fast path keeps the label sets as dicts but turns each series' `values` into one float64
array of shape `(points, 2)` (timestamp, value), so a series costs one array, not 720 lists.
Anything that does not look exactly like a plain matrix answer (native histograms, an
unexpected key order) goes through `json.loads` unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

_HEAD = '{"status":"success","data":{"resultType":"matrix","result":['
_METRIC = '{"metric":'
_VALUES = ',"values":['
_DECODER = json.JSONDecoder()


def loads(body: bytes) -> Any:
    """Parse a Prometheus API answer; matrix `values` come back as `(points, 2)` arrays."""
    text = body.decode("utf-8")
    if text.startswith(_HEAD):
        try:
            return _matrix(text)
        except (ValueError, IndexError):
            pass  # not the shape the fast path knows: let the general parser decide
    return json.loads(text)


def _matrix(text: str) -> Any:
    pos = len(_HEAD)
    result: list[dict[str, Any]] = []
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
        result.append({"metric": metric, "values": _pairs(text[start:end])})
        pos = end + 2
        if text[pos] == ",":
            pos += 1
    # The envelope's tail (warnings, infos) is parsed normally, around an empty result.
    envelope = json.loads(text[: len(_HEAD)] + text[pos:])
    envelope["data"]["result"] = result
    return envelope


def _pairs(block: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """`[1700000000,"1.5"],[1700000015,"NaN"]` -> [[1700000000, 1.5], [1700000015, nan]]."""
    flat = block.replace('"', "").replace("[", "").replace("]", "").split(",")
    if len(flat) % 2:
        raise ValueError("odd number of fields in sample pairs")
    # numpy parses "NaN", "+Inf" and "-Inf" as Prometheus writes them.
    return np.array(flat, dtype=np.float64).reshape(-1, 2)
