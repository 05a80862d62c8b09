"""Release then rollout through a real Airflow, run the way users run it (issue 6).

api-server, scheduler, dag-processor and triggerer run as subprocesses (SQLite, LocalExecutor) against the
in-process sandbox cloud; the test only talks to Airflow through its public REST API:

1. trigger ``ami_release_worker`` with a conf and wait for it to succeed;
2. the Asset event it emits starts ``fleet_rollout_worker`` by itself: that run gets the release's version
   (the ``plan`` XCom) and succeeds, with no approval (the sandbox environment does not require one);
3. trigger ``fleet_rollout_worker`` by hand with ``require_approval``: its ``approval`` task waits in
   ``awaiting_input`` until the test answers ``Approve`` through the HITL REST endpoint; the run succeeds;
4. the worker ASG ends with all its instances on the new AMI, at desired capacity;
5. one of its instances is aged 20 days (the sandbox's ``age``), an inventory report of the fleet is written,
   and an event on the inventory Asset (``POST /api/v2/assets/events``, extra ``path``: what fleet_inventory
   announces) starts ``fleet_max_age`` by itself: it renews exactly that instance, on the same AMI.

Component logs are in the test's tmp AIRFLOW_HOME (``<component>.log``); on failure their tails and the
failed tasks' logs are printed. Every wait is bounded; the whole test takes ~2-3 minutes on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.airflow_env import airflow_env
from tests.e2e.real_airflow import RealAirflow, fast_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

ROLE = "worker"
RELEASE = f"ami_release_{ROLE}"
ROLLOUT = f"fleet_rollout_{ROLE}"
ASG = "sandbox-worker-a"
MAX_AGE = "fleet_max_age"


@pytest.fixture
def worker_asg(seeded: dict[str, Any]) -> dict[str, Any]:
    """The seeded worker release running in one ASG (2 instances) tagged like the Terraform fleet
    (as in test_release_rollout.py)."""
    h = seeded["handle"]
    ec2, asg = h.client("ec2"), h.client("autoscaling")
    ami = seeded["roles"][ROLE]["ami_id"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lt = ec2.create_launch_template(
        LaunchTemplateName=ASG,
        LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.small", "MetadataOptions": {"HttpTokens": "required"}},
    )["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=ASG, MinSize=1, MaxSize=4, DesiredCapacity=2,
        VPCZoneIdentifier=",".join(subnets),
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True}
              for k, v in {"phoenix:role": ROLE, "phoenix:env": "sandbox"}.items()],
    )
    h.settle()
    return {"asg": ASG, "old_ami": ami}


@pytest.fixture
def manual_release_config(fast_fleet_config: Path) -> Path:
    """The fast config with no weekly schedule for the role under test.

    With ``catchup=False`` Airflow still runs the most recent missed cron slot as soon as a DAG is unpaused
    (CronTriggerTimetable always considers ``_align_to_prev(now)``), so unpausing ``ami_release_worker``
    would start a second, scheduled release next to the one this test triggers. Both would publish and
    both Asset events would feed the rollout; the test wants exactly one release, triggered through REST.
    """
    import yaml

    raw = yaml.safe_load(fast_fleet_config.read_text())
    raw["roles"][ROLE]["schedule"] = None
    fast_fleet_config.write_text(yaml.safe_dump(raw))
    return fast_fleet_config


@pytest.fixture
def real_airflow(seeded: dict[str, Any], manual_release_config: Path, tmp_path: Path):
    """The four components, started; stopped (process groups terminated, then killed) whatever happens."""
    home = tmp_path / "airflow"
    port = free_port()
    env = airflow_env(seeded["handle"].endpoint_url, home=home, api_port=port)
    env["PHOENIX_FLEET_CONFIG"] = str(manual_release_config)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[2] / "dags")
    af = RealAirflow(fast_env(env), home, port)
    try:
        af.start()
        yield af
    finally:
        af.stop()


def _fleet(h: Any) -> tuple[dict[str, Any], dict[str, str]]:
    asg, ec2 = h.client("autoscaling"), h.client("ec2")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return group, {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def _assert_fleet_on(h: Any, ami: str, version: str) -> None:
    group, images = _fleet(h)
    assert group["DesiredCapacity"] == 2 and len(images) == 2, (group["DesiredCapacity"], images)
    assert set(images.values()) == {ami}, f"fleet not entirely on {version} ({ami}): {images}"


def _inventory_report(h: Any, config: Path, out: Path) -> str:
    """Tonight's inventory report of the sandbox fleet, written as fleet_inventory writes it (its functions)."""
    from phoenix_fleet.config import load_fleet_config
    from phoenix_fleet.inventory.collect import collect_region
    from phoenix_fleet.inventory.report import build_report, render_all, write_local

    cfg = load_fleet_config(config)
    snap = collect_region(h.client("ec2"), h.client("autoscaling"), h.client("ssm"), "us-east-1",
                          ssm_prefix=cfg.ssm_prefix)
    report = build_report([snap], cfg)
    return write_local(report, str(out), render_all(report))["report.json"]


