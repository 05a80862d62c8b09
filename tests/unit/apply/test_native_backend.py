"""The native backend (launch-template versions without Terraform) and the post-apply check, against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from apply_helpers import asg, bake, fleet_config, group_spec, launch_template, publish_pointer
from phoenix_fleet.operators.apply_operators import (
    NativeLaunchTemplateUpdateOperator,
    VerifyAsgLaunchTemplatesOperator,
)
from phoenix_fleet.release.launch_templates import LaunchTemplateCheckError
from phoenix_fleet.release.publish_rules import PublishRefusedError

from tests.helpers.airflow_run import make_context, run_task

OLD, NEW = "2026.11.23-1", "2026.11.30-1"


@pytest.fixture
def fleet(sandbox_clean: Any, tmp_path: Any) -> dict[str, Any]:
    """Two templates, four groups: $Default, $Latest, pinned to 1 (sharing template a), and one on template b."""
    sb = sandbox_clean
    old = bake(sb, version=OLD)
    new = bake(sb, version=NEW)
    publish_pointer(sb, "worker", old, OLD)
    publish_pointer(sb, "worker", new, NEW)
    lt_a = launch_template(sb, "sandbox-worker-a", old)
    lt_b = launch_template(sb, "sandbox-worker-b", old)
    groups = {
        asg(sb, "worker-default", lt_a, "$Default"): lt_a,
        asg(sb, "worker-latest", lt_a, "$Latest"): lt_a,
        asg(sb, "worker-pinned", lt_a, "1"): lt_a,
        asg(sb, "worker-b", lt_b, "$Default"): lt_b,
    }
    asg(sb, "web-other-role", launch_template(sb, "sandbox-web-a", old), "$Default", role="web")
    return {"sb": sb, "old": old, "new": new, "lt_a": lt_a, "lt_b": lt_b, "groups": groups, "cfg": fleet_config(tmp_path)}


def lt_state(sb: Any, lt_id: str, region: str | None = None) -> tuple[int, int, str]:
    ec2 = sb.client("ec2", region_name=region)
    lt = ec2.describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"][0]
    default = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=[str(lt["DefaultVersionNumber"])])
    return lt["DefaultVersionNumber"], lt["LatestVersionNumber"], default["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"]


def test_native_backend_moves_the_templates_and_the_groups_follow(fleet):
    sb, new = fleet["sb"], fleet["new"]
    op = NativeLaunchTemplateUpdateOperator(task_id="native", role="worker", config_path=fleet["cfg"])
    result = run_task(op, make_context()).result  # image: the role's latest pointer
    assert result["image_id"] == new
    assert sorted((t["name"], t["from_version"], t["version"], t["changed"]) for t in result["launch_templates"]) == [
        ("sandbox-worker-a", 1, 2, True),
        ("sandbox-worker-b", 1, 2, True),
    ]
    assert result["moved_asgs"] == ["worker-pinned"]
    assert sorted({a["asg_name"] for a in result["asgs"]}) == sorted(fleet["groups"])
    for lt_id in (fleet["lt_a"], fleet["lt_b"]):
        assert lt_state(sb, lt_id) == (2, 2, new)
    # the new version is the old one with only the image changed
    data = sb.client("ec2").describe_launch_template_versions(LaunchTemplateId=fleet["lt_a"], Versions=["2"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["InstanceType"] == "t3.small" and data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["TagSpecifications"][0]["Tags"] == [{"Key": "app", "Value": "sandbox-worker-a"}]
    # the web role's template is untouched
    web = sb.client("ec2").describe_launch_templates(LaunchTemplateNames=["sandbox-web-a"])["LaunchTemplates"][0]
    assert web["LatestVersionNumber"] == 1

    # the groups follow: a replacement launched now runs the new image
    autoscaling, ec2 = sb.client("autoscaling"), sb.client("ec2")
    for name in fleet["groups"]:
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        victim = group["Instances"][0]["InstanceId"]
        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        fresh = [i["InstanceId"] for i in group["Instances"] if i["InstanceId"] != victim]
        images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=fresh)["Reservations"] for i in r["Instances"]}
        assert images == {new}, name

    # idempotent: a second run creates nothing
    again = run_task(
        NativeLaunchTemplateUpdateOperator(task_id="native", role="worker", config_path=fleet["cfg"]), make_context()
    ).result
    assert [t["changed"] for t in again["launch_templates"]] == [False, False] and again["moved_asgs"] == []
    for lt_id in (fleet["lt_a"], fleet["lt_b"]):
        assert lt_state(sb, lt_id) == (2, 2, new)

    # and the check passes on its own too
    check = run_task(
        VerifyAsgLaunchTemplatesOperator(task_id="verify", role="worker", config_path=fleet["cfg"]), make_context()
    ).result
    assert {a["image_id"] for a in check["asgs"]} == {new}
    pinned = next(a for a in check["asgs"] if a["asg_name"] == "worker-pinned")
    assert (pinned["version"], pinned["resolved_version"]) == ("2", 2)


def test_the_check_fails_naming_the_groups_that_stay_behind(fleet):
    op = NativeLaunchTemplateUpdateOperator(
        task_id="native", role="worker", config_path=fleet["cfg"], move_pinned_asgs=False
    )
    with pytest.raises(LaunchTemplateCheckError) as exc:
        run_task(op, make_context())
    msg = str(exc.value)
    assert f"1 AutoScaling group(s) do not launch {fleet['new']}: worker-pinned" in msg
    assert f"worker-pinned: sandbox-worker-a version 1 (-> 1) launches {fleet['old']}" in msg
    assert "Fix:" in msg

    verify = VerifyAsgLaunchTemplatesOperator(task_id="verify", role="worker", config_path=fleet["cfg"])
    with pytest.raises(LaunchTemplateCheckError, match="worker-pinned"):
        run_task(verify, make_context())
    # expecting the old version instead: the $Default/$Latest groups are the ones behind now
    verify_old = VerifyAsgLaunchTemplatesOperator(task_id="v", role="worker", version=OLD, config_path=fleet["cfg"])
    with pytest.raises(LaunchTemplateCheckError) as exc:
        run_task(verify_old, make_context())
    assert "3 AutoScaling group(s)" in str(exc.value)
    for name in ("worker-default", "worker-latest", "worker-b"):
        assert name in str(exc.value)


def test_an_interrupted_run_is_finished_without_a_second_version(fleet):
    sb, new, lt_a = fleet["sb"], fleet["new"], fleet["lt_a"]
    # a previous try created version 2 with the new image and died before making it the default
    sb.client("ec2").create_launch_template_version(LaunchTemplateId=lt_a, SourceVersion="1", LaunchTemplateData={"ImageId": new})
    assert lt_state(sb, lt_a) == (1, 2, fleet["old"])
    result = run_task(
        NativeLaunchTemplateUpdateOperator(task_id="native", role="worker", config_path=fleet["cfg"]), make_context()
    ).result
    entry = next(t for t in result["launch_templates"] if t["id"] == lt_a)
    assert (entry["version"], entry["changed"]) == (2, True)
    assert lt_state(sb, lt_a) == (2, 2, new)


def test_a_dry_run_logs_every_change_and_makes_none(fleet, capsys):
    sb, new, old = fleet["sb"], fleet["new"], fleet["old"]
    op = NativeLaunchTemplateUpdateOperator(task_id="native", role="worker", config_path=fleet["cfg"], dry_run="true")
    result = run_task(op, make_context()).result
    logged = capsys.readouterr().out
    assert result["dry_run"] is True and result["image_id"] == new
    assert sorted((t["name"], t["version"], t["changed"]) for t in result["launch_templates"]) == [
        ("sandbox-worker-a", None, True),
        ("sandbox-worker-b", None, True),
    ]
    assert result["moved_asgs"] == ["worker-pinned"] and result["asgs"] == []
    for lt_id in (fleet["lt_a"], fleet["lt_b"]):
        assert lt_state(sb, lt_id) == (1, 1, old)
    pinned = sb.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["worker-pinned"])
    assert pinned["AutoScalingGroups"][0]["LaunchTemplate"]["Version"] == "1"
    assert "sandbox-worker-a: dry run: would make a version from 1 that launches" in logged
    assert "worker-pinned: dry run: would move pinned version 1 -> <new>" in logged
    # the check has nothing to verify after a dry run: it skips (a real check would fail: nothing moved)
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="dry run"):
        run_task(VerifyAsgLaunchTemplatesOperator(task_id="v", role="worker", config_path=fleet["cfg"], dry_run=True),
                 make_context())


def test_a_dry_run_still_refuses_an_unverified_image(fleet):
    sb = fleet["sb"]
    sb.client("ec2").create_tags(Resources=[fleet["new"]], Tags=[{"Key": "phoenix:verified", "Value": "false"}])
    with pytest.raises(PublishRefusedError):
        run_task(NativeLaunchTemplateUpdateOperator(task_id="n", role="worker", config_path=fleet["cfg"], dry_run=True),
                 make_context())


def test_a_published_version_can_be_applied_by_label(fleet):
    op = NativeLaunchTemplateUpdateOperator(task_id="n", role="worker", version=OLD, config_path=fleet["cfg"])
    result = run_task(op, make_context()).result
    assert result["image_id"] == fleet["old"]
    assert all(not t["changed"] for t in result["launch_templates"])  # they already launch it
    with pytest.raises(ValueError, match="2020.01.01-1 was never published"):
        run_task(
            NativeLaunchTemplateUpdateOperator(task_id="n", role="worker", version="2020.01.01-1", config_path=fleet["cfg"]),
            make_context(),
        )


def test_an_unverified_image_is_never_applied(fleet):
    sb = fleet["sb"]
    bad = bake(sb, version="2026.11.30-2", verified="false")
    op = NativeLaunchTemplateUpdateOperator(task_id="n", role="worker", image_id=bad, config_path=fleet["cfg"])
    with pytest.raises(PublishRefusedError, match="not verified"):
        run_task(op, make_context())
    assert lt_state(sb, fleet["lt_a"]) == (1, 1, fleet["old"])


def test_no_matching_group_is_an_error(sandbox_clean, tmp_path):
    ami = bake(sandbox_clean, version=NEW)
    cfg = fleet_config(tmp_path)
    with pytest.raises(LaunchTemplateCheckError, match="no AutoScaling group matches"):
        run_task(VerifyAsgLaunchTemplatesOperator(task_id="v", role="worker", image_id=ami, config_path=cfg), make_context())
    res = run_task(
        VerifyAsgLaunchTemplatesOperator(task_id="v", role="worker", image_id=ami, config_path=cfg, allow_empty=True),
        make_context(),
    ).result
    assert res["asgs"] == []


def test_template_fields():
    for cls in (NativeLaunchTemplateUpdateOperator, VerifyAsgLaunchTemplatesOperator):
        assert set(cls.template_fields) >= {"role", "image_id", "version", "asg_names", "aws_conn_id", "region_name",
                                            "dry_run"}
        op = cls(task_id="x", role="worker")
        assert op.aws_conn_id == "aws_default" and op.region_name is None


def test_a_group_locked_by_another_rollout_stops_the_native_apply_before_anything_changes(fleet):
    """Another rollout (a canary, a renewal) holds worker-pinned: moving the templates now would re-pin that group,
    and its holder's instances and target would be on the old image while any scale-out launches the new one. The
    apply fails naming the holder and the fix; no template version is made, no default moves, no group moves."""
    from airflow.sdk.exceptions import AirflowFailException
    from apply_helpers import group_spec, lock

    sb, old, new = fleet["sb"], fleet["old"], fleet["new"]
    lock(sb, "worker-pinned", "fleet_max_age/renew-night-1", target=old, previous=old)
    before = {lt: lt_state(sb, lt) for lt in (fleet["lt_a"], fleet["lt_b"])}
    specs = {name: group_spec(sb, name) for name in fleet["groups"]}
    op = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=fleet["cfg"],
                                            rollout_id="fleet_rollout_worker:manual__2")
    with pytest.raises(AirflowFailException) as err:
        run_task(op, make_context())
    message = str(err.value)
    assert "worker-pinned (us-east-1) is locked by rollout fleet_max_age/renew-night-1" in message
    assert "Nothing was changed" in message and "Fix: " in message
    assert {lt: lt_state(sb, lt) for lt in before} == before
    assert {name: group_spec(sb, name) for name in fleet["groups"]} == specs
    # the holder itself (a retry of its own run) may apply
    mine = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=fleet["cfg"],
                                              rollout_id="fleet_max_age/renew-night-1")
    assert run_task(mine, make_context()).result["image_id"] == new


# ------------------------------------------------------------------------------------ a role in several regions

EU = "eu-west-1"
REGIONS = ("us-east-1", EU)  # the home region first (apply_helpers.REGION)


@pytest.fixture
def two_regions(sandbox_clean: Any, tmp_path: Any) -> dict[str, Any]:
    """The worker role in us-east-1 (home) and eu-west-1, native backend: in each region its own old and new AMI
    (AMI ids differ per region, as copies do), one template, groups on $Default, $Latest and pinned to 1."""
    sb = sandbox_clean
    out: dict[str, Any] = {"sb": sb, "cfg": fleet_config(tmp_path, regions=list(REGIONS))}
    for region in REGIONS:
        old, new = bake(sb, version=OLD, region=region), bake(sb, version=NEW, region=region)
        lt = launch_template(sb, f"sandbox-worker-{region}", old, region=region)
        names = [asg(sb, f"worker-{region}-{kind}", lt, version, region=region)
                 for kind, version in (("default", "$Default"), ("latest", "$Latest"), ("pinned", "1"))]
        out[region] = {"old": old, "new": new, "lt": lt, "groups": names}
    out["amis"] = {r: out[r]["new"] for r in REGIONS}
    return out


def launches_now(sb: Any, name: str, region: str) -> str:
    """The image a replacement launched now runs, seen through the AWS API of the group's region."""
    autoscaling, ec2 = sb.client("autoscaling", region_name=region), sb.client("ec2", region_name=region)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    victim = group["Instances"][0]["InstanceId"]
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    fresh = [i["InstanceId"] for i in group["Instances"] if i["InstanceId"] != victim]
    (image,) = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=fresh)["Reservations"] for i in r["Instances"]}
    return str(image)


