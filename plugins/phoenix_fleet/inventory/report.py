"""The fleet inventory report: pure functions from region snapshots (``collect.collect_region``) to a report.

``build_report(snapshots, config=None, now=None, max_age_days=None)`` joins, per region, instances with
their AutoScaling group, the group's launch-template version, the AMIs and the SSM "latest" pointers, and
returns a JSON-safe dict (schema: ``inventory/schema.json``, ``SCHEMA_ID``):

* ``instances``: one row per instance (every state but terminated): instance id, region, ASG, role,
  AMI id, running version, latest version, versions behind, age in days, past max age, lifecycle, health,
  whether the AMI is ours, whether the instance runs its launch template's image, and whether it is a warmed
  instance of its ASG's warm pool (``warm``: lifecycle ``Warmed:*``; not counted in the ASG's ``instances``);
* ``asgs`` and ``roles``: summaries (version distribution, stale and behind counts) with **drift**: a launch
  template behind the role's latest version, or instances behind their launch template;
* ``amis``: every AMI of ours in the swept regions plus every AMI referenced, with where it is used;
  AMIs that are not ours (or no longer exist) are flagged;
* ``canaries``: every canary instance of the verify stage (``phoenix:canary=true``) with its bound
  (``phoenix:canary-expires``, else launch + ``canaries.DEFAULT_LIFETIME``) and whether it is past it: an orphan
  of a run that ended without its teardown;
* ``totals`` and ``collection`` (calls, pages and notes of each region's sweep).

Renderers: ``to_json``, ``to_csv`` (``INSTANCE_COLUMNS``), and ``report_html.render_html``.
``asgs_past_max_age(report, limit)`` tells fleet_max_age which ASGs to recycle. No I/O here except the
explicit ``write_local`` helper; no clock unless ``now`` is omitted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoenix_fleet.canaries import canary_record, is_canary
from phoenix_fleet.release.versions import Version, VersionError

SCHEMA_ID = "phoenix-inventory-report/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
DEFAULT_MAX_AGE_DAYS = 14
REPORT_DIR_ENV = "PHOENIX_REPORT_DIR"
REPORT_FILES = ("report.json", "report.csv", "report.html")
UNKNOWN_VERSION = "unknown"
#: Instance states that count as serving (or able to serve) traffic for the stale list.
ACTIVE_STATES = ("pending", "running", "stopping", "stopped")
#: ASG lifecycle states an instance is on its way out of: never "stale", never worth a recycle.
LEAVING_LIFECYCLES = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached")

INSTANCE_COLUMNS = (
    "instance_id",
    "region",
    "asg",
    "role",
    "state",
    "lifecycle",
    "health",
    "ami_id",
    "ami_name",
    "ami_owner",
    "ami_ours",
    "running_version",
    "latest_version",
    "versions_behind",
    "behind_latest",
    "launch_template_image_id",
    "behind_launch_template",
    "launch_time",
    "age_days",
    "max_age_days",
    "past_max_age",
    "warm",
)


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class RoleRule:
    """How the report recognises a role's ASGs (the fleet config's ``asgs`` selector) and its max age."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    max_age_days: int | None = None
    regions: tuple[str, ...] = ()

    def matches(self, asg_name: str, asg_tags: Mapping[str, str]) -> bool:
        if asg_name in self.names:
            return True
        return bool(self.tags) and all(asg_tags.get(k) == v for k, v in self.tags.items())


@dataclass(frozen=True)
class ReportSettings:
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    roles: tuple[RoleRule, ...] = ()
    max_age_override: int | None = None  # a run's Param: wins over every role's max age

    @classmethod
    def from_config(cls, config: Any, max_age_override: int | None = None) -> ReportSettings:
        """From a ``phoenix_fleet.config.FleetConfig``."""
        rules = tuple(
            RoleRule(
                name=name,
                tags=dict(role.asgs.tags),
                names=tuple(role.asgs.names),
                max_age_days=role.max_age_days,
                regions=tuple(role.regions),
            )
            for name, role in sorted(config.roles.items())
        )
        return cls(max_age_days=config.max_age_days, roles=rules, max_age_override=max_age_override)

    def max_age_for(self, role: str | None) -> int:
        if self.max_age_override:
            return self.max_age_override
        for r in self.roles:
            if r.name == role and r.max_age_days is not None:
                return r.max_age_days
        return self.max_age_days

    def role_of_asg(self, name: str, tags: Mapping[str, str]) -> str | None:
        for r in self.roles:
            if r.matches(name, tags):
                return r.name
        return tags.get("phoenix:role") or None


