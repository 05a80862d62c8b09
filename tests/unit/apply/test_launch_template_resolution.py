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
