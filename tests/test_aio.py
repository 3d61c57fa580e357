"""The shell's background-task set: a failing task is reported, never silently dropped."""

from __future__ import annotations

import asyncio
import logging

from active_quoting.aio import TaskSet


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