# ------------------------------------------------------------------------------------------ helpers


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version.parse(text)
    except VersionError:
        return None


def _lt_image(snapshot: Mapping[str, Any], spec: Mapping[str, Any] | None) -> tuple[int | None, str | None]:
    """(resolved version number, image id) of an ASG's launch-template spec."""
    if not spec:
        return None, None
    templates = snapshot.get("launch_templates", {})
    t = templates.get(spec.get("id") or "")
    if t is None and spec.get("name"):
        t = next((x for x in templates.values() if x.get("name") == spec["name"]), None)
    if t is None:
        return None, None
    v = spec.get("version") or "$Default"
    number = t.get("default_version") if v == "$Default" else t.get("latest_version") if v == "$Latest" else v
    if number is None:
        return None, None
    return int(number), t.get("versions", {}).get(str(number))


# ------------------------------------------------------------------------------------------ the report


def build_report(
    snapshots: Iterable[Mapping[str, Any]],
    config: Any = None,
    *,
    now: dt.datetime | None = None,
    max_age_days: int | None = None,
    settings: ReportSettings | None = None,
) -> dict[str, Any]:
    """The report (see the module docstring and ``schema.json``) for the given region snapshots.

    ``config`` (a ``FleetConfig``) gives role selectors and max ages; ``max_age_days`` overrides them all
    (a run's Param). ``now`` defaults to the clock: pass it for reproducible reports and tests.
    """
    snaps = sorted(snapshots, key=lambda s: s["region"])
    if settings is None:
        settings = (
            ReportSettings.from_config(config, max_age_days)
            if config is not None
            else ReportSettings(max_age_override=max_age_days)
        )
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)

    # Every version each role has published (our AMIs, any swept region) and the latest pointers.
    role_versions: dict[str, set[Version]] = defaultdict(set)
    for s in snaps:
        for img in s.get("images", {}).values():
            tags = img.get("tags", {})
            v = _version(tags.get("phoenix:version"))
            if img.get("ours") and v is not None and tags.get("phoenix:role"):
                role_versions[tags["phoenix:role"]].add(v)
    region_latest: dict[tuple[str, str], Version] = {}
    for s in snaps:
        for role, ptr in s.get("ssm", {}).items():
            v = _version(ptr.get("latest_version"))
            if v is None and ptr.get("latest"):
                img = s.get("images", {}).get(ptr["latest"]) or {}
                v = _version(img.get("tags", {}).get("phoenix:version"))
            if v is not None:
                region_latest[(s["region"], role)] = v
                role_versions[role].add(v)
    role_latest: dict[str, Version] = {}
    for (_, role), v in region_latest.items():
        role_latest[role] = max(v, role_latest.get(role, v))

    def latest_for(region: str, role: str | None) -> Version | None:
        if role is None:
            return None
        return region_latest.get((region, role)) or role_latest.get(role)

    def behind(running: Version | None, role: str | None, latest: Version | None) -> int | None:
        if running is None or role is None:
            return None
        return sum(1 for v in role_versions.get(role, ()) if v > running and (latest is None or v <= latest))

    rows: list[dict[str, Any]] = []
    asg_rows: list[dict[str, Any]] = []
    ami_rows: list[dict[str, Any]] = []
    for s in snaps:
        region = s["region"]
        images = s.get("images", {})
        missing = set(s.get("missing_images", []))
        asgs = {g["name"]: g for g in s.get("asgs", [])}
        asg_role = {name: settings.role_of_asg(name, g.get("tags", {})) for name, g in asgs.items()}
        asg_lt = {name: _lt_image(s, g.get("launch_template")) for name, g in asgs.items()}
        membership: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for name, g in asgs.items():
            for member in g.get("instances", []):
                membership[member["id"]] = (name, member)
            for warmed in (g.get("warm_pool") or {}).get("instances", []):  # not members: the group's warm pool
                membership[warmed["id"]] = (name, {"lifecycle": warmed.get("lifecycle"), "warm": True})

        region_rows: list[dict[str, Any]] = []
        for inst in sorted(s.get("instances", []), key=lambda i: i["id"]):
            asg_name, member = membership.get(inst["id"], (inst.get("asg"), {}))
            if asg_name not in asgs:
                asg_name = inst.get("asg") if inst.get("asg") in asgs else None
            ami = inst.get("image_id")
            img = images.get(ami or "")
            img_tags = (img or {}).get("tags", {})
            role = (
                asg_role.get(asg_name or "")
                or inst.get("tags", {}).get("phoenix:role")
                or img_tags.get("phoenix:role")
                or None
            )
            ours = bool(img and img.get("ours"))
            running = _version(img_tags.get("phoenix:version")) if ours else None
            latest = latest_for(region, role)
            launch = _parse_time(inst.get("launch_time"))
            # a launch time ahead of `now` (clock skew) counts as age 0
            age = max(0.0, round((now - launch).total_seconds() / 86400, 2)) if launch else None
            max_age = settings.max_age_for(role)
            lt_image = asg_lt.get(asg_name or "", (None, None))[1] if asg_name else None
            lifecycle = member.get("lifecycle") if member else None
            active = inst.get("state") in ACTIVE_STATES and lifecycle not in LEAVING_LIFECYCLES
            region_rows.append(
                {
                    "instance_id": inst["id"],
                    "region": region,
                    "asg": asg_name,
                    "role": role,
                    "state": inst.get("state"),
                    "lifecycle": lifecycle,
                    "health": member.get("health") if member else None,
                    "ami_id": ami,
                    "ami_name": (img or {}).get("name"),
                    "ami_owner": "self" if ours else ("missing" if (img is None) else "other"),
                    "ami_ours": ours,
                    "running_version": str(running) if running else None,
                    "latest_version": str(latest) if latest else None,
                    "versions_behind": behind(running, role, latest),
                    "behind_latest": (running < latest) if (running is not None and latest is not None) else None,
                    "launch_template_image_id": lt_image,
                    "behind_launch_template": (ami != lt_image) if lt_image else None,
                    "launch_time": inst.get("launch_time"),
                    "age_days": age,
                    "max_age_days": max_age,
                    "past_max_age": bool(active and age is not None and age > max_age),
                    "warm": bool(member.get("warm")),
                }
            )
        rows.extend(region_rows)

        by_asg: dict[str, list[dict[str, Any]]] = defaultdict(list)
        warm_by_asg: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in region_rows:
            if r["asg"]:
                (warm_by_asg if r["warm"] else by_asg)[r["asg"]].append(r)
        for name in sorted(asgs):
            g = asgs[name]
            role = asg_role[name]
            number, lt_image = asg_lt[name]
            lt_img = images.get(lt_image or "") or {}
            lt_version = _version(lt_img.get("tags", {}).get("phoenix:version")) if lt_img.get("ours") else None
            latest = latest_for(region, role)
            members = by_asg.get(name, [])
            behind_lt = sum(1 for r in members if r["behind_launch_template"])
            lt_behind = (lt_version < latest) if (lt_version is not None and latest is not None) else None
            drift = []
            if lt_behind:
                drift.append("launch-template-behind-latest")
            if behind_lt:
                drift.append("instances-behind-launch-template")
            if lt_image and not lt_img.get("ours"):
                drift.append("launch-template-ami-not-ours")
            warm = warm_by_asg.get(name, [])
            warm_behind = sum(1 for r in warm if r["behind_launch_template"])
            if warm_behind:  # every scale-out from the pool brings the old image back
                drift.append("warm-pool-behind-launch-template")
            ages = [r["age_days"] for r in members if r["age_days"] is not None]
            spec = g.get("launch_template")
            asg_rows.append(
                {
                    "name": name,
                    "region": region,
                    "role": role,
                    "desired": g.get("desired"),
                    "min": g.get("min"),
                    "max": g.get("max"),
                    "instances": len(members),
                    "launch_template": (
                        {
                            "id": spec.get("id"),
                            "name": spec.get("name"),
                            "version": spec.get("version"),
                            "version_number": number,
                            "image_id": lt_image,
                            "release_version": str(lt_version) if lt_version else None,
                        }
                        if spec
                        else None
                    ),
                    "latest_version": str(latest) if latest else None,
                    "launch_template_behind_latest": lt_behind,
                    "instances_behind_launch_template": behind_lt,
                    "versions": _distribution(members),
                    "stale": sum(1 for r in members if r["past_max_age"]),
                    "oldest_age_days": max(ages) if ages else None,
                    "max_age_days": settings.max_age_for(role),
                    "not_ours": sum(1 for r in members if not r["ami_ours"]),
                    "drift": drift,
                    "warm_pool": (
                        {
                            "instances": len(warm),
                            "images": dict(sorted(Counter(r["ami_id"] or "unknown" for r in warm).items())),
                            "versions": _distribution(warm),
                            "behind_launch_template": warm_behind,
                        }
                        if g.get("warm_pool") is not None
                        else None
                    ),
                }
            )

        # AMIs: all of ours, plus every one referenced (someone else's, or gone).
        used_by_instances = Counter(r["ami_id"] for r in region_rows if r["ami_id"])
        lt_refs: Counter[str] = Counter()
        for t in s.get("launch_templates", {}).values():
            for a in set(t.get("versions", {}).values()):
                if a:
                    lt_refs[a] += 1
        pointers = {p.get("latest") for p in s.get("ssm", {}).values() if p.get("latest")}
        for ami in sorted(set(images) | set(used_by_instances) | set(lt_refs) | missing):
            img = images.get(ami)
            tags = (img or {}).get("tags", {})
            dep = _parse_time((img or {}).get("deprecation_time"))
            ami_rows.append(
                {
                    "image_id": ami,
                    "region": region,
                    "name": (img or {}).get("name"),
                    "ours": bool(img and img.get("ours")),
                    "owner_id": (img or {}).get("owner_id"),
                    "missing": img is None,
                    "role": tags.get("phoenix:role"),
                    "version": tags.get("phoenix:version") if img and img.get("ours") else None,
                    "state": (img or {}).get("state"),
                    "deprecated": bool(dep and dep <= now) or "phoenix:deprecated-at" in tags,
                    "creation_date": (img or {}).get("creation_date"),
                    "instances": used_by_instances.get(ami, 0),
                    "launch_template_versions": lt_refs.get(ami, 0),
                    "latest_pointer": ami in pointers,
                }
            )

    # Canaries of the verify stage, with their bound: one past it outlived its run (phoenix_fleet.canaries)
    canary_rows = [
        {"region": s["region"], **canary_record(inst, now)}
        for s in snaps
        for inst in s.get("instances", [])
        if is_canary(inst)
    ]
    canary_rows.sort(key=lambda c: (not c["expired"], c["region"], c["instance_id"] or ""))

    role_rows = _role_summaries(rows, asg_rows, role_latest, settings)
    stale = [r for r in rows if r["past_max_age"]]
    report = {
        "schema": SCHEMA_ID,
        "generated_at": _iso(now),
        "regions": [s["region"] for s in snaps],
        "max_age_days": settings.max_age_override or settings.max_age_days,
        "totals": {
            "instances": len(rows),
            "running": sum(1 for r in rows if r["state"] == "running"),
            "stale": len(stale),
            "behind_latest": sum(1 for r in rows if r["behind_latest"]),
            "behind_launch_template": sum(1 for r in rows if r["behind_launch_template"]),
            "not_ours": sum(1 for r in rows if not r["ami_ours"]),
            "unknown_version": sum(1 for r in rows if r["running_version"] is None),
            "asgs": len(asg_rows),
            "asgs_drifted": sum(1 for a in asg_rows if a["drift"]),
            "roles": len(role_rows),
            "amis": len(ami_rows),
            "amis_not_ours": sum(1 for a in ami_rows if not a["ours"]),
            "canaries": len(canary_rows),
            "canaries_expired": sum(1 for c in canary_rows if c["expired"]),
            "warm": sum(1 for r in rows if r["warm"]),
        },
        "roles": role_rows,
        "asgs": asg_rows,
        "instances": rows,
        "amis": ami_rows,
        "canaries": canary_rows,
        "collection": [
            {
                "region": s["region"],
                "collected_at": s.get("collected_at"),
                "seconds": s.get("stats", {}).get("seconds", 0.0),
                "calls": s.get("stats", {}).get("calls", {}),
                "pages": s.get("stats", {}).get("pages", {}),
                "notes": s.get("stats", {}).get("notes", []),
            }
            for s in snaps
        ],
    }
    return report


