"""The triggerer's shared per-region limiter of AWS calls (issue 16; the budget model is in docs/scale.md).

Every trigger that polls AWS makes its calls through aiobotocore clients with a :class:`RegionLimiter` attached
(:func:`attach`): before each HTTP request (a botocore retry included) the client waits for a slot of its
limiter. One limiter per AWS connection (an account) and region lives in the triggerer process
(:func:`limiter_for`), so all triggers polling one account in one region, of every role and DAG, share its rate.

**The rate.** Slots are ``1 / calls_per_second`` apart (a bucket of one token): over any window of ``w`` seconds a
limiter grants at most ``calls_per_second * w + 1`` calls, however many triggers wait on it. Waiters are served in
the order they asked (each reserves the next free slot).

**Throttling.** An answer with a throttling code (:data:`THROTTLING_CODES`: EC2's ``RequestLimitExceeded``,
Auto Scaling's ``Throttling``, ...) is counted (``throttled``, a warning in the triggerer log, the metric
``phoenix.api.throttled`` with tags ``region``, ``service``, ``operation``) and pauses the whole limiter:
``backoff_base * 2 ** (n - 1)`` seconds for the n-th throttled answer in a row, at most ``backoff_max``; the
first unthrottled answer resets ``n``. botocore's own retries (with their own backoff) then retry the call, through
the limiter again.

Import-light: asyncio and logging; the metrics API is imported when a throttled answer is counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from phoenix_fleet.api_budget import DEFAULT_CALLS_PER_SECOND

log = logging.getLogger(__name__)

#: error codes AWS answers when an account's API rate is exceeded (EC2, Auto Scaling, ELBv2, CloudWatch, SSM, STS)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
#: the metric counting throttled answers (Airflow's prefix in front: ``airflow.phoenix.api.throttled``)
THROTTLED_METRIC = "phoenix.api.throttled"
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


@dataclass
class LimiterStats:
    """What a limiter did: calls granted, seconds spent waiting for slots, throttled answers."""

    calls: int = 0
    waited_seconds: float = 0.0
    throttled: int = 0


class RegionLimiter:
    """Grants AWS calls at most ``calls_per_second`` (see the module doc). One per connection and region.

    :param clock: monotonic seconds (default ``time.monotonic``, which asyncio's loop time also is)
    :param sleep: the coroutine that waits (default ``asyncio.sleep``)
    """

    def __init__(
        self,
        calls_per_second: float = DEFAULT_CALLS_PER_SECOND,
        *,
        name: str = "",
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")  # the earliest time the next slot may be granted
        self._last_grant = float("-inf")  # when the last call was granted
        self._paused_until = float("-inf")
        self._in_a_row = 0
        self.stats = LimiterStats()
        self.set_rate(calls_per_second)

    @property
    def calls_per_second(self) -> float:
        return self._rate

    def set_rate(self, calls_per_second: float) -> None:
        if not calls_per_second > 0:
            raise ValueError(f"calls_per_second must be above 0 (got {calls_per_second!r})")
        self._rate = float(calls_per_second)
        self._interval = 1.0 / self._rate

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self) -> None:
        """Wait for this caller's slot. A pause imposed while waiting (a throttled answer) moves the slot past it.

        The spacing holds between the grants themselves, not only between the reserved slots: a waiter whose
        sleep overran (a busy event loop wakes it late) would otherwise be granted just before the next waiter's
        on-time slot, two calls closer than ``1 / calls_per_second`` (seen in bench/fleet_rollout: 12-13 grants in
        a one-second window at 10 a second). Such a waiter takes the next free slot instead."""
        asked = self._clock()
        while True:
            now = self._clock()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + self._interval
            if slot > now:
                await self._sleep(slot - now)
            if self._paused_until > slot:
                continue
            now = self._clock()
            if now - self._last_grant >= self._interval * (1 - 1e-9):
                self._last_grant = now
                break
        self.stats.calls += 1
        self.stats.waited_seconds += max(0.0, self._clock() - asked)

    def throttled(self, *, service: str = "", operation: str = "", code: str = "") -> float:
        """Count a throttled answer and pause the limiter; returns the pause in seconds."""
        self._in_a_row += 1
        self.stats.throttled += 1
        pause = min(self.backoff_max, self.backoff_base * 2 ** (self._in_a_row - 1))
        self._paused_until = max(self._paused_until, self._clock() + pause)
        log.warning(
            "AWS throttled %s %s (%s) for %s: %d throttled answers so far (%d in a row); every poll through this "
            "limiter pauses %.1f s",
            service, operation, code, self.name or "this limiter", self.stats.throttled, self._in_a_row, pause,
        )
        _count_throttled(self.name, service, operation)
        return pause

    def answered(self) -> None:
        """An unthrottled answer: the next throttled one starts the backoff again from ``backoff_base``."""
        self._in_a_row = 0


def _count_throttled(limiter: str, service: str, operation: str) -> None:
    region = limiter.rsplit("/", 1)[-1] if limiter else None
    try:
        from phoenix_fleet.fleet_metrics import _emit

        _emit("incr", THROTTLED_METRIC, tags={"region": region, "service": service, "operation": operation})
    except Exception:  # noqa: BLE001 - a metric never fails a poll
        log.debug("could not count a throttled answer", exc_info=True)


# ------------------------------------------------------------------------------------------------------
# the triggerer's registry: one limiter per connection and region


_LIMITERS: dict[tuple[str, str], RegionLimiter] = {}
_LOCK = threading.Lock()


def limiter_key(aws_conn_id: str | None, region: str | None) -> str:
    return f"{aws_conn_id or 'default'}/{region or 'default'}"


def limiter_for(aws_conn_id: str | None, region: str | None, calls_per_second: float | None = None) -> RegionLimiter:
    """The process's limiter of ``aws_conn_id`` in ``region`` (created on first use). ``calls_per_second``:
    the budget (default: the fleet config's, :func:`configured_calls_per_second`); a changed budget applies
    to the existing limiter from its next slot."""
    rate = calls_per_second if calls_per_second is not None else configured_calls_per_second(aws_conn_id)
    key = (aws_conn_id or "default", region or "default")
    with _LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = RegionLimiter(rate, name=limiter_key(aws_conn_id, region))
        elif limiter.calls_per_second != rate:
            limiter.set_rate(rate)
        return limiter


def limiters() -> dict[str, RegionLimiter]:
    """Every limiter of this process, by ``<conn>/<region>``."""
    with _LOCK:
        return {limiter_key(*k): v for k, v in _LIMITERS.items()}


def reset_limiters() -> None:
    """Forget every limiter (tests)."""
    with _LOCK:
        _LIMITERS.clear()


def configured_calls_per_second(aws_conn_id: str | None) -> float:
    """The fleet config's ``calls_per_second`` for this connection (its environments' lowest); the default, with a
    warning, when the config cannot be read here."""
    try:
        from phoenix_fleet.api_budget import calls_per_second_for
        from phoenix_fleet.config import cached_fleet_config

        return calls_per_second_for(cached_fleet_config(), aws_conn_id)
    except Exception as exc:  # noqa: BLE001 - a poll never fails for want of its budget: the default applies
        log.warning(
            "the fleet config cannot be read in this process (%s): triggers of %s poll at the default budget, "
            "%g calls a second per region", exc, aws_conn_id, DEFAULT_CALLS_PER_SECOND,
        )
        return DEFAULT_CALLS_PER_SECOND


# ------------------------------------------------------------------------------------------------------
# aiobotocore clients


def error_code_of(parsed: Any) -> str | None:
    if isinstance(parsed, dict):
        err = parsed.get("Error")
        if isinstance(err, dict) and err.get("Code"):
            return str(err["Code"])
    return None


def attach(client: Any, limiter: RegionLimiter) -> Any:
    """Make every request of an aiobotocore ``client`` (each retry too) wait for ``limiter``'s slot, and report its
    throttled answers to it. Returns the client."""
    service = str(getattr(getattr(client, "meta", None), "service_model", None) and client.meta.service_model.service_name)

    async def before_send(**kwargs: Any) -> None:
        await limiter.acquire()
        return None  # never a response: the request is sent

    def response_received(**kwargs: Any) -> None:
        parsed = kwargs.get("parsed_response")
        code = error_code_of(parsed)
        if code in THROTTLING_CODES:
            operation = str(kwargs.get("event_name") or "").rsplit(".", 1)[-1]
            limiter.throttled(service=service, operation=operation, code=code or "")
        elif kwargs.get("exception") is None:
            limiter.answered()

    events = client.meta.events
    events.register("before-send", before_send, unique_id=f"phoenix-limiter-send-{id(limiter)}")
    events.register("response-received", response_received, unique_id=f"phoenix-limiter-recv-{id(limiter)}")
    return client


class LimitedClientContext:
    """Wraps an aiobotocore client context (``session.create_client(...)``) so the client it yields has
    ``limiter`` attached."""

    def __init__(self, context: Any, limiter: RegionLimiter) -> None:
        self._context = context
        self._limiter = limiter

    async def __aenter__(self) -> Any:
        client = await self._context.__aenter__()
        return attach(client, self._limiter)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._context.__aexit__(*exc)


__all__ = [
    "THROTTLED_METRIC",
    "THROTTLING_CODES",
    "LimitedAsyncConnMixin",
    "LimitedClientContext",
    "LimiterStats",
    "RegionLimiter",
    "attach",
    "configured_calls_per_second",
    "limiter_for",
    "limiter_key",
    "limiters",
    "reset_limiters",
]


class LimitedAsyncConnMixin:
    """For an ``AwsBaseHook``: the aiobotocore client of ``get_async_conn()`` (what the provider's waiter triggers
    poll with) draws from the process's limiter of the hook's connection and region (:func:`limiter_for`)."""

    aws_conn_id: str | None
    region_name: str | None

    def api_limiter(self) -> RegionLimiter:
        return limiter_for(self.aws_conn_id, self.region_name)

    async def get_async_conn(self) -> Any:
        context = await super().get_async_conn()  # type: ignore[misc]
        return LimitedClientContext(context, self.api_limiter())
