"""Publish a verified AMI: version it, copy it to the role's regions, share it, move the "latest" pointers, announce it.

Three operators, wired in the role's release DAG after verify::

    release = ReleaseImageOperator(task_id="release", role="web", ami_id=<verified AMI>, version="{{ params.version }}")
    copies = CopyImageToRegionOperator.partial(
        task_id="copy", role="web", ami_id=release.output["ami_id"], source_region=release.output["region"],
    ).expand(dest_region=fleet.role("web").regions)                # every region, the home region included
    publish = PublishReleaseOperator(task_id="publish", role="web", release=release.output, copies=copies.output)
    release >> copies >> publish

* :class:`ReleaseImageOperator` -- refuses a foreign or unverified AMI; picks the version (explicit, else the one
  bake tagged, else the next free ``YYYY.MM.DD-N``); refuses a version another AMI holds (versions are immutable;
  the same AMI again is an idempotent re-publish); tags the AMI and its snapshots; writes the release notes (the
  package diff against the previous version) to S3 and the task log.
* :class:`CopyImageToRegionOperator` -- one region per task (map it): finds an existing copy (by tag, then by
  name) or copies, waits (deferrable) for ``available``, re-tags the copy and its snapshots (copy_image drops
  tags). For the source region itself it returns the source AMI, so mapping over *all* the role's regions works.
* :class:`PublishReleaseOperator` -- shares every region's AMI with the role's accounts (launch permission and the
  snapshots' createVolumePermission), moves ``<prefix>/<role>/latest`` (AMI id, data type ``aws:ec2:image``) and
  ``.../latest-version`` in every region (each new parameter version labelled ``v<version>``: the release log),
  tags ``phoenix:published-at`` and emits the asset event ``x-phoenix://images/<role>`` with the release metadata.

Import-light (DAG files import this at parse time): only ``airflow.sdk`` and the stdlib at module level; the fleet
config, the release logic (``phoenix_fleet.release``), hooks, triggers and the Amazon provider are imported inside
methods. :func:`image_asset` needs nothing more.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.asset import AssetRef

    from phoenix_fleet.config import FleetConfig, Role
    from phoenix_fleet.hooks.image_hook import ImageHook
    from phoenix_fleet.release.release_notes import PackageListSource

ASSET_EXTRA_MAX_BYTES = 16_000
"""The asset event's extra is stored in the metadata DB and shown in the UI: keep it small."""

_UNCOPIED_TAG_PREFIXES = ("aws:", "phoenix-sandbox:")


ASSET_SCHEME = "x-phoenix"
"""``x-`` scheme: Airflow skips URI normalization for it. Any other unregistered scheme (``phoenix://``) works too,
but building the Asset then makes Airflow load every provider's asset-URI handlers -- 100+ modules of the Amazon
provider (hooks, botocore) at DAG parse time."""


def image_asset_name(role: str) -> str:
    """The name of a role's image asset: ``phoenix_image_<role>`` (an asset's identity in Airflow 3)."""
    return f"phoenix_image_{role}"


def image_asset(role: str) -> Asset:
    """The asset a role's publish emits: ``x-phoenix://images/<role>``, named :func:`image_asset_name`."""
    return Asset(name=image_asset_name(role), uri=f"{ASSET_SCHEME}://images/{role}")


def image_asset_ref(role: str) -> AssetRef:
    """What the role's rollout DAG is scheduled on: a reference, by name, to the asset its release DAG defines.

    The release DAG's ``publish`` outlet is the one definition of the asset (name and URI); the rollout only
    refers to it, so the two can never disagree. It is also what keeps the rollout DAG cheap to parse: Airflow
    hashes a DAG's ``schedule`` each time a task dependency is set (~50 times per rollout DAG), and an ``Asset``
    hashes as sorted JSON of all its fields (~13 ms per parse of ``fleet_rollout.py``), a name reference as
    its name. Runs see the same ``triggering_asset_events``: they are keyed by the event's asset.
    """
    return Asset.ref(name=image_asset_name(role))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _now_iso() -> str:
    return _iso(dt.datetime.now(dt.UTC))


def _iso(when: Any) -> str | None:
    """ISO 8601 UTC (``2026-11-30T10:00:00Z``) from a datetime (SSM's LastModifiedDate) or a string."""
    if when is None:
        return None
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return str(when)


def _push_keys(context: Context, result: Mapping[str, Any]) -> None:
    """Push each top-level key as its own XCom, so DAGs can use ``task.output["ami_id"]``."""
    ti = context.get("ti")
    if ti is None:
        return
    for key, value in result.items():
        ti.xcom_push(key=key, value=value)


class _FleetMixin:
    role: str
    config_path: str | None

    def fleet(self) -> FleetConfig:
        from phoenix_fleet.config import cached_fleet_config

        return cached_fleet_config(self.config_path)

    def role_config(self) -> Role:
        return self.fleet().role(self.role)


# ---------------------------------------------------------------------------------------------------------------------
# 1. release: checks, version, tags, release notes
# ---------------------------------------------------------------------------------------------------------------------


