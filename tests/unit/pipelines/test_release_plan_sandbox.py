"""The release plan against the sandbox: versions are claimed atomically (one SSM parameter per version, created
with Overwrite=False), released by the run that holds them, and a version whose image failed is refused; the run's
bound (dagrun_timeout) and the canary's come from the stage limits."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.pipelines.release_plan import ReleaseParamError, plan_release
from phoenix_fleet.pipelines.version_claims import claim_parameter, current_claim, release_claim

from tests.helpers.image_support import make_image

FLEET = load_fleet_config()
TODAY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=30)
DAG = "ami_release_web"


def _hook() -> Any:
    from phoenix_fleet.hooks.image_hook import ImageHook

    return ImageHook(aws_conn_id="aws_default", region_name="us-east-1")


def _plan(params: dict[str, Any], run_id: str, now: dt.datetime = NOW) -> dict[str, Any]:
    return plan_release(FLEET, "web", params, _hook(), TODAY, run_id=run_id, dag_id=DAG, claim_ttl=TTL, now=now)


def test_two_runs_racing_for_one_version_one_wins(seeded, sandbox_clean):
    """Both runs ask for 2026.12.01-1 at the same moment: exactly one plan gets it, the other is refused naming
    the holder; neither has built anything yet (the old rule only saw tagged AMIs)."""
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def run(run_id: str) -> None:
        barrier.wait()
        try:
            results[run_id] = _plan({"version": "2026.12.01-1"}, run_id)
        except ReleaseParamError as e:
            results[run_id] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in ("run-A", "run-B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [r for r, v in results.items() if isinstance(v, dict)]
    lost = [v for v in results.values() if isinstance(v, ReleaseParamError)]
    assert len(won) == 1 and len(lost) == 1, results
    param = claim_parameter(FLEET.ssm_prefix, "web", "2026.12.01-1")
    assert f"is claimed by run {won[0]} of {DAG}" in str(lost[0]) and param in str(lost[0])
    claim = current_claim(sandbox_clean.client("ssm"), param)
    assert claim is not None and claim.run_id == won[0]
    assert results[won[0]]["claim"]["parameter"] == param
    assert claim.expires_at == "2026-12-02T09:00:00+00:00"  # claimed_at + the run's bound


def test_next_free_versions_skip_claimed_ones(seeded, sandbox_clean):
    first = _plan({}, "run-A")
    second = _plan({}, "run-B")
    assert first["version"] == "2026.12.01-1" and second["version"] == "2026.12.01-2"
    # a retried plan of the same run gets its own claim back, not a new version
    assert _plan({}, "run-A")["version"] == "2026.12.01-1"
    assert _plan({"version": "2026.12.01-2"}, "run-B")["claim"]["run_id"] == "run-B"


def test_a_released_claim_frees_the_version_and_only_its_run_releases_it(seeded, sandbox_clean):
    ssm = sandbox_clean.client("ssm")
    plan = _plan({"version": "2026.12.01-3"}, "run-A")
    param = plan["claim"]["parameter"]
    assert release_claim(ssm, param, run_id="run-B", dag_id=DAG) is False  # not B's to release
    assert current_claim(ssm, param) is not None
    assert release_claim(ssm, param, run_id="run-A", dag_id=DAG) is True
    assert current_claim(ssm, param) is None
    assert _plan({"version": "2026.12.01-3"}, "run-B")["claim"]["run_id"] == "run-B"


def test_an_expired_claim_is_taken_over(seeded, sandbox_clean):
    """A run that ended without its teardown (dagrun_timeout) never released its claim: past the run's bound the
    claim is stale and the next run takes it over."""
    _plan({"version": "2026.12.01-4"}, "run-A")
    with pytest.raises(ReleaseParamError, match="is claimed by run run-A"):
        _plan({"version": "2026.12.01-4"}, "run-B", now=NOW + TTL - dt.timedelta(minutes=1))
    later = _plan({"version": "2026.12.01-4"}, "run-B", now=NOW + TTL + dt.timedelta(minutes=1))
    assert later["claim"]["run_id"] == "run-B"


def test_a_dry_run_claims_nothing(seeded, sandbox_clean):
    plan = _plan({"version": "2026.12.01-5", "dry_run": True}, "run-A")
    assert plan["claim"] is None
    assert current_claim(sandbox_clean.client("ssm"), claim_parameter(FLEET.ssm_prefix, "web", "2026.12.01-5")) is None


def test_a_version_whose_image_failed_is_refused(seeded, sandbox_clean):
    """Run B asks for the version whose image run A baked and verify failed (phoenix:verified=false): refused in
    plan, before any claim; the next free version skips it; A's own re-run is not refused."""
    make_image(sandbox_clean, seeded["base_ami"]["id"], "phoenix-web-2026.12.01-1", {
        "phoenix:role": "web", "phoenix:version": "2026.12.01-1", "phoenix:verified": "false",
        "phoenix:verified-reason": "2 image check(s) failed: test_ssh.py::test_sshd_setting[permitrootlogin]",
        "phoenix:build-run": "run-A",
    }, settle=True)
    with pytest.raises(ReleaseParamError, match=r"2026\.12\.01-1 already has image ami-\w+ marked phoenix:verified=false "
                       r"\(2 image check\(s\) failed: .*; build run run-A\)"):
        _plan({"version": "2026.12.01-1"}, "run-B")
    assert current_claim(sandbox_clean.client("ssm"), claim_parameter(FLEET.ssm_prefix, "web", "2026.12.01-1")) is None
    assert _plan({}, "run-B")["version"] == "2026.12.01-2"
    assert _plan({"version": "2026.12.01-1"}, "run-A")["version"] == "2026.12.01-1"


