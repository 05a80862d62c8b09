"""AsgRecycleOperator's renewal mode (``max_age_days``, what fleet_max_age runs) against the sandbox: only the
instances past the age are replaced, on the group's *current* launch template version; a moved template or
another rollout's lock skip the group; the dry run shows the plan."""

from __future__ import annotations

import pytest
import recycle_fleet as F
from airflow.sdk.exceptions import AirflowSkipException
from phoenix_fleet.rollout import RolloutRecord

from tests.helpers.airflow_run import make_context, run_task


def _age(sandbox, f, n: int, days: float = 20) -> list[str]:
    """Age the first `n` members (sorted by AZ, then id: us-east-1a first, where the surge's launches go first,
    so that no renewal here needs the final AZ balancing) by `days`; returns their ids."""
    members = sorted((i["AvailabilityZone"], i["InstanceId"]) for i in F.group(sandbox, f.asg)["Instances"])
    ids = sorted(iid for _, iid in members[:n])
    sandbox.age_instances(instance_ids=ids, days=days)
    return ids


def renewal(f, **kwargs):
    kwargs.setdefault("target_launch_template_version", None)
    kwargs.setdefault("max_age_days", 14)
    return F.operator(f, **kwargs)


def test_renewal_replaces_only_the_instances_past_max_age_on_the_same_image(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    old = _age(sandbox_clean, f, 2)
    young = sorted(set(F.fleet_images(sandbox_clean)) - set(old))
    op = renewal(f, policy={"batch_size": 1, "max_surge": 1})
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result

    assert result["outcome"] == "forward" and result["replaced"] == 2 and result["batches"] == 2
    assert result["from_image"] is None and result["to_image"] == f.old_ami  # renewed, not upgraded
    assert sorted(F.terminations(op.hook)) == old
    assert "launched since" in result["message"]
    # the group stays on its launch template version 1 (the new AMI's version 2 is never used)
    g = F.assert_converged(sandbox_clean, f, f.old_ami, 4)
    assert g["LaunchTemplate"]["Version"] == "1"
    assert not any(name == "set_launch_template" for name, _, _ in op.hook.actions)
    members = set(F.fleet_images(sandbox_clean))
    assert set(young) <= members and not set(old) & members


def test_renewal_record_carries_the_cutoff(sandbox_clean):
    """The cutoff is fixed in the group's tags at the start: a resumed task judges age exactly as the first."""
    f = F.build_fleet(sandbox_clean)
    _age(sandbox_clean, f, 1)
    op = renewal(f, max_batches=1, rollout_id="max-age/run-1")  # stop after one batch, lock held
    op.hook = F.scripted_hook()
    assert run_task(op, make_context()).result["outcome"] == "canary"
    tags = {t["Key"]: t["Value"] for t in F.group(sandbox_clean)["Tags"]}
    record = RolloutRecord.from_tags(tags)
    assert record is not None and record.replace_before is not None
    assert (record.started_at - record.replace_before).days == 14
    assert record.previous_image is None  # nothing to roll back to: a failure halts
    rest = renewal(f, rollout_id="max-age/run-1")
    rest.hook = F.scripted_hook()
    result = run_task(rest, make_context()).result
    assert result["outcome"] == "forward" and result["resumed"] is True
    F.assert_converged(sandbox_clean, f, f.old_ami, 4)


def test_nothing_past_max_age_replaces_nothing(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    _age(sandbox_clean, f, 4, days=10)  # 10 days old: within 14
    op = renewal(f)
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward" and result["replaced"] == 0 and not F.terminations(op.hook)
    F.assert_converged(sandbox_clean, f, f.old_ami, 4)


def test_a_moved_launch_template_skips_the_group(sandbox_clean):
    """fleet_max_age passes the image the report saw; if the template launches another one now, a rollout of
    it is due (and renews the instances): the renewal skips, without touching the group."""
    f = F.build_fleet(sandbox_clean)
    _age(sandbox_clean, f, 2)
    op = renewal(f, target_image_id=f.new_ami)
    op.hook = F.scripted_hook()
    with pytest.raises(AirflowSkipException, match=rf"launches {f.old_ami} now, not {f.new_ami}"):
        run_task(op, make_context())
    assert op.hook.actions == []
    # the image the template launches is accepted
    op = renewal(f, target_image_id=f.old_ami, dry_run=True)
    assert run_task(op, make_context()).result["outcome"] == "dry_run"


def test_if_locked_skip_leaves_another_rollout_alone(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    holder = F.operator(f, max_batches=1, rollout_id="release/run-1")
    holder.hook = F.scripted_hook()
    run_task(holder, make_context())
    op = renewal(f, if_locked="skip", rollout_id="max-age/run-1")
    op.hook = F.scripted_hook()
    with pytest.raises(AirflowSkipException, match="locked by rollout release/run-1.*if_locked=skip"):
        run_task(op, make_context())
    assert op.hook.actions == []
    with pytest.raises(ValueError, match="if_locked: 'wait' is not fail or skip"):
        renewal(f, if_locked="wait")


def test_renewal_dry_run_shows_the_plan(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    old = _age(sandbox_clean, f, 3)
    before = F.group(sandbox_clean)
    op = renewal(f, dry_run=True, policy={"batch_size": 2, "max_surge": 2})
    result = run_task(op, make_context()).result
    assert result["outcome"] == "dry_run" and result["batches"] == 2
    terminated = " ".join(line for line in result["plan"] if "terminate" in line)
    assert all(i in terminated for i in old)
    assert F.group(sandbox_clean) == before


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "400"])
def test_bad_max_age_names_the_field(sandbox_clean, bad):
    f = F.build_fleet(sandbox_clean)
    op = renewal(f, max_age_days=bad)
    with pytest.raises(ValueError, match="max_age_days: "):
        run_task(op, make_context())


def test_a_renewal_never_rolls_back_to_an_older_image(sandbox_clean):
    """The group's template moved to the new AMI but its instances still run the old one (drift): the renewal
    replaces them all onto the template's image, and records nothing to roll back to (a failure halts)."""
    f = F.build_fleet(sandbox_clean)
    sandbox_clean.client("autoscaling", region_name=F.REGION).update_auto_scaling_group(
        AutoScalingGroupName=f.asg, LaunchTemplate={"LaunchTemplateId": f.lt_id, "Version": "2"}
    )
    op = renewal(f, max_batches=1, rollout_id="max-age/run-1")
    op.hook = F.scripted_hook()
    assert run_task(op, make_context()).result["outcome"] == "canary"
    record = RolloutRecord.from_tags({t["Key"]: t["Value"] for t in F.group(sandbox_clean)["Tags"]})
    assert record is not None and record.target_image == f.new_ami
    assert record.previous_image is None and record.previous_lt is None


def _ssm_template(sandbox, f, parameter: str) -> None:
    """Version 3 of the group's template launches ``resolve:ssm:<parameter>``; the group is moved onto it and its
    instances replaced by it (the sandbox resolves the parameter at launch, as AWS does)."""
    ec2 = sandbox.client("ec2", region_name=F.REGION)
    autoscaling = sandbox.client("autoscaling", region_name=F.REGION)
    data = F.lt_data(f.old_ami)
    data["ImageId"] = f"resolve:ssm:{parameter}"
    ec2.create_launch_template_version(LaunchTemplateId=f.lt_id, LaunchTemplateData=data)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=f.asg,
                                          LaunchTemplate={"LaunchTemplateId": f.lt_id, "Version": "3"})


def test_renewal_on_a_resolve_ssm_template_resolves_the_parameter_once(sandbox_clean):
    """Issue 13 item 14: a launch template whose ImageId is ``resolve:ssm:/phoenix/web/ami`` launches the AMI the
    parameter holds. The renewal took that string for the target, so every instance (also its own launches)
    looked outdated, until the deadline. The parameter is resolved when the rollout begins (the record holds the
    AMI): exactly the old instances are replaced."""
    f = F.build_fleet(sandbox_clean)
    sandbox_clean.client("ssm", region_name=F.REGION).put_parameter(
        Name="/phoenix/web/ami", Value=f.old_ami, Type="String", DataType="aws:ec2:image")
    _ssm_template(sandbox_clean, f, "/phoenix/web/ami")
    old = _age(sandbox_clean, f, 2)
    op = renewal(f, policy={"batch_size": 1, "max_surge": 1, "deadline_minutes": 2})
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward" and result["to_image"] == f.old_ami
    assert sorted(F.terminations(op.hook)) == old  # only the two past max age, each once
    g = F.assert_converged(sandbox_clean, f, f.old_ami, 4)
    assert g["LaunchTemplate"]["Version"] == "3"


def test_renewal_on_an_unresolvable_resolve_ssm_template_is_refused_naming_the_field(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    _ssm_template(sandbox_clean, f, "/phoenix/web/missing")
    before = F.group(sandbox_clean)
    op = renewal(f)
    op.hook = F.scripted_hook()
    with pytest.raises(ValueError, match=r"max_age_days: the launch template of web \(.* version 3\) launches "
                                         r"resolve:ssm:/phoenix/web/missing, and that SSM parameter does not resolve"):
        run_task(op, make_context())
    assert op.hook.actions == [] and F.group(sandbox_clean) == before
