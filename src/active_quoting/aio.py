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


def start_now(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task for ``coro`` whose first step runs at once, in the caller's turn of the loop, up to
    its first real suspension (what Python 3.12's eager tasks do). A hot path uses this where a
    plain task would put a loop turn between a decision and its bytes on the wire: everything
    ``coro`` does before it first waits (for a venue's answer, say) is done when this returns.
    During that first step the returned task is the current task (``asyncio.current_task()``,
    timeouts and cancellation scopes see it, not the caller's); from its first wait on it runs
    as any task: its outcome, its exception and ``cancel()`` are the task's."""
    loop = asyncio.get_running_loop()
    first: list[Any] = []
    task = loop.create_task(_resumed(coro, first))  # its own first step only reads ``first``
    caller = asyncio.current_task(loop)
    if caller is not None:
        asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        first.append(("yield", coro.send(None)))
    except StopIteration as stop:
        first.append(("return", stop.value))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the task's outcome
        first.append(("raise", exc))
    finally:
        asyncio.tasks._leave_task(loop, task)
        if caller is not None:
            asyncio.tasks._enter_task(loop, caller)
    if first[0][0] == "yield":
        # cancelled before its own first step ran (which never starts ``_resumed``): ``coro`` is
        # suspended mid-way and must still unwind (its finally blocks, its bookkeeping)
        task.add_done_callback(lambda t: coro.close() if t.cancelled() and len(first) == 1 else None)
    return task


async def _resumed(coro: Coroutine[Any, Any, Any], first: list[Any]) -> Any:
    """Drive ``coro`` on from its first step's outcome (``first``) as the task it would have
    been: it reads each awaited future's outcome itself when resumed, and a cancellation of this
    task that did not go through the future it waits on is thrown into it."""
    how, yielded = first[0]
    first.append("driven")
    if how == "return":
        return yielded
    if how == "raise":
        raise yielded
    while True:
        throw: BaseException | None = None
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: one turn of the loop
            else:
                # as a task would: take over the wait the coroutine announced (a future left
                # marked blocking refuses a second await), then wait on it ourselves
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            if yielded is None or not yielded.cancelled():
                throw = asyncio.CancelledError()
        except BaseException:  # noqa: BLE001, S110 - the coroutine reads the future's exception itself
            pass
        try:
            yielded = coro.throw(throw) if throw is not None else coro.send(None)
        except StopIteration as stop:
            return stop.value


class TaskSet:
    """Background tasks of one owner, referenced until they finish (the event loop keeps only
    weak references, so an unreferenced task can vanish mid-flight). A task that fails is
    logged with its traceback and handed to ``on_error``, never dropped silently."""

    def __init__(self, log: logging.Logger, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self._names: dict[asyncio.Future[Any], str] = {}
        self._log = log
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def spawn_now(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """:meth:`spawn`, but ``coro`` runs at once up to its first wait (:func:`start_now`)."""
        name = coro.__qualname__
        task = start_now(coro)
        self._tasks.add(task)
        self._names[task] = name
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        name = self._names.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if name is None:
                name = task.get_coro().__qualname__ if isinstance(task, asyncio.Task) else "?"  # type: ignore[union-attr]
            self._log.error("background task %s failed: %r", name, exc, exc_info=exc)
            if self._on_error is not None:
                self._on_error(exc)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)
