"""Poll a short wait on the worker before deferring it.

A deferral costs a few seconds (the task process exits, the triggerer fires, the task is scheduled and started
again) and, in Airflow 3.3, a trigger that fires within a second or two of the deferral can race the scheduler's
handling of the first process's exit: the scheduler logs "reported ... success, but the task instance's state
attribute is running" and sends a task that succeeded to ``up_for_retry`` (docs/e2e.md). Waits that usually end in
seconds (an SSM command, a canary's status checks, an AMI in the sandbox) therefore poll inline up to a bound,
with the same botocore waiter the trigger uses, and defer only when the bound passes.

The bound is the operator's ``inline_wait``, else ``$PHOENIX_INLINE_WAIT_SECONDS`` on the worker, else 20 s
(0: defer at once, as before; e.g. where worker slots are scarcer than a few seconds of polling).

Stdlib only at module level (operator modules import it at DAG parse time).
"""

from __future__ import annotations

import math
import os
from typing import Any

INLINE_WAIT_ENV = "PHOENIX_INLINE_WAIT_SECONDS"
INLINE_WAIT_SECONDS = 20.0
"""Default bound: how long a short wait polls on the worker before it defers (0: defer at once)."""
INLINE_POLL_SECONDS = 1.0
"""Default seconds between inline checks."""


class WaitFailed(Exception):
    """The waiter reached one of its failure states inline (the trigger would have failed the same way)."""

    def __init__(self, message: str, last_response: Any = None) -> None:
        super().__init__(message)
        self.last_response = last_response


def inline_bound(explicit: float | None) -> float:
    """The operator's ``inline_wait``, else ``$PHOENIX_INLINE_WAIT_SECONDS``, else :data:`INLINE_WAIT_SECONDS`."""
    if explicit is not None:
        return float(explicit)
    raw = os.environ.get(INLINE_WAIT_ENV, "").strip()
    if not raw:
        return INLINE_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 <= value <= 3600):
        raise ValueError(
            f"{INLINE_WAIT_ENV}: {raw!r} is not a number of seconds from 0 to 3600. Fix: e.g. 20, or 0 to defer at once"
        )
    return value


def inline_attempts(bound: float, interval: float) -> int:
    """Waiter attempts that fit in ``bound`` seconds at ``interval`` (at least one)."""
    return max(1, math.ceil(bound / interval) + 1) if interval > 0 else max(1, math.ceil(bound * 10))


def wait_inline(waiter: Any, bound: float, interval: float = INLINE_POLL_SECONDS, **kwargs: Any) -> bool:
    """Run the botocore ``waiter`` on the worker for about ``bound`` seconds.

    True: it reached its success state. False: still waiting when the bound passed (defer now). Raises
    :class:`WaitFailed` when it reached a failure state; other errors (throttling that outlasts the retries, a
    bad request) propagate as they are.
    """
    if bound <= 0:
        return False
    from botocore.exceptions import WaiterError

    try:
        waiter.wait(**kwargs, WaiterConfig={"Delay": interval, "MaxAttempts": inline_attempts(bound, interval)})
    except WaiterError as exc:
        if "Max attempts exceeded" in str(exc):
            return False
        raise WaitFailed(str(exc), getattr(exc, "last_response", None)) from exc
    return True
