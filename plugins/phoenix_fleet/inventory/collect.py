"""One paginated sweep of one region: instances, AutoScaling groups, launch-template versions, AMIs, SSM pointers.

``collect_region(ec2, autoscaling, ssm, region)`` takes boto3 clients (the operator builds them from an
``AwsBaseHook``; tests and the benchmark pass plain clients) and returns a **region snapshot**: a compact,
JSON-safe dict that the pure report (``report.build_report``) and the retention planner consume. Nothing here
imports boto3: the clients come in, plain data goes out.

The sweep, at the largest page sizes the APIs allow:

==================================  ===========================================================================
DescribeInstances                   MaxResults=1000, every state but ``terminated`` (server-side filter)
DescribeAutoScalingGroups           MaxRecords=100 (instances' lifecycle and health, launch template + version)
DescribeLaunchTemplateVersions      ``$Default`` and ``$Latest`` of *every* template (no template id: one
                                    paginated listing of both, MaxResults=200), then, per template, the numbered
                                    versions that ASGs pin or their rollout records name (``phoenix:rollout:
                                    *-lt``) and the listing did not already bring (one call)
DescribeImages                      ``Owners=[self]`` with IncludeDeprecated/IncludeDisabled (MaxResults=1000),
                                    then the referenced images that are not ours, by id (100 per call)
GetParametersByPath                 ``<ssm_prefix>`` recursive, MaxResults=10 (the API's maximum)
DescribeWarmPool                    only for each group with a warm pool, MaxRecords=100 (its warmed instances;
                                    their images come from DescribeInstances like every instance's)
==================================  ===========================================================================

AWS calls are counted per operation (botocore ``before-call`` events) and reported in ``stats`` together with
the pages and items seen, so the benchmark can compare calls against the minimum number of pages.

Snapshot shape (``SNAPSHOT_FORMAT``)::

    {"format": "phoenix-inventory-snapshot/1", "region": "us-east-1", "collected_at": "<ISO 8601 UTC>",
     "instances": [{"id", "image_id", "launch_time", "state", "asg", "tags": {phoenix:*, Name}}],
     "asgs": [{"name", "desired", "min", "max", "launch_template": {"id", "name", "version"} | null,
               "tags": {...}, "instances": [{"id", "lifecycle", "health", "protected"}],
               "warm_pool": {"instances": [{"id", "lifecycle"}]} | null}],   # null: the group has no warm pool
     "launch_templates": {"<lt id>": {"name", "default_version", "latest_version", "versions": {"<n>": ami}}},
     "launch_configurations": {"<name>": "<ami id>"},   # only those ASGs still use
     "images": {"<ami id>": {"name", "owner_id", "ours", "state", "public", "creation_date",
                             "deprecation_time", "tags": {...}, "snapshot_ids": [...]}},
     "missing_images": ["<ami id>", ...],     # referenced, but DescribeImages does not know them (deregistered)
     "incomplete": ["<what the sweep could not see completely: a truncated listing, a failed lookup>"],
                                              # ami_retention refuses to act then
     "ssm": {"<role>": {"latest": "<ami id>" | null, "latest_version": "<version>" | null}},
     "stats": {"calls": {"ec2:DescribeInstances": n, ...}, "pages": {...}, "items": {...},
               "seconds": s, "notes": ["<degradations, e.g. an API the endpoint lacks>"]}}
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

SNAPSHOT_FORMAT = "phoenix-inventory-snapshot/1"

#: The largest page size each listing accepts (AWS API reference).
MAX_PAGE_SIZES: dict[str, int] = {
    "instances": 1000,  # DescribeInstances MaxResults 5..1000
    "asgs": 100,  # DescribeAutoScalingGroups MaxRecords 1..100
    "lt_versions": 200,  # DescribeLaunchTemplateVersions MaxResults 1..200
    "images": 1000,  # DescribeImages MaxResults 1..1000
    "parameters": 10,  # GetParametersByPath MaxResults 1..10
}
#: Image ids per DescribeImages-by-id call (the images that are not ours).
IMAGE_ID_CHUNK = 100
#: Every instance state but terminated: a stopped instance still pins its AMI.
LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
KEPT_TAG_PREFIXES = ("phoenix:",)
KEPT_TAGS = ("Name", "aws:autoscaling:groupName")

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ call counting


class CallCounter:
    """Counts API calls (``service:Operation``) made through the clients it is attached to."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _on_call(self, model: Any = None, **_: Any) -> None:
        if model is not None:
            self.calls[f"{model.service_model.endpoint_prefix}:{model.name}"] += 1

    @contextmanager
    def attached(self, *clients: Any) -> Iterator[CallCounter]:
        """Count calls made through ``clients`` inside the block (handlers are removed on exit)."""
        with ExitStack() as stack:
            for client in clients:
                uid = f"phoenix-call-counter-{id(self)}"
                client.meta.events.register("before-call", self._on_call, unique_id=uid)
                stack.callback(client.meta.events.unregister, "before-call", self._on_call, unique_id=uid)
            yield self

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# ------------------------------------------------------------------------------------------ helpers


