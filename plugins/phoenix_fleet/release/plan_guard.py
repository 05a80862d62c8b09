"""The Terraform plan guard: before apply, a release may only move *its role's* launch templates to *its AMI*.

Reads the JSON of ``terraform show -json <planfile>`` and allows exactly:

- ``aws_launch_template`` updates in place that touch the image and version bookkeeping only
  (``image_id``, ``latest_version``, ``default_version``), and, when the release's AMI is given, only to it;
- ``aws_autoscaling_group`` updates in place that touch only the launch template's ``version``;
- data-source reads and no-ops.

When the release's role is given, a changed resource must carry ``phoenix:role=<role>`` (its tags; an ASG's
``tag`` blocks): a release of one role never moves another role's templates (a root can hold several roles).

Anything else (a destroy, a replacement, a create, an update of another attribute, another resource
type, another role's resource, another AMI) is a violation naming the resource address, unless the run
explicitly allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LT_ATTRS = frozenset({"image_id", "latest_version", "default_version"})
ASG_LT_KEYS = frozenset({"version"})


class PlanGuardError(RuntimeError):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = "\n  ".join(f"{v.address}: {v.reason}" for v in violations)
        super().__init__(
            f"the Terraform plan does more than move this role's launch templates to the release's AMI:\n  {lines}\n"
            "Fix: review the plan; if these changes are intended, re-run with allow_destroy/allow_other_changes "
            "(params.allow_unsafe_plan) set explicitly"
        )


@dataclass(frozen=True)
class Violation:
    address: str
    reason: str


@dataclass(frozen=True)
class PlanSummary:
    launch_templates: tuple[str, ...]
    asgs: tuple[str, ...]
    violations: tuple[Violation, ...]
    allowed: tuple[Violation, ...] = ()  # changes that pass only because the run allowed them explicitly

    @property
    def has_changes(self) -> bool:
        return bool(self.launch_templates or self.asgs or self.violations or self.allowed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "launch_templates": list(self.launch_templates),
            "asgs": list(self.asgs),
            "violations": [{"address": v.address, "reason": v.reason} for v in self.violations],
            "allowed": [{"address": v.address, "reason": v.reason} for v in self.allowed],
        }


def _norm(value: Any) -> Any:
    """Provider noise away: null, "", [] and {} are all "unset"; dicts lose unset keys (recursively)."""
    if isinstance(value, dict):
        out = {k: _norm(v) for k, v in value.items()}
        out = {k: v for k, v in out.items() if v is not None}
        return out or None
    if isinstance(value, list):
        items = [_norm(v) for v in value]
        return None if not items or all(i is None for i in items) else items
    if value == "":
        return None
    return value


def _has_unknown(value: Any) -> bool:
    """``after_unknown`` mirrors the attribute's structure with ``false``/``{}``/``[]`` placeholders; only a
    ``true`` somewhere inside means a value is unknown until apply."""
    if value is True:
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def _changed_keys(change: Mapping[str, Any]) -> set[str]:
    before = change.get("before") or {}
    after = change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    keys = {k for k in set(before) | set(after) if _norm(before.get(k)) != _norm(after.get(k))}
    keys |= {k for k, v in unknown.items() if _has_unknown(v)}
    return keys


def _asg_lt_changed_keys(change: Mapping[str, Any]) -> set[str]:
    def one(x: Any) -> dict[str, Any]:
        lt = (x or {}).get("launch_template") or [{}]
        return lt[0] if isinstance(lt, list) and lt and isinstance(lt[0], dict) else {}

    b, a = one(change.get("before")), one(change.get("after"))
    u = one(change.get("after_unknown")) if isinstance(change.get("after_unknown"), dict) else {}
    keys = {k for k in set(b) | set(a) if _norm(b.get(k)) != _norm(a.get(k))}
    keys |= {k for k, v in u.items() if _has_unknown(v)}
    return keys


ROLE_TAG = "phoenix:role"


def resource_role(change: Mapping[str, Any]) -> str | None:
    """The ``phoenix:role`` a changed resource carries: its ``tags``/``tags_all``, or an ASG's ``tag`` blocks
    (after the change, else before). None: it carries none."""
    for state in (change.get("after"), change.get("before")):
        if not isinstance(state, Mapping):
            continue
        for key in ("tags", "tags_all"):
            tags = state.get(key)
            if isinstance(tags, Mapping) and tags.get(ROLE_TAG):
                return str(tags[ROLE_TAG])
        for block in state.get("tag") or []:
            if isinstance(block, Mapping) and block.get("key") == ROLE_TAG and block.get("value"):
                return str(block["value"])
    return None


def check_plan(
    plan: Mapping[str, Any],
    allow_destroy: bool = False,
    allow_other_changes: bool = False,
    role: str | None = None,
    image_id: str | None = None,
) -> PlanSummary:
    """Classify every resource change of a plan; violations are returned, not raised.

    ``role``: the role being released; a changed resource of another role (or of none) is a violation.
    ``image_id``: the release's AMI in this root's region; a launch template moved to any other image is one.
    Both pass only with ``allow_other_changes`` (and are then listed as allowed).
    """
    lts: list[str] = []
    asgs: list[str] = []
    bad: list[Violation] = []
    ok: list[Violation] = []
    for rc in plan.get("resource_changes") or []:
        addr = rc.get("address", "?")
        change = rc.get("change") or {}
        actions = list(change.get("actions") or [])
        if rc.get("mode") == "data" or actions in (["no-op"], ["read"]):
            continue
        rtype = rc.get("type", "")
        if role is not None:
            owner = resource_role(change)
            if owner != role:
                reason = (
                    f"belongs to role {owner!r} ({ROLE_TAG}), not {role!r}: a release of {role} changes only "
                    f"{role}'s resources ({'/'.join(actions)})"
                    if owner
                    else f"carries no {ROLE_TAG} tag, so it cannot be {role}'s: a release of {role} changes only "
                    f"{role}'s resources ({'/'.join(actions)})"
                )
                (ok if allow_other_changes else bad).append(Violation(addr, reason))
                if not allow_other_changes:
                    continue
        if rtype == "aws_launch_template" and image_id and actions == ["update"]:
            after = change.get("after") or {}
            if (change.get("after_unknown") or {}).get("image_id") is True:
                reason = f"image_id is unknown until apply: cannot check it is the release's {image_id}"
            elif after.get("image_id") != image_id:
                reason = f"would launch {after.get('image_id')!r}, not the release's {image_id}"
            else:
                reason = ""
            if reason:
                (ok if allow_other_changes else bad).append(Violation(addr, reason))
                if not allow_other_changes:
                    continue
        if "delete" in actions:
            what = "replace" if "create" in actions else "destroy"
            reason = f"would {what} ({'/'.join(actions)})"
            if change.get("replace_paths"):
                reason += f", forced by {change['replace_paths']}"
            (ok if allow_destroy else bad).append(Violation(addr, reason))
            continue
        if actions == ["create"]:
            (ok if allow_other_changes else bad).append(Violation(addr, "would create a new resource"))
            continue
        if actions != ["update"]:
            bad.append(Violation(addr, f"unexpected actions {actions}"))
            continue
        if rtype == "aws_launch_template":
            extra = _changed_keys(change) - LT_ATTRS
            if extra:
                v = Violation(addr, f"launch template update also changes {sorted(extra)}")
                (ok if allow_other_changes else bad).append(v)
            if not extra or allow_other_changes:
                lts.append(addr)
        elif rtype == "aws_autoscaling_group":
            extra = _changed_keys(change) - {"launch_template"}
            lt_extra = _asg_lt_changed_keys(change) - ASG_LT_KEYS
            if extra or lt_extra:
                v = Violation(
                    addr,
                    "ASG update changes more than the launch-template version: "
                    f"{sorted(extra | {f'launch_template.{k}' for k in lt_extra})}",
                )
                (ok if allow_other_changes else bad).append(v)
            if not (extra or lt_extra) or allow_other_changes:
                asgs.append(addr)
        else:
            v = Violation(addr, f"would update a {rtype} ({sorted(_changed_keys(change))})")
            (ok if allow_other_changes else bad).append(v)
    return PlanSummary(tuple(lts), tuple(asgs), tuple(bad), tuple(ok))


def guard_plan(
    plan: Mapping[str, Any],
    allow_destroy: bool = False,
    allow_other_changes: bool = False,
    role: str | None = None,
    image_id: str | None = None,
) -> PlanSummary:
    """check_plan, raising PlanGuardError (naming every offending address) on a violation."""
    summary = check_plan(plan, allow_destroy, allow_other_changes, role=role, image_id=image_id)
    if summary.violations:
        raise PlanGuardError(list(summary.violations))
    return summary


def addresses(violations: Iterable[Violation]) -> list[str]:
    return [v.address for v in violations]
