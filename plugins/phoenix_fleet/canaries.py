"""Canary instances and their bound: a canary never outlives the run that launched it.

``verify.launch_canary`` tags each canary ``phoenix:canary=true`` and ``phoenix:canary-expires=<ISO 8601 UTC>``: its
launch time plus the longest the verify stage can take (the release DAG sizes it from the stage limits, see
``pipelines/run_budget.py``). Normally the ``terminate_canary`` teardown ends it long before. But on ``dagrun_timeout``
Airflow marks unfinished tasks skipped, teardowns included, and a killed worker runs nothing: such a canary is an
orphan once it is past its bound, and nothing but a sweep will end it. Every release sweeps expired canaries in its
home region before anything else (``plan``), and ``fleet_inventory``'s report lists every canary with its bound.

A canary without the expiry tag (launched by an older phoenix-fleet) is bounded by its launch time plus
``DEFAULT_LIFETIME``.

Pure: plain dicts in (DescribeInstances entries, or the inventory snapshot's instance records), plain data out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

CANARY_TAG = "phoenix:canary"
EXPIRES_TAG = "phoenix:canary-expires"
MANAGED_BY_TAG = "phoenix:managed-by"
MANAGED_BY = "phoenix-fleet"
DEFAULT_LIFETIME = dt.timedelta(hours=12)
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        parsed = value
    elif value:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    tags = instance.get("Tags")
    if isinstance(tags, list):
        return {t["Key"]: t["Value"] for t in tags}
    return dict(instance.get("tags") or {})


def is_canary(instance: Mapping[str, Any]) -> bool:
    return _tags(instance).get(CANARY_TAG) == "true"


def expires_at(instance: Mapping[str, Any], default_lifetime: dt.timedelta = DEFAULT_LIFETIME) -> dt.datetime | None:
    """The canary's bound: its expiry tag, else launch time + ``default_lifetime`` (None when neither is known)."""
    tagged = _time(_tags(instance).get(EXPIRES_TAG))
    if tagged is not None:
        return tagged
    launched = _time(instance.get("LaunchTime") or instance.get("launch_time"))
    return launched + default_lifetime if launched else None


def canary_record(
    instance: Mapping[str, Any], now: dt.datetime, default_lifetime: dt.timedelta = DEFAULT_LIFETIME
) -> dict[str, Any]:
    """One canary as the sweep and the report show it."""
    tags = _tags(instance)
    launched = _time(instance.get("LaunchTime") or instance.get("launch_time"))
    bound = expires_at(instance, default_lifetime)
    state = instance.get("state") or (instance.get("State") or {}).get("Name")
    return {
        "instance_id": instance.get("InstanceId") or instance.get("id"),
        "role": tags.get("phoenix:role"),
        "image_id": instance.get("ImageId") or instance.get("image_id"),
        "verify_run": tags.get("phoenix:verify-run"),
        "state": state,
        "launch_time": iso(launched) if launched else None,
        "age_hours": round(max(0.0, (now - launched).total_seconds()) / 3600, 2) if launched else None,
        "expires_at": iso(bound) if bound else None,
        "bound_from": "tag" if EXPIRES_TAG in tags else "default",
        "expired": bool(bound and now >= bound),
    }


def expired_canaries(
    instances: Iterable[Mapping[str, Any]], now: dt.datetime, default_lifetime: dt.timedelta = DEFAULT_LIFETIME
) -> list[dict[str, Any]]:
    """The live canaries past their bound (orphans), oldest first."""
    out = [
        canary_record(i, now, default_lifetime)
        for i in instances
        if is_canary(i) and (i.get("state") or (i.get("State") or {}).get("Name")) in LIVE_STATES
    ]
    return sorted((c for c in out if c["expired"]), key=lambda c: (c["expires_at"] or "", c["instance_id"] or ""))


def sweep_expired_canaries(
    ec2: Any, now: dt.datetime, *, default_lifetime: dt.timedelta = DEFAULT_LIFETIME, dry_run: bool = False,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Terminate every canary of ours in ``ec2``'s region that is past its bound (``dry_run``: only report them).
    Returns the expired canaries (``terminated`` set on each)."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{CANARY_TAG}", "Values": ["true"]},
            {"Name": f"tag:{MANAGED_BY_TAG}", "Values": [MANAGED_BY]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
    )
    instances = [i for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])]
    expired = expired_canaries(instances, now, default_lifetime)
    for c in expired:
        c["terminated"] = False
        if log is not None:
            log.warning(
                "Canary %s (%s, verify run %s, launched %s) is past its bound %s: an orphan of a run that ended "
                "without its teardown%s", c["instance_id"], c["role"], c["verify_run"], c["launch_time"],
                c["expires_at"], " (dry run: left running)" if dry_run else "; terminating it",
            )
    if expired and not dry_run:
        ec2.terminate_instances(InstanceIds=[c["instance_id"] for c in expired])
        for c in expired:
            c["terminated"] = True
    return expired