def _iso(value: Any) -> str | None:
    """ISO 8601 UTC for a botocore datetime (or pass a string through)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _kept_tags(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in tags or ():
        key = t.get("Key", "")
        if key in KEPT_TAGS or key.startswith(KEPT_TAG_PREFIXES):
            out[key] = t.get("Value", "")
    return out


def _has_member(client: Any, operation: str, member: str) -> bool:
    try:
        shape = client.meta.service_model.operation_model(operation).input_shape
    except Exception:  # noqa: BLE001 - an unknown operation simply lacks the member
        return False
    return shape is not None and member in shape.members


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _Pages:
    """Iterate a paginated listing, counting pages and items."""

    def __init__(self, stats: dict[str, Any], key: str) -> None:
        self.stats = stats
        self.key = key

    def __call__(
        self, client: Any, operation: str, result_key: str, page_size: int, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        paginator = client.get_paginator(operation)
        pages = paginator.paginate(PaginationConfig={"PageSize": page_size}, **kwargs)
        for page in pages:
            self.stats["pages"][self.key] = self.stats["pages"].get(self.key, 0) + 1
            items = page.get(result_key) or []
            self.stats["items"][self.key] = self.stats["items"].get(self.key, 0) + len(items)
            yield page


# ------------------------------------------------------------------------------------------ the sweep


def collect_region(
    ec2: Any,
    autoscaling: Any,
    ssm: Any,
    region: str,
    *,
    ssm_prefix: str = "/phoenix/images",
    page_sizes: Mapping[str, int] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    logger: logging.Logger | Any | None = None,
) -> dict[str, Any]:
    """Sweep one region and return its snapshot (see the module docstring for the shape).

    ``page_sizes`` overrides :data:`MAX_PAGE_SIZES` (tests force several pages with small fleets);
    ``logger`` receives progress and degradation lines (an operator passes ``self.log``).
    """
    lg = logger or log
    sizes = {**MAX_PAGE_SIZES, **(page_sizes or {})}
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    counter = CallCounter()
    stats: dict[str, Any] = {"calls": {}, "pages": {}, "items": {}, "seconds": 0.0, "notes": []}
    t0 = time.perf_counter()
    snapshot: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "region": region,
        "collected_at": _iso(clock()),
        "instances": [],
        "asgs": [],
        "launch_templates": {},
        "launch_configurations": {},
        "images": {},
        "missing_images": [],
        "ssm": {},
        "incomplete": [],
        "stats": stats,
    }
    with counter.attached(ec2, autoscaling, ssm):
        snapshot["instances"] = _instances(ec2, stats, sizes["instances"])
        snapshot["asgs"] = _asgs(autoscaling, stats, sizes["asgs"])
        snapshot["launch_templates"] = _launch_templates(
            ec2, snapshot["asgs"], stats, sizes["lt_versions"], lg, snapshot["incomplete"]
        )
        snapshot["launch_configurations"] = _launch_configurations(autoscaling, snapshot["asgs"], stats)
        snapshot["ssm"] = _pointers(ssm, ssm_prefix, stats, sizes["parameters"])
        images, missing = _images(ec2, snapshot, stats, sizes["images"], lg)
        snapshot["images"], snapshot["missing_images"] = images, missing
    stats["calls"] = dict(sorted(counter.calls.items()))
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    lg.info(
        "inventory %s: %d instances, %d ASGs, %d launch templates, %d images (%d missing), %d AWS calls in %.2fs",
        region,
        len(snapshot["instances"]),
        len(snapshot["asgs"]),
        len(snapshot["launch_templates"]),
        len(snapshot["images"]),
        len(snapshot["missing_images"]),
        counter.total,
        stats["seconds"],
    )
    return snapshot


def _instances(ec2: Any, stats: dict[str, Any], page_size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pages = _Pages(stats, "instances")
    for page in pages(
        ec2,
        "describe_instances",
        "Reservations",
        page_size,
        Filters=[{"Name": "instance-state-name", "Values": list(LIVE_STATES)}],
    ):
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                tags = _kept_tags(inst.get("Tags"))
                out.append(
                    {
                        "id": inst["InstanceId"],
                        "image_id": inst.get("ImageId"),
                        "launch_time": _iso(inst.get("LaunchTime")),
                        "state": (inst.get("State") or {}).get("Name", "unknown"),
                        "asg": tags.get("aws:autoscaling:groupName"),
                        "tags": tags,
                    }
                )
    stats["items"]["instances"] = len(out)  # instances, not reservations
    return out


def _asg_template(group: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = group.get("LaunchTemplate")
    if not spec:
        mixed = group.get("MixedInstancesPolicy") or {}
        spec = (mixed.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification")
    if not spec:
        return None
    return {
        "id": spec.get("LaunchTemplateId"),
        "name": spec.get("LaunchTemplateName"),
        "version": str(spec.get("Version") or "$Default"),
    }


def _override_templates(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Launch templates a MixedInstancesPolicy override names (per instance type): they launch instances too."""
    mixed = group.get("MixedInstancesPolicy") or {}
    out = []
    for o in (mixed.get("LaunchTemplate") or {}).get("Overrides") or []:
        spec = o.get("LaunchTemplateSpecification")
        if spec:
            out.append(
                {
                    "id": spec.get("LaunchTemplateId"),
                    "name": spec.get("LaunchTemplateName"),
                    "version": str(spec.get("Version") or "$Default"),
                }
            )
    return out


