"""The group's own InstanceMaintenancePolicy bounds the rollout (issue 18 item 6), against the sandbox (which
stores and describes the policy; moto dropped it): reported at plan (a dry run), the surge capped, the floor
raised; watched through the AWS API."""

from __future__ import annotations

import recycle_fleet as F
from phoenix_fleet.hooks.asg_hook import maintenance_policy_of

from tests.helpers.airflow_run import make_context, run_task


def _set_policy(sandbox, f, lo: int, hi: int) -> None:
    sandbox.client("autoscaling", region_name=F.REGION).update_auto_scaling_group(
        AutoScalingGroupName=f.asg, CapacityRebalance=True,
        InstanceMaintenancePolicy={"MinHealthyPercentage": lo, "MaxHealthyPercentage": hi},
    )


def test_a_dry_run_reports_the_conflict_and_plans_within_the_groups_policy(sandbox_clean, capsys):
    f = F.build_fleet(sandbox_clean)  # 4 instances, role policy: surge 2, batch 2
    _set_policy(sandbox_clean, f, 100, 125)
    result = run_task(F.operator(f, dry_run="True"), make_context()).result
    out = capsys.readouterr().out
    assert ("web's instance maintenance policy (min 100 %, max 125 %): its MaxHealthyPercentage 125 caps max_surge "
            "2 -> 1 (at most 5 instances for a baseline of 4)") in out
    assert "CapacityRebalance is on and left on" in out
    assert any("launch 1 (desired -> 5, max 5)" in line for line in result["plan"]), result["plan"]
    assert not any("desired -> 6" in line for line in result["plan"]), result["plan"]


def test_the_surge_never_exceeds_the_groups_max_healthy_percentage(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    _set_policy(sandbox_clean, f, 100, 125)
    op = F.operator(f)
    sizes: list[int] = []
    op.hook = F.scripted_hook(monitor=lambda: sizes.append(F.group(sandbox_clean, f.asg)["DesiredCapacity"]))
    run_task(op, make_context())
    assert max(sizes) == 5  # 125 % of 4 (the role alone would surge to 6)
    g = F.assert_converged(sandbox_clean, f, f.new_ami, 4, max_size=5)
    assert g["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 125}
    assert g["CapacityRebalance"] is True  # left on


def test_maintenance_policy_of_reads_the_group():
    assert maintenance_policy_of({"InstanceMaintenancePolicy": {"MinHealthyPercentage": 90, "MaxHealthyPercentage": 120}}) == (90, 120)
    assert maintenance_policy_of({"InstanceMaintenancePolicy": {"MinHealthyPercentage": -1, "MaxHealthyPercentage": -1}}) is None
    assert maintenance_policy_of({}) is None
