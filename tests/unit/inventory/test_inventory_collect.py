"""The region sweep (inventory.collect) against the sandbox, and its edge cases with scripted clients."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import inventory_fleet as F
import pytest
from phoenix_fleet.inventory.collect import (
    MAX_PAGE_SIZES,
    SNAPSHOT_FORMAT,
    CallCounter,
    collect_region,
    minimum_pages,
)


def test_sweep_of_a_sandbox_fleet(sandbox_clean: Any) -> None:
    fleet = F.build_fleet(sandbox_clean)
    snap = collect_region(*F.clients(sandbox_clean), F.REGION)

    assert snap["format"] == SNAPSHOT_FORMAT and snap["region"] == F.REGION
    ids = {i["id"] for i in snap["instances"]}
    assert ids == {i for group in fleet.instances.values() for i in group}  # the terminated builder is not there
    stale = next(i for i in snap["instances"] if i["id"] == fleet.stale_instance)
    assert stale["launch_time"].startswith("2026-11-05")
    assert stale["asg"] == "web-a" and stale["tags"]["aws:autoscaling:groupName"] == "web-a"

    asgs = {g["name"]: g for g in snap["asgs"]}
    assert set(asgs) == {"web-a", "web-b", "worker-a"}
    assert asgs["web-a"]["launch_template"]["version"] == "$Default"
    assert {m["lifecycle"] for m in asgs["web-a"]["instances"]} == {"InService"}
    assert {m["health"] for m in asgs["web-a"]["instances"]} == {"Healthy"}

    lts = {t["name"]: t for t in snap["launch_templates"].values()}
    assert lts["web-lt"]["default_version"] == 2 and lts["web-lt"]["latest_version"] == 3
    assert lts["web-lt"]["versions"] == {"2": fleet.web["2026.11.08-1"], "3": fleet.web["2026.11.15-1"]}
    assert lts["worker-lt"]["versions"] == {"1": fleet.worker[F.WORKER_VERSION]}

    images = snap["images"]
    assert {a for v, a in fleet.web.items()} <= set(images)
    assert all(images[a]["ours"] for a in fleet.web.values())
    assert images[fleet.amazon_ami]["ours"] is False  # referenced by the lone instance, someone else's
    assert images[fleet.web["2026.11.15-1"]]["tags"]["phoenix:version"] == "2026.11.15-1"
    assert images[fleet.web["2026.11.15-1"]]["snapshot_ids"]
    assert snap["ssm"] == {
        "web": {"latest": fleet.web["2026.11.15-1"], "latest_version": "2026.11.15-1"},
        "worker": {"latest": fleet.worker[F.WORKER_VERSION], "latest_version": F.WORKER_VERSION},
    }

    calls = snap["stats"]["calls"]
    assert calls == {
        "autoscaling:DescribeAutoScalingGroups": 1,
        "ec2:DescribeImages": 2,  # ours (one page) + the referenced Amazon image by id
        "ec2:DescribeInstances": 1,
        "ec2:DescribeLaunchTemplateVersions": 1,  # $Default and $Latest of every template, in one listing
        "ssm:GetParametersByPath": 1,
    }
    assert sum(calls.values()) == sum(minimum_pages(snap).values())
    assert snap["stats"]["notes"] == []


def test_pagination_more_than_one_page_gives_the_same_snapshot(sandbox_clean: Any) -> None:
    F.build_fleet(sandbox_clean)
    clients = F.clients(sandbox_clean)
    whole = collect_region(*clients, F.REGION)
    small = {"instances": 5, "asgs": 1, "lt_versions": 1, "images": 1, "parameters": 1}
    paged = collect_region(*clients, F.REGION, page_sizes=small)

    pages = paged["stats"]["pages"]
    assert pages["asgs"] == 3 and pages["parameters"] >= 4  # 3 ASGs; 4 pointers one per page
    # one item a page: web-lt's default and latest (2, 3), web-b-lt's and worker-lt's single version each
    assert pages["lt_versions"] == 4
    assert minimum_pages(paged, small)["ec2:DescribeLaunchTemplateVersions"] == 4
    for key in ("instances", "asgs", "launch_templates", "images", "ssm", "missing_images"):
        assert paged[key] == whole[key], key


def test_many_reservations_page_through_describe_instances(sandbox_clean: Any) -> None:
    ec2, autoscaling, ssm = F.clients(sandbox_clean)
    ami = F.amazon_image(ec2)
    made = [ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"] for _ in range(12)]
    sandbox_clean.settle()
    snap = collect_region(ec2, autoscaling, ssm, F.REGION, page_sizes={"instances": 5})
    assert snap["stats"]["pages"]["instances"] == 3
    assert sorted(i["id"] for i in snap["instances"]) == sorted(made)


def test_counter_detaches_after_the_block(sandbox_clean: Any) -> None:
    ec2 = sandbox_clean.client("ec2")
    counter = CallCounter()
    with counter.attached(ec2):
        ec2.describe_instances()
    ec2.describe_instances()
    assert counter.calls == {"ec2:DescribeInstances": 1}


def test_pinned_launch_template_version_is_resolved_by_one_call(sandbox_clean: Any) -> None:
    fleet = F.build_fleet(sandbox_clean)
    ec2, autoscaling, ssm = F.clients(sandbox_clean)
    web_lt = next(
        t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"] if t["LaunchTemplateName"] == "web-lt"
    )
    F.make_asg(autoscaling, "web-pinned", web_lt, "1", 1, "web")
    sandbox_clean.settle()
    snap = collect_region(ec2, autoscaling, ssm, F.REGION)
    assert snap["launch_templates"][web_lt]["versions"]["1"] == fleet.web["2026.11.01-1"]
    assert snap["stats"]["calls"]["ec2:DescribeLaunchTemplateVersions"] == 2  # the listing + web-lt's version 1
    assert sum(snap["stats"]["calls"].values()) == sum(minimum_pages(snap).values())


def test_the_template_listing_pages_instead_of_stopping_at_a_full_page(sandbox_clean: Any) -> None:
    """Pages of 2 over 4 listed versions: the listing follows NextToken (the sandbox pages as AWS does; moto cut
    the answer at MaxResults without one) and completes nothing by template id."""
    F.build_fleet(sandbox_clean)
    snap = collect_region(*F.clients(sandbox_clean), F.REGION, page_sizes={"lt_versions": 2})
    names = {t["name"]: t for t in snap["launch_templates"].values()}
    assert set(names) == {"web-lt", "web-b-lt", "worker-lt"}
    assert (names["web-lt"]["default_version"], names["web-lt"]["latest_version"]) == (2, 3)
    for t in names.values():
        assert t["versions"][str(t["default_version"])] and t["versions"][str(t["latest_version"])]
    assert snap["incomplete"] == [] and snap["stats"]["notes"] == []
    assert snap["stats"]["calls"]["ec2:DescribeLaunchTemplateVersions"] == 2


# ------------------------------------------------------------------------ scripted clients (no AWS at all)


class _Model:
    def __init__(self, service: str, name: str) -> None:
        self.name = name
        self.service_model = type("S", (), {"endpoint_prefix": service})()


class _Events:
    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def register(self, event: str, handler: Any, unique_id: str) -> None:
        self.handlers.append(handler)

    def unregister(self, event: str, handler: Any, unique_id: str) -> None:
        self.handlers.remove(handler)


class _Shape:
    def __init__(self, members: set[str]) -> None:
        self.members = {m: None for m in members}


class _ServiceModel:
    def __init__(self, members: dict[str, set[str]]) -> None:
        self._members = members

    def operation_model(self, name: str) -> Any:
        return type("O", (), {"input_shape": _Shape(self._members.get(name, set()))})()


class _Error(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code, "Message": code}}


class ScriptedClient:
    """A client whose paginated listings return scripted pages; records every call's arguments."""

    def __init__(self, service: str, pages: dict[str, Any], members: dict[str, set[str]] | None = None) -> None:
        self.service = service
        self.pages = pages
        self.meta = type("M", (), {"events": _Events(), "service_model": _ServiceModel(members or {})})()
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def get_paginator(self, operation: str) -> Any:
        client = self

        class P:
            def paginate(self, PaginationConfig: dict[str, int], **kwargs: Any) -> Any:  # noqa: N803
                script = client.pages[operation]
                pages = script(kwargs) if callable(script) else script
                for page in pages:
                    op = "".join(w.title() for w in operation.split("_"))
                    for h in client.meta.events.handlers:
                        h(model=_Model(client.service, op))
                    client.requests.append((operation, {**kwargs, "PageSize": PaginationConfig["PageSize"]}))
                    if isinstance(page, Exception):
                        raise page
                    yield page

        return P()


