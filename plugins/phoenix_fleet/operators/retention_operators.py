"""AMI retention for one role: keep the newest N versions and everything in use, deprecate the rest, and after a
grace period deregister them and delete their snapshots.

Import-light: the Amazon provider is imported inside ``execute``. The decisions are the pure
``inventory.retention_plan.plan_retention``; this operator only sweeps (``inventory.collect.collect_region`` in
every region of the role), acts, and guards the irreversible step:

1. sweep every region of the role and plan;
2. deprecate: ``EnableImageDeprecation`` where the endpoint has it (moto does not: a clear log line, once), and
   always the tag ``phoenix:deprecated-at=<now>``, the grace period's clock;
3. before deleting anything, sweep every region of the role **again** and plan again: only AMIs planned
   ``delete`` by both plans go; then, per AMI, ``DescribeImageReferences`` (instances, launch templates, SSM
   parameters, ...) where the endpoint has it: any reference keeps the AMI;
4. deregister, then delete the AMI's snapshots unless another image uses them.

``dry_run_only=True`` sweeps and plans, logs what would go (and why everything else stays), and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from airflow.sdk import BaseOperator, Context

from phoenix_fleet import fleet_config as cached_fleet_config
from phoenix_fleet.operators.operator_args import as_bool


def _rp() -> ModuleType:
    """``inventory.retention_plan``, imported on first use (the DAG file imports this module at every parse)."""
    from phoenix_fleet.inventory import retention_plan

    return retention_plan


#: Error codes an endpoint answers for an API it does not implement (moto answers an HTML 500, which botocore
#: raises as ResponseParserError).
UNSUPPORTED_CODES = frozenset(
    {"InvalidAction", "UnsupportedOperation", "NotImplemented", "UnknownOperationException", "InvalidRequest"}
)
DEPRECATE_LEAD = dt.timedelta(minutes=2)  # DeprecateAt must lie in the future



def _whole_number(value: Any, field: str, fix: str, *, empty: int | None = None) -> int:
    """``value`` (an int, or a string Jinja rendered from a Param) as a whole number >= 0; anything else raises
    ValueError naming ``field`` and the fix (``empty``: what None / "" mean; None: they are errors too)."""
    if empty is not None and value in (None, "", "None"):
        return empty
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = value.strip() if isinstance(value, str) else None
    if text is None or not (text.isascii() and text.isdigit()):
        raise ValueError(f"{field}: {value!r} is not a whole number of 0 or more. Fix: {fix}")
    return int(text)


def _error_code(exc: BaseException) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def is_unsupported(exc: BaseException) -> bool:
    """True if ``exc`` says the endpoint lacks the API (not a throttle, not a permission problem)."""
    if type(exc).__name__ in ("ResponseParserError", "OperationNotPageableError") or isinstance(exc, NotImplementedError):
        return True
    return _error_code(exc) in UNSUPPORTED_CODES


class AmiRetentionOperator(BaseOperator):
    """Retention of one role's AMIs (see the module docstring).

    :param role: the fleet role (``include/fleet.yaml``).
    :param keep_versions: versions to keep besides those in use (None/0: the role's ``keep_versions``, default 5).
    :param grace_days: days between deprecation and deletion.
    :param dry_run_only: only log what would be deprecated and deleted (the DAG's ``dry_run`` Param).
    :param check_image_references: ask ``DescribeImageReferences`` before each deletion (where available).
    :param aws_conn_id: Airflow AWS connection.
    :param region_name: act only in this region of the role (in-use is still judged across all of them);
        None: every region of the role.
    """

    template_fields: Sequence[str] = (
        "role",
        "keep_versions",
        "grace_days",
        "dry_run_only",
        "check_image_references",
        "aws_conn_id",
        "region_name",
    )
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        role: str,
        keep_versions: int | str | None = None,
        grace_days: int | str = 14,
        dry_run_only: bool | str = False,
        check_image_references: bool | str = True,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        page_sizes: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.keep_versions = keep_versions
        self.grace_days = grace_days
        self.dry_run_only = dry_run_only  # not "dry_run": BaseOperator has a method of that name
        self.check_image_references = check_image_references
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.page_sizes = dict(page_sizes or {})
        self._clients: dict[tuple[str, str], Any] = {}
        self._unsupported: set[str] = set()

    # ------------------------------------------------------------------ clients

    def _client(self, service: str, region: str, optional_api: bool = False) -> Any:
        """A boto3 client from ``AwsBaseHook``; ``optional_api``: no retries (an endpoint lacking the API answers
        with an error botocore would otherwise retry for seconds)."""
        key = (f"{service}{'-optional' if optional_api else ''}", region)
        if key not in self._clients:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            config = {"retries": {"max_attempts": 1}} if optional_api else None
            self._clients[key] = AwsBaseHook(
                aws_conn_id=self.aws_conn_id, client_type=service, region_name=region, config=config
            ).conn
        return self._clients[key]

    def _sweep(self, regions: Sequence[str], prefix: str) -> list[dict[str, Any]]:
        from phoenix_fleet.inventory.collect import collect_region

        return [
            collect_region(
                self._client("ec2", r),
                self._client("autoscaling", r),
                self._client("ssm", r),
                r,
                ssm_prefix=prefix,
                page_sizes=self.page_sizes or None,
                logger=self.log,
            )
            for r in regions
        ]

    def _degrade(self, api: str, exc: BaseException, consequence: str) -> None:
        if api not in self._unsupported:
            self._unsupported.add(api)
            self.log.warning("%s is not available at this endpoint (%s): %s", api, type(exc).__name__, consequence)

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        keep_given = _whole_number(
            self.keep_versions, "keep_versions", "a number of versions such as 5, or 0 / empty for the role's keep_versions",
            empty=0,
        )
        grace = _whole_number(self.grace_days, "grace_days", "a number of days such as 14 (0: delete at the next run)")
        cfg = cached_fleet_config()
        role = cfg.role(self.role)
        keep = keep_given or role.keep_versions
        dry_run = as_bool(self.dry_run_only)
        regions = list(role.regions)
        if self.region_name and self.region_name not in regions:
            raise ValueError(
                f"region_name: {self.region_name!r} is not a region of role {self.role!r}. Fix: use one of {regions}"
            )
        act = [self.region_name] if self.region_name else regions
        now = dt.datetime.now(dt.UTC)
        snapshots = self._sweep(regions, cfg.ssm_prefix)
        rp = _rp()
        plan = rp.plan_retention(snapshots, self.role, keep_versions=keep, grace_days=grace, now=now, act_regions=act)
        for line in rp.plan_lines(plan, dry_run=dry_run):
            self.log.info("%s", line)
        result: dict[str, Any] = {
            "role": self.role,
            "dry_run": dry_run,
            "counts": plan["counts"],
            "incomplete": plan["incomplete"],
            "deprecated": [],
            "undeprecated": [],
            "deleted": [],
            "deleted_snapshots": [],
            "kept_at_deletion": [],
            "plan": [{k: r[k] for k in ("image_id", "region", "version", "action")} for r in plan["images"]],
        }
        if dry_run:
            self.log.info("Dry run: nothing was changed")
            return result

        for r in plan["images"]:
            if r["action"] == "deprecate":
                self._deprecate(r["region"], r["image_id"], now)
                result["deprecated"].append(r["image_id"])
            elif r["action"] == "undeprecate":
                self._undeprecate(r["region"], r["image_id"])
                result["undeprecated"].append(r["image_id"])

        doomed = [r for r in plan["images"] if r["action"] == "delete"]
        if doomed:
            # Second look: anything that started using a doomed AMI since the first sweep keeps it.
            again = rp.plan_retention(
                self._sweep(regions, cfg.ssm_prefix),
                self.role,
                keep_versions=keep,
                grace_days=grace,
                now=dt.datetime.now(dt.UTC),
                act_regions=act,
            )
            still = {(x["region"], x["image_id"]) for x in again["images"] if x["action"] == "delete"}
            shared = _snapshot_users(snapshots)
            for r in doomed:
                ami, region = r["image_id"], r["region"]
                if (region, ami) not in still:
                    self.log.warning("Keeping %s (%s): it is in use or needed since the first sweep", ami, region)
                    result["kept_at_deletion"].append(ami)
                    continue
                references = self._references(region, ami)
                if references:
                    self.log.warning("Keeping %s (%s): DescribeImageReferences lists %s", ami, region, references[:5])
                    result["kept_at_deletion"].append(ami)
                    continue
                self._client("ec2", region).deregister_image(ImageId=ami)
                self.log.info("Deregistered %s (%s, %s)", ami, r["version"], region)
                result["deleted"].append(ami)
                for snap in r["snapshot_ids"]:
                    others = shared.get((region, snap), set()) - {ami}
                    if others:
                        self.log.info("Keeping snapshot %s: image(s) %s still use it", snap, sorted(others))
                        continue
                    if self._delete_snapshot(region, snap):
                        result["deleted_snapshots"].append(snap)
        self.log.info(
            "Retention %s: deprecated %d, un-deprecated %d, deleted %d AMIs and %d snapshots, kept %d at deletion time",
            self.role,
            len(result["deprecated"]),
            len(result["undeprecated"]),
            len(result["deleted"]),
            len(result["deleted_snapshots"]),
            len(result["kept_at_deletion"]),
        )
        return result

    # ------------------------------------------------------------------ actions

    def _deprecate(self, region: str, ami: str, now: dt.datetime) -> None:
        rp = _rp()
        if "EnableImageDeprecation" not in self._unsupported:
            try:
                self._client("ec2", region, optional_api=True).enable_image_deprecation(
                    ImageId=ami, DeprecateAt=now + DEPRECATE_LEAD
                )
            except Exception as exc:  # noqa: BLE001 - narrowed below
                if not is_unsupported(exc):
                    raise
                self._degrade(
                    "EnableImageDeprecation",
                    exc,
                    f"deprecation is tracked by the {rp.DEPRECATED_AT_TAG} tag only (the AMI stays launchable and listed)",
                )
        self._client("ec2", region).create_tags(Resources=[ami], Tags=[{"Key": rp.DEPRECATED_AT_TAG, "Value": rp.iso(now)}])
        self.log.info("Deprecated %s (%s)", ami, region)

    def _undeprecate(self, region: str, ami: str) -> None:
        tag = _rp().DEPRECATED_AT_TAG
        if "DisableImageDeprecation" not in self._unsupported:
            try:
                self._client("ec2", region, optional_api=True).disable_image_deprecation(ImageId=ami)
            except Exception as exc:  # noqa: BLE001 - narrowed below
                if not is_unsupported(exc):
                    raise
                self._degrade("DisableImageDeprecation", exc, f"only the {tag} tag is removed")
        self._client("ec2", region).delete_tags(Resources=[ami], Tags=[{"Key": tag}])
        self.log.info("Un-deprecated %s (%s): it is needed again", ami, region)

    def _references(self, region: str, ami: str) -> list[str]:
        """Resource ARNs/ids that reference ``ami`` per DescribeImageReferences; [] when the API is missing.

        Any other failure (throttling, permissions) raises: better a failed run than a guessed deletion.
        """
        if not as_bool(self.check_image_references) or "DescribeImageReferences" in self._unsupported:
            return []
        client = self._client("ec2", region, optional_api=True)
        try:
            found: list[str] = []
            token = None
            while True:
                kwargs: dict[str, Any] = {"ImageIds": [ami], "IncludeAllResourceTypes": True}
                if token:
                    kwargs["NextToken"] = token
                page = client.describe_image_references(**kwargs)
                found += [str(x.get("Arn") or x.get("ResourceType")) for x in page.get("ImageReferences", [])]
                token = page.get("NextToken")
                if not token:
                    return found
        except Exception as exc:  # noqa: BLE001 - narrowed below
            if not is_unsupported(exc):
                raise
            self._degrade(
                "DescribeImageReferences",
                exc,
                "relying on this run's own sweep (instances, launch templates, SSM pointers) for in-use checks",
            )
            return []

    def _delete_snapshot(self, region: str, snap: str) -> bool:
        try:
            self._client("ec2", region).delete_snapshot(SnapshotId=snap)
        except Exception as exc:  # noqa: BLE001 - narrowed below
            code = _error_code(exc)
            if code in ("InvalidSnapshot.InUse", "InvalidSnapshot.NotFound"):
                self.log.warning("Snapshot %s not deleted: %s", snap, code)
                return False
            raise
        self.log.info("Deleted snapshot %s (%s)", snap, region)
        return True


def _snapshot_users(snapshots: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    users: dict[tuple[str, str], set[str]] = {}
    for s in snapshots:
        for ami, img in s.get("images", {}).items():
            for snap in img.get("snapshot_ids", []):
                users.setdefault((s["region"], snap), set()).add(ami)
    return users
