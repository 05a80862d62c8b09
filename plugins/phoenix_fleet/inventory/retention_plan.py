"""AMI retention, the pure part: which of a role's AMIs are in use, which to keep, deprecate, wait on or delete.

``images_in_use(snapshots)`` reads region snapshots (``collect.collect_region``) and returns every AMI id that
something uses, with the reasons:

* an instance in any state but terminated (pending, running, stopping, stopped, shutting-down), in an ASG
  or not;
* a launch-template version the sweep resolved: every template's ``$Default`` and ``$Latest``, and every
  version an ASG pins (also through a MixedInstancesPolicy override), and a launch configuration's AMI;
* an SSM pointer's current value (``<prefix>/<role>/latest``), and every AMI of the version that
  ``<prefix>/<role>/latest-version`` names (in every region);
* what an ASG's rollout record names (tags ``phoenix:rollout:*``, see ``rollout/rollout_record.py``): a rollout
  in flight, or one halted in phase ``failed`` and waiting for a human, may still roll back. Every AMI any of its
  tags names (``target``, ``previous``, ...), and the AMI of every launch-template version it names
  (``target-lt``, ``previous-lt``: the sweep resolves them, so the version itself counts as resolved too).

``plan_retention(snapshots, role, keep_versions, grace_days, now)`` then decides, per AMI of the role
(owned by us, tagged ``phoenix:role``) in the swept regions:

==============  ================================================================================================
``keep``        in use; or of a version in use anywhere (the whole version is kept in every region); or among
                the newest ``keep_versions`` versions; or at/after the latest pointer's version (a release in
                flight); or not yet ``available``; or without a parseable ``phoenix:version``
``undeprecate`` kept, but carries our ``phoenix:deprecated-at`` tag (e.g. the pointer was rolled back to it)
``deprecate``   superseded and unused: deprecate now (EnableImageDeprecation + tag ``phoenix:deprecated-at``)
``wait``        deprecated less than ``grace_days`` ago
``delete``      deprecated at least ``grace_days`` ago: deregister, then delete its snapshots
==============  ================================================================================================

If any region's sweep is ``incomplete`` (a listing the endpoint truncated, or any lookup that failed: a throttled
or refused per-template version lookup), everything is kept in every region (only ``undeprecate`` may still
happen): in-use cannot be judged on partial data, and a version in use in one region is kept in all.

Invariant (property-tested): no AMI in ``images_in_use`` is ever planned ``deprecate``, ``wait`` or
``delete``. Regions that were not swept are never acted on (their AMIs are not in the snapshots).
No I/O and no clock: ``now`` is an input.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from phoenix_fleet.inventory.collect import rollout_references
from phoenix_fleet.release.versions import Version, VersionError

DEPRECATED_AT_TAG = "phoenix:deprecated-at"
ACTIONS = ("keep", "undeprecate", "deprecate", "wait", "delete")


def _version(text: str | None) -> Version | None:
    try:
        return Version.parse(text or "")
    except VersionError:
        return None


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def images_in_use(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{ami id: [reason, ...]}`` for every AMI something in the snapshots uses (see the module docstring)."""
    snaps = list(snapshots)
    used: dict[str, list[str]] = defaultdict(list)
    pinned_versions: dict[str, set[str]] = defaultdict(set)  # role -> versions named by latest-version
    for s in snaps:
        region = s["region"]
        for inst in s.get("instances", []):
            if inst.get("image_id") and inst.get("state") != "terminated":
                used[inst["image_id"]].append(f"instance {inst['id']} ({inst.get('state')}) in {region}")
        for lt_id, t in s.get("launch_templates", {}).items():
            for number, ami in t.get("versions", {}).items():
                if not ami:
                    continue
                marks = [
                    alias
                    for alias, n in (("$Default", t.get("default_version")), ("$Latest", t.get("latest_version")))
                    if str(n) == number
                ]
                label = f"{'/'.join(marks)} " if marks else ""
                used[ami].append(f"launch template {t.get('name') or lt_id} {label}v{number} in {region}")
        templates = s.get("launch_templates", {})
        template_ids = {t.get("name"): lt_id for lt_id, t in templates.items()}
        for g in s.get("asgs", []):
            amis, refs = rollout_references(g.get("tags") or {})
            for key, ami in amis:
                used[ami].append(f"rollout record of ASG {g['name']} ({key}) in {region}")
            for key, template, number in refs:
                t = templates.get(template) or templates.get(template_ids.get(template) or "") or {}
                ami = (t.get("versions") or {}).get(number)
                if ami:
                    used[ami].append(
                        f"launch template {t.get('name') or template} v{number} named by the rollout record of ASG "
                        f"{g['name']} ({key}) in {region}"
                    )
        for name, ami in s.get("launch_configurations", {}).items():
            if ami:
                used[ami].append(f"launch configuration {name} in {region}")
        for role, ptr in s.get("ssm", {}).items():
            if ptr.get("latest"):
                used[ptr["latest"]].append(f"SSM latest pointer of {role} in {region}")
            if ptr.get("latest_version"):
                pinned_versions[role].add(ptr["latest_version"])
    for s in snaps:
        for ami, img in s.get("images", {}).items():
            tags = img.get("tags", {})
            role, version = tags.get("phoenix:role"), tags.get("phoenix:version")
            if role and version and version in pinned_versions.get(role, ()):
                used[ami].append(f"SSM latest-version pointer of {role} names {version}")
    return dict(used)


