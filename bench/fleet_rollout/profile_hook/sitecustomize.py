"""bench/fleet_rollout --profile: what one Airflow task start costs, measured inside each task process.

On ``PYTHONPATH`` only when the benchmark runs with ``--profile DIR`` (``PHOENIX_BENCH_PROFILE_DIR``). It wraps
``airflow.sdk.execution_time.task_runner.main`` (the code a LocalExecutor worker's supervisor forks for each task
start) and ``startup`` (to learn which task instance it is). When a task process ends it writes
``<dir>/<pid>.json``: the task, map index, try, whether it resumed after a deferral (``next_method``), its CPU
seconds (user, system: the fork starts at zero) and wall seconds, and, with ``PHOENIX_BENCH_CPROFILE=1``,
``<dir>/<pid>.prof`` (cProfile of the whole task process). Nothing else is changed; other processes (scheduler,
api-server, triggerer) only install the import hook, which does nothing until the task runner is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_DIR = os.environ.get("PHOENIX_BENCH_PROFILE_DIR")
_TARGET = "airflow.sdk.execution_time.task_runner"


def _wrap(mod: object) -> None:
    import json
    import resource
    import time

    main, startup = mod.main, mod.startup  # type: ignore[attr-defined]
    seen: dict[str, object] = {}

    def wrapped_startup(*args: object, **kwargs: object) -> object:
        msg = kwargs.get("msg", args[0] if args else None)
        ti = getattr(msg, "ti", None)
        ctx = getattr(msg, "ti_context", None)
        seen.update(task_id=getattr(ti, "task_id", None), map_index=getattr(ti, "map_index", None),
                    try_number=getattr(ti, "try_number", None), dag_id=getattr(ti, "dag_id", None),
                    next_method=getattr(ctx, "next_method", None))
        seen["startup_begin_cpu"] = _cpu(resource)
        try:
            return startup(*args, **kwargs)
        finally:
            seen["startup_end_cpu"] = _cpu(resource)

    def wrapped_main() -> None:
        t0 = time.monotonic()
        prof = None
        if os.environ.get("PHOENIX_BENCH_CPROFILE") == "1":
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        try:
            main()
        finally:
            if prof is not None:
                prof.disable()
                prof.dump_stats(os.path.join(_DIR, f"{os.getpid()}.prof"))  # type: ignore[arg-type]
            ru = resource.getrusage(resource.RUSAGE_SELF)
            seen.update(pid=os.getpid(), user=ru.ru_utime, system=ru.ru_stime, wall=time.monotonic() - t0,
                        maxrss_kb=ru.ru_maxrss)
            with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as fh:  # type: ignore[arg-type]
                json.dump(seen, fh)

    mod.startup = wrapped_startup  # type: ignore[attr-defined]
    mod.main = wrapped_main  # type: ignore[attr-defined]


def _cpu(resource: object) -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # type: ignore[attr-defined]
    return float(ru.ru_utime + ru.ru_stime)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module: object) -> None:
            exec_module(module)  # type: ignore[arg-type]
            _wrap(module)

        loader.exec_module = exec_and_wrap  # type: ignore[method-assign]
        return spec


if _DIR:
    if _TARGET in sys.modules:
        _wrap(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _Finder())
