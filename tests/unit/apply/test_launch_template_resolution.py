"""Pure: which launch-template version an ASG launches from, mixed-instances overrides, launch configurations."""

from __future__ import annotations

import pytest
from phoenix_fleet.release.launch_templates import (
    AsgTemplateImage,
    LaunchTemplateCheckError,
    check_asg_images,
    resolve_version,
    template_refs,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("$Default", 3), ("$Latest", 5), (None, 3), ("", 3), ("4", 4), (2, 2)],
)
def test_resolve_version(spec, expected):
    assert resolve_version(spec, default_version=3, latest_version=5) == expected


def test_resolve_version_rejects_garbage():
    with pytest.raises(ValueError, match="not \\$Default, \\$Latest or a number"):
        resolve_version("latest", 1, 1)


def test_template_refs_cover_mixed_instances_overrides():
    asg = {
        "AutoScalingGroupName": "web-a",
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": "lt-1", "Version": "$Latest"},
                "Overrides": [
                    {"InstanceType": "t3.small"},
                    {"InstanceType": "m6g.large", "LaunchTemplateSpecification": {"LaunchTemplateName": "arm", "Version": "7"}},
                ],
            }
        },
    }
    refs, problems = template_refs(asg)
    assert problems == []
    assert [(r.template_id, r.template_name, r.spec_version, r.where) for r in refs] == [
        ("lt-1", None, "$Latest", "MixedInstancesPolicy"),
        (None, "arm", "7", "MixedInstancesPolicy.Overrides[1]"),
    ]


def test_launch_configurations_are_reported():
    refs, problems = template_refs({"AutoScalingGroupName": "old", "LaunchConfigurationName": "lc-1"})
    assert refs == [] and "old: uses launch configuration 'lc-1'" in problems[0]
    refs, problems = template_refs({"AutoScalingGroupName": "bare"})
    assert problems == ["bare: has no launch template"]


def test_check_and_error_name_the_groups():
    rows = [
        AsgTemplateImage("web-a", "lt-1", "web-a", "$Default", 2, "ami-new"),
        AsgTemplateImage("web-b", "lt-2", "web-b", "1", 1, "ami-old"),
        AsgTemplateImage("web-c", "lt-3", None, "$Latest", 4, None),
    ]
    bad = check_asg_images(rows, "ami-new")
    assert [r.asg_name for r in bad] == ["web-b", "web-c"]
    err = LaunchTemplateCheckError("ami-new", bad, ["old: uses launch configuration 'lc'. Fix: ..."])
    msg = str(err)
    assert msg.startswith("3 AutoScaling group(s) do not launch ami-new: old, web-b, web-c")
    assert "web-b: web-b version 1 (-> 1) launches ami-old" in msg
    assert "web-c: lt-3 version $Latest (-> 4) launches no image" in msg


def test_the_guard_passes_a_real_release_plan_and_still_sees_real_changes():
    """A real `terraform show -json` of the sandbox root after publish moved the web image: Terraform marks nested
    blocks in after_unknown with false/{}/[] placeholders and turns null into "" (capacity_reservation_preference);
    none of that is a change. A real extra change on top still is."""
    import copy
    import json
    from pathlib import Path

    from phoenix_fleet.release.plan_guard import PlanGuardError, guard_plan

    plan = json.loads((Path(__file__).parent / "release_plan_sandbox.json").read_text())
    summary = guard_plan(plan)
    assert sorted(summary.launch_templates) == [
        'module.service["web-a"].aws_launch_template.this',
        'module.service["web-b"].aws_launch_template.this',
    ]
    assert sorted(summary.asgs) == [
        'module.service["web-a"].aws_autoscaling_group.this',
        'module.service["web-b"].aws_autoscaling_group.this',
    ]
    tampered = copy.deepcopy(plan)
    lt = next(rc for rc in tampered["resource_changes"] if rc["type"] == "aws_launch_template")
    lt["change"]["after"]["instance_type"] = "m5.24xlarge"
    asg = next(rc for rc in tampered["resource_changes"] if rc["type"] == "aws_autoscaling_group")
    asg["change"]["after_unknown"]["target_group_arns"] = [True]
    with pytest.raises(PlanGuardError) as exc:
        guard_plan(tampered)
    assert "also changes ['instance_type']" in str(exc.value)
    assert "['target_group_arns']" in str(exc.value)


def test_the_guard_knows_the_role_and_the_release_ami_on_a_real_plan():
    """The real sandbox release plan (web moved to ami-81613e3d7f6f2ec9a) passes for web and that AMI. The same plan
    with worker's template moving too (what the sandbox root did when worker's pointer had moved: the web
    rollout's apply moved worker-a, skipping worker's canary and approval), or with web moved to another AMI (the
    root resolved `latest` at plan time, past the announced version), is refused, naming the address."""
    import copy
    import json
    from pathlib import Path

    from phoenix_fleet.release.plan_guard import PlanGuardError, check_plan, guard_plan

    plan = json.loads((Path(__file__).parent / "release_plan_sandbox.json").read_text())
    target = "ami-81613e3d7f6f2ec9a"
    summary = guard_plan(plan, role="web", image_id=target)
    assert len(summary.launch_templates) == 2 and len(summary.asgs) == 2

    with_worker = copy.deepcopy(plan)
    for rc in [r for r in plan["resource_changes"] if '["web-a"]' in r["address"]]:
        twin = json.loads(json.dumps(rc).replace('"web"', '"worker"').replace("web-a", "worker-a"))
        with_worker["resource_changes"].append(twin)
    with pytest.raises(PlanGuardError) as exc:
        guard_plan(with_worker, role="web", image_id=target)
    msg = str(exc.value)
    for resource in ("aws_launch_template.this", "aws_autoscaling_group.this"):
        assert f"module.service[\"worker-a\"].{resource}: belongs to role 'worker' (phoenix:role), not 'web'" in msg
    assert "web-a" not in msg.split("Fix:")[0].replace("worker-a", "")  # web's own changes pass
    assert guard_plan(with_worker).launch_templates  # without a role, as before, nothing tells them apart

    elsewhere = copy.deepcopy(plan)
    for rc in elsewhere["resource_changes"]:
        if rc["type"] == "aws_launch_template" and rc["change"]["actions"] == ["update"]:
            rc["change"]["after"]["image_id"] = "ami-0newer0000000000"
    bad = check_plan(elsewhere, role="web", image_id=target).violations
    assert [v.reason for v in bad] == ["would launch 'ami-0newer0000000000', not the release's ami-81613e3d7f6f2ec9a"] * 2
    unknown = copy.deepcopy(plan)
    lt = next(r for r in unknown["resource_changes"] if r["type"] == "aws_launch_template")
    lt["change"]["after_unknown"]["image_id"] = True
    assert "unknown until apply" in check_plan(unknown, role="web", image_id=target).violations[0].reason
    # an explicit allow_other_changes lets them through, listed as allowed
    allowed = check_plan(with_worker, allow_other_changes=True, role="web", image_id=target)
    assert not allowed.violations and {v.address for v in allowed.allowed} >= {'module.service["worker-a"].aws_launch_template.this'}
