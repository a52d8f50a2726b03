"""Giving the C heap's freed pages back to the system after a burst of allocation.

glibc keeps the pages of freed memory for the next allocation, so a process's RSS stays at its
highest point: after the text model loads (the tokenizer's JSON, onnxruntime's graph
optimisation) and after a history's first fill (its chunks' decoded answers). One trim after
each lowers RSS to what is really held (docs/benchmarks.md: "The text model's memory",
"Incremental polling").
"""

from __future__ import annotations

import ctypes
import ctypes.util


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`; else nothing)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to do
        pass