def _world(t: dict[str, Any]) -> dict[str, Any]:
    sb = t["sb"]
    return {r: (lt_state(sb, t[r]["lt"], r), [group_spec(sb, n, r) for n in t[r]["groups"]]) for r in REGIONS}


def test_a_two_region_role_moves_every_region_to_its_own_ami(two_regions: dict[str, Any]) -> None:
    """release_images (the rollout plan's amis): every region's templates move to that region's AMI, pins_before
    records every region, and restore_launch_templates' restore puts back groups of every region."""
    from phoenix_fleet.pipelines.template_restore import restore_unrolled_groups

    t, sb = two_regions, two_regions["sb"]
    ctx = make_context()
    op = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=t["cfg"],
                                            release_images=t["amis"], rollout_id="fleet_rollout_worker:r1")
    result = run_task(op, ctx).result
    assert result["image_id"] == t["amis"]["us-east-1"] and result["region"] == "us-east-1"
    assert {r: v["image_id"] for r, v in result["regions"].items()} == t["amis"]
    for region in REGIONS:
        assert lt_state(sb, t[region]["lt"], region) == (2, 2, t[region]["new"]), region
        assert result["regions"][region]["moved_asgs"] == [f"worker-{region}-pinned"]
        assert {a["image_id"] for a in result["regions"][region]["asgs"]} == {t[region]["new"]}
        # from outside: a replacement launched now in the region runs the region's own release AMI
        assert launches_now(sb, f"worker-{region}-default", region) == t[region]["new"]
    pins = ctx["ti"].xcom["pins_before"]
    assert {r: sorted(p) for r, p in pins.items()} == {r: sorted(t[r]["groups"]) for r in REGIONS}
    assert {(r, p["number"], p["image_id"]) for r in REGIONS for p in pins[r].values()} == {
        (r, 1, t[r]["old"]) for r in REGIONS}

    # the teardown of a run that ended before rolling the others: in both regions, the groups that never rolled
    # point back to version 1 (the old image); the $Default ones, whose instance runs the release, are kept
    targets = [{"asg_name": n, "region_name": r, "target_image_id": t["amis"][r]} for r in REGIONS for n in t[r]["groups"]]
    restored = restore_unrolled_groups(targets, pins, aws_conn_id="aws_default")
    assert sorted((x["region"], x["asg"]) for x in restored["restored"]) == sorted(
        (r, n) for r in REGIONS for n in t[r]["groups"] if not n.endswith("-default"))
    assert sorted((x["region"], x["asg"]) for x in restored["left"]) == [(r, f"worker-{r}-default") for r in sorted(REGIONS)]
    for region in REGIONS:
        for name in (f"worker-{region}-latest", f"worker-{region}-pinned"):
            assert group_spec(sb, name, region)["Version"] == "1", name
            assert launches_now(sb, name, region) == t[region]["old"], name


