"""``PackerBuildOperator``: bake a role's AMI with Packer, retry-safe, and hand off manifest + package list.

Retry and idempotency rules (an AMI is identified by role + version, owner self: tags ``phoenix:role`` and
``phoenix:version``, or the name ``phoenix-<role>-<version>`` because Packer tags an AMI only once it is
available):

* **available and tagged, by this run from these inputs** (tags ``phoenix:build-run`` = this run,
  ``phoenix:build-inputs`` = the digest of the Packer variables) -> reused, no second build. The manifest and
  package list come from S3 when an earlier try uploaded them; otherwise the manifest is rebuilt from the AMI's
  tags and the package list is reported missing (``packages_s3_key: None``).
* **available and tagged, by another run or from other inputs** -> refused (``AirflowFailException``): nothing
  is built, nothing is deregistered (it may be published); the fix is a new version.
* **pending** -> the task defers on ``AmiAvailableTrigger`` (a Packer of an earlier try, or a concurrent
  run, is still creating it) and decides again when it is available or failed.
* **failed / error / invalid** -> deregistered (and its snapshots deleted), then built again: a failed AMI
  can never be used, and its name would make Packer refuse the build.
* **available but without its final tags** (its Packer died between "available" and tagging; we wait
  ``tag_grace_seconds`` for the tags first) -> incomplete: deregistered and built again. Packer puts the template's
  ``run_tags`` (role, version, build run, ``phoenix:managed-by``) on the image and its snapshot in CreateImage, so
  such an image, like a failed one, carries the project's tags that the IAM policies' clean-up conditions need;
  the final ``tags`` add ``phoenix:verified``, which is how an incomplete image is told apart.
* nothing -> ``packer init``, ``validate``, ``build``.

Import-light (DAG files import this at parse time): only ``airflow.sdk`` and the stdlib at module level; the fleet
config, the release logic (``phoenix_fleet.release``), the hook, the provider and boto3 are imported inside the
methods and functions that use them.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

ROLE_TAG = "phoenix:role"
VERSION_TAG = "phoenix:version"
BUILD_RUN_TAG = "phoenix:build-run"
INPUTS_TAG = "phoenix:build-inputs"
GIT_SHA_TAG = "phoenix:git-sha"
#: set by the Packer template's final ``tags`` (false until verify), never by its ``run_tags``: an image without it is
#: a build that did not finish (tests/unit/bake/test_packer_double.py holds the template to this)
FINAL_TAG = "phoenix:verified"
# variables that do not change what is built (where and by which run): left out of the inputs digest
_NOT_INPUTS = ("build_run", "build_inputs", "subnet_id")
FAILED_STATES = ("failed", "error", "invalid")
GIT_SHA_ENV = "PHOENIX_GIT_SHA"
#: what Packer's amazon-ebs builder says when its source_ami_filter matches nothing
NO_SOURCE_AMI = "No AMI was found matching filters"


def manifest_key(role: str, version: str) -> str:
    """``images/<role>/<version>/manifest-<role>-<version>.json`` (Packer's file name, next to the package list)."""
    from phoenix_fleet.release.release_notes import image_prefix

    return f"{image_prefix(role, version)}manifest-{role}-{version}.json"


def packages_key(role: str, version: str) -> str:
    """``images/<role>/<version>/packages-<role>-<version>.tsv``: where publish reads it for the release notes."""
    from phoenix_fleet.release.release_notes import package_list_key

    return package_list_key(role, version)


def _tag_map(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def build_inputs(variables: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the Packer variables that shape the image (all but build run and subnet), canonical
    JSON: the tag ``phoenix:build-inputs`` that lets a retry recognise its own build."""
    import hashlib
    import json

    shaping = {k: v for k, v in sorted(variables.items()) if k not in _NOT_INPUTS}
    return "sha256:" + hashlib.sha256(json.dumps(shaping, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PackerBuildOperator(BaseOperator):
    """Bake ``role`` at ``version`` with Packer (``PackerHook``), unless that AMI already exists.

    :param role: a role of the fleet config (templated).
    :param version: the release version ``YYYY.MM.DD-N`` (templated).
    :param template: the Packer template, relative to ``include/`` (default:
        ``roles.<role>.image.packer_template``) or absolute.
    :param git_sha: commit of phoenix-fleet (tag ``phoenix:git-sha``); default ``$PHOENIX_GIT_SHA``, else
        ``git rev-parse HEAD`` of the template's repository, else ``unknown``.
    :param build_run: tag ``phoenix:build-run``; default the Airflow run id.
    :param extra_vars: more ``-var``\\ s (override the ones from the fleet config).
    :param subnet_id: builder subnet; default the role's canary subnet (``canary_subnet_id`` or the subnet
        tagged ``canary_subnet_tags``), else the default VPC.
    :param ami_name: the AMI name the template produces (default ``phoenix-<role>-<version>``), used to find
        an AMI of an earlier try that is not tagged yet.
    :param artifacts_bucket: S3 bucket for the manifest and the package list (default: the fleet config's).
    :param packer_bin / packer_env: the Packer binary and extra environment (see ``PackerHook``).
    :param packer_aws_conn_id: the connection Packer runs as (the Packer builder's principal,
        ``include/iam/packer.json``); default: the role's ``image.packer_aws_conn_id``, else ``aws_conn_id`` (which
        the task's own calls use: finding an earlier build, the artifacts upload).
    :param deferrable, poll_interval, timeout: waiting for a pending AMI of an earlier try.
    :param kill_grace_seconds: after SIGINT on kill, how long Packer may clean up.
    :param tag_grace_seconds: how long to wait for Packer's tags on an AMI that just became available.

    XCom (return value)::

        {"role", "version", "ami_id", "ami_name", "region", "artifacts": {region: ami_id},
         "manifest": {<Packer manifest build entry>}, "bucket", "manifest_s3_key", "packages_s3_key",
         "packages_count", "source_ami", "build_run", "git_sha", "reused": bool}
    """

    template_fields: Sequence[str] = (
        "role", "version", "template", "git_sha", "build_run", "extra_vars", "subnet_id", "ami_name",
        "artifacts_bucket", "aws_conn_id", "packer_aws_conn_id", "region_name",
    )
    template_fields_renderers = {"extra_vars": "json"}
    ui_color = "#ffe8cc"

    def __init__(
        self,
        *,
        role: str,
        version: str,
        template: str | None = None,
        git_sha: str | None = None,
        build_run: str | None = None,
        extra_vars: dict[str, Any] | None = None,
        subnet_id: str | None = None,
        ami_name: str | None = None,
        artifacts_bucket: str | None = None,
        upload_artifacts: bool = True,
        fleet_config_path: str | None = None,
        packer_bin: str | None = None,
        packer_env: dict[str, str] | None = None,
        aws_conn_id: str | None = "aws_default",
        packer_aws_conn_id: str | None = None,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        deferrable: bool = True,
        poll_interval: float = 30,
        timeout: float = 3600,
        kill_grace_seconds: float = 600,
        tag_grace_seconds: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.version = version
        self.template = template
        self.git_sha = git_sha
        self.build_run = build_run
        self.extra_vars = extra_vars or {}
        self.subnet_id = subnet_id
        self.ami_name = ami_name
        self.artifacts_bucket = artifacts_bucket
        self.upload_artifacts = upload_artifacts
        self.fleet_config_path = fleet_config_path
        self.packer_bin = packer_bin
        self.packer_env = packer_env or {}
        self.aws_conn_id = aws_conn_id
        self.packer_aws_conn_id = packer_aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.kill_grace_seconds = kill_grace_seconds
        self.tag_grace_seconds = tag_grace_seconds
        self._hook: Any = None

    # -------------------------------------------------------------------------------------- config
    def _config(self) -> Any:
        from phoenix_fleet.config import cached_fleet_config

        return cached_fleet_config(self.fleet_config_path)

    def _validate(self) -> None:
        from phoenix_fleet.release.versions import Version

        Version.parse(str(self.version), field="version")  # VersionError (a ValueError) names the fix
        self._config().role(self.role)

    def _region(self) -> str:
        return str(self.region_name or self._config().role(self.role).home_region)

    def packer_conn_id(self) -> str | None:
        """The connection Packer runs as: ``packer_aws_conn_id``, else the role's ``image.packer_aws_conn_id``, else
        ``aws_conn_id``."""
        if self.packer_aws_conn_id:
            return str(self.packer_aws_conn_id)
        return self._config().role(self.role).image.packer_aws_conn_id or self.aws_conn_id

    def _ami_name(self) -> str:
        return str(self.ami_name or f"phoenix-{self.role}-{self.version}")

    def _template_path(self) -> Path:
        from phoenix_fleet.config import default_config_path, include_dir

        raw = self.template or self._config().role(self.role).image.packer_template
        path = Path(raw)
        if not path.is_absolute():
            cfg_path = Path(self.fleet_config_path) if self.fleet_config_path else default_config_path()
            path = include_dir(cfg_path) / path
        if not path.exists():
            raise AirflowException(
                f"template: {path} does not exist. Fix: set roles.{self.role}.image.packer_template (relative to include/)"
            )
        return path

    def _git_sha(self, template: Path) -> str:
        if self.git_sha:
            return str(self.git_sha)
        if os.environ.get(GIT_SHA_ENV):
            return os.environ[GIT_SHA_ENV]
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=str(template.parent), capture_output=True, text=True, timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        sha = out.stdout.strip()
        return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{7,40}", sha) else "unknown"

    def _hooks(self) -> tuple[Any, Any]:
        from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        kw: dict[str, Any] = {"aws_conn_id": self.aws_conn_id, "region_name": self._region(), "verify": self.verify}
        return EC2Hook(api_type="client_type", config=self.botocore_config, **kw), S3Hook(**kw)

    # ----------------------------------------------------------------------------------- existing
    def _existing(self, ec2: Any) -> list[dict[str, Any]]:
        by_tag = ec2.describe_images(
            Owners=["self"],
            Filters=[
                {"Name": f"tag:{ROLE_TAG}", "Values": [self.role]},
                {"Name": f"tag:{VERSION_TAG}", "Values": [self.version]},
            ],
        )["Images"]
        by_name = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [self._ami_name()]}])["Images"]
        seen: dict[str, dict[str, Any]] = {}
        for image in [*by_tag, *by_name]:
            seen.setdefault(image["ImageId"], image)
        return sorted(seen.values(), key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))

    def _tagged(self, image: Mapping[str, Any]) -> bool:
        """Whether ``image`` carries its build's final tags (the template's ``tags``). Packer's amazon builder puts
        the ``run_tags`` (role, version, build run) on the image already in CreateImage, so role and version alone
        do not say the build finished: the final tags also set ``phoenix:verified``, which run tags never do."""
        tags = _tag_map(image)
        return tags.get(ROLE_TAG) == self.role and tags.get(VERSION_TAG) == self.version and FINAL_TAG in tags

    def _deregister(self, ec2: Any, image: Mapping[str, Any], why: str) -> None:
        snapshots = [
            b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) or [] if b.get("Ebs", {}).get("SnapshotId")
        ]
        self.log.warning("Deregistering %s (%s): %s", image["ImageId"], image.get("Name"), why)
        ec2.deregister_image(ImageId=image["ImageId"])
        for snap in snapshots:
            try:
                ec2.delete_snapshot(SnapshotId=snap)
            except Exception as exc:  # in use by another image: leave it
                self.log.warning("Could not delete snapshot %s: %s", snap, exc)

    def _wait_for_tags(self, ec2: Any, image: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + float(self.tag_grace_seconds)
        while not self._tagged(image) and time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            found = ec2.describe_images(ImageIds=[image["ImageId"]], Owners=["self"])["Images"]
            image = found[0] if found else image
        return image

    # ---------------------------------------------------------------------------------- execution
    def execute(self, context: Context) -> dict[str, Any]:
        self._validate()
        return self._decide(context, waited=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise AirflowException("the AMI trigger sent no event")
        if event.get("status") != "success" and event.get("state") not in FAILED_STATES:
            raise AirflowException(f"waiting for the AMI of an earlier try failed: {event.get('message')}")
        self.log.info("AMI %s of an earlier try: %s", event.get("image_id"), event.get("message") or "available")
        return self._decide(context, waited=True)

    def _own_build_problem(self, image: Mapping[str, Any], variables: Mapping[str, Any]) -> str | None:
        """None when ``image`` is this run's build from these inputs; else why it is not."""
        tags = _tag_map(image)
        run, want_run = tags.get(BUILD_RUN_TAG), str(variables["build_run"])
        if run != want_run:
            return f"by run {run or '(untagged)'}, not by this run ({want_run})"
        if tags.get(INPUTS_TAG) != variables["build_inputs"]:
            differs = []
            if tags.get(GIT_SHA_TAG) != variables.get("git_sha"):
                differs.append(f"git sha {tags.get(GIT_SHA_TAG) or '?'} there, {variables.get('git_sha')} now")
            return (
                f"by this run ({want_run}) but built from other inputs ({INPUTS_TAG} {tags.get(INPUTS_TAG) or '(none)'} "
                f"there, {variables['build_inputs']} now" + (f"; {'; '.join(differs)}" if differs else "") + ")"
            )
        return None

    def _refuse_foreign(self, image: Mapping[str, Any], problem: str) -> AirflowException:
        from airflow.sdk.exceptions import AirflowFailException

        tags = _tag_map(image)
        verified = tags.get("phoenix:verified")
        return AirflowFailException(
            f"{self.role} {self.version} is already baked as {image['ImageId']} ({image.get('Name')}, "
            f"phoenix:verified={verified or 'unset'}) {problem}. A bake reuses only its own build and versions are "
            f"immutable, so nothing was built or changed. Fix: release under a new version (leave params.version "
            f"empty for the next free one); if {image['ImageId']} is an abandoned build that was never published, "
            "deregister it first"
        )

    def _decide(self, context: Context, waited: bool) -> dict[str, Any]:
        ec2_hook, s3 = self._hooks()
        ec2 = ec2_hook.conn
        variables = self._variables(context, ec2, self._template_path())
        existing = self._existing(ec2)
        for image in existing:
            self.log.info(
                "Found %s (%s) for %s %s: %s%s", image["ImageId"], image.get("Name"), self.role, self.version,
                image.get("State"), "" if self._tagged(image) else ", not tagged yet",
            )
        available = [i for i in existing if i.get("State") == "available"]
        pending = [i for i in existing if i.get("State") == "pending"]
        failed = [i for i in existing if i.get("State") in FAILED_STATES]
        tagged = [i for i in available if self._tagged(i)]
        if tagged:
            problem = self._own_build_problem(tagged[-1], variables)
            if problem:
                raise self._refuse_foreign(tagged[-1], problem)
            return self._reuse(context, tagged[-1], s3)
        if pending:
            image = pending[-1]
            if self.deferrable:
                from phoenix_fleet.triggers.ami_triggers import AmiAvailableTrigger

                self.log.info("%s is pending (an earlier try's build?): deferring until it is available", image["ImageId"])
                attempts = max(1, int(self.timeout // self.poll_interval)) if self.poll_interval > 0 else 1000
                self.defer(
                    trigger=AmiAvailableTrigger(
                        image_id=image["ImageId"], owners=["self"], waiter_delay=int(self.poll_interval),
                        waiter_max_attempts=attempts, aws_conn_id=self.aws_conn_id, region_name=self._region(),
                        verify=self.verify, botocore_config=self.botocore_config,
                    ),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=float(self.timeout)),
                )
            from phoenix_fleet.triggers.ami_triggers import PhoenixEc2Hook

            hook = PhoenixEc2Hook(aws_conn_id=self.aws_conn_id, region_name=self._region(), verify=self.verify)
            try:
                hook.get_waiter("ImageAvailablePinned").wait(
                    ImageIds=[image["ImageId"]], Owners=["self"],
                    WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": max(1, int(self.timeout // max(self.poll_interval, 1)))},
                )
            except Exception as exc:  # WaiterError: failed -> handled below
                self.log.warning("Waiting for %s: %s", image["ImageId"], exc)
            return self._decide(context, waited=True)
        for image in available:  # untagged: its Packer may still be tagging it
            image = self._wait_for_tags(ec2, image)
            if self._tagged(image):
                problem = self._own_build_problem(image, variables)
                if problem:
                    raise self._refuse_foreign(image, problem)
                return self._reuse(context, image, s3)
            self._deregister(ec2, image, "available but never tagged: its build did not finish")
        for image in failed:
            reason = (image.get("StateReason") or {}).get("Message") or image.get("State")
            self._deregister(ec2, image, f"it is {image.get('State')} ({reason}); building it again")
        return self._build(context, ec2, s3, variables)

    def _reuse(self, context: Context, image: Mapping[str, Any], s3: Any) -> dict[str, Any]:
        tags = _tag_map(image)
        region = self._region()
        bucket = self._bucket()
        self.log.info(
            "Reusing %s (%s): %s %s was already baked (build run %s); no second build",
            image["ImageId"], image.get("Name"), self.role, self.version, tags.get("phoenix:build-run", "?"),
        )
        mkey, pkey = manifest_key(self.role, self.version), packages_key(self.role, self.version)
        manifest: dict[str, Any] | None = None
        packages_count: int | None = None
        if self.upload_artifacts and s3.check_for_key(mkey, bucket_name=bucket):
            import json

            data = json.loads(s3.read_key(mkey, bucket_name=bucket))
            builds = data.get("builds") or []
            mine = [b for b in builds if b.get("packer_run_uuid") == data.get("last_run_uuid")] or builds[-1:]
            manifest = mine[-1] if mine else None
        if manifest is None:
            self.log.warning("No manifest of %s in s3://%s/%s: rebuilding it from the AMI's tags", image["ImageId"], bucket, mkey)
            manifest = {
                "name": "phoenix",
                "builder_type": "amazon-ebs",
                "build_time": None,
                "files": None,
                "artifact_id": f"{region}:{image['ImageId']}",
                "packer_run_uuid": None,
                "custom_data": {
                    "role": self.role,
                    "version": self.version,
                    "build_run": tags.get("phoenix:build-run", ""),
                    "git_sha": tags.get("phoenix:git-sha", ""),
                    "source_ami": tags.get("phoenix:source-ami", ""),
                },
                "reconstructed": True,
            }
        if self.upload_artifacts and s3.check_for_key(pkey, bucket_name=bucket):
            text = s3.read_key(pkey, bucket_name=bucket)
            packages_count = len([ln for ln in text.splitlines() if ln.strip()])
        else:
            self.log.warning(
                "No package list of %s in s3://%s/%s: release notes of %s will have no package diff",
                image["ImageId"], bucket, pkey, self.version,
            )
            pkey = None  # type: ignore[assignment]
        from phoenix_fleet.hooks.packer_hook import parse_artifact_id

        artifacts = parse_artifact_id(str(manifest.get("artifact_id", ""))) or {region: image["ImageId"]}
        return self._result(
            image["ImageId"], str(image.get("Name")), artifacts, manifest, bucket, mkey if manifest.get("packer_run_uuid") else None,
            pkey, packages_count, tags.get("phoenix:source-ami"), tags.get("phoenix:build-run"), tags.get("phoenix:git-sha"),
            reused=True,
        )

    def _bucket(self) -> str:
        return str(self.artifacts_bucket or self._config().artifacts_bucket)

    def _variables(self, context: Context, ec2: Any, template: Path) -> dict[str, Any]:
        from phoenix_fleet.operators.verify_operators import resolve_role_subnet

        role = self._config().role(self.role)
        subnet = resolve_role_subnet(ec2, self.role, role.image, self.subnet_id) or ""
        variables: dict[str, Any] = {
            "role": self.role,
            "version": self.version,
            "base_ami_name": role.image.base_ami.name,
            "base_ami_owners": list(role.image.base_ami.owners),
            "regions": [self._region()],
            "instance_type": role.image.instance_type,
            "subnet_id": subnet,
            "build_run": str(self.build_run or context["run_id"]),
            "git_sha": self._git_sha(template),
        }
        variables.update(self.extra_vars)
        variables["build_inputs"] = build_inputs(variables)
        return variables

    def _build(self, context: Context, ec2: Any, s3: Any, variables: dict[str, Any]) -> dict[str, Any]:
        from phoenix_fleet.hooks.packer_hook import PackerBuildError, PackerHook
        from phoenix_fleet.release.package_diff import parse_package_list

        template = self._template_path()
        with tempfile.TemporaryDirectory(prefix=f"phoenix-bake-{self.role}-") as workdir:
            self._hook = PackerHook(
                packer_bin=self.packer_bin,
                working_dir=workdir,
                env=self.packer_env,
                aws_conn_id=self.packer_conn_id(),
                region_name=self._region(),
                kill_grace_seconds=self.kill_grace_seconds,
            )
            try:
                result = self._hook.build(
                    template,
                    variables,
                    manifest_file=f"manifest-{self.role}-{self.version}.json",
                    packages_file=f"packages-{self.role}-{self.version}.tsv",
                )
            except PackerBuildError as exc:
                self._fail_without_base_ami(exc, variables)
                raise
            finally:
                self._hook = None
            region = self._region()
            ami_id = result.artifacts.get(region) or next(iter(result.artifacts.values()))
            bucket = self._bucket()
            mkey: str | None = manifest_key(self.role, self.version)
            pkey: str | None = packages_key(self.role, self.version)
            packages_count = None
            if result.packages_path is not None:
                packages = parse_package_list(result.packages_path.read_text(), source=result.packages_path.name)
                packages_count = len(packages)
                self.log.info("Package list: %d packages", packages_count)
            else:
                self.log.warning("Packer left no package list (packages-%s-%s.tsv)", self.role, self.version)
            if self.upload_artifacts:
                if result.manifest_path is not None:
                    s3.load_file(str(result.manifest_path), key=mkey, bucket_name=bucket, replace=True)
                    self.log.info("Manifest saved to s3://%s/%s", bucket, mkey)
                else:
                    mkey = None
                if result.packages_path is not None:
                    s3.load_file(str(result.packages_path), key=pkey, bucket_name=bucket, replace=True)
                    self.log.info("Package list saved to s3://%s/%s", bucket, pkey)
                else:
                    pkey = None
            else:
                mkey = pkey = None
        manifest = result.manifest or {}
        custom = manifest.get("custom_data") or {}
        return self._result(
            ami_id, self._ami_name(), result.artifacts, manifest, bucket, mkey, pkey, packages_count,
            custom.get("source_ami"), variables["build_run"], variables["git_sha"], reused=False,
        )

    def _fail_without_base_ami(self, exc: Any, variables: Mapping[str, Any]) -> None:
        """A base image that does not exist is bad input, not a transient failure: fail now (no retry), naming
        the field it came from (the trigger form's override, else the role's config). ``plan`` checks the same
        before the bake; this catches a base image deregistered in between."""
        lines = [*getattr(exc, "errors", []), *getattr(exc, "error_lines", [])]
        if not any(NO_SOURCE_AMI in line for line in lines):
            return
        from airflow.sdk.exceptions import AirflowFailException

        name, owners = variables.get("base_ami_name"), variables.get("base_ami_owners")
        field = "params.base_ami_name" if "base_ami_name" in self.extra_vars else f"roles.{self.role}.image.base_ami"
        raise AirflowFailException(
            f"{field}: Packer found no base AMI named {str(name)[:130]!r} owned by {owners} in {self._region()}. "
            "Fix: check the name pattern and owners (the trigger form's, else include/fleet.yaml's); retrying "
            "cannot help"
        ) from None

    def _result(
        self, ami_id: str, ami_name: str, artifacts: dict[str, str], manifest: dict[str, Any] | None, bucket: str,
        mkey: str | None, pkey: str | None, packages_count: int | None, source_ami: str | None,
        build_run: str | None, git_sha: str | None, *, reused: bool,
    ) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "ami_id": ami_id,
            "ami_name": ami_name,
            "region": self._region(),
            "artifacts": dict(artifacts),
            "manifest": manifest,
            "bucket": bucket,
            "manifest_s3_key": mkey,
            "packages_s3_key": pkey,
            "packages_count": packages_count,
            "source_ami": source_ami,
            "build_run": build_run,
            "git_sha": git_sha,
            "reused": reused,
        }

    def on_kill(self) -> None:
        hook = self._hook
        if hook is not None:
            self.log.warning("Killed: asking Packer to cancel and clean up its builder instance and key pair")
            hook.on_kill()
