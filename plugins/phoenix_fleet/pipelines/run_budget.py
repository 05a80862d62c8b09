"""How long a DAG run can take at most, from its tasks' own limits: the release DAG's ``dagrun_timeout`` and the
canary's bound are sized here instead of guessed.

For one task, one try may take its ``execution_timeout`` (time on a worker) plus its wait bound (the ``timeout`` of a
sensor or a deferring operator: the deferral limit), plus the time Packer gets to clean up after a stop
(``kill_grace_seconds`` + the hook's SIGTERM grace + 10 s to SIGKILL) for tasks that have one. A task with neither
limit counts ``DEFAULT_TASK_LIMIT`` (the release DAG sets that as every task's ``execution_timeout``, so it is a real
limit). Tries = ``retries + 1``; between tries the retry delay at its upper bound (``retry_delay * 2**k`` with
exponential backoff, capped by ``max_retry_delay``). A mapped task runs its ``map_size`` instances in waves of
``max_active_tis_per_dagrun``. The run's bound is the longest path through the DAG (teardowns included: they run
after their work), plus ``SCHEDULING_MARGIN`` per task on it for scheduling and start-up.

Pure: reads task attributes, imports no AWS library.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
from collections.abc import Mapping
from typing import Any

DEFAULT_TASK_LIMIT = dt.timedelta(minutes=30)
SCHEDULING_MARGIN = dt.timedelta(minutes=2)
PACKER_TERM_GRACE = dt.timedelta(seconds=30 + 10)  # PackerHook: SIGTERM grace, then SIGKILL and 10 s
MAX_RETRY_DELAY = dt.timedelta(hours=24)  # Airflow's own cap


def _seconds(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return 0.0
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    return 0.0


def _attr(task: Any, name: str) -> Any:
    """An operator attribute; for a mapped operator from its partial kwargs, else its class' default."""
    if hasattr(task, "partial_kwargs"):
        if name in task.partial_kwargs:
            return task.partial_kwargs[name]
        try:
            param = inspect.signature(task.operator_class.__init__).parameters.get(name)
        except (TypeError, ValueError):
            param = None
        return None if param is None or param.default is inspect.Parameter.empty else param.default
    return getattr(task, name, None)


def try_limit(task: Any) -> dt.timedelta:
    """One try at most: execution time + deferral wait (+ Packer's cleanup grace)."""
    limit = _seconds(task.execution_timeout) + _seconds(_attr(task, "timeout"))
    if limit <= 0:
        limit = DEFAULT_TASK_LIMIT.total_seconds()
    grace = _attr(task, "kill_grace_seconds")
    if grace is not None:
        limit += _seconds(grace) + PACKER_TERM_GRACE.total_seconds()
    return dt.timedelta(seconds=limit)


def retry_delays(task: Any) -> dt.timedelta:
    retries = int(task.retries or 0)
    base = _seconds(task.retry_delay)
    cap = _seconds(getattr(task, "max_retry_delay", None)) or MAX_RETRY_DELAY.total_seconds()
    total = 0.0
    for k in range(1, retries + 1):
        total += min(cap, base * (2**k)) if task.retry_exponential_backoff else base
    return dt.timedelta(seconds=total)


def task_budget(task: Any, map_size: int = 1) -> dt.timedelta:
    tries = int(task.retries or 0) + 1
    one = try_limit(task) * tries + retry_delays(task)
    if hasattr(task, "partial_kwargs"):
        parallel = int(_attr(task, "max_active_tis_per_dagrun") or 0) or max(1, map_size)
        one *= math.ceil(max(1, map_size) / parallel)
    return one


def longest_path(
    dag: Any, *, start: str | None = None, end: str | None = None, map_sizes: Mapping[str, int] | None = None
) -> tuple[dt.timedelta, list[str]]:
    """The longest chain of task budgets (with the scheduling margin per task) through ``dag``; with ``start`` and
    ``end``, only chains from ``start`` to ``end`` (both included). Returns (duration, task ids on it)."""
    sizes = dict(map_sizes or {})
    tasks = {t.task_id: t for t in dag.tasks}
    order = [t.task_id for t in dag.topological_sort()]
    best: dict[str, tuple[dt.timedelta, list[str]]] = {}
    for tid in order:
        task = tasks[tid]
        own = task_budget(task, sizes.get(tid, 1)) + SCHEDULING_MARGIN
        ups = [best[u] for u in task.upstream_task_ids if u in best]
        if start is not None and tid != start and not ups:
            continue  # not reachable from start
        prev = max(ups, key=lambda b: b[0]) if ups and tid != start else (dt.timedelta(0), [])
        best[tid] = (prev[0] + own, [*prev[1], tid])
    if end is not None:
        return best.get(end, (dt.timedelta(0), []))
    return max(best.values(), key=lambda b: b[0], default=(dt.timedelta(0), []))


def run_bound(dag: Any, map_sizes: Mapping[str, int] | None = None) -> dt.timedelta:
    """The DAG run's upper bound (longest path), rounded up to the next 15 minutes."""
    total, _path = longest_path(dag, map_sizes=map_sizes)
    quarter = 15 * 60
    return dt.timedelta(seconds=math.ceil(total.total_seconds() / quarter) * quarter)
