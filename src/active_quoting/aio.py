"""Small asyncio helpers shared by the shell."""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
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

    The first step runs as the task would run it: in the task's own context, with the task as
    ``asyncio.current_task()`` (timeouts and cancel scopes see it, not the caller's). The task
    then takes over the wait that step announced, exactly as ``Task.__step`` would have
    (:class:`_Started`): from there on its outcome, its exceptions and ``cancel()`` are a
    plain task's, including a ``cancel()`` that comes before the task's own first step."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    started = _Started(coro)
    task = loop.create_task(started, context=context)  # type: ignore[arg-type]
    caller = asyncio.current_task(loop)
    if caller is not None:
        asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        started.first = ("yield", context.run(coro.send, None))
    except StopIteration as stop:
        started.first = ("return", stop.value)
    except (KeyboardInterrupt, SystemExit):
        started.first = ("raise", asyncio.CancelledError())  # the task ends quietly; the caller gets it
        raise
    except BaseException as exc:  # noqa: BLE001 - the task's outcome
        started.first = ("raise", exc)
    finally:
        asyncio.tasks._leave_task(loop, task)
        if caller is not None:
            asyncio.tasks._enter_task(loop, caller)
    return task


class _Started(collections.abc.Coroutine):  # type: ignore[type-arg]
    """The coroutine a :func:`start_now` task runs: ``coro`` with its first step already taken.
    The task's first ``send`` gets that step's outcome (the future it waits on, still marked
    blocking, so the task adopts the wait; or its result or exception); a ``throw`` before then
    (the task cancelled before its first step) cancels that future, as ``Task.cancel`` would
    have through it, and goes into ``coro`` where it waits. Then everything passes through."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.first: tuple[str, Any] | None = None

    def send(self, value: Any) -> Any:
        first, self.first = self.first, None
        if first is None:
            return self.coro.send(value)
        how, what = first
        if how == "yield":
            return what
        if how == "return":
            raise StopIteration(what)
        raise what

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        first, self.first = self.first, None
        exc = typ if val is None and isinstance(typ, BaseException) else val
        if first is not None:
            how, what = first
            if how != "yield":  # it had finished: nothing is left to throw into
                raise exc if exc is not None else typ
            if isinstance(what, asyncio.Future) and isinstance(exc, asyncio.CancelledError):
                what.cancel()
        return self.coro.throw(exc) if exc is not None else self.coro.throw(typ, val, tb)

    def close(self) -> None:
        self.first = None
        self.coro.close()

    def __await__(self) -> Any:
        raise TypeError("a started coroutine is driven by its task, not awaited")

    @property
    def cr_frame(self) -> Any:
        return self.coro.cr_frame  # type: ignore[attr-defined]

    @property
    def cr_code(self) -> Any:
        return self.coro.cr_code  # type: ignore[attr-defined]

    @property
    def cr_running(self) -> bool:
        return self.coro.cr_running  # type: ignore[attr-defined,no-any-return]

    @property
    def cr_await(self) -> Any:
        return self.coro.cr_await  # type: ignore[attr-defined]


class TaskSet:
    """Background tasks of one owner, referenced until they finish (the event loop keeps only
    weak references, so an unreferenced task can vanish mid-flight). A task that fails is
    logged with its traceback and handed to ``on_error``, never dropped silently."""

    def __init__(self, log: logging.Logger, on_error: Callable[[BaseException], None] | None = None) -> None:
        # insertion-ordered (a dict, not a set): cancel() goes in spawning order, not in the
        # order of the tasks' memory addresses (the simulator's runs must not depend on those)
        self._tasks: dict[asyncio.Task[Any], None] = {}
        self._log = log
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks[task] = None
        task.add_done_callback(self._done)
        return task

    def spawn_now(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """:meth:`spawn`, but ``coro`` runs at once up to its first wait (:func:`start_now`)."""
        task = start_now(coro)
        self._tasks[task] = None
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            coro = task.get_coro()
            name = (coro.coro if isinstance(coro, _Started) else coro).__qualname__  # type: ignore[union-attr]
            self._log.error("background task %s failed: %r", name, exc, exc_info=exc)
            if self._on_error is not None:
                self._on_error(exc)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def cancel_and_wait(self) -> None:
        """Cancel every task and wait until each has finished unwinding (its ``finally`` run)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