def test_a_second_region_refused_before_any_change_leaves_the_first_untouched(two_regions: dict[str, Any]) -> None:
    """eu-west-1's AMI is not verified: refused while reading, before the home region changes anything."""
    t, sb = two_regions, two_regions["sb"]
    unverified = bake(sb, version=NEW, verified="false", region=EU)
    before = _world(t)
    op = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=t["cfg"],
                                            release_images={**t["amis"], EU: unverified})
    ctx = make_context()
    with pytest.raises(PublishRefusedError, match="verified"):
        run_task(op, ctx)
    assert _world(t) == before and "pins_before" not in ctx["ti"].xcom


def test_a_write_refused_in_the_second_region_puts_the_first_back(two_regions: dict[str, Any]) -> None:
    """eu-west-1 refuses CreateLaunchTemplateVersion after us-east-1 has moved: apply puts us-east-1 back (its
    default version and its pinned group as they were, $Latest launching the old image again) and fails naming the
    region; no group of either region launches the release."""
    t, sb = two_regions, two_regions["sb"]
    before = _world(t)
    sb.update_config(api_faults=[{
        "service": "ec2", "action": "CreateLaunchTemplateVersion", "region": EU,
        "code": "UnauthorizedOperation", "message": "You are not authorized to perform this operation.",
    }])
    op = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=t["cfg"],
                                            release_images=t["amis"])
    with pytest.raises(Exception, match="UnauthorizedOperation") as err:
        run_task(op, make_context())
    assert "put back" in str(err.value) and "us-east-1" in str(err.value)
    sb.update_config(api_faults=[])
    after = _world(t)
    assert after[EU] == before[EU]
    default, _latest, image = after["us-east-1"][0]
    assert (default, image) == (1, t["us-east-1"]["old"])
    assert after["us-east-1"][1] == before["us-east-1"][1]  # the groups' own references (pinned: 1)
    for region in REGIONS:
        for name in t[region]["groups"]:
            assert launches_now(sb, name, region) == t[region]["old"], name
