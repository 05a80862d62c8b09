"""A large fleet in the sandbox, made quickly: for the inventory benchmark (bench/inventory) and the scale tests.

``grow_fleet(client, regions, asgs, per_asg)`` brings the sandbox to ``asgs`` ASGs of ``per_asg`` instances
(spread evenly over ``regions``), adding only what is missing, so a benchmark can measure 1,000, then 10,000, then
30,000 instances without starting over. In each region:

* per role, 6 release AMIs ``phoenix-<role>-<version>`` (tagged as publish tags them) and the SSM pointers
  ``<prefix>/<role>/latest`` and ``latest-version`` at the newest (left alone when they already exist: the
  project's seed may own them);
* ASGs ``<role>-<region>-<NNNN>`` (tags ``phoenix:role``, ``phoenix:env=sandbox``, as include/fleet.yaml selects
  them), each on its own launch template with 3 versions: a third on ``$Default`` at the newest, a third on an
  older ``$Default``, a third pinned to version 1; every tenth template's default moves on after launch, so those
  instances are behind their template;
* the new instances' launch times spread over 1-10 days, and every twentieth instance 20 days back, past the
  default max age of 14 (moto's in-process backend: AWS has no API to set LaunchTime, so the sandbox must run in
  this process).

Instances are launched by AutoScaling itself (``CreateAutoScalingGroup`` with the desired capacity), through
the API; no boot latency applies (use a profile or config without ``instance_boot``). With the sandbox's
image-by-id lookup (``moto_patches``), launching costs ~1 ms an instance, so 10,000 take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ROLES = ("web", "worker")
VERSIONS = tuple(f"2026.{m:02d}.{d:02d}-1" for m, d in ((10, 12), (10, 19), (10, 26), (11, 2), (11, 9), (11, 16)))
PREFIX = "/phoenix/images"
STALE_EVERY = 20
STALE_DAYS = 20

Client = Callable[[str, str], Any]  # (service, region) -> boto3 client


def _tags(d: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in d.items()]


def _release_images(ec2: Any, ssm: Any, roles: Sequence[str], prefix: str) -> dict[tuple[str, str], str]:
    """(role, version) -> AMI id: found by name, else baked from a builder instance of one of moto's images."""
    names = [f"phoenix-{role}-{v}" for role in roles for v in VERSIONS]
    found = {i["Name"]: i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": names}])["Images"]}
    amis: dict[tuple[str, str], str] = {}
    builder = None
    for role in roles:
        for v in VERSIONS:
            name = f"phoenix-{role}-{v}"
            if name not in found:
                if builder is None:
                    amazon = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"])[0]
                    builder = ec2.run_instances(ImageId=amazon, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
                found[name] = ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
                ec2.create_tags(
                    Resources=[found[name]],
                    Tags=_tags({"Name": name, "phoenix:role": role, "phoenix:version": v, "phoenix:verified": "true",
                                "phoenix:managed-by": "phoenix-fleet"}),
                )
            amis[(role, v)] = found[name]
        for param, value in ((f"{prefix}/{role}/latest", amis[(role, VERSIONS[-1])]), (f"{prefix}/{role}/latest-version", VERSIONS[-1])):
            try:
                ssm.put_parameter(Name=param, Value=value, Type="String", Overwrite=False)
            except ssm.exceptions.ParameterAlreadyExists:
                pass
    if builder:
        ec2.terminate_instances(InstanceIds=[builder])
    return amis


def _existing(autoscaling: Any, region: str) -> set[str]:
    names: set[str] = set()
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(PaginationConfig={"PageSize": 100}):
        names.update(g["AutoScalingGroupName"] for g in page["AutoScalingGroups"] if f"-{region}-" in g["AutoScalingGroupName"])
    return names


def _age_new_instances(region: str, now: dt.datetime) -> tuple[int, int]:
    """Backdate the instances launched in the last hour (the ones this call made): (aged, stale)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    recent = (now - dt.timedelta(hours=1)).replace(tzinfo=None)
    fresh = sorted((i for i in backend.all_instances() if i.state == "running" and i.launch_time >= recent), key=lambda i: i.id)
    stale = 0
    for n, inst in enumerate(fresh):
        days = STALE_DAYS if n % STALE_EVERY == 0 else 1 + n % 10
        inst.launch_time = (now - dt.timedelta(days=days)).replace(tzinfo=None)
        stale += days == STALE_DAYS
    return len(fresh), stale


def grow_fleet(
    client: Client,
    regions: Sequence[str],
    asgs: int,
    per_asg: int = 20,
    *,
    roles_by_region: Mapping[str, Sequence[str]] | None = None,
    prefix: str = PREFIX,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Bring the sandbox to ``asgs`` ASGs (in all; spread over ``regions``) of ``per_asg`` instances each.

    ``roles_by_region``: the roles whose ASGs a region holds (default: ``web`` and ``worker`` everywhere),
    alternating. Returns ``{"asgs_added", "instances_added", "stale_added", "seconds"}``.
    """
    now = now or dt.datetime.now(dt.UTC)
    made = {"asgs_added": 0, "instances_added": 0, "stale_added": 0}
    t0 = time.perf_counter()
    for r_index, region in enumerate(regions):
        roles = list((roles_by_region or {}).get(region) or ROLES)
        ec2, autoscaling, ssm = (client(s, region) for s in ("ec2", "autoscaling", "ssm"))
        amis = _release_images(ec2, ssm, roles, prefix)
        have = _existing(autoscaling, region)
        wanted = asgs // len(regions) + (1 if r_index < asgs % len(regions) else 0)
        bumped = []
        for k in range(wanted):
            role = roles[k % len(roles)]
            name = f"{role}-{region}-{k:04d}"
            if name in have:
                continue
            data = [{"ImageId": amis[(role, v)], "InstanceType": "t3.small"} for v in VERSIONS[-3:]]
            lt = ec2.create_launch_template(LaunchTemplateName=f"lt-{name}", LaunchTemplateData=data[0])["LaunchTemplate"]["LaunchTemplateId"]
            for d in data[1:]:
                ec2.create_launch_template_version(LaunchTemplateId=lt, LaunchTemplateData=d)
            kind = k % 3
            ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion="3" if kind == 0 else "2")
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name,
                LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Default" if kind < 2 else "1"},
                MinSize=0,
                MaxSize=per_asg * 2,
                DesiredCapacity=per_asg,
                AvailabilityZones=[f"{region}a"],
                Tags=[{"Key": "phoenix:role", "Value": role, "PropagateAtLaunch": True},
                      {"Key": "phoenix:env", "Value": "sandbox", "PropagateAtLaunch": True}],
            )
            if k % 10 == 1:
                bumped.append(lt)
            made["asgs_added"] += 1
        for lt in bumped:  # these instances are now behind their launch template
            ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion="3")
        aged, stale = _age_new_instances(region, now)
        made["instances_added"] += aged
        made["stale_added"] += stale
    made["seconds"] = round(time.perf_counter() - t0, 1)
    return made
