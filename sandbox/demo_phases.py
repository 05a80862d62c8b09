"""``make demo``'s clock: each phase's wall time and the CPU it used, printed at the end, so the next slow step
is visible; and the one step that runs in the background (the Terraform network root).

CPU is the process's own plus its finished children's (``os.times``): a phase whose CPU is close to its wall
time is CPU-bound (it gets slower on a loaded machine); one with little CPU is waiting (on a provider's fixed
delay, a sandbox latency, a timer). Background phases overlap the others, so they are listed apart and not
added up. The load average is printed with the table (the box is shared).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Phase:
    name: str
    wall: float
    cpu: float | None  # None: not measurable apart (a background thread shares the process's CPU clock)
    background: bool = False


@dataclass
class Phases:
    """``with phases("seed"): ...`` times a phase; :meth:`report` prints the table."""

    started: float = field(default_factory=time.monotonic)
    done: list[Phase] = field(default_factory=list)
    extra_seconds: dict[str, float] = field(default_factory=dict)  # phases measured outside (make setup)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), _cpu()
        try:
            yield
        finally:
            self.done.append(Phase(name, time.monotonic() - wall, _cpu() - cpu))

    def add(self, name: str, wall: float, background: bool = False) -> None:
        self.done.append(Phase(name, wall, None, background))

    def total(self) -> float:
        return time.monotonic() - self.started + sum(self.extra_seconds.values())

    def report(self) -> str:
        rows = [(name, f"{sec:6.0f}s", "", "before the demo started") for name, sec in self.extra_seconds.items()]
        for p in self.done:
            cpu = "" if p.cpu is None else f"{p.cpu:6.0f}s"
            note = "in the background, overlapping the phases below it" if p.background else (
                "mostly CPU" if p.cpu is not None and p.wall > 1 and p.cpu >= 0.6 * p.wall else "")
            rows.append((p.name, f"{p.wall:6.0f}s", cpu, note))
        width = max(len(r[0]) for r in rows)
        lines = [f"    {'phase':<{width}}    wall     cpu", *(
            f"    {name:<{width}}  {wall}  {cpu:>7}  {note}".rstrip() for name, wall, cpu, note in rows)]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines.append(f"    {'total':<{width}}  {self.total():6.0f}s           (load average now: {load})")
        return "\n".join(lines)


class Background:
    """Run ``fn`` in a thread now; :meth:`join` returns its result or raises its error."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.name = name
        self.started = time.monotonic()
        self.wall: float | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except BaseException as e:  # noqa: BLE001 -- handed to join()
            self._error = e
        finally:
            self.wall = time.monotonic() - self.started

    @property
    def failed(self) -> BaseException | None:
        return self._error if not self._thread.is_alive() else None

    def join(self, timeout: float | None = None) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.name} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._result


def wait_until(what: str, probe: Callable[[], bool], timeout: float, also: Background | None = None) -> float:
    """Poll ``probe`` (every 0.5 s) until it is true; fail when ``also`` (the step that makes it true) failed, or
    after ``timeout`` seconds. Returns the seconds waited."""
    start = time.monotonic()
    while not probe():
        if also is not None and also.failed is not None:
            raise RuntimeError(f"{also.name} failed while waiting for {what}: {also.failed}") from also.failed
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - start
