"""The seed publishes every role of the fleet config in every region the role lists (a fresh sandbox can run any
DAG first), like publish does: the same pointers, labels and copy tags; a second seed changes nothing."""

from __future__ import annotations

from typing import Any

from sandbox.seed import role_regions, seed


def _tags(image: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def test_every_role_is_published_in_every_region_of_the_config(sandbox_clean: Any) -> None:
    wanted = role_regions()
    assert wanted["web"] == ["us-east-1", "eu-west-1"], "the sample fleet has a two-region role"
    seeded = seed(sandbox_clean.endpoint_url)
    assert set(seeded["roles"]) == set(wanted)
    for role, regions in wanted.items():
        info = seeded["roles"][role]
        assert sorted(info["amis"]) == sorted(regions), info
        for region in regions:
            ec2, ssm = sandbox_clean.client("ec2", region), sandbox_clean.client("ssm", region)
            latest = ssm.get_parameter(Name=f"/phoenix/images/{role}/latest")["Parameter"]
            assert latest["Value"] == info["amis"][region] and latest["DataType"] == "aws:ec2:image"
            history = ssm.get_parameter_history(Name=f"/phoenix/images/{role}/latest")["Parameters"]
            assert f"v{info['version']}" in history[-1]["Labels"], (role, region, history)
            version = ssm.get_parameter(Name=f"/phoenix/images/{role}/latest-version")["Parameter"]["Value"]
            assert version == info["version"]
            (image,) = ec2.describe_images(ImageIds=[latest["Value"]], Owners=["self"])["Images"]
            tags = _tags(image)
            assert image["State"] == "available"
            assert (tags["phoenix:role"], tags["phoenix:version"], tags["phoenix:verified"]) == (
                role, info["version"], "true"
            )
            if region == "us-east-1":
                assert latest["Value"] == info["ami_id"]
            else:  # a copy, tagged as publish's copy step tags one
                assert latest["Value"] != info["ami_id"]
                assert (tags["phoenix:copy-of"], tags["phoenix:source-region"]) == (info["ami_id"], "us-east-1")

    again = seed(sandbox_clean.endpoint_url)
    assert again["created"] == [] and again["changed"] is False, again["created"]
    assert {r: i["amis"] for r, i in again["roles"].items()} == {r: i["amis"] for r, i in seeded["roles"].items()}


def test_a_region_added_later_is_published_and_a_moved_pointer_is_left_alone(sandbox_clean: Any) -> None:
    """A sandbox seeded when web had one region gets the second on the next seed; a pointer the pipeline moved
    since stays where it is."""
    first = seed(sandbox_clean.endpoint_url, roles={"web": ["us-east-1"]})
    assert sandbox_clean.client("ssm", "eu-west-1").describe_parameters()["Parameters"] == []
    ec2 = sandbox_clean.client("ec2")
    newer = ec2.copy_image(SourceImageId=first["roles"]["web"]["ami_id"], SourceRegion="us-east-1", Name="newer")
    ec2.create_tags(Resources=[newer["ImageId"]], Tags=[{"Key": "phoenix:version", "Value": "2099.01.01-1"}])
    sandbox_clean.client("ssm").put_parameter(
        Name="/phoenix/images/web/latest", Value=newer["ImageId"], Type="String", Overwrite=True
    )

    second = seed(sandbox_clean.endpoint_url)  # the fleet config's regions: web in us-east-1 and eu-west-1
    web = second["roles"]["web"]
    assert web["ami_id"] == newer["ImageId"] and web["version"] == "2099.01.01-1"
    eu = sandbox_clean.client("ssm", "eu-west-1")
    assert eu.get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"] == web["amis"]["eu-west-1"]
    assert eu.get_parameter(Name="/phoenix/images/web/latest-version")["Parameter"]["Value"] == "2099.01.01-1"
    assert sandbox_clean.client("ssm").get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"] == (
        newer["ImageId"]
    )
