"""Drive an operator or sensor the way a worker and the triggerer would, without a scheduler.

``run_task(op, context)`` calls ``op.execute(context)``; each time the task defers (``TaskDeferred``),
it serializes the trigger and rebuilds it from ``serialize()`` (as the triggerer does), runs the
trigger's ``run()`` until its first event, then resumes the task with ``method_name(context, event=...)``
— repeating until the task returns. It also checks the defer timeout is set where required.

Use with the ``sandbox_clean`` fixture so ``aws_default`` points at the sandbox.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRecord:
    result: Any = None
    deferrals: list[dict[str, Any]] = field(default_factory=list)  # one per defer: trigger classpath, kwargs, event


def rebuild_trigger(trigger: Any) -> Any:
    """A fresh trigger from its ``serialize()`` output: proves the round trip the triggerer relies on."""
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return cls(**kwargs)


async def first_event(trigger: Any, timeout: float = 120.0) -> Any:
    async def _run():
        async for event in trigger.run():
            return event
        raise AssertionError(f"{type(trigger).__name__}.run() ended without an event")

    return await asyncio.wait_for(_run(), timeout)


def make_context(**extra: Any) -> dict[str, Any]:
    """A minimal context: ``ti`` with an in-memory XCom, ``params``, ``run_id``, ``dag_run.conf``."""

    class _TI:
        def __init__(self) -> None:
            self.xcom: dict[str, Any] = {}
            self.try_number = 1
            self.task_id = extra.get("task_id", "task")
            self.dag_id = extra.get("dag_id", "dag")
            self.run_id = extra.get("run_id", "manual__test")
            self.map_index = -1

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcom[key] = value

        def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
            return self.xcom.get(key)

    class _DagRun:
        conf = extra.get("conf", {})
        run_id = extra.get("run_id", "manual__test")

    ctx: dict[str, Any] = {
        "ti": _TI(),
        "params": extra.get("params", {}),
        "run_id": extra.get("run_id", "manual__test"),
        "dag_run": _DagRun(),
        "ds": extra.get("ds", "2026-11-30"),
    }
    ctx.update({k: v for k, v in extra.items() if k not in ctx})
    return ctx


def run_task(op: Any, context: dict[str, Any] | None = None, max_deferrals: int = 200, trigger_timeout: float = 120.0) -> RunRecord:
    from airflow.sdk.exceptions import TaskDeferred

    context = context if context is not None else make_context()
    record = RunRecord()
    call = lambda: op.execute(context)  # noqa: E731
    for _ in range(max_deferrals):
        try:
            record.result = call()
            return record
        except TaskDeferred as d:
            trigger = rebuild_trigger(d.trigger)
            event = asyncio.run(first_event(trigger, trigger_timeout))
            payload = getattr(event, "payload", event)
            record.deferrals.append(
                {"trigger": type(d.trigger).__name__, "method": d.method_name, "timeout": d.timeout, "event": payload}
            )
            method = getattr(op, d.method_name)
            kwargs = dict(d.kwargs or {})
            call = lambda m=method, k=kwargs, p=payload: m(context, event=p, **k)  # noqa: E731
    raise AssertionError(f"{op.task_id} deferred more than {max_deferrals} times")
