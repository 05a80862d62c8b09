"""fleet_max_age's choices: which inventory report to act on, and what to renew. No AWS calls here except
reading the report (through a client the caller passes).

The DAG (dags/fleet_max_age.py) runs after each inventory (its Asset) or by hand:

1. ``report_ref`` picks the report: the run's ``report`` Param, else the triggering inventory event's S3 copy
   (any worker can read it), else its local path, else ``s3://<artifacts_bucket>/inventory/latest/report.json``;
2. ``read_report`` loads it (S3 or a local file) and checks its schema;
3. ``renewals`` turns ``report.max_age_plan(report, limit)`` into one AsgRecycleOperator kwargs dict per ASG
   (``max_age_days`` = the role's max age minus ``lead_days``: an instance that would pass the age before the
   next nightly run is renewed now, so none lives past it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phoenix_fleet import asset_events

from .inventory_assets import INVENTORY_ASSET_URI
from .report import SCHEMA_ID, max_age_plan

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


def limits(params: Mapping[str, Any], config_limit: int) -> tuple[int, float]:
    """(ASGs per run, lead days) from the Params; ``max_asgs`` 0 means the fleet config's."""
    max_asgs = int(_number(params, "max_asgs", 0, 0, 500)) or config_limit
    lead = _number(params, "lead_days", 1, 0, 30)
    return max_asgs, lead


def renewals(report: Mapping[str, Any], limit: int, lead_days: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kwargs for one AsgRecycleOperator per ASG to renew, the plan with recycle/deferred/skipped).

    Each kwargs: ``asg_name, region_name, role, max_age_days, target_image_id, target_label``. The target is
    the image the report saw the ASG's launch template use: if it moved since, the renewal skips (the
    rollout of the new image renews those instances anyway)."""
    plan = max_age_plan(report, limit)
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
    lines = [
        f"inventory report {ref} (generated {report.get('generated_at')}): "
        f"{report.get('totals', {}).get('stale', '?')} instance(s) past max age",
        f"renewing {len(plan['recycle'])} ASG(s) this run (instances older than max age - {lead_days:g} day(s)):",
    ]
    for e in plan["recycle"]:
        lines.append(
            f"  {e['region']}/{e['asg']} (role {e['role']}): {e['stale']}/{e['instances']} past {e['max_age_days']} "
            f"days, oldest {e['oldest_age_days']} days, on {e['target_version'] or e['target_image_id']}"
        )
    if plan["deferred"]:
        names = ", ".join(f"{e['region']}/{e['asg']}" for e in plan["deferred"])
        lines.append(f"deferred to the next run (limit reached): {names}")
    for e in plan["skipped"]:
        lines.append(f"  skipped {e['region']}/{e['asg']}: {e['reason']}")
    return "\n".join(lines)