class ReleaseImageOperator(_FleetMixin, BaseOperator):
    """Check a verified AMI, give it its release version, tag it and write its release notes.

    :param role: fleet role (include/fleet.yaml)
    :param ami_id: the verified AMI, in ``region_name`` (default: the role's home region, its first region)
    :param version: explicit ``YYYY.MM.DD-N`` (template it from ``params.version``); empty: the version bake
        tagged on the AMI (``phoenix:version``), else the next free one today (UTC)
    :param notes_summary_limit: entries per list in the bounded summary (asset event, XCom); default
        ``release_notes.SUMMARY_LIMIT`` (10)
    :param operator_notes: the operator's notes (the release form's ``release_notes``, as ``plan`` kept them):
        whole in the release notes in S3, clipped in the summary; plain text, never a template
    :param config_path: fleet config (default: ``$PHOENIX_FLEET_CONFIG`` / include/fleet.yaml)

    Returns (and pushes under each key) ``{"role", "version", "version_source", "label", "ami_id", "ami_name",
    "region", "regions", "accounts", "previous_version", "already_published", "operator_notes" (clipped),
    "release_notes": {"markdown_uri", "json_uri", "summary"}}``.
    """

    # operator_notes is a template field so that an XComArg (the plan's) resolves; the plan refuses Jinja delimiters
    template_fields: Sequence[str] = ("role", "ami_id", "version", "operator_notes", "aws_conn_id", "region_name")
    ui_color = "#d9f2e6"

    def __init__(
        self,
        *,
        role: str,
        ami_id: str,
        version: str | None = None,
        notes_summary_limit: int | None = None,
        operator_notes: Any = None,
        config_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.ami_id = ami_id
        self.version = version
        self.notes_summary_limit = notes_summary_limit
        self.operator_notes = operator_notes
        self.config_path = config_path
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def hook(self, region: str) -> ImageHook:
        from phoenix_fleet.hooks.image_hook import ImageHook

        return ImageHook(aws_conn_id=self.aws_conn_id, region_name=region)

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.release.publish_rules import (
            MANAGED_BY,
            TAG_BAKE_VERSION,
            TAG_MANAGED_BY,
            TAG_RELEASE_NOTES,
            TAG_ROLE,
            TAG_VERSION,
            Claim,
            check_not_backwards,
            image_claims,
            parameter_claims,
            previous_version,
            raise_on_conflicts,
            refuse_unless_publishable,
            resolve_version,
            tag_map,
        )
        from phoenix_fleet.release.release_log import ROLLED_BACK, is_release_label, record_key
        from phoenix_fleet.release.release_notes import SUMMARY_LIMIT, clip_notes, release_notes_keys

        fleet = self.fleet()
        role = self.role_config()
        region = self.region_name or role.home_region
        if self.operator_notes is not None and not isinstance(self.operator_notes, str):
            raise ValueError(
                f"operator_notes: a {type(self.operator_notes).__name__}, not text. Fix: pass the plan's operator_notes"
            )
        operator_notes = (self.operator_notes or "").strip()
        ami_id = str(self.ami_id or "").strip()
        if not ami_id.startswith("ami-"):
            raise ValueError(f"ami_id: {self.ami_id!r} is not an AMI id. Fix: pass the verified AMI (ami-...)")
        hook = self.hook(region)

        image = hook.describe_image(ami_id)
        refuse_unless_publishable(image, hook.get_account_id(), self.role)
        tags = tag_map(image)

        pointer = fleet.latest_parameter(self.role)
        version_param = fleet.latest_version_parameter(self.role)
        version_history = hook.parameter_history(version_param)
        pointer_history = hook.parameter_history(pointer)
        role_images = hook.find_images({f"tag:{TAG_ROLE}": self.role})
        seen_versions = [str(h["Value"]) for h in version_history] + [
            tag_map(i).get(TAG_VERSION, "") for i in role_images
        ]
        resolved = resolve_version(self.version, tags.get(TAG_VERSION), seen_versions, _today())
        version = str(resolved.version)
        label = resolved.version.label
        self.log.info("AMI %s (%s): version %s (%s)", ami_id, image.get("Name"), version, resolved.source)

        claims = parameter_claims(pointer_history, label, pointer) + image_claims(role_images, version, ami_id)
        record = hook.release_record(fleet.artifacts_bucket, self.role, version)  # the log outlives SSM's labels
        if record is not None and record.state != ROLLED_BACK and record.amis.get(region):
            claims.append(Claim(
                record.amis[region], f"release log s3://{fleet.artifacts_bucket}/{record_key(self.role, version)} "
                f"({record.state})", record.published,
            ))
        raise_on_conflicts(version, ami_id, claims)
        already_published = any(c.ami_id == ami_id and c.published for c in claims)
        current = version_history[-1]["Value"] if version_history else None
        check_not_backwards(current, resolved.version)
        # published versions carry their label on `latest` (or `latest-version`); a publish that was rolled back
        # leaves unlabelled values behind, and is no release
        published_versions = [
            lab[1:] for h in pointer_history for lab in h.get("Labels") or [] if is_release_label(lab)
        ] + [str(h["Value"]) for h in version_history if f"v{h['Value']}" in (h.get("Labels") or [])]
        previous = previous_version(published_versions, resolved.version)
        if already_published:
            self.log.info("%s is already published as %s: re-publishing is a no-op where nothing changed", ami_id, version)

        md_key, json_key = release_notes_keys(self.role, version)
        bucket = fleet.artifacts_bucket
        new_tags = {
            TAG_ROLE: self.role,
            TAG_VERSION: version,
            TAG_MANAGED_BY: MANAGED_BY,
            TAG_RELEASE_NOTES: f"s3://{bucket}/{md_key}",
        }
        bake_version = tags.get(TAG_VERSION)
        if bake_version and bake_version != version:
            self.log.warning("overriding the version bake tagged (%s) with %s", bake_version, version)
            new_tags[TAG_BAKE_VERSION] = bake_version
        tagged = hook.tag_image_and_snapshots(image, new_tags)
        self.log.info("tagged %s", ", ".join(tagged))

        notes = self._release_notes(hook, bucket, version, previous, ami_id, bake_version, operator_notes)
        md_uri = hook.write_s3_text(bucket, md_key, notes.to_markdown(), "text/markdown; charset=utf-8")
        json_uri = hook.write_s3_text(bucket, json_key, notes.to_json(), "application/json")
        self.log.info("release notes: %s, %s\n%s", md_uri, json_uri, notes.to_markdown())

        result = {
            "role": self.role,
            "version": version,
            "version_source": resolved.source,
            "label": label,
            "ami_id": ami_id,
            "ami_name": image.get("Name"),
            "region": region,
            "regions": list(role.regions),
            "accounts": list(role.share_with_accounts),
            "previous_version": previous,
            "already_published": already_published,
            "operator_notes": clip_notes(operator_notes),
            "release_notes": {
                "markdown_uri": md_uri,
                "json_uri": json_uri,
                "summary": notes.summary(
                    SUMMARY_LIMIT if self.notes_summary_limit is None else self.notes_summary_limit
                ),
            },
        }
        _push_keys(context, result)
        return result

    def _release_notes(
        self, hook: ImageHook, bucket: str, version: str, previous: str | None, ami_id: str, bake_version: str | None,
        operator_notes: str = "",
    ) -> Any:
        from phoenix_fleet.release.release_notes import (
            PackageListSource,
            build_release_notes,
            package_list_key,
        )
        from phoenix_fleet.release.versions import is_version

        def fetch(v: str) -> PackageListSource:
            key = package_list_key(self.role, v)
            return PackageListSource(f"s3://{bucket}/{key}", hook.read_s3_text(bucket, key))

        current = fetch(version)
        if current.text is None and bake_version and bake_version != version and is_version(bake_version):
            baked = fetch(bake_version)  # bake uploaded it under the version it was baked as
            if baked.text is not None:
                current = baked
        prev = fetch(previous) if previous else None
        return build_release_notes(self.role, version, ami_id, previous, current, prev, operator_notes)


# ---------------------------------------------------------------------------------------------------------------------
# 2. copy to one region (mapped per region)
# ---------------------------------------------------------------------------------------------------------------------


class CopyImageToRegionOperator(BaseOperator):
    """Copy ``ami_id`` from ``source_region`` to ``dest_region`` (idempotent), wait for it, tag it like the source.

    An existing copy is found first: tagged ``phoenix:copy-of=<ami_id>`` in ``dest_region``, else an AMI of the
    same name whose description names the source (a copy whose tagging was interrupted). Failed copies are
    deregistered and copied again. With ``dest_region == source_region`` the source AMI itself is the result.

    :param ami_id: the source AMI
    :param dest_region: where the copy goes (map over the role's regions)
    :param source_region: where ``ami_id`` lives (default ``region_name``, else the role's home region)
    :param role: fleet role (only to default ``source_region``; optional)
    :param kms_key_id: KMS key for the copy's snapshots in ``dest_region`` (default: the region's EBS default)
    :param deferrable: wait in the triggerer (default) or poll in the worker
    :param poll_interval: seconds between checks; ``timeout``: seconds before giving up

    Returns ``{"region", "ami_id", "source_ami_id", "source_region", "copied", "name"}`` (``copied``: a new copy was
    started by this task).
    """

    template_fields: Sequence[str] = (
        "ami_id",
        "source_region",
        "dest_region",
        "role",
        "kms_key_id",
        "aws_conn_id",
        "region_name",
    )
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        ami_id: str,
        dest_region: str,
        source_region: str | None = None,
        role: str | None = None,
        kms_key_id: str | None = None,
        config_path: str | None = None,
        deferrable: bool = True,
        poll_interval: float = 15,
        timeout: float = 3600,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ami_id = ami_id
        self.dest_region = dest_region
        self.source_region = source_region
        self.role = role
        self.kms_key_id = kms_key_id
        self.config_path = config_path
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def hook(self) -> ImageHook:
        from phoenix_fleet.hooks.image_hook import ImageHook

        return ImageHook(aws_conn_id=self.aws_conn_id, region_name=self._source_region())

    def _source_region(self) -> str:
        if self.source_region:
            return str(self.source_region)
        if self.region_name:
            return str(self.region_name)
        if self.role:
            from phoenix_fleet.config import cached_fleet_config

            return cached_fleet_config(self.config_path).role(self.role).home_region
        raise ValueError("source_region: not given. Fix: pass source_region (or region_name, or role)")

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.release.publish_rules import PublishRefusedError

        src_region, dest = self._source_region(), str(self.dest_region)
        hook = self.hook()
        source = hook.describe_image(self.ami_id, src_region)
        if dest == src_region:
            self.log.info("%s is in %s already: nothing to copy", self.ami_id, dest)
            return self._result(source["ImageId"], source, copied=False)
        if source.get("State") != "available":
            raise PublishRefusedError(
                f"source AMI {self.ami_id} in {src_region} is {source.get('State')!r}. Fix: copy only available images"
            )

        copy, copied = self._find_or_copy(hook, source, src_region, dest)
        hook.ec2(dest).create_tags(
            Resources=[copy["ImageId"]], Tags=[{"Key": k, "Value": v} for k, v in self._copy_tags(source).items()]
        )
        state = copy.get("State")
        if state == "available":
            return self._finish(hook, copy["ImageId"], source, copied)
        if state == "failed":
            raise RuntimeError(self._failed_message(copy))

        payload = self._result(copy["ImageId"], source, copied)
        if not self.deferrable:
            self.log.info("waiting for %s in %s (polling every %ss)", copy["ImageId"], dest, self.poll_interval)
            waiter = hook.ec2(dest).get_waiter("image_available")
            waiter.wait(
                ImageIds=[copy["ImageId"]],
                WaiterConfig={"Delay": max(1, int(self.poll_interval)), "MaxAttempts": self._attempts()},
            )
            return self._finish(hook, copy["ImageId"], source, copied)

        from phoenix_fleet.triggers.publish_triggers import CopiedImageAvailableTrigger

        self.log.info("deferring until %s is available in %s", copy["ImageId"], dest)
        self.defer(
            trigger=CopiedImageAvailableTrigger(
                image_id=copy["ImageId"],
                copy=payload,
                waiter_delay=self.poll_interval,  # type: ignore[arg-type]
                waiter_max_attempts=self._attempts(),
                aws_conn_id=self.aws_conn_id,
                region_name=dest,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            message = (event or {}).get("message", "no event")
            raise RuntimeError(f"copy of {self.ami_id} to {self.dest_region} did not become available: {message}")
        payload = event.get("copy") or {}
        if not payload.get("ami_id"):
            raise RuntimeError(f"copy of {self.ami_id}: the trigger event carries no copy id: {event!r}")
        hook = self.hook()
        source = hook.describe_image(payload.get("source_ami_id", self.ami_id), payload.get("source_region"))
        return self._finish(hook, payload["ami_id"], source, bool(payload.get("copied")))

    # -- helpers -------------------------------------------------------------------------------------------------

    def _attempts(self) -> int:
        return max(1, int(self.timeout // max(self.poll_interval, 0.01)) + 1)

    def _marker(self, src_region: str) -> str:
        return f"[phoenix-fleet copy of {self.ami_id} from {src_region}]"

    def _copy_tags(self, source: Mapping[str, Any]) -> dict[str, str]:
        from phoenix_fleet.release.publish_rules import TAG_COPY_OF, TAG_SOURCE_REGION, tag_map

        tags = {k: v for k, v in tag_map(source).items() if not k.startswith(_UNCOPIED_TAG_PREFIXES)}
        tags[TAG_COPY_OF] = source["ImageId"]
        tags[TAG_SOURCE_REGION] = self._source_region()
        return tags

    def _find_or_copy(
        self, hook: ImageHook, source: Mapping[str, Any], src_region: str, dest: str
    ) -> tuple[dict[str, Any], bool]:
        from phoenix_fleet.release.publish_rules import TAG_COPY_OF, PublishRefusedError, copy_client_token

        tagged = hook.find_images({f"tag:{TAG_COPY_OF}": source["ImageId"]}, dest)
        failed: list[str] = []  # failed copies of earlier tries, deregistered here: the retry's token names them
        for image in tagged:
            if image.get("State") == "failed":
                self.log.warning("deregistering failed copy %s in %s", image["ImageId"], dest)
                hook.deregister_image(image["ImageId"], dest)
                failed.append(image["ImageId"])
        live = [i for i in tagged if i.get("State") in ("available", "pending")]
        if live:
            chosen = sorted(live, key=lambda i: (i.get("State") != "available", i.get("CreationDate", "")))[0]
            self.log.info("found copy %s of %s in %s (%s)", chosen["ImageId"], self.ami_id, dest, chosen.get("State"))
            return chosen, False
        name = source.get("Name") or f"phoenix-copy-{source['ImageId']}"
        marker = self._marker(src_region)
        for image in hook.find_images({"name": name}, dest):
            ours = marker in (image.get("Description") or "")
            if image.get("State") == "failed":
                if ours:  # a failed copy whose tagging was interrupted
                    self.log.warning("deregistering failed untagged copy %s in %s", image["ImageId"], dest)
                    hook.deregister_image(image["ImageId"], dest)
                    failed.append(image["ImageId"])
                continue
            if ours:
                self.log.info("found untagged copy %s of %s in %s by name", image["ImageId"], self.ami_id, dest)
                return image, False
            raise PublishRefusedError(
                f"{dest} already has an AMI named {name!r} ({image['ImageId']}) that is not a copy of {self.ami_id}. "
                "Fix: deregister or rename that image (AMI names are unique per region)"
            )
        description = f"{(source.get('Description') or '').strip()} {marker}".strip()
        if len(description) > 255:
            description = description[-255:]
        # The token makes a lost answer safe to repeat (AWS answers the same token with the same image). After a
        # failed copy it must change: AWS answers a repeated token with the failed copy, even once deregistered.
        token = copy_client_token(self.ami_id, dest, failed)
        copy_id = hook.copy_image(
            self.ami_id,
            src_region,
            dest,
            name=name,
            description=description,
            client_token=token,
            encrypted=True if self.kms_key_id else None,
            kms_key_id=self.kms_key_id,
        )
        self.log.info("copying %s (%s) to %s: %s", self.ami_id, src_region, dest, copy_id)
        return hook.describe_image(copy_id, dest), True

    def _failed_message(self, image: Mapping[str, Any]) -> str:
        reason = (image.get("StateReason") or {}).get("Message", "no reason given")
        return (
            f"copy {image['ImageId']} of {self.ami_id} in {self.dest_region} failed: {reason}. "
            "Fix: retry the task (the failed copy is deregistered and copied again)"
        )

    def _finish(self, hook: ImageHook, copy_id: str, source: Mapping[str, Any], copied: bool) -> dict[str, Any]:
        dest = str(self.dest_region)
        copy = hook.describe_image(copy_id, dest)
        if copy.get("State") != "available":
            raise RuntimeError(
                self._failed_message(copy)
                if copy.get("State") == "failed"
                else f"copy {copy_id} in {dest} is {copy.get('State')!r}, not available"
            )
        tagged = hook.tag_image_and_snapshots(copy, self._copy_tags(source), dest)
        self.log.info("copy %s in %s is available; tagged %s", copy_id, dest, ", ".join(tagged))
        return self._result(copy_id, source, copied)

    def _result(self, ami_id: str, source: Mapping[str, Any], copied: bool) -> dict[str, Any]:
        return {
            "region": str(self.dest_region),
            "ami_id": ami_id,
            "source_ami_id": source["ImageId"],
            "source_region": self._source_region(),
            "copied": copied,
            "name": source.get("Name"),
        }


# ---------------------------------------------------------------------------------------------------------------------
# 3. share, move the pointers, announce
# ---------------------------------------------------------------------------------------------------------------------


class PublishRolledBackError(RuntimeError):
    """A pointer move failed; the pointers already moved were put back (every region on its previous version)."""


class PublishReleaseOperator(_FleetMixin, BaseOperator):
    """Share every region's AMI, then move the "latest" pointers of every region or of none, then announce.

    :param role: fleet role
    :param release: what :class:`ReleaseImageOperator` returned (``release.output``)
    :param copies: what the mapped :class:`CopyImageToRegionOperator` returned (``copies.output``: one dict per
        region); the home region may be in it or not. Every region of ``regions`` must be covered, no other.
    :param regions: the regions this release goes to (the release plan's ``regions``): a subset of the role's
        regions that includes the home region. Empty/None: every region of the role.
    :param accounts: accounts to share with (default: the role's ``share_with_accounts``)
    :param ssm_labelled_releases: how many of the newest releases keep their SSM label (``latest:v<version>``);
        the release log in S3 keeps every release
    :param outlets: default ``[image_asset(role)]`` (``x-phoenix://images/<role>``)

    All or nothing: every region's image is checked and every region is *staged* (the release record written to
    the log with what each pointer holds now; a ``<prefix>/<role>/staged`` parameter and the label bookkeeping
    done in every region) before any ``latest`` moves; then every region's pointers move, the home region's last;
    a failure before the last move puts the moved ones back (:class:`PublishRolledBackError`) and no asset event
    is emitted. Then the record says ``published`` and the event goes out.

    The asset event's extra: ``{"role", "version", "label", "previous_version", "home_region", "ami_id", "amis":
    {region: ami}, "regions", "release_notes": <bounded summary>, "release_notes_uri", "operator_notes" (at most
    ``release_notes.OPERATOR_NOTES_SUMMARY_MAX`` characters), "published_at", "already_published",
    "release_record_uri"}``. ``already_published`` is true when another run published this version before (a
    re-run of the release): the rollout skips such an event. Each new SSM version of ``latest`` and
    ``latest-version`` has the operator's notes in its description. Returns that plus ``"parameters": {region:
    {"latest": n, "latest-version": n}}`` and ``"shared_with"``.
    """

    template_fields: Sequence[str] = (
        "role", "release", "copies", "regions", "accounts", "aws_conn_id", "region_name",
    )
    ui_color = "#ffe6cc"

    def __init__(
        self,
        *,
        role: str,
        release: Any,
        copies: Any = None,
        regions: Any = None,
        accounts: list[str] | None = None,
        ssm_labelled_releases: int | None = None,
        config_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and isinstance(role, str) and "{{" not in role:
            kwargs["outlets"] = [image_asset(role)]
        super().__init__(**kwargs)
        self.role = role
        self.release = release
        self.copies = copies
        self.regions = regions
        self.accounts = accounts
        self.ssm_labelled_releases = ssm_labelled_releases
        self.config_path = config_path
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def hook(self, region: str) -> ImageHook:
        from phoenix_fleet.hooks.image_hook import ImageHook

        return ImageHook(aws_conn_id=self.aws_conn_id, region_name=region)

    def _planned_regions(self, role: Role, home: str) -> list[str]:
        asked = self.regions
        if isinstance(asked, str):
            asked = [r.strip() for r in asked.split(",") if r.strip()]
        asked = list(asked or [])
        if not asked:
            return list(role.regions)
        unknown = [r for r in asked if r not in role.regions]
        if unknown:
            raise ValueError(
                f"regions: {unknown} are not regions of role {self.role} ({list(role.regions)}). Fix: plan a subset "
                "of the role's regions"
            )
        if home not in asked:
            raise ValueError(f"regions: {asked} lacks the home region {home} (the image is released there). Fix: add it")
        return [r for r in role.regions if r in asked]

    def _amis(self, release: Mapping[str, Any], regions: list[str], home: str) -> dict[str, str]:
        amis = {home: str(release["ami_id"])}
        for c in list(self.copies or []):
            if not isinstance(c, Mapping) or not c.get("region") or not c.get("ami_id"):
                raise ValueError(f"copies: {c!r} is not a CopyImageToRegionOperator result. Fix: pass copies.output")
            if c["region"] == home and c["ami_id"] != amis[home]:
                raise ValueError(f"copies: the home region {home} maps to {c['ami_id']}, not {amis[home]}")
            amis[str(c["region"])] = str(c["ami_id"])
        missing = [r for r in regions if r not in amis]
        if missing:
            raise ValueError(
                f"copies: no copy for region(s) {missing} of this release of {self.role}. Fix: map "
                f"CopyImageToRegionOperator over the release's regions {regions}"
            )
        extra = [r for r in amis if r not in regions]
        if extra:
            raise ValueError(
                f"copies: region(s) {extra} are not regions of this release of {self.role} ({regions}). Fix: pass "
                "regions=<the plan's regions> (the same list the copies were mapped over)"
            )
        return {r: amis[r] for r in regions}

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.release.publish_rules import (
            TAG_PUBLISHED_AT,
            TAG_PUBLISHED_BY,
            TAG_VERSION,
            VersionConflictError,
            check_not_backwards,
            parameter_claims,
            raise_on_conflicts,
            refuse_unless_publishable,
            tag_map,
        )
        from phoenix_fleet.release.release_log import (
            PUBLISHED,
            ROLLED_BACK,
            SSM_LABELLED_RELEASES,
            STAGED,
            ReleaseRecord,
            record_key,
        )
        from phoenix_fleet.release.versions import Version

        fleet = self.fleet()
        role = self.role_config()
        release = self.release
        if isinstance(release, str):
            release = json.loads(release)
        if not isinstance(release, Mapping) or "version" not in release or "ami_id" not in release:
            raise ValueError("release: not a ReleaseImageOperator result. Fix: pass release=<release task>.output")
        if release.get("role") not in (None, self.role):
            raise ValueError(f"release: is for role {release.get('role')!r}, not {self.role!r}")
        version = Version.parse(str(release["version"]), field="release.version")
        label = version.label
        home = str(release.get("region") or self.region_name or role.home_region)
        regions = self._planned_regions(role, home)
        amis = self._amis(release, regions, home)
        accounts = list(self.accounts if self.accounts is not None else role.share_with_accounts)
        keep = SSM_LABELLED_RELEASES if self.ssm_labelled_releases is None else int(self.ssm_labelled_releases)
        if keep < 1:
            raise ValueError(f"ssm_labelled_releases: {keep} must be at least 1. Fix: e.g. {SSM_LABELLED_RELEASES}")
        bucket = fleet.artifacts_bucket
        pointer = fleet.latest_parameter(self.role)
        version_param = fleet.latest_version_parameter(self.role)
        hook = self.hook(home)  # one hook: clients per region, one session each
        account_id = hook.get_account_id()
        run_id = str(context.get("run_id") or "")
        notes = release.get("release_notes") or {}

        # 1. every region's image is ours, verified, this role's, this version's, available; no rival in the log
        images: dict[str, dict[str, Any]] = {}
        histories: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for region, ami in amis.items():
            image = hook.describe_image(ami, region)
            refuse_unless_publishable(image, account_id, self.role)
            tagged_version = tag_map(image).get(TAG_VERSION)
            if tagged_version != str(version):
                raise VersionConflictError(
                    f"{ami} in {region} is tagged {TAG_VERSION}={tagged_version!r}, not {version}. Fix: run the "
                    "release and copy tasks of this run first (they tag the images)"
                )
            history = hook.parameter_history(pointer, region)
            raise_on_conflicts(str(version), ami, parameter_claims(history, label, f"{pointer} in {region}"))
            current = hook.parameter_history(version_param, region)
            check_not_backwards(current[-1]["Value"] if current else None, version)
            images[region] = image
            histories[region] = {"latest": history, "latest-version": current}

        record = hook.release_record(bucket, self.role, str(version))
        if record is not None and record.published and record.amis != amis:
            raise VersionConflictError(
                f"version {version} of {self.role} was published as {record.amis} (s3://{bucket}/"
                f"{record_key(self.role, str(version))}); this run would publish {amis}. Versions are immutable. "
                "Fix: omit params.version to release under the next free version"
            )
        in_place = all(
            self._at(histories[r]["latest"], amis[r], label)
            and self._at(histories[r]["latest-version"], str(version), label)
            for r in regions
        )
        if record is not None and record.published:
            already = bool(record.published_by) and record.published_by != run_id
        elif record is None and in_place:
            # published before the log existed (the SSM labels were the log): record it, move nothing
            already = True
            record = self._legacy_record(hook, release, str(version), amis, home, histories)
            hook.put_release_record(bucket, record)
        else:
            already = False

        # 2. share (launch permission + snapshots), in every region (idempotent)
        for region, image in images.items():
            if accounts:
                hook.share_image(image, accounts, region)
                self.log.info("%s: shared %s and its snapshots with %s", region, image["ImageId"], ", ".join(accounts))

        # each new SSM version's description carries the operator's notes (clipped; whole in the release notes)
        from phoenix_fleet.release.release_notes import clip_notes

        operator_notes = clip_notes(str(release.get("operator_notes") or ""))
        parameters: dict[str, dict[str, int]] = {}
        moved = not (record is not None and record.published and in_place)  # False: a re-run that moves nothing
        if not moved:
            self.log.info("%s %s is published in %s already: nothing moves", self.role, version, ", ".join(regions))
            parameters = {
                r: {leaf: int(histories[r][leaf][-1]["Version"]) for leaf in ("latest", "latest-version")}
                for r in regions
            }
        else:
            # 3. stage every region: the record (with what every pointer holds now: the rollback), a staged value
            #    per region, and the label bookkeeping that keeps SSM under its 100-version limit
            if record is None or not record.published:
                record = ReleaseRecord(
                    role=self.role,
                    version=str(version),
                    amis=dict(amis),
                    home_region=home,
                    state=STAGED,
                    previous_version=release.get("previous_version"),
                    release_notes_uri=notes.get("markdown_uri"),
                    staged_at=_now_iso(),
                    staged_by=run_id or None,
                    pointers_before={
                        r: {leaf: self._before(histories[r][leaf]) for leaf in ("latest", "latest-version")}
                        for r in regions
                    },
                )
                hook.put_release_record(bucket, record)
            for region in regions:
                self._stage_region(hook, fleet, region, amis[region], str(version), keep, histories[region], bucket)
            # 4. move every region's pointers, the home region's last; a failure puts the moved ones back
            try:
                parameters = self._move_all(
                    hook, regions, home, amis, str(version), label, pointer, version_param, histories, operator_notes
                )
            except PublishRolledBackError as e:
                if not record.published:
                    record.state, record.error = ROLLED_BACK, str(e)[:2000]
                    try:
                        hook.put_release_record(bucket, record)
                    except Exception as log_error:  # the pointers are what matter; the record says staged
                        self.log.error("could not mark the release record rolled back: %s", log_error)
                raise
            if not record.published:
                record.state = PUBLISHED
                record.published_at = _now_iso()
                record.published_by = run_id or None
                record.error = None
            hook.put_release_record(bucket, record)
            self.log.info("release log: s3://%s/%s (%s)", bucket, record_key(self.role, str(version)), record.state)

        # 5. published-at (kept from the first publish on a re-run)
        published_at = tag_map(images[home]).get(TAG_PUBLISHED_AT) or record.published_at or _now_iso()
        for region, image in images.items():
            if TAG_PUBLISHED_AT not in tag_map(image):
                tags = {TAG_PUBLISHED_AT: published_at}
                if run_id:
                    tags[TAG_PUBLISHED_BY] = run_id[:255]
                hook.tag_image_and_snapshots(image, tags, region)

        extra: dict[str, Any] = {
            "role": self.role,
            "version": str(version),
            "label": label,
            "previous_version": release.get("previous_version"),
            "home_region": home,
            "ami_id": amis[home],
            "amis": amis,
            "regions": list(regions),
            "release_notes": notes.get("summary"),
            "release_notes_uri": notes.get("markdown_uri"),
            "operator_notes": operator_notes,
            "release_record_uri": f"s3://{bucket}/{record_key(self.role, str(version))}",
            "published_at": published_at,
            "already_published": already,
        }
        extra = bound_extra(extra)
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            for outlet in self.outlets or []:
                if isinstance(outlet, Asset):
                    outlet_events[outlet].extra = dict(extra)
        skipped = [r for r in role.regions if r not in regions]
        self.log.info(
            "published %s %s: %s%s%s", self.role, version, ", ".join(f"{r}={a}" for r, a in amis.items()),
            f" (not to {', '.join(skipped)}: not in this release's regions)" if skipped else "",
            f" (already published by {record.published_by or 'an earlier run'}: the rollout will skip this event)"
            if already else "",
        )
        if moved and not already:  # phoenix.release.duration: run start -> published (a re-run that moved nothing is no release)
            from phoenix_fleet.fleet_metrics import release_published

            release_published(self.role, getattr(context.get("dag_run"), "start_date", None))
        result = {**extra, "parameters": parameters, "shared_with": accounts}
        _push_keys(context, result)
        return result

    # -- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _at(history: Sequence[Mapping[str, Any]], value: str, label: str) -> bool:
        latest = history[-1] if history else None
        return bool(latest and latest["Value"] == value and label in (latest.get("Labels") or []))

    @staticmethod
    def _before(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        if not history:
            return None
        latest = history[-1]
        return {"value": str(latest["Value"]), "version": int(latest["Version"]), "labels": list(latest.get("Labels") or [])}

    def _legacy_record(
        self,
        hook: ImageHook,
        release: Mapping[str, Any],
        version: str,
        amis: dict[str, str],
        home: str,
        histories: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    ) -> Any:
        from phoenix_fleet.release.release_log import PUBLISHED, ReleaseRecord

        moved = histories[home]["latest"][-1].get("LastModifiedDate")
        return ReleaseRecord(
            role=self.role, version=version, amis=dict(amis), home_region=home, state=PUBLISHED,
            previous_version=release.get("previous_version"),
            release_notes_uri=(release.get("release_notes") or {}).get("markdown_uri"),
            published_at=_iso(moved), source="ssm-labels",
        )

    def _stage_region(
        self,
        hook: ImageHook,
        fleet: FleetConfig,
        region: str,
        ami: str,
        version: str,
        keep: int,
        history: Mapping[str, list[dict[str, Any]]],
        bucket: str,
    ) -> None:
        """Before any pointer moves: write the staged value, make room for one more labelled version (older labels
        go, their releases recorded in the log first), and refuse if SSM still could not take a new version."""
        from phoenix_fleet.release.publish_rules import PublishRefusedError
        from phoenix_fleet.release.release_log import labels_to_drop, limit_blocker

        staged = f"{fleet.ssm_prefix}/{self.role}/staged"
        hook.put_parameter(
            staged, ami, f"AMI id of the {self.role} release {version} being published (staged by publish)",
            region, data_type="aws:ec2:image",
        )
        for leaf, name in (("latest", fleet.latest_parameter(self.role)),
                           ("latest-version", fleet.latest_version_parameter(self.role))):
            entries = history[leaf]
            in_place = self._at(entries, ami if leaf == "latest" else version, f"v{version}")
            drop = [(n, labs) for n, labs in labels_to_drop(entries, keep, 0 if in_place else 1)
                    if labs != [f"v{version}"]]
            if drop and leaf == "latest":
                self._record_legacy_releases(hook, bucket, region, drop, entries)
            for number, labels in drop:
                hook.unlabel_parameter_version(name, number, labels, region)
            if drop:
                self.log.info("%s: %s: labels %s dropped (older releases are in the release log)", region, name,
                              ", ".join(lab for _, labs in drop for lab in labs))
            blocker = None if in_place else limit_blocker(entries, drop)
            if blocker:
                raise PublishRefusedError(
                    f"{region}: {blocker}. Nothing was moved. Fix: remove that label "
                    f"(aws ssm unlabel-parameter-version --name {name} --parameter-version ...) and retry"
                )

    def _record_legacy_releases(
        self, hook: ImageHook, bucket: str, region: str, drop: list[tuple[int, list[str]]],
        entries: list[dict[str, Any]],
    ) -> None:
        """Releases published before the log existed live only in their SSM label: record them before it goes."""
        from phoenix_fleet.release.release_log import PUBLISHED, ReleaseRecord

        by_number = {int(h["Version"]): h for h in entries}
        for number, labels in drop:
            for lab in labels:
                version = lab[1:]
                record = hook.release_record(bucket, self.role, version)
                entry = by_number[number]
                if record is None:
                    record = ReleaseRecord(
                        role=self.role, version=version, amis={}, home_region=self.role_config().home_region,
                        state=PUBLISHED, published_at=_iso(entry.get("LastModifiedDate")), source="ssm-labels",
                    )
                elif record.source != "ssm-labels" or record.amis.get(region) == entry["Value"]:
                    continue
                record.amis[region] = str(entry["Value"])
                hook.put_release_record(bucket, record)

    def _move_all(
        self,
        hook: ImageHook,
        regions: list[str],
        home: str,
        amis: dict[str, str],
        version: str,
        label: str,
        pointer: str,
        version_param: str,
        histories: Mapping[str, Mapping[str, list[dict[str, Any]]]],
        operator_notes: str = "",
    ) -> dict[str, dict[str, int]]:
        """Move ``latest-version`` then ``latest`` in every region, the home region last (Terraform reads the home
        region's pointer). On any failure, every move already made is undone before the error goes on."""
        order = [r for r in regions if r != home] + [home]
        moves: list[_Move] = []
        parameters: dict[str, dict[str, int]] = {}
        try:
            for region in order:
                parameters[region] = {}
                for leaf, name, value, data_type, base in (
                    ("latest-version", version_param, version, "text",
                     f"Version of the latest published {self.role} image (moved by publish)"),
                    ("latest", pointer, amis[region], "aws:ec2:image",
                     f"AMI id of the latest published {self.role} image ({version}, moved by publish)"),
                ):
                    move = self._move(hook, region, name, value, label, data_type,
                                      release_log_description(base, operator_notes), moves, histories[region][leaf])
                    parameters[region][leaf] = move.number
        except BaseException as e:
            undone, left = self._undo(hook, moves, label)
            where = f"{getattr(e, '__class__', type(e)).__name__}: {e}"
            if left:
                raise PublishRolledBackError(
                    f"publishing {self.role} {version} failed ({where}) and the pointers could not all be put back: "
                    f"{'; '.join(left)}. Fix: run the publish task again (it moves every region forward), or put "
                    "those parameters back by hand"
                ) from e
            if not isinstance(e, Exception):
                raise
            raise PublishRolledBackError(
                f"publishing {self.role} {version} failed ({where}); nothing stays moved: "
                f"{', '.join(undone) or 'no pointer had moved yet'} put back, every region is on its previous "
                "version and no asset event is emitted. Fix: retry the task (it stages and moves every region again)"
            ) from e
        return parameters

    def _move(
        self,
        hook: ImageHook,
        region: str,
        name: str,
        value: str,
        label: str,
        data_type: str,
        description: str,
        moves: list[_Move],
        history: Sequence[Mapping[str, Any]],
    ) -> _Move:
        """Put ``value`` as a new version of ``name`` (unless it already is the current one) and label it; the
        move is appended to ``moves`` as soon as anything changed, so a failure half-way is undone too.
        ``history``: the parameter's history as read by this task's checks."""
        latest = history[-1] if history else None
        before = {"value": str(latest["Value"]), "version": int(latest["Version"])} if latest else None
        if latest and latest["Value"] == value:
            move = _Move(region, name, before, int(latest["Version"]), False, False, data_type, description)
            if label not in (latest.get("Labels") or []):
                hook.label_parameter_version(name, move.number, [label], region)
                move.labelled = True
                moves.append(move)
            self.log.info("%s: %s already %s (version %s, %s)", region, name, value, move.number, label)
            return move
        number = hook.put_parameter(name, value, description, region, data_type=data_type)
        move = _Move(region, name, before, number, True, False, data_type, description)
        moves.append(move)
        hook.label_parameter_version(name, number, [label], region)
        move.labelled = True
        self.log.info("%s: %s = %s (version %s, label %s)", region, name, value, number, label)
        return move

    def _undo(self, hook: ImageHook, moves: list[_Move], label: str) -> tuple[list[str], list[str]]:
        """Put every moved parameter back, newest move first: (what was put back, what could not be)."""
        undone: list[str] = []
        left: list[str] = []
        for move in reversed(moves):
            what = f"{move.region} {move.name}"
            try:
                if move.labelled:
                    hook.unlabel_parameter_version(move.name, move.number, [label], move.region)
                if move.created:
                    if move.before is None:
                        hook.delete_parameter(move.name, move.region)
                    else:
                        hook.put_parameter(
                            move.name, move.before["value"],
                            f"put back by publish: the move to {label} was rolled back"[:SSM_DESCRIPTION_MAX],
                            move.region, data_type=move.data_type,
                        )
                undone.append(what)
                self.log.warning("rolled back %s to %s", what, move.before["value"] if move.before else "<none>")
            except Exception as e:  # keep undoing the others; report this one
                left.append(f"{what} (still {label}: {e})")
                self.log.error("could not roll back %s: %s", what, e)
        return undone, left


@dataclass
class _Move:
    """One parameter publish changed: what it held before (None: it did not exist), the version made or labelled."""

    region: str
    name: str
    before: dict[str, Any] | None
    number: int
    created: bool  # a new parameter version was put
    labelled: bool  # the release label was put on ``number``
    data_type: str
    description: str


SSM_DESCRIPTION_MAX = 1024  # characters of a parameter's Description (AWS limit)


def release_log_description(base: str, operator_notes: str, limit: int = SSM_DESCRIPTION_MAX) -> str:
    """A release log entry's description: ``base``, then the operator's notes, clipped to fit ``limit``."""
    from phoenix_fleet.release.release_notes import clip_notes

    if not operator_notes:
        return base[:limit]
    head = f"{base}. Operator's notes: "
    return head + clip_notes(operator_notes, max(limit - len(head), 0))


def bound_extra(extra: dict[str, Any], limit: int = ASSET_EXTRA_MAX_BYTES) -> dict[str, Any]:
    """Shrink the release-notes summary until the extra's JSON fits in ``limit`` bytes."""
    from phoenix_fleet.release.release_notes import SUMMARY_LIMIT

    out = dict(extra)
    summary = out.get("release_notes")
    keep = SUMMARY_LIMIT
    while len(json.dumps(out, default=str)) > limit and isinstance(summary, dict) and keep > 0:
        keep //= 2
        summary = dict(summary)
        for k in ("upgraded", "downgraded", "added", "removed"):
            rows = summary.get(k)
            if isinstance(rows, list) and len(rows) > keep:
                summary[f"{k}_truncated"] = summary.get(f"{k}_truncated", 0) + len(rows) - keep
                summary[k] = rows[:keep]
        out["release_notes"] = summary
    if len(json.dumps(out, default=str)) > limit and isinstance(summary, dict):
        out["release_notes"] = {"counts": summary.get("counts"), "truncated": True}
    return out



__all__ = [
    "CopyImageToRegionOperator",
    "PublishReleaseOperator",
    "PublishRolledBackError",
    "ReleaseImageOperator",
    "ASSET_SCHEME",
    "image_asset",
    "image_asset_name",
    "image_asset_ref",
]