def _asgs(autoscaling: Any, stats: dict[str, Any], page_size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pages = _Pages(stats, "asgs")
    for page in pages(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", page_size):
        for g in page.get("AutoScalingGroups", []):
            out.append(
                {
                    "name": g["AutoScalingGroupName"],
                    "desired": g.get("DesiredCapacity"),
                    "min": g.get("MinSize"),
                    "max": g.get("MaxSize"),
                    "launch_template": _asg_template(g),
                    "override_launch_templates": _override_templates(g),
                    "launch_configuration": g.get("LaunchConfigurationName"),
                    "tags": _kept_tags(g.get("Tags")),
                    "instances": [
                        {
                            "id": i["InstanceId"],
                            "lifecycle": i.get("LifecycleState"),
                            "health": i.get("HealthStatus"),
                            "protected": bool(i.get("ProtectedFromScaleIn", False)),
                        }
                        for i in g.get("Instances", [])
                    ],
                    # only for a group with a warm pool (DescribeAutoScalingGroups answers its configuration)
                    "warm_pool": _warm_pool(autoscaling, stats, g["AutoScalingGroupName"])
                    if g.get("WarmPoolConfiguration") else None,
                }
            )
    return out


#: DescribeWarmPool MaxRecords (the API's maximum)
WARM_POOL_PAGE = 100


def _warm_pool(autoscaling: Any, stats: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The group's warmed instances (id, lifecycle: ``Warmed:Stopped``, ...): one DescribeWarmPool call a page.
    A failed call is a note (the warmed instances are still in DescribeInstances: retention sees their AMIs)."""
    instances: list[dict[str, Any]] = []
    params: dict[str, Any] = {"AutoScalingGroupName": name, "MaxRecords": WARM_POOL_PAGE}
    while True:
        try:
            page = autoscaling.describe_warm_pool(**params)
        except Exception as exc:  # noqa: BLE001 - botocore's errors; the sweep goes on without this pool
            stats["notes"].append(f"DescribeWarmPool {name}: {_error_code(exc)}; its warm pool is not reported")
            return None
        stats["pages"]["warm_pools"] = stats["pages"].get("warm_pools", 0) + 1
        found = page.get("Instances") or []
        stats["items"]["warm_pools"] = stats["items"].get("warm_pools", 0) + len(found)
        instances += [{"id": i["InstanceId"], "lifecycle": i.get("LifecycleState")} for i in found]
        if not page.get("NextToken"):
            return {"instances": instances}
        params["NextToken"] = page["NextToken"]


#: The rollout record's tags on an ASG (rollout/rollout_record.py). A rollout in flight, or one halted and waiting
#: for a human, names the AMIs and launch-template versions it may roll back to: retention counts them as in use.
ROLLOUT_TAG_PREFIX = "phoenix:rollout:"
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_LT_REF = re.compile(r"^(?P<template>\S+):(?P<number>\d+)$")


def rollout_references(tags: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """What an ASG's rollout record names: ``([(tag key, AMI id)], [(tag key, template id or name, version)])``.

    Read by convention, not by the record's full schema, so that a key a newer record adds is covered too: any
    ``phoenix:rollout:*`` value that is an AMI id, and the value of any ``phoenix:rollout:*-lt`` key
    (``target-lt``, ``previous-lt``: ``lt-0abc:7`` or ``web-lt:7``). A malformed record names what it names."""
    amis: list[tuple[str, str]] = []
    refs: list[tuple[str, str, str]] = []
    for key, value in sorted(tags.items()):
        if not key.startswith(ROLLOUT_TAG_PREFIX):
            continue
        value = (value or "").strip()
        if _AMI_ID.match(value):
            amis.append((key, value))
        elif key.endswith("-lt") and (m := _LT_REF.match(value)):
            refs.append((key, m["template"], m["number"]))
    return amis, refs


def _image_of(version: Mapping[str, Any]) -> str | None:
    return (version.get("LaunchTemplateData") or {}).get("ImageId")


def _launch_templates(
    ec2: Any, asgs: list[dict[str, Any]], stats: dict[str, Any], page_size: int, lg: Any, incomplete: list[str]
) -> dict[str, dict[str, Any]]:
    templates: dict[str, dict[str, Any]] = {}
    by_name: dict[str, str] = {}

    def record(v: Mapping[str, Any], alias: str | None) -> None:
        lt_id = v["LaunchTemplateId"]
        t = templates.setdefault(
            lt_id,
            {"name": v.get("LaunchTemplateName"), "default_version": None, "latest_version": None, "versions": {}},
        )
        by_name[t["name"]] = lt_id
        number = int(v["VersionNumber"])
        t["versions"][str(number)] = _image_of(v)
        if v.get("DefaultVersion") or alias == "$Default":
            t["default_version"] = number
        if alias == "$Latest":
            t["latest_version"] = number

    # Default and latest of every template in one id-less paginated listing (AWS takes both aliases in one
    # request and describes a version that is both once). The default is the version flagged DefaultVersion;
    # the latest is the highest number listed for the template (no version is newer than $Latest).
    pages = _Pages(stats, "lt_versions")
    newest: dict[str, Mapping[str, Any]] = {}
    for page in pages(
        ec2, "describe_launch_template_versions", "LaunchTemplateVersions", page_size, Versions=["$Default", "$Latest"]
    ):
        for v in page.get("LaunchTemplateVersions", []):
            record(v, None)
            seen = newest.get(v["LaunchTemplateId"])
            if seen is None or int(v["VersionNumber"]) > int(seen["VersionNumber"]):
                newest[v["LaunchTemplateId"]] = v
    for v in newest.values():
        record(v, "$Latest")

    # What the ASGs use that the listings did not bring: pinned version numbers (and, for a template the
    # listings missed, its aliases). One call per template.
    wanted: dict[tuple[str | None, str | None], set[str]] = {}
    specs = [spec for g in asgs for spec in (g.get("launch_template"), *g.get("override_launch_templates", ())) if spec]
    for g in asgs:  # the versions a rollout record names (its rollback target): resolved like pinned ones
        for _key, template, number in rollout_references(g.get("tags") or {})[1]:
            lt_ref = template.startswith("lt-")
            specs.append({"id": template if lt_ref else None, "name": None if lt_ref else template, "version": number})
    for spec in specs:
        lt_id = spec.get("id") or by_name.get(spec.get("name") or "")
        t = templates.get(lt_id or "")
        version = spec["version"]
        if t is not None and t["default_version"] is not None and t["latest_version"] is not None:
            if version in ("$Default", "$Latest") or version in t["versions"]:
                continue
        need = wanted.setdefault((lt_id, None if lt_id else spec.get("name")), set())
        if version not in ("$Default", "$Latest"):
            need.add(version)
        if t is None or t["default_version"] is None or t["latest_version"] is None:
            need.update(("$Default", "$Latest"))
    for (lt_id, lt_name), versions in sorted(wanted.items(), key=lambda kv: str(kv[0])):
        ident = {"LaunchTemplateId": lt_id} if lt_id else {"LaunchTemplateName": lt_name}
        ordered = sorted(versions)
        try:
            returned: list[Mapping[str, Any]] = []
            for page in pages(
                ec2, "describe_launch_template_versions", "LaunchTemplateVersions", page_size, Versions=ordered, **ident
            ):
                returned.extend(page.get("LaunchTemplateVersions", []))
            for v in returned:
                record(v, None)
            if returned and "$Latest" in ordered:
                # $Latest is the highest version number there is, and it was asked for: the max returned is it
                newest = max(returned, key=lambda v: int(v["VersionNumber"]))
                record(newest, "$Latest")
        except Exception as exc:  # noqa: BLE001 - one bad template must not sink the report
            code = _error_code(exc)
            if not code:
                raise
            # the report goes on without these versions, but what they launch is unknown: retention must not act
            note = f"launch template {lt_id or lt_name} versions {ordered}: {code} (its ASGs show no template image)"
            stats["notes"].append(note)
            incomplete.append(f"launch template {lt_id or lt_name} versions {', '.join(ordered)}: {code}")
            lg.warning("inventory: %s", note)
    return templates


def _launch_configurations(autoscaling: Any, asgs: list[dict[str, Any]], stats: dict[str, Any]) -> dict[str, str | None]:
    """AMIs of the (legacy) launch configurations ASGs still use: only asked for when some ASG uses one."""
    names = sorted({g["launch_configuration"] for g in asgs if g.get("launch_configuration")})
    out: dict[str, str | None] = {}
    pages = _Pages(stats, "launch_configurations")
    for start in range(0, len(names), 50):  # LaunchConfigurationNames: at most 50
        chunk = names[start : start + 50]
        for page in pages(
            autoscaling, "describe_launch_configurations", "LaunchConfigurations", 50, LaunchConfigurationNames=chunk
        ):
            for lc in page.get("LaunchConfigurations", []):
                out[lc["LaunchConfigurationName"]] = lc.get("ImageId")
    return out


def _describe_images_kwargs(ec2: Any, stats: dict[str, Any], lg: Any) -> dict[str, Any]:
    """IncludeDeprecated/IncludeDisabled where botocore's model has them; a clear line where it does not."""
    kwargs: dict[str, Any] = {}
    for member in ("IncludeDeprecated", "IncludeDisabled"):
        if _has_member(ec2, "DescribeImages", member):
            kwargs[member] = True
        else:
            note = (
                f"DescribeImages has no {member} in this botocore model: "
                f"{member[7:].lower()} images may be missing from the inventory"
            )
            stats["notes"].append(note)
            lg.warning("inventory: %s", note)
    return kwargs


def _image_record(img: Mapping[str, Any], ours: bool) -> dict[str, Any]:
    return {
        "name": img.get("Name"),
        "owner_id": img.get("OwnerId"),
        "ours": ours,
        "state": img.get("State"),
        "public": bool(img.get("Public", False)),
        "creation_date": img.get("CreationDate"),
        "deprecation_time": img.get("DeprecationTime"),
        "tags": _kept_tags(img.get("Tags")),
        "snapshot_ids": sorted(
            {bdm["Ebs"]["SnapshotId"] for bdm in img.get("BlockDeviceMappings", []) if (bdm.get("Ebs") or {}).get("SnapshotId")}
        ),
    }


def _images(
    ec2: Any, snapshot: dict[str, Any], stats: dict[str, Any], page_size: int, lg: Any
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    extra = _describe_images_kwargs(ec2, stats, lg)
    images: dict[str, dict[str, Any]] = {}
    pages = _Pages(stats, "images")
    for page in pages(ec2, "describe_images", "Images", page_size, Owners=["self"], **extra):
        for img in page.get("Images", []):
            images[img["ImageId"]] = _image_record(img, ours=True)

    referenced = {i["image_id"] for i in snapshot["instances"] if i.get("image_id")}
    for t in snapshot["launch_templates"].values():
        referenced.update(a for a in t["versions"].values() if a)
    referenced.update(a for a in snapshot.get("launch_configurations", {}).values() if a)
    referenced.update(p["latest"] for p in snapshot.get("ssm", {}).values() if p.get("latest"))
    others = sorted(referenced - images.keys())
    missing: list[str] = []

    def by_id(ids: list[str]) -> None:
        try:
            for page in pages(ec2, "describe_images", "Images", page_size, ImageIds=ids, **extra):
                for img in page.get("Images", []):
                    # Owners=[self] listed every image of ours: anything else is someone else's.
                    images[img["ImageId"]] = _image_record(img, ours=False)
        except Exception as exc:  # noqa: BLE001 - narrowed by code below
            code = _error_code(exc)
            if not code.startswith("InvalidAMIID"):
                raise
            if len(ids) == 1:
                missing.append(ids[0])
                return
            half = len(ids) // 2  # one unknown id fails the whole call: find it by halving
            by_id(ids[:half])
            by_id(ids[half:])

    for start in range(0, len(others), IMAGE_ID_CHUNK):
        by_id(others[start : start + IMAGE_ID_CHUNK])
    missing.extend(i for i in others if i not in images and i not in missing)
    if missing:
        lg.info("inventory: %d referenced images are unknown to DescribeImages (deregistered?): %s", len(missing), missing[:10])
    return images, sorted(set(missing))


def _pointers(ssm: Any, prefix: str, stats: dict[str, Any], page_size: int) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    pages = _Pages(stats, "parameters")
    base = prefix.rstrip("/") + "/"
    for page in pages(ssm, "get_parameters_by_path", "Parameters", page_size, Path=prefix, Recursive=True):
        for p in page.get("Parameters", []):
            rest = p["Name"][len(base) :] if p["Name"].startswith(base) else ""
            role, _, leaf = rest.partition("/")
            if not role or leaf not in ("latest", "latest-version"):
                continue
            entry = out.setdefault(role, {"latest": None, "latest_version": None})
            entry["latest" if leaf == "latest" else "latest_version"] = p.get("Value")
    return dict(sorted(out.items()))


def minimum_pages(snapshot: Mapping[str, Any], page_sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """The fewest calls any client could make to learn this snapshot's data, at the largest page sizes AWS allows
    (or ``page_sizes``).

    One page at least for every listing (an empty region still costs a call). DescribeLaunchTemplateVersions:
    the id-less listing takes ``$Default`` and ``$Latest`` together and describes a version that is both once, so
    ``ceil(distinct default-or-latest versions / 200)`` pages; then one call per template with a numbered version
    that an ASG (its template or a MixedInstancesPolicy override) or a rollout record names and that is neither
    its default nor its latest (AWS takes one template per call and no numbers without a template). Images:
    our own listing, plus the others by id in chunks of :data:`IMAGE_ID_CHUNK` (our chunk, not an AWS limit).
    """
    sizes = {**MAX_PAGE_SIZES, **(page_sizes or {})}

    def pages(n: int, size: int) -> int:
        return max(1, -(-n // size))

    templates = snapshot.get("launch_templates", {})
    by_name = {t.get("name"): lt_id for lt_id, t in templates.items()}
    refs: list[tuple[str | None, str | None]] = []
    for g in snapshot.get("asgs", []):
        for spec in (g.get("launch_template"), *g.get("override_launch_templates", ())):
            if spec:
                refs.append((spec.get("id") or by_name.get(spec.get("name")), spec.get("version")))
        for _key, template, number in rollout_references(g.get("tags") or {})[1]:
            refs.append((template if template.startswith("lt-") else by_name.get(template), number))
    pinned: set[str] = set()
    for lt_id, v in refs:
        t = templates.get(lt_id or "")
        if t is None or v in (None, "$Default", "$Latest"):
            continue
        if v not in (str(t.get("default_version")), str(t.get("latest_version"))):
            pinned.add(lt_id or "")
    listed = sum(1 if t.get("default_version") == t.get("latest_version") else 2 for t in templates.values())
    own = sum(1 for i in snapshot.get("images", {}).values() if i.get("ours"))
    foreign = sum(1 for i in snapshot.get("images", {}).values() if not i.get("ours")) + len(
        snapshot.get("missing_images", [])
    )
    params = sum(len([v for v in e.values() if v is not None]) for e in snapshot.get("ssm", {}).values())
    out = {
        "ec2:DescribeInstances": pages(len(snapshot.get("instances", [])), sizes["instances"]),
        "autoscaling:DescribeAutoScalingGroups": pages(len(snapshot.get("asgs", [])), sizes["asgs"]),
        "ec2:DescribeLaunchTemplateVersions": pages(listed, sizes["lt_versions"]) + len(pinned),
        "ec2:DescribeImages": pages(own, sizes["images"]) + -(-foreign // IMAGE_ID_CHUNK),
        "ssm:GetParametersByPath": pages(params, sizes["parameters"]),
    }
    pools = [g["warm_pool"] for g in snapshot.get("asgs", []) if g.get("warm_pool") is not None]
    if pools:
        out["autoscaling:DescribeWarmPool"] = sum(pages(len(p["instances"]), WARM_POOL_PAGE) for p in pools)
    return out