def test_release_then_rollout_with_rest_approval(seeded, worker_asg, real_airflow: RealAirflow,
                                                 manual_release_config: Path, tmp_path: Path):
    h, af = seeded["handle"], real_airflow
    marks: dict[str, float] = {}
    runs: list[tuple[str, str]] = []
    t0 = time.monotonic()

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t0, 1)
        print(f"[{marks[name]:6.1f}s] {name}", flush=True)

    try:
        version_info = af.wait_api(timeout=120)
        mark(f"api-server up (Airflow {version_info['version']})")
        af.wait_dags([RELEASE, ROLLOUT], timeout=120)
        mark("DAGs parsed")
        af.unpause(RELEASE)
        af.unpause(ROLLOUT)

        # 1. the release, triggered through the REST API with a conf
        release_run = af.trigger(RELEASE, {"release_notes": "e2e through a real Airflow"})
        runs.append((RELEASE, release_run))
        af.wait_run(RELEASE, release_run, timeout=180)
        mark("release succeeded")
        release_states = af.task_states(RELEASE, release_run)
        assert release_states["publish"] == "success" and release_states["verify.terminate_canary"] == "success"
        ssm = h.client("ssm")
        new_ami = ssm.get_parameter(Name=f"/phoenix/images/{ROLE}/latest")["Parameter"]["Value"]
        version = ssm.get_parameter(Name=f"/phoenix/images/{ROLE}/latest-version")["Parameter"]["Value"]
        assert new_ami != worker_asg["old_ami"]
        assert af.xcom(RELEASE, release_run, "plan", "version") == version
        assert [r["dag_run_id"] for r in af.runs(RELEASE)] == [release_run]

        # 2. the Asset event starts the rollout by itself and hands it the version
        def asset_run() -> dict[str, Any] | None:
            found = [r for r in af.runs(ROLLOUT) if r["run_type"] == "asset_triggered"]
            return found[0] if found else None

        auto = af.wait(f"the asset-triggered {ROLLOUT} run", asset_run, timeout=60)
        auto_run = auto["dag_run_id"]
        runs.append((ROLLOUT, auto_run))
        mark(f"asset-triggered rollout {auto_run} created")
        af.wait_run(ROLLOUT, auto_run, timeout=180)
        mark("asset-triggered rollout succeeded")
        assert af.xcom(ROLLOUT, auto_run, "plan", "version") == version
        auto_states = af.task_states(ROLLOUT, auto_run)
        assert auto_states["approval"] == "skipped" and auto_states["recycle[0]"] == "success", auto_states
        assert auto_states["summary"] == "success", auto_states
        _assert_fleet_on(h, new_ami, version)

        # 3. a manual rollout that asks for approval, answered through the HITL REST endpoint
        manual_run = af.trigger(ROLLOUT, {"require_approval": True, "target_version": "latest"})
        runs.append((ROLLOUT, manual_run))

        def awaiting() -> bool:
            states = af.task_states(ROLLOUT, manual_run)
            if {"failed", "up_for_retry", "upstream_failed"} & set(states.values()):
                raise AssertionError(af.failure_report(ROLLOUT, manual_run))
            return states.get("approval") == "awaiting_input"

        af.wait("the approval task to await input", awaiting, timeout=120)
        mark("approval awaiting input")
        # A human answers in seconds. Answered within ~0.1 s of the task pausing, Airflow 3.3 races: the
        # scheduler queues the resumed task before it has handled the executor's report that the first
        # process exited, takes that report for the queued try, and marks the task up_for_retry (docs/e2e.md).
        time.sleep(3)
        hitl = f"/api/v2/dags/{ROLLOUT}/dagRuns/{manual_run}/taskInstances/approval/-1/hitlDetails"
        detail = af.api("GET", hitl)
        assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False, detail
        assert version in detail["body"] and ASG in detail["body"], detail["body"]
        answer = af.api("PATCH", hitl, {"chosen_options": ["Approve"], "params_input": {}})
        assert answer["chosen_options"] == ["Approve"], answer
        af.wait_run(ROLLOUT, manual_run, timeout=150)
        mark("approved rollout succeeded")
        manual_states = af.task_states(ROLLOUT, manual_run)
        assert manual_states["approval"] == "success" and manual_states["recycle[0]"] == "success", manual_states
        assert af.api("GET", hitl)["response_received"] is True
        assert af.xcom(ROLLOUT, manual_run, "plan", "version") == version

        # 4. the fleet: every worker instance on the new AMI, at desired capacity
        _assert_fleet_on(h, new_ami, version)
        mark("fleet on the new AMI")

        # 5. max age: an instance 20 days old, tonight's report, the inventory Asset event -> fleet_max_age
        _, images = _fleet(h)
        old, young = sorted(images)
        h.age_instances(instance_ids=[old], days=20)
        report = _inventory_report(h, manual_release_config, tmp_path / "reports")
        af.wait_dags([MAX_AGE], timeout=60)
        af.unpause(MAX_AGE)
        assets = af.api("GET", "/api/v2/assets?uri_pattern=x-phoenix://inventory/fleet")["assets"]
        assert [a["name"] for a in assets] == ["phoenix_fleet_inventory"], assets
        af.api("POST", "/api/v2/assets/events", {"asset_id": assets[0]["id"], "extra": {"path": report}})

        def max_age_run() -> dict[str, Any] | None:
            found = [r for r in af.runs(MAX_AGE) if r["run_type"] == "asset_triggered"]
            return found[0] if found else None

        renewal = af.wait(f"the asset-triggered {MAX_AGE} run", max_age_run, timeout=60)["dag_run_id"]
        runs.append((MAX_AGE, renewal))
        af.wait_run(MAX_AGE, renewal, timeout=150)
        mark("fleet_max_age succeeded")
        assert af.task_state(MAX_AGE, renewal, "renew", 0) == "success"
        summary = af.xcom(MAX_AGE, renewal, "summary")
        assert summary["renewed"] == [ASG], summary
        assert summary["results"][0]["replaced"] == 1, summary
        group, images = _fleet(h)
        assert old not in images and young in images, images
        _assert_fleet_on(h, new_ami, version)
        mark("the old instance renewed on the same AMI")
    except BaseException:
        print(f"phase timings: {marks}")
        for dag_id, run_id in runs:
            print(af.failure_report(dag_id, run_id))
        print(af.tails(80))
        raise
