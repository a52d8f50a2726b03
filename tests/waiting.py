"""Waiting for a condition instead of sleeping a fixed time: fast when things are, patient when
the machine is slow, and a failure that says what was awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(check: Callable[[], Awaitable[T]], within: float = ...) -> T: ...
@overload
async def eventually(check: Callable[[], T], within: float = ...) -> T: ...
async def eventually(check: Callable[[], Any], within: float = 15.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


def wait_until(check: Callable[[], T], within: float = 60.0) -> T:
    """`eventually` for code outside an event loop; an OSError counts as not yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        time.sleep(0.1)
