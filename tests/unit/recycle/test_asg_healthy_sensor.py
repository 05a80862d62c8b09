"""AsgHealthySensor against the sandbox: healthy at once, after a deferral, and timing out."""

from __future__ import annotations

import pytest
import recycle_fleet as F
from airflow.sdk.exceptions import AirflowSensorTimeout
from phoenix_fleet.rollout import FleetState, Instance, Policy, fleet_healthy
from phoenix_fleet.sensors.asg_sensors import AsgHealthySensor, policy_with

from tests.helpers.airflow_run import make_context, run_task

FAST = {"min_poll_interval": 0.01, "poll_interval": 0.05, "region_name": F.REGION}


def sensor(f, **kwargs):
    kwargs.setdefault("policy", {"warmup_seconds": 0})
    return AsgHealthySensor(task_id="healthy", asg_name=f.asg, **FAST, **kwargs)


def test_healthy_fleet_passes_without_deferring(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    run = run_task(sensor(f, image_id=f.old_ami), make_context())
    assert run.deferrals == []


def test_defers_until_the_new_capacity_is_healthy(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    sandbox_clean.client("autoscaling").set_desired_capacity(AutoScalingGroupName=f.asg, DesiredCapacity=5)
    run = run_task(sensor(f), make_context())
    assert [d["trigger"] for d in run.deferrals] == ["AsgHealthyTrigger"]
    assert run.deferrals[0]["event"]["message"] == f"{f.asg}: 5/5 healthy"


def test_times_out_on_the_wrong_image(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    with pytest.raises(AirflowSensorTimeout, match=f"4 instance\\(s\\) not on {f.new_ami}"):
        run_task(sensor(f, image_id=f.new_ami, timeout=0.3), make_context())


def test_not_deferrable_pokes(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = sensor(f, image_id=f.old_ami, deferrable=False, poke_interval=0.01, timeout=5)
    run_task(op, make_context())


def test_the_gate_is_the_rollouts():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, tzinfo=UTC)
    tg = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/1"
    inst = Instance("i-1", "ami-1", "a", "InService", now, target_health={tg: "healthy"})
    state = FleetState("web", 1, 1, 2, (inst,), now, target_group_arns=(tg,))
    assert fleet_healthy(state, Policy(warmup_seconds=0), "ami-1")[0]
    ok, why = fleet_healthy(state, Policy(warmup_seconds=60), "ami-1")  # warmup counts, as in the rollout
    assert not ok and "warming up" in why
    draining = FleetState("web", 1, 1, 2, (Instance("i-1", "ami-1", "a", "InService", now,
                                                    target_health={tg: "draining"}),), now, target_group_arns=(tg,))
    assert "target draining in web" in fleet_healthy(draining, Policy(warmup_seconds=0))[1]
    with pytest.raises(ValueError, match="policy: unknown rollout policy field"):
        policy_with(Policy(), {"nope": 1})


def test_template_fields():
    s = AsgHealthySensor(task_id="s", asg_name="web")
    assert set(s.template_fields) >= {"asg_name", "image_id", "role", "policy", "aws_conn_id", "region_name",
                                      "skipped_instances"}
    assert s.deferrable is True and s.aws_conn_id == "aws_default" and s.region_name is None


def test_the_gate_accepts_exactly_the_skipped_instances_on_another_image():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, tzinfo=UTC)
    new = [Instance(f"i-{k}", "ami-new", "a", "InService", now) for k in (1, 2, 3)]
    old = Instance("i-old", "ami-old", "a", "InService", now, protected=True)
    state = FleetState("web", 4, 1, 5, (*new, old), now)
    policy = Policy(warmup_seconds=0, health_signals=frozenset({"asg"}))
    ok, why = fleet_healthy(state, policy, "ami-new", skipped=("i-old",))
    assert ok and why == "web: 4/4 healthy on ami-new (1 skipped by policy on another image: i-old)"
    assert not fleet_healthy(state, policy, "ami-new")[0]  # not skipped: still an instance on the wrong image
    stray = FleetState("web", 4, 1, 5, (*new[:2], Instance("i-3", "ami-old", "a", "InService", now), old), now)
    ok, why = fleet_healthy(stray, policy, "ami-new", skipped=("i-old",))  # only those skipped, no other
    assert not ok and "1 instance(s) not on ami-new (e.g. i-3)" in why
    sick = FleetState("web", 4, 1, 5, (*new, Instance("i-old", "ami-old", "a", "InService", now, asg_health="Unhealthy",
                                                         protected=True)), now)
    assert not fleet_healthy(sick, policy, "ami-new", skipped=("i-old",))[0]  # skipped, but it must be healthy


def test_after_a_recycle_that_skipped_a_protected_instance_the_gate_passes(sandbox_clean):
    """protected: skip leaves one instance on the old image: the recycle lists it, and the gate given that list
    passes at once, where it used to wait its whole timeout for an image that never comes."""
    f = F.build_fleet(sandbox_clean)
    group = F.group(sandbox_clean)
    kept = sorted(i["InstanceId"] for i in group["Instances"])[0]
    sandbox_clean.client("autoscaling").set_instance_protection(
        AutoScalingGroupName=f.asg, InstanceIds=[kept], ProtectedFromScaleIn=True)
    result = run_task(F.operator(f, policy={"protected": "skip"}), make_context()).result
    assert result["skipped"] == [kept] and result["skipped_reasons"] == {kept: "scale-in protected"}
    run = run_task(sensor(f, image_id=f.new_ami, skipped_instances=result["skipped"], timeout=5), make_context())
    assert run.deferrals == []
    with pytest.raises(AirflowSensorTimeout, match=f"1 instance\\(s\\) not on {f.new_ami} \\(e.g. {kept}\\)"):
        run_task(sensor(f, image_id=f.new_ami, timeout=0.3), make_context())
    # deferred: the trigger gets the list too
    sandbox_clean.client("autoscaling").set_desired_capacity(AutoScalingGroupName=f.asg, DesiredCapacity=5)
    run = run_task(sensor(f, image_id=f.new_ami, skipped_instances=[kept], timeout=60), make_context())
    assert [d["trigger"] for d in run.deferrals] == ["AsgHealthyTrigger"]
    assert run.deferrals[0]["event"]["message"].endswith(f"(1 skipped by policy on another image: {kept})")
