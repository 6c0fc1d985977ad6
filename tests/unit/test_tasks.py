"""Background work with an owner (gateway/aio/tasks.py)."""

from __future__ import annotations

import asyncio

from gateway.aio.tasks import TaskSet


async def test_close_cancels_every_task_and_waits_for_it() -> None:
    tasks = TaskSet()
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    for name in ("a", "b"):
        tasks.spawn(forever(name))
    await asyncio.sleep(0)
    await tasks.close()
    assert sorted(ended) == ["a", "b"] and len(tasks) == 0


async def test_a_finished_task_leaves_the_set() -> None:
    tasks = TaskSet()
    done = asyncio.Event()

    async def quick() -> None:
        done.set()

    task = tasks.spawn(quick())
    await task
    assert done.is_set() and len(tasks) == 0


async def test_wait_lets_running_tasks_finish_within_its_time() -> None:
    tasks = TaskSet()
    release = asyncio.Event()
    tasks.spawn(release.wait())
    waiting = asyncio.create_task(tasks.wait(5))
    release.set()
    await waiting
    assert len(tasks) == 0