def _deprecated_since(img: Mapping[str, Any], now: dt.datetime) -> dt.datetime | None:
    tagged = _time(img.get("tags", {}).get(DEPRECATED_AT_TAG))
    if tagged is not None:
        return tagged
    native = _time(img.get("deprecation_time"))
    return native if native is not None and native <= now else None


def plan_retention(
    snapshots: Iterable[Mapping[str, Any]],
    role: str,
    *,
    keep_versions: int,
    grace_days: int,
    now: dt.datetime,
    act_regions: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The retention plan of ``role`` (see the module docstring).

    ``snapshots`` must cover every region of the role (in-use is judged across all of them);
    ``act_regions`` (default: all swept regions) limits where anything but ``keep`` may be planned.
    Returns ``{"role", "keep_versions", "grace_days", "now", "versions", "images": [...], "counts": {...}}``;
    each image: ``{"image_id", "region", "name", "version", "state", "action", "reasons", "deprecated_at",
    "snapshot_ids"}``, sorted by region, version (newest first) and id.
    """
    if keep_versions < 1:
        raise ValueError(f"keep_versions: must be at least 1 (got {keep_versions}). Fix: keep at least the newest version")
    if grace_days < 0:
        raise ValueError(f"grace_days: must be 0 or more (got {grace_days}). Fix: days between deprecation and deletion")
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    snaps = list(snapshots)
    acting = set(act_regions) if act_regions is not None else {s["region"] for s in snaps}
    in_use = images_in_use(snaps)
    blind = [f"{s['region']}: {what}" for s in snaps for what in s.get("incomplete", [])]

    mine: list[tuple[str, str, Mapping[str, Any]]] = []
    for s in snaps:
        for ami, img in s.get("images", {}).items():
            if img.get("ours") and img.get("tags", {}).get("phoenix:role") == role:
                mine.append((s["region"], ami, img))

    versions = sorted({v for _, _, img in mine if (v := _version(img["tags"].get("phoenix:version")))}, reverse=True)
    newest = set(versions[:keep_versions])
    latest_ptrs = [
        v for s in snaps if (v := _version((s.get("ssm", {}).get(role) or {}).get("latest_version"))) is not None
    ]
    floor = min(latest_ptrs) if latest_ptrs else None  # at or after the oldest region's latest: in flight
    versions_in_use = {
        v for _, ami, img in mine if ami in in_use and (v := _version(img["tags"].get("phoenix:version"))) is not None
    }

    rows: list[dict[str, Any]] = []
    for region, ami, img in mine:
        v = _version(img["tags"].get("phoenix:version"))
        reasons: list[str] = []
        if ami in in_use:
            reasons += [f"in use: {r}" for r in in_use[ami]]
        if v is None:
            reasons.append("no parseable phoenix:version tag")
        else:
            if v in versions_in_use and ami not in in_use:
                reasons.append(f"version {v} is in use in another region or by another AMI")
            if v in newest:
                reasons.append(f"among the newest {keep_versions} versions")
            if floor is not None and v >= floor:
                reasons.append("at or after the latest pointer's version")
        if img.get("state") not in ("available", "disabled", "deprecated"):
            reasons.append(f"state {img.get('state')}")
        if region not in acting:
            reasons.append(f"region {region} is not acted on in this run")
        if blind:
            reasons.append(f"the sweep was incomplete ({'; '.join(blind)}): nothing is deprecated or deleted")
        since = _deprecated_since(img, now)
        tagged = DEPRECATED_AT_TAG in img.get("tags", {})
        if reasons:
            action = "undeprecate" if tagged and region in acting else "keep"
        elif since is None:
            action = "deprecate"
            reasons.append("superseded and unused")
        elif now - since >= dt.timedelta(days=grace_days):
            action = "delete"
            reasons.append(f"deprecated since {iso(since)} (grace {grace_days} days over)")
        else:
            action = "wait"
            left = since + dt.timedelta(days=grace_days) - now
            reasons.append(f"deprecated since {iso(since)}; deletable in {left.days}d {left.seconds // 3600}h")
        rows.append(
            {
                "image_id": ami,
                "region": region,
                "name": img.get("name"),
                "version": str(v) if v else img["tags"].get("phoenix:version"),
                "state": img.get("state"),
                "action": action,
                "reasons": reasons,
                "deprecated_at": iso(since) if since else None,
                "snapshot_ids": list(img.get("snapshot_ids", [])),
            }
        )
    rows.sort(key=lambda r: r["image_id"])
    rows.sort(key=lambda r: _version(r["version"]) or Version(dt.date.min, 1), reverse=True)
    rows.sort(key=lambda r: r["region"])
    counts = {a: sum(1 for r in rows if r["action"] == a) for a in ACTIONS}
    return {
        "role": role,
        "keep_versions": keep_versions,
        "grace_days": grace_days,
        "now": iso(now),
        "versions": [str(v) for v in versions],
        "images": rows,
        "counts": counts,
        "in_use": sorted(in_use),
        "incomplete": blind,
    }


def plan_lines(plan: Mapping[str, Any], dry_run: bool = False) -> list[str]:
    """Human lines for the task log: what goes (or would go), and why the rest stays."""
    verb = {"delete": "would delete", "deprecate": "would deprecate", "undeprecate": "would un-deprecate"} if dry_run else {
        "delete": "delete",
        "deprecate": "deprecate",
        "undeprecate": "un-deprecate",
    }
    lines = [
        f"retention {plan['role']}: versions {plan['versions'] or '-'}; keep newest {plan['keep_versions']}, "
        f"grace {plan['grace_days']} days; " + ", ".join(f"{k} {v}" for k, v in plan["counts"].items())
    ]
    if plan.get("incomplete"):
        lines.append(
            "  the sweep was incomplete, so nothing is deprecated or deleted in any region (in use is judged across "
            f"all of them): {'; '.join(plan['incomplete'])}. Fix: give the role's AWS connection the missing "
            "permission or let the throttling pass, then run again"
        )
    for r in plan["images"]:
        what = verb.get(r["action"], r["action"])
        extra = f" and snapshots {', '.join(r['snapshot_ids'])}" if r["action"] == "delete" and r["snapshot_ids"] else ""
        lines.append(f"  {what} {r['image_id']} ({r['version']}, {r['region']}){extra}: {'; '.join(r['reasons'])}")
    return lines
