"""The plan guard on crafted `terraform show -json` documents (the real-Terraform test is in tests/e2e)."""

import pytest
from phoenix_fleet.release.plan_guard import PlanGuardError, check_plan, guard_plan


def rc(address, rtype, actions, before=None, after=None, unknown=None, mode="managed", replace_paths=None):
    change = {"actions": actions, "before": before, "after": after, "after_unknown": unknown or {}}
    if replace_paths:
        change["replace_paths"] = replace_paths
    return {"address": address, "type": rtype, "mode": mode, "change": change}


LT_BEFORE = {"image_id": "ami-old", "latest_version": 1, "default_version": 1, "name": "web-a", "instance_type": "t3.small"}
LT_AFTER = {**LT_BEFORE, "image_id": "ami-new", "default_version": 2}
ASG_BEFORE = {"name": "web-a", "max_size": 4, "launch_template": [{"id": "lt-1", "name": "", "version": "1"}]}
ASG_AFTER_UNKNOWN_VERSION = {"launch_template": [{"version": True}]}


def release_plan(*extra):
    return {
        "resource_changes": [
            rc("data.aws_ssm_parameter.ami", "aws_ssm_parameter", ["read"], mode="data"),
            rc("module.web_a.aws_launch_template.this", "aws_launch_template", ["update"], LT_BEFORE, LT_AFTER,
               {"latest_version": True}),
            rc("module.web_a.aws_autoscaling_group.this", "aws_autoscaling_group", ["update"], ASG_BEFORE,
               {**ASG_BEFORE, "launch_template": [{"id": "lt-1", "name": "", "version": None}]},
               ASG_AFTER_UNKNOWN_VERSION),
            rc("module.web_a.aws_lb_target_group.this", "aws_lb_target_group", ["no-op"], {}, {}),
            *extra,
        ]
    }


def test_release_plan_passes():
    s = guard_plan(release_plan())
    assert s.launch_templates == ("module.web_a.aws_launch_template.this",)
    assert s.asgs == ("module.web_a.aws_autoscaling_group.this",)
    assert s.has_changes


def test_empty_plan_is_no_change():
    assert not check_plan({"resource_changes": []}).has_changes
    assert not check_plan({}).has_changes


def test_destroy_and_replace_are_refused_with_addresses():
    plan = release_plan(
        rc("module.web_b.aws_autoscaling_group.this", "aws_autoscaling_group", ["delete"], ASG_BEFORE, None),
        rc("module.web_a.aws_lb.this", "aws_lb", ["delete", "create"], {"name": "a"}, {"name": "b"},
           replace_paths=[["name"]]),
    )
    with pytest.raises(PlanGuardError) as exc:
        guard_plan(plan)
    msg = str(exc.value)
    assert "module.web_b.aws_autoscaling_group.this: would destroy" in msg
    assert "module.web_a.aws_lb.this: would replace (delete/create), forced by [['name']]" in msg
    assert "Fix:" in msg
    # explicitly allowed
    assert not check_plan(plan, allow_destroy=True).violations


def test_create_before_destroy_replacement_is_refused():
    plan = release_plan(rc("aws_launch_template.x", "aws_launch_template", ["create", "delete"], LT_BEFORE, LT_AFTER))
    assert [v.address for v in check_plan(plan).violations] == ["aws_launch_template.x"]


def test_unexpected_create_and_other_updates_are_refused():
    plan = release_plan(
        rc("aws_security_group.new", "aws_security_group", ["create"], None, {"name": "x"}),
        rc("aws_lb_target_group.tg", "aws_lb_target_group", ["update"], {"port": 80}, {"port": 8080}),
    )
    v = {x.address: x.reason for x in check_plan(plan).violations}
    assert v == {
        "aws_security_group.new": "would create a new resource",
        "aws_lb_target_group.tg": "would update a aws_lb_target_group (['port'])",
    }
    assert not check_plan(plan, allow_other_changes=True).violations


def test_launch_template_update_beyond_image_is_refused():
    after = {**LT_AFTER, "instance_type": "t3.large"}
    plan = {"resource_changes": [rc("aws_launch_template.w", "aws_launch_template", ["update"], LT_BEFORE, after)]}
    (v,) = check_plan(plan).violations
    assert v.address == "aws_launch_template.w" and "instance_type" in v.reason


def test_asg_update_beyond_lt_version_is_refused():
    after = {**ASG_BEFORE, "max_size": 10, "launch_template": [{"id": "lt-2", "name": "", "version": "2"}]}
    plan = {"resource_changes": [rc("aws_autoscaling_group.w", "aws_autoscaling_group", ["update"], ASG_BEFORE, after)]}
    (v,) = check_plan(plan).violations
    assert "max_size" in v.reason and "launch_template.id" in v.reason


def test_a_resource_without_a_role_tag_is_not_the_roles():
    plan = release_plan()  # crafted resources carry no tags
    v = check_plan(plan, role="web").violations
    assert {x.address for x in v} == {"module.web_a.aws_launch_template.this", "module.web_a.aws_autoscaling_group.this"}
    assert all("carries no phoenix:role tag, so it cannot be web's" in x.reason for x in v)
    tags = {"tags": {"phoenix:role": "web"}}
    ok = {"resource_changes": [rc("m.lt", "aws_launch_template", ["update"], {**LT_BEFORE, **tags}, {**LT_AFTER, **tags})]}
    assert not check_plan(ok, role="web", image_id="ami-new").violations
    assert check_plan(ok, role="web", image_id="ami-other").violations[0].reason == (
        "would launch 'ami-new', not the release's ami-other"
    )