def _instances(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    when = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    return [
        {
            "Reservations": [
                {"Instances": [{"InstanceId": i, "ImageId": a, "LaunchTime": when, "State": {"Name": "stopped"}}]}
                for i, a in pairs
            ]
        }
    ]


def _scripted(instance_pages: list[dict[str, Any]], images: Any, members: set[str] | None = None) -> tuple[Any, Any, Any]:
    ec2 = ScriptedClient(
        "ec2",
        {
            "describe_instances": instance_pages,
            "describe_launch_template_versions": [{"LaunchTemplateVersions": []}],
            "describe_images": images,
        },
        {"DescribeImages": members if members is not None else {"IncludeDeprecated", "IncludeDisabled", "ImageIds"}},
    )
    autoscaling = ScriptedClient("autoscaling", {"describe_auto_scaling_groups": [{"AutoScalingGroups": []}]})
    ssm = ScriptedClient("ssm", {"get_parameters_by_path": [{"Parameters": []}]})
    return ec2, autoscaling, ssm


def test_empty_pages_with_tokens_and_the_last_page_count() -> None:
    """DescribeInstances may answer empty pages that still carry a NextToken: the item on the last page counts."""
    pages = [{"Reservations": []}, {"Reservations": []}, *_instances(("i-last", "ami-00000001"))]
    ec2, asg, ssm = _scripted(pages, lambda kw: [{"Images": []}])
    snap = collect_region(ec2, asg, ssm, "us-east-1")
    assert [i["id"] for i in snap["instances"]] == ["i-last"]
    assert snap["stats"]["pages"]["instances"] == 3
    assert snap["instances"][0]["state"] == "stopped"


def test_unknown_image_ids_are_found_by_halving() -> None:
    known = {"ami-00000001": "one", "ami-00000003": "three"}

    def images(kwargs: dict[str, Any]) -> list[Any]:
        if "Owners" in kwargs:
            return [{"Images": []}]
        ids = kwargs["ImageIds"]
        if any(i not in known for i in ids):
            return [_Error("InvalidAMIID.NotFound")]
        return [{"Images": [{"ImageId": i, "Name": known[i], "OwnerId": "999999999999"} for i in ids]}]

    pairs = [("i-1", "ami-00000001"), ("i-2", "ami-00000002"), ("i-3", "ami-00000003"), ("i-4", "ami-00000004")]
    ec2, asg, ssm = _scripted(_instances(*pairs), images)
    snap = collect_region(ec2, asg, ssm, "us-east-1")
    assert set(snap["images"]) == set(known)
    assert all(not i["ours"] for i in snap["images"].values())
    assert snap["missing_images"] == ["ami-00000002", "ami-00000004"]


def test_other_describe_images_errors_are_not_swallowed() -> None:
    def images(kwargs: dict[str, Any]) -> list[Any]:
        return [{"Images": []}] if "Owners" in kwargs else [_Error("RequestLimitExceeded")]

    ec2, asg, ssm = _scripted(_instances(("i-1", "ami-00000001")), images)
    with pytest.raises(_Error, match="RequestLimitExceeded"):
        collect_region(ec2, asg, ssm, "us-east-1")


def test_include_deprecated_and_disabled_are_asked_for() -> None:
    ec2, asg, ssm = _scripted(_instances(), lambda kw: [{"Images": []}])
    collect_region(ec2, asg, ssm, "us-east-1")
    own = next(kw for op, kw in ec2.requests if op == "describe_images")
    assert own == {"Owners": ["self"], "IncludeDeprecated": True, "IncludeDisabled": True, "PageSize": MAX_PAGE_SIZES["images"]}


def test_a_botocore_without_include_disabled_degrades_with_a_note(caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    ec2, asg, ssm = _scripted(_instances(), lambda kw: [{"Images": []}], members={"IncludeDeprecated"})
    snap = collect_region(ec2, asg, ssm, "us-east-1")
    own = next(kw for op, kw in ec2.requests if op == "describe_images")
    assert "IncludeDisabled" not in own and own["IncludeDeprecated"] is True
    assert any("IncludeDisabled" in n and "disabled images may be missing" in n for n in snap["stats"]["notes"])
    assert "IncludeDisabled" in caplog.text


def test_largest_page_sizes_are_used() -> None:
    ec2, asg, ssm = _scripted(_instances(), lambda kw: [{"Images": []}])
    collect_region(ec2, asg, ssm, "us-east-1")
    sizes = {op: kw["PageSize"] for op, kw in ec2.requests + asg.requests + ssm.requests}
    assert sizes == {
        "describe_instances": 1000,
        "describe_launch_template_versions": 200,
        "describe_images": 1000,
        "describe_auto_scaling_groups": 100,
        "get_parameters_by_path": 10,
    }


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "UnauthorizedOperation"])
def test_a_failed_per_template_lookup_marks_the_sweep_incomplete(code: str) -> None:
    """The version an ASG pins is looked up per template; when that lookup fails (throttled past botocore's retries,
    refused), the report goes on without it, but the snapshot says it is incomplete (ami_retention then acts on
    nothing)."""
    ec2, _, ssm = _scripted(_instances(), lambda kw: [{"Images": []}])

    def versions(kwargs: dict[str, Any]) -> list[Any]:
        if "LaunchTemplateId" in kwargs:
            return [_Error(code)]
        alias = kwargs["Versions"][0]
        return [{"LaunchTemplateVersions": [{"LaunchTemplateId": "lt-1", "LaunchTemplateName": "web-lt", "VersionNumber": 9,
                                             "DefaultVersion": alias == "$Default",
                                             "LaunchTemplateData": {"ImageId": "ami-00000009"}}]}]

    ec2.pages["describe_launch_template_versions"] = versions
    group = {"AutoScalingGroupName": "web-a", "LaunchTemplate": {"LaunchTemplateId": "lt-1", "Version": "3"}, "Instances": []}
    asg = ScriptedClient("autoscaling", {"describe_auto_scaling_groups": [{"AutoScalingGroups": [group]}]})
    snap = collect_region(ec2, asg, ssm, "us-east-1")
    assert snap["incomplete"] == [f"launch template lt-1 versions 3: {code}"]
    assert snap["launch_templates"]["lt-1"]["versions"] == {"9": "ami-00000009"}
