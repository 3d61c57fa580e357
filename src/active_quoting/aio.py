"""Small asyncio helpers shared by the shell."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class TaskSet:
    """Background tasks of one owner, referenced until they finish (the event loop keeps only
    weak references, so an unreferenced task can vanish mid-flight). A task that fails is
    logged with its traceback and handed to ``on_error``, never dropped silently."""

    def __init__(self, log: logging.Logger, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("background task %s failed: %r", task.get_coro().__qualname__, exc, exc_info=exc)  # type: ignore[union-attr]
            if self._on_error is not None:
                self._on_error(exc)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)
