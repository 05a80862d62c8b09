"""Pure launch-template logic: which version an AutoScaling group launches from, and is it on the new AMI?

An ASG names its launch template version as ``$Default``, ``$Latest`` or a number (and a MixedInstancesPolicy
may name other templates per instance-type override). :func:`resolve_version` turns that into a number;
:func:`check_asg_images` says which groups would not launch ``image_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class LaunchTemplateCheckError(RuntimeError):
    """Some AutoScaling groups would not launch the new AMI (the message names them)."""

    def __init__(self, image_id: str, mismatches: list[AsgTemplateImage], problems: list[str] | None = None):
        self.image_id = image_id
        self.mismatches = mismatches
        self.problems = problems or []
        names = sorted({m.asg_name for m in mismatches} | {p.split(":", 1)[0] for p in self.problems})
        lines = [
            f"{m.asg_name}: {m.template_name or m.template_id} version {m.spec_version} "
            f"(-> {m.resolved_version}) launches {m.image_id or 'no image'}"
            for m in mismatches
        ] + list(self.problems)
        super().__init__(
            f"{len(names)} AutoScaling group(s) do not launch {image_id}: {', '.join(names)}\n  "
            + "\n  ".join(lines)
            + "\nFix: apply again (Terraform or the native backend) and check that the groups' launch templates "
            "point at the new image; a group pinned to an explicit version must be moved to the new one"
        )


def resolve_version(spec_version: str | int | None, default_version: int, latest_version: int) -> int:
    """The version number an ASG's launch-template ``Version`` designates (AWS: omitted means ``$Default``)."""
    if spec_version in (None, "", "$Default"):
        return int(default_version)
    if spec_version == "$Latest":
        return int(latest_version)
    try:
        return int(str(spec_version))
    except ValueError:
        raise ValueError(
            f"launch template version {spec_version!r} is not $Default, $Latest or a number"
        ) from None


@dataclass(frozen=True)
class TemplateRef:
    """One launch-template reference of an ASG (the main one or a mixed-instances override)."""

    asg_name: str
    template_id: str | None
    template_name: str | None
    spec_version: str | None
    where: str  # "LaunchTemplate", "MixedInstancesPolicy", "MixedInstancesPolicy.Overrides[2]"


def template_refs(asg: Mapping[str, Any]) -> tuple[list[TemplateRef], list[str]]:
    """Every launch-template reference of a DescribeAutoScalingGroups entry, plus problems (e.g. a launch config)."""
    name = asg["AutoScalingGroupName"]
    refs: list[TemplateRef] = []
    problems: list[str] = []

    def add(spec: Mapping[str, Any] | None, where: str) -> None:
        if spec:
            refs.append(
                TemplateRef(
                    name, spec.get("LaunchTemplateId"), spec.get("LaunchTemplateName"), spec.get("Version"), where
                )
            )

    add(asg.get("LaunchTemplate"), "LaunchTemplate")
    mixed = asg.get("MixedInstancesPolicy") or {}
    lt = mixed.get("LaunchTemplate") or {}
    add(lt.get("LaunchTemplateSpecification"), "MixedInstancesPolicy")
    for i, override in enumerate(lt.get("Overrides") or []):
        add(override.get("LaunchTemplateSpecification"), f"MixedInstancesPolicy.Overrides[{i}]")
    if not refs:
        if asg.get("LaunchConfigurationName"):
            problems.append(
                f"{name}: uses launch configuration {asg['LaunchConfigurationName']!r}, not a launch template. "
                "Fix: move the group to a launch template"
            )
        else:
            problems.append(f"{name}: has no launch template")
    return refs, problems


@dataclass(frozen=True)
class AsgTemplateImage:
    asg_name: str
    template_id: str | None
    template_name: str | None
    spec_version: str | None
    resolved_version: int | None
    image_id: str | None
    where: str = "LaunchTemplate"

    def to_dict(self) -> dict[str, Any]:
        return {
            "asg_name": self.asg_name,
            "launch_template_id": self.template_id,
            "launch_template_name": self.template_name,
            "version": self.spec_version,
            "resolved_version": self.resolved_version,
            "image_id": self.image_id,
            "where": self.where,
        }


def check_asg_images(resolved: Iterable[AsgTemplateImage], image_id: str) -> list[AsgTemplateImage]:
    """The references that do not launch ``image_id``."""
    return [r for r in resolved if r.image_id != image_id]
