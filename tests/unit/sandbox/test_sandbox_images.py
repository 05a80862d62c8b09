"""AMI pending -> available / failed (create_image, copy_image, register_image), boto3 and aiobotocore."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.realism import TAG_IMAGE_FAIL


def _states(ec2: Any, image_id: str, n: int, **kwargs: Any) -> list[str | None]:
    out = []
    for _ in range(n):
        images = ec2.describe_images(ImageIds=[image_id], **kwargs)["Images"]
        out.append(images[0]["State"] if images else None)
    return out


def _tags(**tags: str) -> list[dict[str, Any]]:
    return [{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def test_create_image_pending_then_available(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.create_image(InstanceId=running_instance(), Name="web-2026.11.25-1")["ImageId"]
    assert _states(ec2, image_id, 3) == ["pending", "pending", "available"]


def test_waiter_image_available(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.create_image(InstanceId=running_instance(), Name="web-waiter")["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 0, "MaxAttempts": 5})


def test_injected_failure_by_tag(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.create_image(
        InstanceId=running_instance(), Name="web-broken", TagSpecifications=_tags(**{TAG_IMAGE_FAIL: "true"})
    )["ImageId"]
    assert _states(ec2, image_id, 3) == ["pending", "pending", "failed"]
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert "injected image failure" in image["StateReason"]["Message"]
    with pytest.raises(Exception, match="Failure|failed"):
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id], WaiterConfig={"Delay": 0, "MaxAttempts": 3}
        )


def test_failure_tag_added_while_pending_counts(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.copy_image(SourceImageId="ami-12c6146b", SourceRegion="us-east-1", Name="copied")[
        "ImageId"
    ]
    assert _states(ec2, image_id, 1) == ["pending"]
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": TAG_IMAGE_FAIL, "Value": "true"}])
    assert _states(ec2, image_id, 2) == ["pending", "failed"]


def test_failure_tag_on_an_available_image_changes_nothing(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.create_image(InstanceId=running_instance(), Name="web-done")["ImageId"]
    assert _states(ec2, image_id, 3)[-1] == "available"
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": TAG_IMAGE_FAIL, "Value": "true"}])
    assert _states(ec2, image_id, 1) == ["available"]


def test_failure_by_name_pattern_even_without_latency(
    sandbox_clean: Any, ec2: Any, running_instance: Any
) -> None:
    sandbox_clean.update_config(image_build=None, fail_image_name_patterns=["*-broken-*"])
    good = ec2.register_image(Name="web-fine-1", RootDeviceName="/dev/xvda")["ImageId"]
    bad = ec2.register_image(Name="web-broken-1", RootDeviceName="/dev/xvda")["ImageId"]
    assert _states(ec2, good, 1) == ["available"]
    assert _states(ec2, bad, 1) == ["failed"]


def test_state_filter_does_not_hide_a_pending_image(ec2: Any, running_instance: Any) -> None:
    image_id = ec2.create_image(InstanceId=running_instance(), Name="web-filtered")["ImageId"]
    available = [{"Name": "state", "Values": ["available"]}]
    found = [ec2.describe_images(Owners=["self"], Filters=available)["Images"] for _ in range(3)]
    assert [[i["ImageId"] for i in f] for f in found] == [[], [], [image_id]]


def test_plain_profile_images_are_available_at_once(
    sandbox_clean: Any, ec2: Any, running_instance: Any
) -> None:
    instance_id = running_instance()
    sandbox_clean.update_config(profile="plain")
    image_id = ec2.create_image(InstanceId=instance_id, Name="web-plain")["ImageId"]
    assert _states(ec2, image_id, 1) == ["available"]


def test_aiobotocore_pending_available_and_failed(aio: Any, running_instance: Any) -> None:
    instance_id = running_instance()

    async def scenario() -> tuple[list[str], str]:
        async with aio.client("ec2") as ec2:
            good = (await ec2.create_image(InstanceId=instance_id, Name="aio-good"))["ImageId"]
            bad = (
                await ec2.create_image(
                    InstanceId=instance_id, Name="aio-bad", TagSpecifications=_tags(**{TAG_IMAGE_FAIL: "1"})
                )
            )["ImageId"]
            seen = []
            for _ in range(3):
                seen.append((await ec2.describe_images(ImageIds=[good]))["Images"][0]["State"])
            for _ in range(3):
                final = (await ec2.describe_images(ImageIds=[bad]))["Images"][0]["State"]
            return seen, final

    assert aio.run(scenario()) == (["pending", "pending", "available"], "failed")


def test_copy_image_honours_client_token_as_aws_does(sandbox_clean: Any, ec2: Any) -> None:
    """AWS answers a repeated ClientToken with the image the first call made, whatever became of it (failed,
    deregistered), and refuses the token with other parameters; moto alone made a new image every time."""
    sandbox_clean.update_config(image_build=None)
    eu = sandbox_clean.client("ec2", "eu-west-1")
    args = {"SourceImageId": "ami-12c6146b", "SourceRegion": "us-east-1", "Name": "web-copy"}
    first = eu.copy_image(ClientToken="tok-1", **args)["ImageId"]
    assert eu.copy_image(ClientToken="tok-1", **args)["ImageId"] == first
    assert len(eu.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web-copy"]}])["Images"]) == 1
    eu.deregister_image(ImageId=first)
    assert eu.copy_image(ClientToken="tok-1", **args)["ImageId"] == first  # nothing new: the deregistered one
    assert eu.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web-copy"]}])["Images"] == []
    with pytest.raises(Exception, match="IdempotentParameterMismatch"):
        eu.copy_image(ClientToken="tok-1", **{**args, "Name": "web-copy-2"})
    second = eu.copy_image(ClientToken="tok-2", **args)["ImageId"]  # a new token: a new image
    assert second != first
    # tokens are per region: the same token in another region is another request
    assert ec2.copy_image(ClientToken="tok-1", **args)["ImageId"] not in (first, second)
    without = [eu.copy_image(**args)["ImageId"] for _ in range(2)]  # no token: no idempotency
    assert len(set(without)) == 2


def test_an_image_looked_up_by_id_is_found_without_scanning_every_image(
    sandbox_clean: Any, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launch finds its AMI by id (Instance.__init__): the same image as moto's filter, without fnmatching the
    id against the region's ~1,300 images (10 ms per instance, most of seeding a fleet of thousands)."""
    import moto.ec2.models.amis as amis
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    arm = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["arm64"]}])["Images"])[0]
    queries: list[Any] = [arm, [arm], "ami-00000000", arm[:-2] + "*"]
    expected = [[a.id for a in amis.generic_filter({"image-id": q}, list(backend.amis.values()))] for q in queries]
    scans = []
    real_filter = amis.generic_filter
    monkeypatch.setattr(amis, "generic_filter", lambda *a: scans.append(a) or real_filter(*a))
    for query, want in zip(queries, expected, strict=True):
        assert [a.id for a in backend.describe_images(filters={"image-id": query})] == want, query
    assert expected[0] == [arm] and expected[2] == [] and arm in expected[3]
    assert len(scans) == 1  # only the wildcard went to moto's filter
    scans.clear()
    instance = ec2.run_instances(ImageId=arm, MinCount=2, MaxCount=2)["Instances"][0]
    assert instance["Architecture"] == "arm64"  # taken from the image found
    assert scans == []


def test_create_image_tags_the_new_snapshot_as_aws_does(ec2: Any, running_instance: Any) -> None:
    """CreateImage's TagSpecifications for ResourceType ``snapshot`` tag the image's new snapshot (moto raises
    NotImplementedError: a 500); Packer's amazon-ebs sends its run_tags for both, so a build that fails after
    CreateImage leaves an image and a snapshot that carry the project's tags."""
    tags = {"phoenix:role": "web", "phoenix:managed-by": "phoenix-fleet"}
    specs = [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
             for kind in ("image", "snapshot")]
    image_id = ec2.create_image(InstanceId=running_instance(), Name="web-run-tagged", TagSpecifications=specs)["ImageId"]
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert {t["Key"]: t["Value"] for t in image.get("Tags", [])} == tags
    snapshots = [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if b.get("Ebs", {}).get("SnapshotId")]
    assert snapshots
    for snap in ec2.describe_snapshots(SnapshotIds=snapshots)["Snapshots"]:
        assert {t["Key"]: t["Value"] for t in snap.get("Tags", [])} == tags, snap
