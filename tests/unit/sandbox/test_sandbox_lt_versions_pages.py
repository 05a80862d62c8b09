"""DescribeLaunchTemplateVersions pages as AWS does, in the sandbox: MaxResults 1..200 and a NextToken whenever
more follow, with or without a template and Versions. moto 5.2.5 cuts the answer at MaxResults (15 when absent)
and never returns a NextToken, so a client cannot tell a full listing from a truncated one."""

from typing import Any

import pytest
from botocore.exceptions import ClientError


def _templates(ec2: Any, n: int, *, versions: int = 1, default: int | None = None) -> list[str]:
    ids = []
    for i in range(n):
        data = {"ImageId": "ami-0b5a5e0000000b45e", "InstanceType": "t3.micro"}
        lt = ec2.create_launch_template(LaunchTemplateName=f"lt-{i:03d}", LaunchTemplateData=data)["LaunchTemplate"]
        for _ in range(versions - 1):
            ec2.create_launch_template_version(LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData=data)
        if default is not None and i % 2 == 0:
            ec2.modify_launch_template(LaunchTemplateId=lt["LaunchTemplateId"], DefaultVersion=str(default))
        ids.append(lt["LaunchTemplateId"])
    return ids


def _all_pages(ec2: Any, size: int | None = None, **kwargs: Any) -> tuple[list[dict[str, Any]], int]:
    config = {"PageSize": size} if size else {}
    pages = list(ec2.get_paginator("describe_launch_template_versions").paginate(PaginationConfig=config, **kwargs))
    return [v for p in pages for v in p["LaunchTemplateVersions"]], len(pages)


def test_id_less_listing_pages_with_a_next_token_and_returns_each_version_once(sandbox_clean: Any) -> None:
    ec2 = sandbox_clean.client("ec2")
    ids = _templates(ec2, 22, versions=3, default=2)  # odd templates: default 1, latest 3; even: default 2
    single = ec2.create_launch_template(  # default and latest are one version
        LaunchTemplateName="single", LaunchTemplateData={"ImageId": "ami-0b5a5e0000000b45e"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    ids.append(single)
    first = ec2.describe_launch_template_versions(Versions=["$Default"], MaxResults=10)
    assert len(first["LaunchTemplateVersions"]) == 10 and first.get("NextToken"), "a full page says more follow"

    defaults, pages = _all_pages(ec2, 10, Versions=["$Default"])
    assert pages == 3 and sorted(v["LaunchTemplateId"] for v in defaults) == sorted(ids)
    assert all(v["DefaultVersion"] for v in defaults)

    # $Default and $Latest in one listing: every template's default and latest, a version that is both once
    both, pages = _all_pages(ec2, 20, Versions=["$Default", "$Latest"])
    seen = sorted((v["LaunchTemplateId"], v["VersionNumber"]) for v in both)
    assert len(seen) == len(set(seen)) == 22 * 2 + 1 and pages == 3
    assert [n for lt, n in seen if lt == single] == [1]
    assert {n for lt, n in seen if lt == ids[0]} == {2, 3} and {n for lt, n in seen if lt == ids[1]} == {1, 3}

    # no MaxResults: pages of 200 (moto: 15, cut without a token)
    unsized = ec2.describe_launch_template_versions(Versions=["$Latest"])
    assert len(unsized["LaunchTemplateVersions"]) == 23 and not unsized.get("NextToken")


def test_one_template_pages_too_when_versions_are_given(sandbox_clean: Any) -> None:
    ec2 = sandbox_clean.client("ec2")
    (lt,) = _templates(ec2, 1, versions=7)
    got, pages = _all_pages(ec2, 3, LaunchTemplateId=lt, Versions=["1", "2", "3", "4", "5", "$Latest"])
    assert pages == 2 and [v["VersionNumber"] for v in got] == [1, 2, 3, 4, 5, 7]
    every, pages = _all_pages(ec2, 2, LaunchTemplateId=lt)
    assert pages == 4 and sorted(v["VersionNumber"] for v in every) == list(range(1, 8))


@pytest.mark.parametrize("size", [0, 201])
def test_max_results_outside_1_to_200_is_refused(sandbox_clean: Any, size: int) -> None:
    ec2 = sandbox_clean.client("ec2")
    _templates(ec2, 1)
    with pytest.raises(ClientError) as err:
        ec2.describe_launch_template_versions(Versions=["$Latest"], MaxResults=size)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "MaxResults" in err.value.response["Error"]["Message"]
