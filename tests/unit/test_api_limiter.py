"""phoenix_fleet.api_limiter: the triggerer's shared per-region limiter, on a virtual clock (no sleeping).

The event loop here runs on virtual time: when every task waits, time jumps to the next timer. So hundreds of
concurrent pollers over minutes of limiter time run in milliseconds, and the counts are exact.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from typing import Any

import pytest
from phoenix_fleet.api_limiter import RegionLimiter, limiter_for, reset_limiters


class _VirtualSelector(selectors.DefaultSelector):
    """A selector whose timed wait advances the loop's virtual clock instead of blocking."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout and self.loop is not None:
            self.loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def run_virtual(coro_factory: Any) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro_factory(loop))
    finally:
        loop.close()


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_many_concurrent_pollers_never_exceed_the_rate_over_any_window() -> None:
    rate = 10.0
    pollers, polls_each = 200, 6

    async def main(loop: VirtualTimeLoop) -> tuple[list[float], RegionLimiter]:
        limiter = RegionLimiter(rate, clock=loop.time)
        granted: list[float] = []
        rnd = random.Random(16)

        async def poller() -> None:
            await asyncio.sleep(rnd.uniform(0, 5))  # triggers start at different times
            for _ in range(polls_each):
                for _call in range(rnd.randint(1, 3)):  # a poll is 1-3 calls (group, status, targets)
                    await limiter.acquire()
                    granted.append(loop.time())
                await asyncio.sleep(rnd.uniform(0.0, 2.0))  # the trigger's poll interval

        await asyncio.gather(*(poller() for _ in range(pollers)))
        return granted, limiter

    granted, limiter = run_virtual(main)
    assert limiter.stats.calls == len(granted) >= pollers * polls_each
    for window in (0.5, 1.0, 5.0, 30.0):
        assert max_in_window(granted, window) <= rate * window + 1, window
    # and the budget is used, not just respected: demand far above the rate keeps it at the rate
    span = max(granted) - min(granted)
    assert len(granted) / span >= 0.95 * rate


def test_waiters_woken_late_by_a_busy_loop_are_still_granted_at_the_rate() -> None:
    # a triggerer's event loop busy with other triggers wakes some sleepers late: their grants must not bunch up
    # with the on-time ones behind them
    rate = 10.0

    async def main(loop: VirtualTimeLoop) -> list[float]:
        rnd = random.Random(7)

        async def late_sleep(seconds: float) -> None:
            await asyncio.sleep(seconds + rnd.choice([0.0, 0.0, 0.0, 0.25, 0.6]))

        limiter = RegionLimiter(rate, clock=loop.time, sleep=late_sleep)
        granted: list[float] = []

        async def poller() -> None:
            await asyncio.sleep(rnd.uniform(0, 3))
            for _ in range(8):
                await limiter.acquire()
                granted.append(loop.time())
                await asyncio.sleep(rnd.uniform(0.0, 1.0))

        await asyncio.gather(*(poller() for _ in range(60)))
        return granted

    granted = run_virtual(main)
    assert len(granted) == 60 * 8
    for window in (0.5, 1.0, 5.0):
        assert max_in_window(granted, window) <= rate * window + 1, window


def test_waiters_are_served_in_the_order_they_asked() -> None:
    async def main(loop: VirtualTimeLoop) -> list[int]:
        limiter = RegionLimiter(2.0, clock=loop.time)
        order: list[int] = []

        async def one(i: int) -> None:
            await limiter.acquire()
            order.append(i)

        await asyncio.gather(*(one(i) for i in range(10)))
        return order

    assert run_virtual(main) == list(range(10))


def test_a_throttled_answer_pauses_every_poller_and_backs_off_exponentially() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[list[float], list[float], RegionLimiter]:
        limiter = RegionLimiter(100.0, clock=loop.time, backoff_base=1.0, backoff_max=8.0)
        pauses = [limiter.throttled(service="autoscaling", operation="DescribeAutoScalingGroups", code="Throttling")
                  for _ in range(5)]
        t0 = loop.time()
        granted: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            granted.append(loop.time() - t0)

        await asyncio.gather(*(one() for _ in range(5)))
        return pauses, granted, limiter

    pauses, granted, limiter = run_virtual(main)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped by backoff_max
    assert limiter.stats.throttled == 5
    assert min(granted) >= 8.0  # nobody polls during the pause
    limiter.answered()
    assert limiter.throttled() == 1.0  # an unthrottled answer restarts the backoff


def test_a_pause_imposed_while_waiting_moves_a_reserved_slot_past_it() -> None:
    async def main(loop: VirtualTimeLoop) -> float:
        limiter = RegionLimiter(1.0, clock=loop.time, backoff_base=5.0)
        await limiter.acquire()  # t=0
        t0 = loop.time()
        waiter = asyncio.ensure_future(limiter.acquire())  # reserves t0+1
        await asyncio.sleep(0.5)
        limiter.throttled(code="RequestLimitExceeded")  # pause until t0+5.5
        await waiter
        return loop.time() - t0

    assert run_virtual(main) >= 5.5


def test_one_limiter_per_connection_and_region_in_a_process() -> None:
    reset_limiters()
    try:
        a = limiter_for("aws_prod", "us-east-1", 5.0)
        assert limiter_for("aws_prod", "us-east-1", 5.0) is a
        assert limiter_for("aws_prod", "eu-west-1", 5.0) is not a
        assert limiter_for("aws_default", "us-east-1", 5.0) is not a
        limiter_for("aws_prod", "us-east-1", 2.0)  # the config changed: the same limiter, the new rate
        assert a.calls_per_second == 2.0
    finally:
        reset_limiters()


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        RegionLimiter(0)