def _distribution(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(r["running_version"] or UNKNOWN_VERSION for r in rows)
    return dict(sorted(counts.items(), key=lambda kv: _sort_key(kv[0])))


def _sort_key(label: str) -> tuple[int, Any]:
    v = _version(label)
    return (0, v) if v is not None else (1, label)


def _role_summaries(
    rows: list[dict[str, Any]],
    asg_rows: list[dict[str, Any]],
    role_latest: Mapping[str, Version],
    settings: ReportSettings,
) -> list[dict[str, Any]]:
    names = sorted({r["role"] for r in rows if r["role"]} | {a["role"] for a in asg_rows if a["role"]} | set(role_latest))
    out = []
    for role in names:
        mine = [r for r in rows if r["role"] == role]
        asgs = [a for a in asg_rows if a["role"] == role]
        latest = role_latest.get(role)
        out.append(
            {
                "role": role,
                "regions": sorted({r["region"] for r in mine} | {a["region"] for a in asgs}),
                "latest_version": str(latest) if latest else None,
                "instances": len(mine),
                "versions": _distribution(mine),
                "stale": sum(1 for r in mine if r["past_max_age"]),
                "behind_latest": sum(1 for r in mine if r["behind_latest"]),
                "not_ours": sum(1 for r in mine if not r["ami_ours"]),
                "asgs": len(asgs),
                "asgs_drifted": sum(1 for a in asgs if a["drift"]),
                "max_age_days": settings.max_age_for(role),
            }
        )
    return out


# ------------------------------------------------------------------------------------------ outputs


def to_json(report: Mapping[str, Any], indent: int | None = None) -> str:
    return json.dumps(report, indent=indent, sort_keys=False, separators=None if indent else (",", ":"))


def to_csv(report: Mapping[str, Any]) -> str:
    """One line per instance, columns ``INSTANCE_COLUMNS``; empty cells for nulls, booleans as true/false."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(INSTANCE_COLUMNS)
    for row in report["instances"]:
        writer.writerow(
            ["" if row[c] is None else ("true" if row[c] is True else "false" if row[c] is False else row[c]) for c in INSTANCE_COLUMNS]
        )
    return buf.getvalue()


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if the report does not match ``schema.json``."""
    import jsonschema

    jsonschema.Draft202012Validator(load_schema()).validate(report)


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The short form for notifications and the Asset event."""
    t = report["totals"]
    return {
        "generated_at": report["generated_at"],
        "regions": report["regions"],
        "instances": t["instances"],
        "stale": t["stale"],
        "behind_latest": t["behind_latest"],
        "not_ours": t["not_ours"],
        "asgs_drifted": t["asgs_drifted"],
        "canaries_expired": t.get("canaries_expired", 0),
        "roles": {r["role"]: {"latest": r["latest_version"], "stale": r["stale"], "behind": r["behind_latest"]} for r in report["roles"]},
    }


def summary_text(report: Mapping[str, Any], where: str | None = None) -> str:
    t = report["totals"]
    lines = [
        f"Fleet inventory {report['generated_at']} ({', '.join(report['regions']) or 'no regions'}):",
        f"  {t['instances']} instances, {t['stale']} past max age ({report['max_age_days']} days), "
        f"{t['behind_latest']} behind the latest version, {t['not_ours']} on AMIs that are not ours, "
        f"{t['asgs_drifted']} of {t['asgs']} ASGs drifted.",
    ]
    for r in report["roles"]:
        lines.append(
            f"  {r['role']}: latest {r['latest_version'] or '-'}, {r['instances']} instances, "
            f"{r['stale']} stale, {r['behind_latest']} behind, versions {r['versions']}"
        )
    expired = [c for c in report.get("canaries", []) if c["expired"]]
    if expired:
        lines.append(
            f"  {len(expired)} canary instance(s) outlived their run (past their bound; the next release in the "
            "region terminates them): " + ", ".join(f"{c['instance_id']} ({c['region']})" for c in expired[:10])
        )
    if where:
        lines.append(f"  Report: {where}")
    return "\n".join(lines)


def report_date(report: Mapping[str, Any]) -> str:
    return str(report["generated_at"])[:10]


def default_report_dir() -> Path | None:
    """``$PHOENIX_REPORT_DIR``, else None: no local copy (the report's home is S3; nothing is ever derived from
    where the package is installed)."""
    raw = os.environ.get(REPORT_DIR_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


def render_all(report: Mapping[str, Any]) -> dict[str, bytes]:
    """``{"report.json": ..., "report.csv": ..., "report.html": ...}`` as bytes."""
    from phoenix_fleet.inventory.report_html import render_html

    return {
        "report.json": to_json(report).encode(),
        "report.csv": to_csv(report).encode(),
        "report.html": render_html(report).encode(),
    }


def write_local(
    report: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None, files: Mapping[str, bytes] | None = None
) -> dict[str, str]:
    """Write ``<base>/inventory/<date>/report.*`` and ``<base>/inventory/latest/report.*`` (atomically: a reader
    never sees half a file). Returns ``{"dir": <dated dir>, "latest": <latest dir>, "report.html": path, ...}``."""
    base = Path(base_dir) if base_dir is not None else default_report_dir()
    if base is None:
        raise ValueError(f"report_dir: no local report directory (${REPORT_DIR_ENV} is not set). Fix: set it, or pass one")
    rendered = files if files is not None else render_all(report)
    dated = base / "inventory" / report_date(report)
    latest = base / "inventory" / "latest"
    out: dict[str, str] = {"dir": str(dated), "latest": str(latest)}
    for d in (dated, latest):
        d.mkdir(parents=True, exist_ok=True)
        for name, data in rendered.items():
            tmp = d / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, d / name)
    for name in rendered:
        out[name] = str(dated / name)
    return out


# ------------------------------------------------------------------------------------------ max age


def renewal_skip_reason(asg: Mapping[str, Any], amis: Mapping[tuple[str, str], Mapping[str, Any]]) -> str | None:
    """Why fleet_max_age never renews this ASG (report ``asgs`` entry), or None. ``amis``: (region, id) -> AMI."""
    target = (asg.get("launch_template") or {}).get("image_id")
    if not asg.get("role"):
        return "belongs to no role in the fleet config"
    if not target:
        return "its launch template image is unknown"
    if not (amis.get((asg["region"], target)) or {}).get("ours"):
        return f"its launch template AMI {target} is not ours"
    return None


def max_age_plan(report: Mapping[str, Any], limit: int, lead_days: float = 0) -> dict[str, list[dict[str, Any]]]:
    """Which ASGs fleet_max_age recycles this run, and why the others wait.

    An ASG is **due** when it has instances older than its role's max age minus ``lead_days`` (active, not
    leaving the group): they would pass max age before the next run. With ``lead_days`` 0, due is past max age
    (the report's ``past_max_age``). It is **skipped** (never recycled) when it belongs to no role (not ours to
    touch), has no launch template image, or its launch template's AMI is not ours (we never roll an AMI we do
    not own). Due ASGs are ordered most overdue first (oldest instance age minus its max age, then more stale
    instances, then name); the first ``limit`` are in ``recycle``, the rest in ``deferred`` (next run).

    Each entry: ``{"asg", "region", "role", "stale_instance_ids", "stale", "due", "instances", "oldest_age_days",
    "max_age_days", "overdue_days", "target_image_id", "target_version", "launch_template"}`` plus ``"reason"``
    for skipped ones. ``stale``: instances past max age now; ``due``: instances older than max age minus
    ``lead_days`` (what a renewal replaces). The target is the ASG's *current* launch-template image:
    recycling renews instances, it does not upgrade them.
    """
    if limit < 0:
        raise ValueError(f"limit: must be 0 or more (got {limit}). Fix: the number of ASGs recycled per run")
    stale_ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    due_count: Counter[tuple[str, str]] = Counter()
    for r in report["instances"]:
        if not r["asg"]:
            continue
        key = (r["region"], r["asg"])
        if r["past_max_age"]:
            stale_ids[key].append(r["instance_id"])
        active = r.get("state", "running") in ACTIVE_STATES and r.get("lifecycle") not in LEAVING_LIFECYCLES
        age, max_age = r.get("age_days"), r.get("max_age_days")
        if r["past_max_age"] or (active and age is not None and max_age is not None and age > max_age - lead_days):
            due_count[key] += 1
    amis = {(a["region"], a["image_id"]): a for a in report.get("amis", [])}
    candidates, skipped = [], []
    for a in report["asgs"]:
        key = (a["region"], a["name"])
        ids = sorted(stale_ids.get(key, []))
        if not due_count.get(key):
            continue
        lt = a.get("launch_template") or {}
        entry = {
            "asg": a["name"],
            "region": a["region"],
            "role": a["role"],
            "stale_instance_ids": ids,
            "stale": len(ids),
            "due": due_count[key],
            "instances": a["instances"],
            "oldest_age_days": a["oldest_age_days"],
            "max_age_days": a["max_age_days"],
            "overdue_days": round((a["oldest_age_days"] or 0) - a["max_age_days"], 2),
            "target_image_id": lt.get("image_id"),
            "target_version": lt.get("release_version"),
            "launch_template": {k: lt.get(k) for k in ("id", "name", "version", "version_number")} if lt else None,
        }
        reason = renewal_skip_reason(a, amis)
        if reason:
            skipped.append({**entry, "reason": reason})
        else:
            candidates.append(entry)
    candidates.sort(key=lambda e: (-e["overdue_days"], -e["stale"], e["region"], e["asg"]))
    return {"recycle": candidates[:limit], "deferred": candidates[limit:], "skipped": skipped}


def asgs_past_max_age(report: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    """The ASGs to recycle this run (at most ``limit``), most overdue first. See :func:`max_age_plan`."""
    return max_age_plan(report, limit)["recycle"]


# ------------------------------------------------------------------------------------------ regions


def fleet_sweeps(config: Any, only: Iterable[str] | None = None) -> list[dict[str, str]]:
    """One ``{"region_name", "aws_conn_id"}`` per region of every role, with the connection of the role's
    environment (another account: another connection), sorted; ``only``: those regions (see :func:`fleet_regions`)."""
    wanted = set(fleet_regions(config, only))
    pairs = {
        (region, config.aws_conn(name).conn_id)
        for name, role in config.roles.items()
        for region in role.regions
        if region in wanted
    }
    return [{"region_name": r, "aws_conn_id": c} for r, c in sorted(pairs)]


def fleet_regions(config: Any, only: Iterable[str] | None = None) -> list[str]:
    """Every region of every role in the fleet config (sorted), or ``only`` those, which must be among them."""
    every = sorted({r for role in config.roles.values() for r in role.regions})
    wanted = [r for r in (only or []) if r]
    if not wanted:
        return every
    unknown = sorted(set(wanted) - set(every))
    if unknown:
        raise ValueError(
            f"params.regions: {unknown} are not regions of any role. Fix: use some of {every} or leave it empty"
        )
    return sorted(set(wanted))
