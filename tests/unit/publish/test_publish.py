"""Publish against the sandbox: versions, immutability, region copies, sharing, the SSM release log, the asset event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    ReleaseImageOperator,
    image_asset,
)
from phoenix_fleet.release.publish_rules import PublishRefusedError, VersionConflictError
from publish_helpers import (
    ACCOUNTS,
    BUCKET,
    HOME,
    OTHER,
    bake,
    fleet_config,
    make_bucket,
    outlet_context,
    today,
    upload_packages,
)

from tests.helpers.airflow_run import run_task

POLL = 0.05

OLD_PACKAGES = "openssl\t3.0.11-1~deb12u1\nnginx\t1.22.1-9\nvim-tiny\t2:9.0.1378-2\ntelnet\t0.17+2.4-2\n"
NEW_PACKAGES = (
    "openssl\t3.0.15-1~deb12u1\nnginx\t1.22.1-9+deb12u1\nvim-tiny\t2:9.0.1378-2+deb12u2\n"
    "unattended-upgrades\t2.9.1+nmu3\n"
)


def publish(
    cfg: str, ami: str, version: str | None = None, regions=(HOME, OTHER), run_id: str = "manual__test",
    operator_notes: str | None = None, **publish_kw
) -> dict[str, Any]:
    """The three publish tasks of a release DAG (run ``run_id``), in order, through their deferrals."""
    ctx = outlet_context(run_id=run_id)
    release = ReleaseImageOperator(
        task_id="release", role="web", ami_id=ami, version=version, config_path=cfg, operator_notes=operator_notes
    )
    rel = run_task(release, ctx).result
    copies = []
    deferrals = []
    for region in regions:
        op = CopyImageToRegionOperator(
            task_id=f"copy_{region}",
            ami_id=rel["ami_id"],
            source_region=rel["region"],
            dest_region=region,
            poll_interval=POLL,
            timeout=60,
        )
        rec = run_task(op, outlet_context())
        copies.append(rec.result)
        deferrals += rec.deferrals
    op = PublishReleaseOperator(
        task_id="publish", role="web", release=rel, copies=copies, config_path=cfg, **publish_kw
    )
    result = run_task(op, ctx).result
    event = ctx["outlet_events"][image_asset("web")]
    return {"release": rel, "copies": copies, "result": result, "extra": event.extra, "deferrals": deferrals, "ctx": ctx}


def history(sandbox: Any, name: str, region: str = HOME) -> list[tuple[str, list[str]]]:
    ssm = sandbox.client("ssm", region)
    hist = ssm.get_parameter_history(Name=name)["Parameters"]
    return [(h["Value"], h.get("Labels", [])) for h in sorted(hist, key=lambda h: h["Version"])]


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_three_releases_grow_never_repeat_and_are_logged(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    cfg = fleet_config(tmp_path)
    s3 = make_bucket(sandbox)
    v1, v2, v3 = today(1), today(2), today(3)

    # release 1: bake tagged the version and uploaded the package list
    ami1 = bake(sandbox, version=v1)
    upload_packages(s3, "web", v1, OLD_PACKAGES)
    one = publish(cfg, ami1)
    assert one["release"]["version"] == v1 and one["release"]["version_source"] == "image tag"
    assert one["release"]["previous_version"] is None
    assert one["extra"]["version"] == v1
    assert "First release" in one["extra"]["release_notes"]["notes"][0]

    # release 2: the package diff against release 1 goes into S3, the log and the asset event, and so do the
    # operator's notes (verbatim: shell text and Markdown are text; longer than the bounded places hold)
    ami2 = bake(sandbox, version=v2)
    upload_packages(s3, "web", v2, NEW_PACKAGES)
    operator_notes = "CVE-2024-5535: openssl.\n```\n$(rm -rf /) ~~~ `x`\n```\n" + "details " * 200
    two = publish(cfg, ami2, operator_notes=operator_notes)
    extra = two["extra"]
    assert extra["version"] == v2 and extra["previous_version"] == v1
    assert extra["ami_id"] == ami2
    assert set(extra["amis"]) == {HOME, OTHER} and extra["amis"][HOME] == ami2 and extra["amis"][OTHER] != ami2
    notes = extra["release_notes"]
    assert notes["counts"] == {"upgraded": 3, "downgraded": 0, "added": 1, "removed": 1}
    assert {"name": "vim-tiny", "old": "2:9.0.1378-2", "new": "2:9.0.1378-2+deb12u2"} in notes["upgraded"]
    assert notes["removed"] == [{"name": "telnet", "version": "0.17+2.4-2"}]
    assert extra["release_notes_uri"] == f"s3://{BUCKET}/images/web/{v2}/release-notes.md"
    json.dumps(extra)  # the asset event's extra must be JSON
    md = s3.get_object(Bucket=BUCKET, Key=f"images/web/{v2}/release-notes.md")["Body"].read().decode()
    assert f"web {v2} (since {v1})" in md and "- telnet 0.17+2.4-2" in md and "openssl: 3.0.11-1~deb12u1 -> 3.0.15-1~deb12u1" in md
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=f"images/web/{v2}/release-notes.json")["Body"].read())
    assert stored["previous_version"] == v1 and stored["diff"]["added"] == [{"name": "unattended-upgrades", "version": "2.9.1+nmu3"}]
    # the operator's notes: whole in S3 (the Markdown fences them so that their own fences stay text), clipped with
    # a pointer to S3 in the asset event and in the release log entry of every region
    assert stored["operator_notes"] == operator_notes.strip()
    assert "## Operator's notes\n\n~~~~\n" + operator_notes.strip() + "\n~~~~\n" in md
    assert len(operator_notes) > 1000 and extra["operator_notes"].startswith("CVE-2024-5535: openssl.\n```\n$(rm")
    assert len(extra["operator_notes"]) == 1000 and "more characters in the release notes in S3]" in extra["operator_notes"]
    assert two["release"]["operator_notes"] == extra["operator_notes"]
    for region in (HOME, OTHER):
        for name in ("/phoenix/images/web/latest", "/phoenix/images/web/latest-version"):
            entry = [h for h in sandbox.client("ssm", region).get_parameter_history(Name=name)["Parameters"]
                     if f"v{v2}" in h.get("Labels", [])]
            assert len(entry) == 1 and "Operator's notes: CVE-2024-5535: openssl." in entry[0]["Description"], entry
            assert len(entry[0]["Description"]) <= 1024
    assert "operator_notes" not in one["extra"]["release_notes"] and one["extra"]["operator_notes"] == ""

    # release 3: no version tag on the image, none given: the next free one today
    ami3 = bake(sandbox, version=None)
    three = publish(cfg, ami3)
    assert three["release"]["version"] == v3 and three["release"]["version_source"] == "next free"
    assert any("does not exist" in n for n in three["extra"]["release_notes"]["notes"])  # no package list: said, not failed

    # the release log, in every region: one labelled parameter version per release
    for region in (HOME, OTHER):
        amis = {r["extra"]["version"]: r["extra"]["amis"][region] for r in (one, two, three)}
        assert history(sandbox, "/phoenix/images/web/latest", region) == [
            (amis[v1], [f"v{v1}"]),
            (amis[v2], [f"v{v2}"]),
            (amis[v3], [f"v{v3}"]),
        ]
        assert history(sandbox, "/phoenix/images/web/latest-version", region) == [
            (v1, [f"v{v1}"]),
            (v2, [f"v{v2}"]),
            (v3, [f"v{v3}"]),
        ]
        param = sandbox.client("ssm", region).get_parameter(Name="/phoenix/images/web/latest")["Parameter"]
        assert param["DataType"] == "aws:ec2:image" and param["Value"] == amis[v3]
        # the label resolves a version to its AMI (what a rollback reads)
        by_label = sandbox.client("ssm", region).get_parameter(Name=f"/phoenix/images/web/latest:v{v1}")["Parameter"]
        assert by_label["Value"] == amis[v1]

    # a version is never reassigned: another AMI under v2 is refused, naming the holder
    ami4 = bake(sandbox, version=None)
    with pytest.raises(VersionConflictError, match=rf"version {v2} is already taken by another AMI.*{ami2}"):
        run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=ami4, version=v2, config_path=cfg), outlet_context())
    # ... and an older version than the latest is refused too (it would move latest backwards)
    ami5 = bake(sandbox, version=None)
    with pytest.raises(VersionConflictError, match="backwards"):
        run_task(
            ReleaseImageOperator(task_id="r", role="web", ami_id=ami5, version="2020.01.01-1", config_path=cfg),
            outlet_context(),
        )
    # the refused AMIs were not tagged with the version
    ec2 = sandbox.client("ec2")
    assert "phoenix:version" not in tags(ec2.describe_images(ImageIds=[ami4])["Images"][0])


def test_republishing_the_same_version_and_ami_is_a_no_op(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    ami = bake(sandbox, version=today(1))
    first = publish(cfg, ami)
    assert first["extra"]["already_published"] is False
    assert any(c["copied"] for c in first["copies"])
    again = publish(cfg, ami, version=today(1), run_id="manual__again")  # e.g. the DAG was triggered again
    assert again["release"]["already_published"] is True
    assert again["extra"]["already_published"] is True
    assert again["extra"]["amis"] == first["extra"]["amis"]  # the existing copy was found, not copied again
    assert not any(c["copied"] for c in again["copies"])
    assert again["extra"]["published_at"] == first["extra"]["published_at"]
    for region in (HOME, OTHER):
        assert len(history(sandbox, "/phoenix/images/web/latest", region)) == 1
        assert len(history(sandbox, "/phoenix/images/web/latest-version", region)) == 1
    eu = sandbox.client("ec2", OTHER)
    copies = eu.describe_images(Owners=["self"], Filters=[{"Name": "tag:phoenix:copy-of", "Values": [ami]}])["Images"]
    assert len(copies) == 1


def test_region_copies_are_tagged_shared_and_waited_for(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    sandbox.update_config(image_build={"describes": 3})  # the copy pends: the task must defer and come back
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    v = today(1)
    ami = bake(sandbox, version=v)
    out = publish(cfg, ami)
    assert [d["trigger"] for d in out["deferrals"]] == ["CopiedImageAvailableTrigger"]
    assert out["deferrals"][0]["timeout"] is not None
    copy_id = out["extra"]["amis"][OTHER]

    eu = sandbox.client("ec2", OTHER)
    copy = eu.describe_images(ImageIds=[copy_id])["Images"][0]
    assert copy["State"] == "available" and copy["OwnerId"] == "123456789012"
    copy_tags = tags(copy)
    assert {
        "phoenix:role": "web",
        "phoenix:version": v,
        "phoenix:verified": "true",
        "phoenix:copy-of": ami,
        "phoenix:source-region": HOME,
    }.items() <= copy_tags.items()
    assert "phoenix:published-at" in copy_tags
    snapshots = [b["Ebs"]["SnapshotId"] for b in copy["BlockDeviceMappings"] if "Ebs" in b]
    assert snapshots
    for snap in eu.describe_snapshots(SnapshotIds=snapshots)["Snapshots"]:
        assert {"phoenix:version": v, "phoenix:role": "web", "phoenix:copy-of": ami}.items() <= tags(snap).items()

    # sharing is recorded in every region: launch permission and the snapshots' createVolumePermission
    for region, image_id in out["extra"]["amis"].items():
        ec2 = sandbox.client("ec2", region)
        launch = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
        assert sorted(p["UserId"] for p in launch) == ACCOUNTS
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        for bdm in image["BlockDeviceMappings"]:
            perms = ec2.describe_snapshot_attribute(
                SnapshotId=bdm["Ebs"]["SnapshotId"], Attribute="createVolumePermission"
            )["CreateVolumePermissions"]
            assert sorted(p["UserId"] for p in perms) == ACCOUNTS
        # home image and its snapshots carry the release tags too
        assert {"phoenix:version": v, "phoenix:role": "web"}.items() <= tags(image).items()
    assert out["result"]["shared_with"] == ACCOUNTS


def test_copy_finds_an_untagged_copy_and_replaces_a_failed_one(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    ami = bake(sandbox, version=today(1), name="phoenix-web-copytest")
    eu = sandbox.client("ec2", OTHER)
    # a copy started by an earlier try that died before tagging: found by name and description marker
    orphan = eu.copy_image(
        SourceImageId=ami,
        SourceRegion=HOME,
        Name="phoenix-web-copytest",
        Description=f"phoenix-fleet web image [phoenix-fleet copy of {ami} from {HOME}]",
    )["ImageId"]
    op = CopyImageToRegionOperator(task_id="c", ami_id=ami, source_region=HOME, dest_region=OTHER, poll_interval=POLL)
    res = run_task(op, outlet_context()).result
    assert res["ami_id"] == orphan and res["copied"] is False
    assert tags(eu.describe_images(ImageIds=[orphan])["Images"][0])["phoenix:copy-of"] == ami

    # a foreign image with the same name in the destination is not adopted
    ami_b = bake(sandbox, version=today(2), name="phoenix-web-clash")
    eu.copy_image(SourceImageId=ami, SourceRegion=HOME, Name="phoenix-web-clash", Description="someone else's")
    op = CopyImageToRegionOperator(task_id="c", ami_id=ami_b, source_region=HOME, dest_region=OTHER, poll_interval=POLL)
    with pytest.raises(PublishRefusedError, match="already has an AMI named 'phoenix-web-clash'"):
        run_task(op, outlet_context())

    # a copy that fails: the task fails saying so; the retry deregisters it and copies again, with a new
    # ClientToken (AWS, and the sandbox, answer a repeated token with the failed copy, even once deregistered)
    ami_d = bake(sandbox, version=today(4), name="phoenix-web-flaky")
    sandbox.update_config(fail_image_name_patterns=["phoenix-web-flaky"])
    op = CopyImageToRegionOperator(task_id="c", ami_id=ami_d, source_region=HOME, dest_region=OTHER, poll_interval=POLL)
    with pytest.raises(RuntimeError, match="did not become available"):
        run_task(op, outlet_context())
    sandbox.update_config(fail_image_name_patterns=[])
    res = run_task(op, outlet_context()).result
    assert res["copied"] is True
    states = {
        i["ImageId"]: i["State"]
        for i in eu.describe_images(Owners=["self"], Filters=[{"Name": "tag:phoenix:copy-of", "Values": [ami_d]}])["Images"]
    }
    assert states == {res["ami_id"]: "available"}


def test_copy_to_the_source_region_is_the_source(sandbox_clean):
    ami = bake(sandbox_clean, version=today(1))
    op = CopyImageToRegionOperator(task_id="c", ami_id=ami, dest_region=HOME, region_name=HOME)
    assert run_task(op, outlet_context()).result == {
        "region": HOME,
        "ami_id": ami,
        "source_ami_id": ami,
        "source_region": HOME,
        "copied": False,
        "name": sandbox_clean.client("ec2").describe_images(ImageIds=[ami])["Images"][0]["Name"],
    }


def test_copy_without_deferring_polls_in_the_worker(sandbox_clean):
    ami = bake(sandbox_clean, version=today(1))
    op = CopyImageToRegionOperator(
        task_id="c", ami_id=ami, source_region=HOME, dest_region=OTHER, deferrable=False, poll_interval=1, timeout=30
    )
    rec = run_task(op, outlet_context())
    assert rec.deferrals == [] and rec.result["copied"] is True


@pytest.mark.parametrize("verified", [None, "false"])
def test_an_unverified_ami_is_refused(sandbox_clean, tmp_path, verified):
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox_clean)
    ami = bake(sandbox_clean, version=today(1), verified=verified)
    with pytest.raises(PublishRefusedError, match=rf"{ami} is not verified"):
        run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=ami, config_path=cfg), outlet_context())
    assert sandbox_clean.client("ssm").describe_parameters()["Parameters"] == []


def test_a_foreign_ami_is_refused_even_if_tagged_verified(sandbox_clean, tmp_path):
    cfg = fleet_config(tmp_path)
    ec2 = sandbox_clean.client("ec2")
    foreign = ec2.describe_images(Owners=["amazon"])["Images"][0]
    ec2.create_tags(
        Resources=[foreign["ImageId"]],
        Tags=[{"Key": "phoenix:verified", "Value": "true"}, {"Key": "phoenix:role", "Value": "web"}],
    )
    op = ReleaseImageOperator(task_id="r", role="web", ami_id=foreign["ImageId"], config_path=cfg)
    with pytest.raises(PublishRefusedError, match=rf"owned by '{foreign['OwnerId']}', not by this account \(123456789012\)"):
        run_task(op, outlet_context())


def test_an_image_of_another_role_is_refused(sandbox_clean, tmp_path):
    cfg = fleet_config(tmp_path)
    ami = bake(sandbox_clean, role="worker", version=today(1))
    with pytest.raises(PublishRefusedError, match="image of role 'worker'"):
        run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=ami, config_path=cfg), outlet_context())


def test_publish_refuses_missing_region_copies_and_untagged_copies(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    ami = bake(sandbox, version=today(1))
    rel = run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=ami, config_path=cfg), outlet_context()).result
    op = PublishReleaseOperator(task_id="p", role="web", release=rel, copies=[], config_path=cfg)
    with pytest.raises(ValueError, match=r"no copy for region\(s\) \['eu-west-1'\]"):
        run_task(op, outlet_context())
    # a hand-made copy without the release tags is not published
    stray = sandbox.client("ec2", OTHER).copy_image(SourceImageId=ami, SourceRegion=HOME, Name="stray")["ImageId"]
    op = PublishReleaseOperator(
        task_id="p", role="web", release=rel, copies=[{"region": OTHER, "ami_id": stray}], config_path=cfg
    )
    with pytest.raises(PublishRefusedError, match=f"{stray} is not verified"):
        run_task(op, outlet_context())
    assert sandbox.client("ssm").describe_parameters()["Parameters"] == []


def test_single_region_role_without_accounts(sandbox_clean, tmp_path):
    cfg = fleet_config(tmp_path, regions=(HOME,), accounts=[])
    make_bucket(sandbox_clean)
    ami = bake(sandbox_clean, version=today(1))
    out = publish(cfg, ami, regions=(HOME,))
    assert out["extra"]["amis"] == {HOME: ami} and out["result"]["shared_with"] == []
    launch = sandbox_clean.client("ec2").describe_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert launch["LaunchPermissions"] == []


def test_template_fields_and_asset():
    assert set(ReleaseImageOperator.template_fields) >= {"role", "ami_id", "version", "aws_conn_id", "region_name"}
    assert set(CopyImageToRegionOperator.template_fields) >= {
        "ami_id",
        "source_region",
        "dest_region",
        "aws_conn_id",
        "region_name",
    }
    assert set(PublishReleaseOperator.template_fields) >= {"release", "copies", "aws_conn_id", "region_name"}
    op = PublishReleaseOperator(task_id="p", role="web", release={})
    (asset,) = op.outlets
    assert (asset.name, asset.uri) == ("phoenix_image_web", "x-phoenix://images/web")
    for op in (
        ReleaseImageOperator(task_id="r", role="web", ami_id="ami-1"),
        CopyImageToRegionOperator(task_id="c", ami_id="ami-1", dest_region=OTHER),
        PublishReleaseOperator(task_id="p", role="web", release={}),
    ):
        assert op.aws_conn_id == "aws_default" and op.region_name is None
    assert CopyImageToRegionOperator(task_id="c", ami_id="a", dest_region=OTHER).deferrable is True
