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
    assert set(s.template_fields) >= {"asg_name", "image_id", "role", "policy", "aws_conn_id", "region_name"}
    assert s.deferrable is True and s.aws_conn_id == "aws_default" and s.region_name is None
