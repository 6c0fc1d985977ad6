"""The coordinator's handle on the load-generator processes."""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import worker
from bench.system import cpu_seconds

START_TIMEOUT = 60.0
"""Seconds a new load-generator process has to start and answer (pinned, limits raised)."""


class LoadGenError(RuntimeError):
    """A load-generator process failed a command or did not answer in time."""


class WorkerProcess:
    """One load-generator process and its command pipe."""

    def __init__(self, index: int, cpus: list[int] | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=worker.main, args=(child, cpus), name=f"bench-loadgen-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, op: str, **args: Any) -> int:
        number = next(self._ids)
        self.pipe.send({"id": number, "op": op, **args})
        return number

    def result(self, number: int, budget: float) -> dict[str, Any]:
        """The reply to command ``number``, waiting at most ``budget`` seconds."""
        deadline = time.monotonic() + budget
        while number not in self._replies:
            if not self.pipe.poll(max(0.0, deadline - time.monotonic())):
                raise LoadGenError(f"load generator {self.pid} did not answer in {budget:.0f} s")
            reply: dict[str, Any] = self.pipe.recv()
            self._replies[reply.pop("id")] = reply
        reply = self._replies.pop(number)
        if "error" in reply:
            raise LoadGenError(f"load generator {self.pid} failed:\n{reply['error']}")
        return reply

    def call(self, op: str, budget: float, **args: Any) -> dict[str, Any]:
        return self.result(self.send(op, **args), budget)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.call("exit", 10)
            except (LoadGenError, OSError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pipe.close()


@dataclass
class Totals:
    """Deliveries and acknowledgements summed over every load-generator process."""

    received: int = 0
    acked: int = 0
    errors: int = 0
    dropped: int = 0
    max_ns: int = 0
    last_ns: int = 0
    first_error: str | None = None
    histogram: Counter[int] = field(default_factory=Counter)
    timeline: Counter[int] = field(default_factory=Counter)
    close_codes: Counter[int] = field(default_factory=Counter)
    by_replica: Counter[int] = field(default_factory=Counter)
    """Deliveries per server URL index (the subscribers' replica)."""

    def add(self, stats: dict[str, Any]) -> None:
        self.received += stats["received"]
        self.acked += stats["acked"]
        self.errors += stats["errors"]
        self.dropped += stats["dropped"]
        self.max_ns = max(self.max_ns, stats["max_ns"])
        self.last_ns = max(self.last_ns, stats["last_ns"])
        self.first_error = self.first_error or stats["first_error"]
        self.histogram.update(stats["histogram"])
        self.timeline.update(stats["timeline"])
        self.close_codes.update(stats["close_codes"])
        self.by_replica.update(stats["by_replica"])

    def latency_ms(self, quantile: float) -> float | None:
        """The latency below which ``quantile`` of the deliveries fell, in milliseconds."""
        total = sum(self.histogram.values())
        if not total:
            return None
        rank = quantile * total
        seen = 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                return math.exp((bucket + 0.5) / worker.HISTOGRAM_STEPS) / 1e6
        return self.max_ns / 1e6


class LoadGenerator:
    """Several load-generator processes acting as one client population.

    Subscribers are spread evenly over the processes; the publishers live in the first one.
    """

    def __init__(self, processes: int, cpus: list[int] | None) -> None:
        self.cpus = cpus
        self.workers = [WorkerProcess(index, cpus) for index in range(processes)]
        try:
            self._all("progress", START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [item.pid for item in self.workers]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_process())

    def cpu_by_process(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    @contextlib.contextmanager
    def spilling(self, extra_cpus: list[int] | None) -> Iterator[None]:
        """Meanwhile, let the load generators also run on ``extra_cpus``, at idle priority.

        With ``SCHED_IDLE`` a process runs on a CPU only when nothing else there wants it,
        so the load generators take the servers' idle time and never time the servers
        would use: a client that costs about as much per delivery as the server can then
        still outrun it. Nothing changes without pinning or without ``extra_cpus``.
        """
        if not self.cpus or not extra_cpus:
            yield
            return
        wider = sorted({*self.cpus, *extra_cpus})
        try:
            for pid in self.pids:
                os.sched_setaffinity(pid, wider)
                os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
            yield
        finally:
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
                    os.sched_setaffinity(pid, self.cpus)

    def _all(self, op: str, budget: float, **args: Any) -> list[dict[str, Any]]:
        numbers = [item.send(op, **args) for item in self.workers]
        return [item.result(n, budget) for item, n in zip(self.workers, numbers, strict=True)]

    def connect(
        self,
        dialect: str,
        urls: list[str],
        channels: list[str],
        count: int,
        concurrency: int,
        timeout: float,
    ) -> dict[str, Any]:
        """Open ``count`` subscribers; returns how many made it and how long it took."""
        shares = _split(count, len(self.workers))
        numbers = []
        first = 0
        for item, share in zip(self.workers, shares, strict=True):
            numbers.append(
                item.send(
                    "connect",
                    dialect=dialect,
                    urls=urls,
                    channels=channels,
                    first=first,
                    count=share,
                    concurrency=concurrency,
                    ready_within=timeout,
                )
            )
            first += share
        budget = timeout * (count / max(concurrency, 1) + 2)
        replies = [item.result(n, budget) for item, n in zip(self.workers, numbers, strict=True)]
        failures = [reply["failure"] for reply in replies if reply["failure"]]
        return {
            "connected": sum(reply["connected"] for reply in replies),
            "failed": sum(reply["failed"] for reply in replies),
            "failure": failures[0] if failures else None,
            "seconds": (
                max(reply["finished_ns"] for reply in replies)
                - min(reply["started_ns"] for reply in replies)
            )
            / 1e9,
        }

    def open_publishers(self, dialect: str, urls: list[str]) -> None:
        self.workers[0].call("publishers", 30, dialect=dialect, urls=urls)

    def reset(self, t0: int) -> None:
        self._all("reset", 10, t0=t0)

    def received(self) -> int:
        """Deliveries so far, summed over the processes (cheap: for polling)."""
        return sum(reply["received"] for reply in self._all("progress", 10))

    def totals(self) -> Totals:
        totals = Totals()
        for stats in self._all("stats", 10):
            totals.add(stats)
        return totals

    def publish(
        self, channels: list[str], rate: float, count: int, timeout: float
    ) -> dict[str, Any]:
        """Publish ``count`` messages at ``rate``/s from the first process; blocks until done."""
        budget = count / rate + timeout + 10
        return self.workers[0].call(
            "publish", budget, channels=channels, rate=rate, count=count, acks_within=timeout
        )

    def saturate(
        self, channels: list[str], duration: float, window: int, timeout: float
    ) -> dict[str, Any]:
        """Publish as fast as acknowledged for ``duration`` seconds; blocks until done."""
        return self.workers[0].call(
            "saturate",
            duration + timeout + 10,
            channels=channels,
            duration=duration,
            window=window,
            acks_within=timeout,
        )

    def close_subscribers(self, timeout: float = 20) -> None:
        self._all("close", timeout + 5, within=timeout)

    def close_publishers(self, timeout: float = 10) -> None:
        self.workers[0].call("close_publishers", timeout + 5, within=timeout)

    def stop(self) -> None:
        for item in self.workers:
            item.stop()


def _split(count: int, parts: int) -> list[int]:
    return [count // parts + (1 if index < count % parts else 0) for index in range(parts)]