def test_an_untagged_build_in_flight_holds_its_version(seeded, sandbox_clean):
    """Packer tags an AMI only once it is available: a pending one (a build in flight, or orphaned) has only its
    name, and still counts."""
    sandbox_clean.update_config(image_build={"describes": 50})
    make_image(sandbox_clean, seeded["base_ami"]["id"], "phoenix-web-2026.12.01-1", {})
    with pytest.raises(ReleaseParamError, match="has an untagged image .* a build of it is in flight or was abandoned"):
        _plan({"version": "2026.12.01-1"}, "run-B")
    assert _plan({}, "run-B")["version"] == "2026.12.01-2"


def test_the_run_and_canary_bounds_come_from_the_stage_limits():
    """dagrun_timeout covers every stage's limits on the longest path (bake alone: 2 h x 3 tries plus its pending
    wait and Packer's cleanup grace), so a run is never cut short while a stage may still legitimately run; the
    canary's bound covers the verify stage from launch to teardown."""
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.release_dag import build_release_dag
    from phoenix_fleet.pipelines.run_budget import longest_path, task_budget

    dag = build_release_dag(facts_from_config(FLEET)["web"])
    tasks = dag.task_dict
    bake = task_budget(tasks["bake"])
    assert bake >= 3 * (dt.timedelta(hours=2) + dt.timedelta(seconds=600))
    chain = ["plan", "bake", "ami_available", "verify.launch_canary", "verify.wait_canary_healthy",
             "verify.run_image_tests", "verify.mark_verified", "release", "copy_to_region", "publish"]
    assert dag.dagrun_timeout >= sum((task_budget(tasks[t], 2) for t in chain), dt.timedelta(0))
    for task in dag.tasks:
        assert task.execution_timeout is not None, f"{task.task_id} has no execution_timeout"
    verify = ["verify.launch_canary", "verify.wait_canary_healthy", "verify.run_image_tests", "verify.mark_verified",
              "verify.terminate_canary"]
    lifetime = tasks["verify.launch_canary"].max_lifetime
    assert lifetime >= sum((task_budget(tasks[t]) for t in verify), dt.timedelta(0))
    assert lifetime == longest_path(dag, start="verify.launch_canary", end="verify.terminate_canary",
                                    map_sizes={"copy_to_region": 2})[0]
    assert lifetime < dag.dagrun_timeout
