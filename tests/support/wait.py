"""Waiting on a condition, never on the clock alone: the one polling helper of the tests.

``await eventually(probe, check)`` calls ``probe`` (sync or async) until ``check`` accepts
its value, and returns that value; at the deadline it fails, saying what it waited for and
the last value it saw. Where something can be awaited directly (an ``asyncio.Event``, a
``Condition``, a queue), await that instead.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], T | Awaitable[T]],
                     check: Callable[[T], object] = bool, *, what: str = "",
                     timeout_s: float = 20, interval_s: float = 0.05) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value: Any = probe()
        if inspect.isawaitable(value):
            value = await value
        if check(value):
            return value  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for "
                                 f"{what or 'the condition'}; last value: {value!r}")
        await asyncio.sleep(interval_s)


async def until(predicate: Callable[[], object], what: str, timeout_s: float = 20,
                interval_s: float = 0.05) -> None:
    """``eventually`` for a predicate that needs no value shown."""
    await eventually(predicate, bool, what=what, timeout_s=timeout_s, interval_s=interval_s)
