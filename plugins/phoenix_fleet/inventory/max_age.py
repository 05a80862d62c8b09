"""fleet_max_age's choices: which inventory report to act on, and what to renew. No AWS calls here except
reading the report (through a client the caller passes).

The DAG (dags/fleet_max_age.py) runs after each inventory (its Asset) or by hand:

1. ``report_ref`` picks the report: the run's ``report`` Param, else the triggering inventory event's S3 copy
   (any worker can read it), else its local path, else ``s3://<artifacts_bucket>/inventory/latest/report.json``;
2. ``read_report`` loads it (S3 or a local file) and checks its schema;
3. ``throughput`` says how many ASGs this run renews: enough to keep up with the fleet (every renewable ASG
   renewed within its role's max age minus ``lead_days``: ``ceil(ASGs / (max age - lead))`` a night per role),
   more when instances are already past max age, never more than the budget (``max_age_asgs_per_run``, or the
   ``max_asgs`` Param); it says when the budget cannot keep up, and what to set;
4. ``renewals`` turns ``report.max_age_plan(report, per_run, lead_days)`` into one AsgRecycleOperator kwargs
   dict per ASG (``max_age_days`` = the role's max age minus ``lead_days``: an instance that would pass the age
   before the next nightly run is renewed now, so none lives past it).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phoenix_fleet import asset_events

from .inventory_assets import INVENTORY_ASSET_URI
from .report import SCHEMA_ID, max_age_plan, renewal_skip_reason

_NOT_THERE = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "404", "403"})


class MaxAgeParamError(ValueError):
    """A bad fleet_max_age Param: the message names it and the fix."""


def _json_sibling(ref: str) -> str:
    """The report.json next to a report.html/csv (the inventory writes the three side by side)."""
    for ext in (".html", ".csv"):
        if ref.endswith("/report" + ext):
            return ref[: -len(ext)] + ".json"
    return ref


def report_ref(param: str | None, events: Any, bucket: str) -> str:
    """Where to read the report from (see the module doc)."""
    if param and str(param).strip():
        return _json_sibling(str(param).strip())
    announced = [extra for extra in asset_events.extras(events, INVENTORY_ASSET_URI) if extra]
    newest = announced[-1] if announced else None
    if newest:
        if newest.get("s3_uri"):
            return _json_sibling(str(newest["s3_uri"]))
        if newest.get("path"):
            return _json_sibling(str(newest["path"]))
    return f"s3://{bucket}/inventory/latest/report.json"


def read_report(ref: str, s3_client: Callable[[], Any]) -> dict[str, Any]:
    """The report at ``ref`` (``s3://bucket/key`` or a local path), schema-checked."""
    try:
        if ref.startswith("s3://"):
            bucket, _, key = ref[5:].partition("/")
            body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            body = Path(ref).read_bytes()
    except FileNotFoundError:
        raise MaxAgeParamError(
            f"params.report: {ref} does not exist. Fix: run fleet_inventory first, or pass the path or s3:// URI "
            "of a report.json"
        ) from None
    except Exception as exc:  # botocore ClientError: a missing or forbidden report is bad input; the rest
        # (throttling, network) is raised as is, for the task's retries
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code not in _NOT_THERE:
            raise
        raise MaxAgeParamError(
            f"params.report: cannot read {ref} ({code or type(exc).__name__}: {exc}). Fix: run fleet_inventory "
            "first (it writes inventory/latest/), or pass the path or s3:// URI of a report.json"
        ) from None
    try:
        report = json.loads(body)
    except ValueError:
        raise MaxAgeParamError(f"params.report: {ref} is not JSON. Fix: pass a report.json") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_ID:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise MaxAgeParamError(
            f"params.report: {ref} is not an inventory report (schema {found!r}, expected {SCHEMA_ID!r}). "
            "Fix: pass the report.json fleet_inventory wrote"
        )
    return report


def _number(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    if value in (None, ""):
        value = default
    if isinstance(value, bool):
        raise MaxAgeParamError(f"params.{name}: {value!r} is not a number. Fix: e.g. {default:g}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MaxAgeParamError(f"params.{name}: {value!r} is not a number. Fix: e.g. {default:g}") from None
    if not lo <= number <= hi:
        raise MaxAgeParamError(f"params.{name}: {number:g} is outside {lo:g}..{hi:g}. Fix: e.g. {default:g}")
    return number


def limits(params: Mapping[str, Any], config_budget: int) -> tuple[int, float]:
    """(the budget: most ASGs this run may renew, lead days) from the Params; ``max_asgs`` 0 means the fleet
    config's ``max_age_asgs_per_run``."""
    budget = int(_number(params, "max_asgs", 0, 0, 500)) or config_budget
    lead = _number(params, "lead_days", 1, 0, 30)
    return budget, lead


def throughput(report: Mapping[str, Any], budget: int, lead_days: float) -> dict[str, Any]:
    """How many ASGs this run renews, and whether the budget keeps up with the fleet.

    Every renewable ASG (of a role, on a launch-template AMI of ours, with instances) must be renewed within its
    role's max age minus ``lead_days`` (the *window*): one run a night (after each inventory) keeps up by renewing
    ``ceil(ASGs / window)`` of each role a night (``needed``). ``per_run`` is that, or the number of ASGs *due*
    tonight (instances that would pass max age before the next run) if more, never more than ``budget``.
    ``keeps_up`` is ``needed <= budget``; otherwise ``message`` says so, what every ASG's renewal interval
    becomes, and the fix. ``behind``: due ASGs this run leaves for the next (the budget is below tonight's
    clump: instances of those pass max age; deferring spreads the clump over the next nights).
    """
    amis = {(a["region"], a["image_id"]): a for a in report.get("amis", [])}
    asgs: Counter[str] = Counter()
    windows: dict[str, float] = {}
    for a in report["asgs"]:
        if not a.get("instances") or renewal_skip_reason(a, amis):
            continue
        role = a["role"]
        asgs[role] += 1
        window = float(a["max_age_days"]) - lead_days
        if window <= 0:
            raise MaxAgeParamError(
                f"params.lead_days: {lead_days:g} is not below {role}'s max age of {a['max_age_days']} days. "
                "Fix: a lead of a day or two (the time between two inventories)"
            )
        windows[role] = min(window, windows.get(role, window))
    roles = {
        role: {"asgs": n, "window_days": round(windows[role], 2), "per_night": math.ceil(n / windows[role])}
        for role, n in sorted(asgs.items())
    }
    needed = sum(r["per_night"] for r in roles.values())
    due = max_age_plan(report, 0, lead_days)["deferred"]  # renewable ASGs that must go tonight
    overdue = sum(1 for e in due if e["stale"])
    per_run = min(budget, max(needed, len(due)))
    out: dict[str, Any] = {
        "asgs": sum(asgs.values()),
        "roles": roles,
        "needed_per_night": needed,
        "due_asgs": len(due),
        "overdue_asgs": overdue,
        "behind": max(0, len(due) - per_run),
        "budget": budget,
        "per_run": per_run,
        "keeps_up": needed <= budget,
        "message": None,
    }
    if not out["keeps_up"]:
        cycle = sum(asgs.values()) / budget  # nights to renew them all at the budget
        shortest = min(windows.values())
        out["message"] = (
            f"fleet_max_age cannot keep up: {out['asgs']} renewable ASG(s) need {needed} renewal(s) a night to renew "
            "each within max age minus lead days ("
            + ", ".join(f"{role}: {r['asgs']} / {r['window_days']:g} days" for role, r in roles.items())
            + f"); the budget is {budget} (max_age_asgs_per_run or params.max_asgs), so an ASG is renewed every "
            f"~{cycle:.1f} days, not within {shortest:g}: instances will live past max age. Fix: "
            f"max_age_asgs_per_run: {needed} or more in the fleet config (docs/scale.md sizes the renew concurrency "
            "and the API budget for it), or a longer max_age_days"
        )
    return out


def renewals(report: Mapping[str, Any], budget: int, lead_days: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kwargs for one AsgRecycleOperator per ASG to renew, the plan with recycle/deferred/skipped/throughput).

    How many: :func:`throughput` (``per_run``, at most ``budget``). Which: the due ASGs, most overdue first.
    Each kwargs: ``asg_name, region_name, role, max_age_days, target_image_id, target_label``. The target is
    the image the report saw the ASG's launch template use: if it moved since, the renewal skips (the
    rollout of the new image renews those instances anyway)."""
    rate = throughput(report, budget, lead_days)
    plan: dict[str, Any] = dict(max_age_plan(report, rate["per_run"], lead_days))
    plan["throughput"] = rate
    out = []
    for entry in plan["recycle"]:
        age = float(entry["max_age_days"]) - lead_days
        if age <= 0:
            raise MaxAgeParamError(
                f"params.lead_days: {lead_days:g} is not below {entry['role']}'s max age of {entry['max_age_days']} "
                "days. Fix: a lead of a day or two (the time between two inventories)"
            )
        out.append({
            "asg_name": entry["asg"],
            "region_name": entry["region"],
            "role": entry["role"],
            "max_age_days": round(age, 4),
            "target_image_id": entry["target_image_id"],
            "target_label": entry["target_version"],
        })
    return out, plan


def describe(plan: Mapping[str, Any], report: Mapping[str, Any], ref: str, lead_days: float) -> str:
    """What this run will do, for the log."""
    rate = plan.get("throughput") or {}
    lines = [
        f"inventory report {ref} (generated {report.get('generated_at')}): "
        f"{report.get('totals', {}).get('stale', '?')} instance(s) past max age",
    ]
    if rate:
        lines.append(
            f"throughput: {rate['asgs']} renewable ASG(s) need {rate['needed_per_night']} renewal(s) a night ("
            + ", ".join(f"{role}: {r['asgs']} / {r['window_days']:g} days" for role, r in rate["roles"].items())
            + f"); {rate['due_asgs']} due tonight ({rate['overdue_asgs']} past max age already); budget "
            f"{rate['budget']}; this run renews up to {rate['per_run']}: "
            + ("keeps up" if rate["keeps_up"] else "CANNOT KEEP UP")
        )
        if rate.get("behind"):
            lines.append(
                f"behind: {rate['behind']} due ASG(s) wait for the next run (the budget is below tonight's clump): "
                "some instances pass max age. Fix: a larger max_age_asgs_per_run, or params.max_asgs for this run"
            )
        if rate["message"]:
            lines.append(rate["message"])
    lines.append(f"renewing {len(plan['recycle'])} ASG(s) this run (instances older than max age - {lead_days:g} day(s)):")
    for e in plan["recycle"]:
        lines.append(
            f"  {e['region']}/{e['asg']} (role {e['role']}): {e['stale']}/{e['instances']} past {e['max_age_days']} "
            f"days, oldest {e['oldest_age_days']} days, on {e['target_version'] or e['target_image_id']}"
        )
    if plan["deferred"]:
        names = [f"{e['region']}/{e['asg']}" for e in plan["deferred"]]
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        lines.append(f"deferred to the next run (limit reached): {', '.join(names[:20])}{more}")
    for e in plan["skipped"][:50]:
        lines.append(f"  skipped {e['region']}/{e['asg']}: {e['reason']}")
    if len(plan["skipped"]) > 50:
        lines.append(f"  ... and {len(plan['skipped']) - 50} more skipped")
    return "\n".join(lines)
