"""bench/fleet_rollout's own measuring code, on synthetic samples (the benchmark itself is never in the suite)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fleet_rollout", REPO / "bench" / "fleet_rollout" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sampled_task_states_integrate_to_slot_seconds_and_peaks() -> None:
    bench = _bench()
    sampler = bench.Sampler(af=None, dag_id="d", run_id="r", every=2.0)
    zero = dict.fromkeys((*bench.STATES, "slots"), 0)
    sampler.samples = [
        (100.0, {**zero, "running": 2, "deferred": 5, "slots": 3}),
        (102.0, {**zero, "running": 4, "deferred": 10, "slots": 4}),
        (105.0, {**zero, "running": 0, "up_for_reschedule": 7, "queued": 1}),
        (106.0, {**zero}),  # the last sample only closes the interval before it
    ]
    assert sampler.integral("running") == 2 * 2 + 4 * 3 + 0 * 1
    assert sampler.integral("deferred") == 5 * 2 + 10 * 3
    assert sampler.integral("slots") == 3 * 2 + 4 * 3
    assert sampler.peak("running") == 4 and sampler.peak("slots") == 4
    assert sampler.peak("running", "deferred", "up_for_reschedule", "queued") == 14
    assert bench.Sampler(af=None, dag_id="d", run_id="r", every=1.0).peak("running") == 0


def test_group_cpu_counts_this_process_group() -> None:
    bench = _bench()
    before = bench.group_cpu(os.getpgrp())
    end = sum(range(10_000_000))  # burn a little CPU in this process
    assert end > 0 and bench.group_cpu(os.getpgrp()) > before >= 0
    assert bench.group_cpu(2**22 + 12345) == 0  # no such group
