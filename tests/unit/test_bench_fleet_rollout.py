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


def test_task_profiles_give_the_cpu_per_start_by_task_and_kind(tmp_path: Path) -> None:
    import json
    import time

    bench = _bench()
    t0 = time.time() - 1
    recs = [
        {"dag_id": "d", "task_id": "recycle", "next_method": None, "user": 0.5, "system": 0.1,
         "startup_begin_cpu": 0.02, "startup_end_cpu": 0.32, "wall": 3.0, "maxrss_kb": 200 * 1024},
        {"dag_id": "d", "task_id": "recycle", "next_method": "execute_complete", "user": 0.7, "system": 0.1,
         "startup_begin_cpu": 0.02, "startup_end_cpu": 0.42, "wall": 4.0, "maxrss_kb": 190 * 1024},
        {"dag_id": "other", "task_id": "x", "next_method": None, "user": 9, "system": 9,
         "startup_begin_cpu": 0, "startup_end_cpu": 0, "wall": 1, "maxrss_kb": 1},
    ]
    for pid, rec in enumerate(recs):
        (tmp_path / f"{pid}.json").write_text(json.dumps(rec))
    (tmp_path / "9.json").write_text("{not json")  # a process killed while writing: skipped
    got = bench.task_profiles(str(tmp_path), "d", t0)
    assert sorted(r["next_method"] or "" for r in got) == ["", "execute_complete"]
    lines: list[str] = []
    bench.report_profile({"cpu": {"scheduler": 2.4, "api-server": 1.0, "sandbox": 0.2}}, got, lines.append)
    text = "\n".join(lines)
    assert "recycle (begin)" in text and "recycle (resume)" in text
    assert "0.60 [0.60-0.60] (before startup 0.02, startup 0.30, run+finalize 0.28)" in text
    assert "0.80 [0.80-0.80] (before startup 0.02, startup 0.40, run+finalize 0.38)" in text
    # per start: tasks 1.4 s / 2; the scheduler's group holds its task processes: (2.4 - 1.4) / 2
    assert "task process 0.70 s, scheduler + executor supervisors 0.50 s, api-server 0.50 s, sandbox 0.10 s" in text
    assert bench.task_profiles(str(tmp_path), "d", time.time() + 60) == []
