"""The shell's background-task set: a failing task is reported, never silently dropped."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from active_quoting.aio import TaskSet, start_now


def test_a_failed_background_task_is_logged_and_reported(caplog):
    errors: list[BaseException] = []

    async def boom():
        raise ValueError("quote pass blew up")

    async def fine():
        await asyncio.sleep(0)
        return 1

    async def main():
        tasks = TaskSet(logging.getLogger("t"), on_error=errors.append)
        tasks.spawn(boom())
        tasks.spawn(fine())
        blocked = tasks.spawn(asyncio.sleep(3600))
        assert len(tasks) == 3  # referenced while running
        await asyncio.sleep(0.01)
        assert len(tasks) == 1
        tasks.cancel()
        await asyncio.sleep(0.01)
        assert blocked.cancelled() and len(tasks) == 0

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert [str(e) for e in errors] == ["quote pass blew up"]  # the cancelled one is not an error
    assert "boom" in caplog.text and "quote pass blew up" in caplog.text


# -- start_now: a task whose first step runs in the caller's turn ------------------------------


def test_start_now_runs_up_to_the_first_wait_before_returning() -> None:
    async def main() -> None:
        steps: list[str] = []
        gate = asyncio.get_running_loop().create_future()

        async def coro() -> int:
            steps.append("before")
            value = await gate
            steps.append("after")
            return value + 1

        task = start_now(coro())
        assert steps == ["before"]  # done in this turn, not the next
        gate.set_result(41)
        assert await task == 42
        assert steps == ["before", "after"]

    asyncio.run(main())


def test_start_now_outcomes_without_a_wait() -> None:
    async def main() -> None:
        async def value() -> str:
            return "done"

        async def fails() -> None:
            raise ValueError("bad")

        assert await start_now(value()) == "done"
        with pytest.raises(ValueError, match="bad"):
            await start_now(fails())

    asyncio.run(main())


def test_start_now_makes_its_task_current_during_the_first_step() -> None:
    async def main() -> None:
        seen: list[object] = []

        async def coro() -> None:
            seen.append(asyncio.current_task())
            async with asyncio.timeout(5):  # needs a current task: the frame handler has none
                await asyncio.sleep(0)
            seen.append(asyncio.current_task())

        caller = asyncio.current_task()
        task = start_now(coro())
        assert seen == [task]  # the first step ran before start_now returned, as the task
        assert asyncio.current_task() is caller  # the caller's task is restored
        await task
        assert seen == [task, task]

        # from a plain callback (no task at all), as a socket's frame handler runs
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(lambda: done.set_result(start_now(coro())))
        await (await done)
        assert seen[2] is seen[3] and isinstance(seen[2], asyncio.Task)

    asyncio.run(main())


def test_start_now_exceptions_of_awaited_futures_reach_the_coroutine() -> None:
    async def main() -> None:
        gate = asyncio.get_running_loop().create_future()

        async def coro() -> str:
            try:
                await gate
            except KeyError:
                return "handled"
            return "not raised"

        task = start_now(coro())
        gate.set_exception(KeyError("x"))
        assert await task == "handled"

    asyncio.run(main())


def test_cancelling_a_started_task_unwinds_the_coroutine_where_it_waits() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        unwound: list[str] = []
        gate = loop.create_future()

        async def coro() -> None:
            try:
                await gate
            finally:
                unwound.append("finally")

        task = start_now(coro())
        await asyncio.sleep(0)  # its own first step has run: it waits on ``gate``
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert unwound == ["finally"] and gate.cancelled()

        # cancelled after what it waits on completed, before it was resumed
        unwound.clear()
        gate2 = loop.create_future()

        async def coro2() -> None:
            try:
                await gate2
                await asyncio.sleep(10)
            finally:
                unwound.append("finally")

        task2 = start_now(coro2())
        await asyncio.sleep(0)
        gate2.set_result(None)
        task2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task2
        assert unwound == ["finally"]

        # cancelled before its own first step ran at all: the coroutine gets CancelledError
        # where it waits (not GeneratorExit), the future it waited on is cancelled, and its
        # cleanup may still wait for something (as a lane request aborting its connection does)
        unwound.clear()
        gate3 = loop.create_future()

        async def coro3() -> None:
            try:
                await gate3
            except asyncio.CancelledError:
                unwound.append("cancelled")
                await asyncio.sleep(0)  # cleanup that waits
                raise
            finally:
                unwound.append("finally")

        task3 = start_now(coro3())
        task3.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task3
        assert unwound == ["cancelled", "finally"] and gate3.cancelled()

    asyncio.run(main())


def test_start_now_bare_yields_take_one_turn_each() -> None:
    async def main() -> None:
        order: list[str] = []

        async def coro() -> None:
            order.append("a")
            await asyncio.sleep(0)
            order.append("b")

        task = start_now(coro())
        order.append("caller")
        await task
        assert order == ["a", "caller", "b"]

    asyncio.run(main())


def test_spawn_now_reports_a_failure_by_the_coroutines_name() -> None:
    async def main() -> None:
        failures: list[BaseException] = []
        tasks = TaskSet(logging.getLogger("test"), failures.append)

        async def breaks() -> None:
            await asyncio.sleep(0)
            raise RuntimeError("boom")

        t = tasks.spawn_now(breaks())
        with pytest.raises(RuntimeError):
            await t
        await asyncio.sleep(0)
        assert [str(e) for e in failures] == ["boom"] and len(tasks) == 0

    asyncio.run(main())


def test_start_now_is_a_task_in_its_own_context_and_refuses_a_bad_yield() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller")

    async def main() -> None:
        async def sets() -> str:
            var.set("task")
            await asyncio.sleep(0)
            return var.get()

        task = start_now(sets())
        assert var.get() == "caller"  # the first step's context is the task's, not the caller's
        assert await task == "task"

        class Odd:
            def __await__(self):  # type: ignore[no-untyped-def]
                yield "not a future"

        async def odd() -> None:
            await Odd()

        with pytest.raises(RuntimeError):  # what a plain task says of it, not a silent resume
            await start_now(odd())

    asyncio.run(main())
