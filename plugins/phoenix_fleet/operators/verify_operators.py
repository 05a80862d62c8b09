"""The verify stage: prove a new AMI on a fresh boot before anyone can roll it.

Wire it as setup/teardown (see docs/bake-verify.md)::

    launch = LaunchCanaryOperator(task_id="launch_canary", image_id=ami, role="web")
    healthy = WaitCanaryHealthyOperator(task_id="wait_canary_healthy", launch_task_id="launch_canary")
    tests = RunImageTestsOperator(task_id="run_image_tests", image_id=ami, launch_task_id="launch_canary")
    mark = MarkVerifiedOperator(task_id="mark_verified", image_id=ami, tests_task_id="run_image_tests")
    terminate = TerminateCanaryOperator(task_id="terminate_canary", launch_task_id="launch_canary")
    launch >> healthy >> tests >> mark
    launch >> terminate.as_teardown(setups=launch)
    healthy >> terminate; tests >> terminate

* ``LaunchCanaryOperator`` (setup) launches one instance from the AMI in the role's canary subnet with the
  role's instance profile, IMDSv2 required, tagged ``phoenix:canary=true``, ``phoenix:role``,
  ``phoenix:verify-run=<run_id>``; a retry reuses the canary of the same run.
* ``WaitCanaryHealthyOperator`` waits until it runs and both status checks are ok: inline for up to
  ``inline_wait`` seconds, then deferred (``CanaryStatusOkTrigger``).
* ``RunImageTestsOperator`` runs ``/usr/local/bin/phoenix-image-test`` on it through SSM Run Command
  (``AWS-RunShellScript``; the provider's ``SsmHook``; polled inline up to ``inline_wait`` seconds, then
  deferred on the provider's ``SsmRunCommandTrigger``, as ``BudgetedSsmRunCommandTrigger``), copies the output into
  the task log and ``s3://<bucket>/images/<role>/<version>/verify-<run>.txt``, pushes its verdict as XCom
  ``verify_result``. When the suite ran and failed it tags the AMI ``phoenix:verified=false`` with the reason
  (a published image is never demoted: ``phoenix:verify-failed`` instead) and fails with the failing checks;
  when it reached no verdict (timeout, cancel) it writes only ``phoenix:verify-error`` and fails retryably.
* ``MarkVerifiedOperator`` (trigger rule ``all_done``) writes what was learnt whatever happened upstream:
  ``phoenix:verified=true`` on the AMI and its snapshots when the tests passed, the failure as above when they
  ran and failed, only ``phoenix:verify-error`` when they never ran; anything but a pass fails the run.
* ``TerminateCanaryOperator`` (teardown) terminates the canary by id *and* by tag
  ``phoenix:verify-run=<run_id>`` (a kill between RunInstances and the XCom push leaves nothing behind),
  waits for ``terminated``, and is idempotent.

Import-light: only ``airflow.sdk``, the stdlib and our pure modules at module level.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from phoenix_fleet.operators.inline_wait import INLINE_POLL_SECONDS

CANARY_TAG = "phoenix:canary"
VERIFY_RUN_TAG = "phoenix:verify-run"
ROLE_TAG = "phoenix:role"
VERSION_TAG = "phoenix:version"
VERIFIED_TAG = "phoenix:verified"
REASON_TAG = "phoenix:verified-reason"
ERROR_TAG = "phoenix:verify-error"  # the last verification reached no verdict (canary, SSM, timeout): why
FAILED_PUBLISHED_TAG = "phoenix:verify-failed"  # the image tests failed on an image that is published: not demoted
PUBLISHED_AT_TAG = "phoenix:published-at"
MANAGED_BY_TAG = "phoenix:managed-by"
MANAGED_BY = "phoenix-fleet"
IMAGE_TEST_COMMAND = "/usr/local/bin/phoenix-image-test"  # no --stage: "instance" on a booted machine
RESULT_XCOM_KEY = "verify_result"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
TAG_VALUE_MAX = 255
_CHECK_RE = re.compile(r"^phoenix-check:\s+(FAILED|ERROR)\s+(\S+)")
_PYTEST_SUMMARY_RE = re.compile(r"^(FAILED|ERROR)\s+(\S+)")
_RESULT_RE = re.compile(r"^phoenix-image-test:\s+result=(pass|fail)\s+exit=(\d+)", re.M)
PASSED, FAILED, ERROR = "passed", "failed", "error"


class CanaryError(AirflowException):
    """The canary could not be launched or did not come up healthy."""


class ImageVerificationFailed(AirflowFailException):
    """The image test suite failed on the canary (no retry: the image is what it is)."""


class VerificationIncomplete(AirflowException):
    """The image tests reached no verdict (SSM timed out, was cancelled, undeliverable, the runner was
    interrupted): nothing is known about the image, so nothing is written on it but ``phoenix:verify-error``.
    Retries apply."""


# ------------------------------------------------------------------------------------------ helpers
def tag_value(text: str, limit: int = TAG_VALUE_MAX) -> str:
    """An EC2 tag value (at most 256 characters, one line)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def safe_key_part(text: str) -> str:
    """A run id as an S3 key part: ``manual__2026-11-30T03:00:00+00:00`` -> ``manual__2026-11-30T03_00_00_00_00``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text))


def failed_checks(output: str) -> list[str]:
    """The failing checks in ``phoenix-image-test`` output (``phoenix-check: FAILED <id>``; pytest's summary
    lines as a fallback)."""
    found = [m.group(2) for m in (_CHECK_RE.match(line.strip()) for line in output.splitlines()) if m]
    if not found:
        found = [m.group(2) for m in (_PYTEST_SUMMARY_RE.match(line.strip()) for line in output.splitlines()) if m]
    return list(dict.fromkeys(found))


def verdict_reason(status: str, exit_code: Any, stdout: str, stderr: str) -> str:
    checks = failed_checks(stdout)
    if checks:
        return tag_value(f"{len(checks)} image check(s) failed: {', '.join(checks)}")
    first_err = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return tag_value(f"phoenix-image-test {status} (exit {exit_code})" + (f": {first_err}" if first_err else ""))


def suite_outcome(status: str, exit_code: Any, stdout: str) -> str:
    """``passed``, ``failed`` or ``error`` for one run of ``phoenix-image-test``.

    ``failed`` only when the suite *ran and judged the image*: SSM reports ``Failed`` (the command exited non-zero,
    not a timeout or a cancel) and the runner's verdict line says ``result=fail`` (exit code other than 2,
    "usage error or interrupted"), or the output names failing checks. Anything else that is not a pass
    (``TimedOut``, ``Cancelled``, ``Undeliverable``, an interrupted runner, no output) is an ``error``: the
    verification did not happen, which says nothing about the image."""
    if status == "Success" and exit_code == 0:
        return PASSED
    if status != "Failed":
        return ERROR
    verdicts = _RESULT_RE.findall(stdout)
    if verdicts:
        result, code = verdicts[-1]
        return FAILED if result == "fail" and code != "2" else ERROR
    return FAILED if failed_checks(stdout) else ERROR


def _none_if_empty(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None", "null") else text


def _tags(mapping: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in mapping.items()]


def _tag_map(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def _client_error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def resolve_role_subnet(ec2: Any, role_name: str, spec: Any, override: str | None = None) -> str | None:
    """The subnet a role's canary (and builder) runs in: ``override``, else ``roles.<role>.image.canary_subnet_id``,
    else the first subnet with every tag of ``canary_subnet_tags`` (most free addresses first), else None
    (the region's default VPC). Errors name the config field."""
    region = getattr(getattr(ec2, "meta", None), "region_name", None) or "the region"
    for field, subnet_id in (("subnet_id", override), (f"roles.{role_name}.image.canary_subnet_id", spec.canary_subnet_id)):
        if not subnet_id:
            continue
        try:
            found = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
        except Exception as exc:
            if _client_error_code(exc) != "InvalidSubnetID.NotFound":
                raise
            found = []
        if not found:
            raise ValueError(f"{field}: subnet {subnet_id!r} does not exist in {region}. Fix: use an existing subnet id")
        return str(subnet_id)
    tags = dict(spec.canary_subnet_tags or {})
    if not tags:
        return None
    subnets = ec2.describe_subnets(Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()])["Subnets"]
    if not subnets:
        raise ValueError(
            f"roles.{role_name}.image.canary_subnet_tags: no subnet in {region} has the tags {tags}. "
            "Fix: tag a subnet with them (sandbox/seed.py does in the sandbox), or set canary_subnet_id"
        )
    best = sorted(subnets, key=lambda s: (-int(s.get("AvailableIpAddressCount", 0)), s["SubnetId"]))[0]
    return str(best["SubnetId"])


def image_and_snapshots(ec2: Any, image_id: str) -> tuple[dict[str, Any], list[str]]:
    images = ec2.describe_images(ImageIds=[image_id], Owners=["self"])["Images"]
    if not images:
        raise AirflowFailException(f"AMI {image_id} is not one of ours (owner self). Fix: verify the AMI the bake built")
    image = images[0]
    snapshots = [
        b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) or [] if b.get("Ebs", {}).get("SnapshotId")
    ]
    return image, snapshots


def tag_verified(ec2: Any, image_id: str, verified: bool, reason: str | None = None, log: Any = None) -> list[str]:
    """Tag the AMI and its snapshots ``phoenix:verified=true|false`` (+ the reason, or drop a stale one), and drop
    the tags of earlier inconclusive or not-demoting verifications."""
    _image, snapshots = image_and_snapshots(ec2, image_id)
    resources = [image_id, *snapshots]
    tags = {VERIFIED_TAG: "true" if verified else "false"}
    if not verified:
        tags[REASON_TAG] = tag_value(reason or "verification failed")
    ec2.create_tags(Resources=resources, Tags=_tags(tags))
    stale = [ERROR_TAG, FAILED_PUBLISHED_TAG] + ([REASON_TAG] if verified else [])
    ec2.delete_tags(Resources=resources, Tags=[{"Key": k} for k in stale])
    if log is not None:
        log.info("Tagged %s: %s", ", ".join(resources), ", ".join(f"{k}={v}" for k, v in tags.items()))
    return resources


def tag_note(ec2: Any, image_id: str, key: str, text: str, log: Any = None) -> list[str]:
    """A verification note that is no verdict (``phoenix:verify-error`` / ``phoenix:verify-failed``) on the AMI
    and its snapshots; ``phoenix:verified`` is not touched."""
    _image, snapshots = image_and_snapshots(ec2, image_id)
    resources = [image_id, *snapshots]
    ec2.create_tags(Resources=resources, Tags=_tags({key: tag_value(text)}))
    if log is not None:
        log.warning("Tagged %s: %s=%s (phoenix:verified unchanged)", ", ".join(resources), key, tag_value(text))
    return resources


class _VerifyOperator(BaseOperator):
    """Common AWS parameters (``aws_conn_id``, ``region_name``, ``verify``, ``botocore_config``)."""

    ui_color = "#e4f4ff"

    def __init__(
        self,
        *,
        role: str | None = None,
        fleet_config_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.fleet_config_path = fleet_config_path
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def fleet_config(self) -> Any:
        from phoenix_fleet.config import cached_fleet_config

        return cached_fleet_config(self.fleet_config_path)

    def region(self) -> str | None:
        if self.region_name:
            return self.region_name
        if self.role:
            return str(self.fleet_config().role(self.role).home_region)
        return None

    def _hook_kwargs(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region(),
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def ec2_hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

        return EC2Hook(api_type="client_type", **self._hook_kwargs())

    def waiter_hook(self) -> Any:
        from phoenix_fleet.triggers.ami_triggers import PhoenixEc2Hook

        return PhoenixEc2Hook(**self._hook_kwargs())

    def published_evidence(self, ec2: Any, image: Mapping[str, Any]) -> str | None:
        """Why ``image`` counts as published, or None. Published: tagged ``phoenix:published-at``; or the release
        log's record of its ``phoenix:version`` (``s3://<artifacts_bucket>/images/<role>/<version>/release.json``)
        says published with this AMI in some region; or named by the role's SSM pointer
        ``<ssm_prefix>/<role>/latest`` in this region, now or in any version SSM still keeps (earlier releases are
        rollback targets; SSM keeps 100 versions, the log every release). When the log or the pointer cannot be
        read, the image is treated as published: a verdict never demotes on a guess."""
        tags = _tag_map(image)
        image_id = str(image["ImageId"])
        if tags.get(PUBLISHED_AT_TAG):
            return f"it is tagged {PUBLISHED_AT_TAG}={tags[PUBLISHED_AT_TAG]}"
        role = tags.get(ROLE_TAG) or self.role
        if not role:
            return None
        try:
            fleet = self.fleet_config()
            pointer = fleet.latest_parameter(role)
        except Exception:  # a role the fleet config does not know: no pointer of ours can name it
            return None
        version = tags.get(VERSION_TAG)
        if version:
            from phoenix_fleet.hooks.image_hook import ImageHook
            from phoenix_fleet.release.release_log import record_key

            where = f"s3://{fleet.artifacts_bucket}/{record_key(role, version)}"
            try:
                record = ImageHook(**self._hook_kwargs()).release_record(fleet.artifacts_bucket, role, version)
            except Exception as exc:
                return f"whether the release log {where} names it could not be read " + (
                    f"({_client_error_code(exc) or type(exc).__name__})"
                )
            if record is not None and record.published and image_id in record.amis.values():
                regions = ", ".join(r for r, a in record.amis.items() if a == image_id)
                return f"the release log {where} says {role} {version} was published with it ({regions})"
        from airflow.providers.amazon.aws.hooks.ssm import SsmHook

        ssm = SsmHook(**self._hook_kwargs()).conn
        try:
            pages = ssm.get_paginator("get_parameter_history").paginate(Name=pointer)
            history = [h for page in pages for h in page.get("Parameters", [])]
        except Exception as exc:
            if _client_error_code(exc) == "ParameterNotFound":
                return None
            return f"whether {pointer} names it could not be read ({_client_error_code(exc) or type(exc).__name__})"
        named = sorted((int(h.get("Version", 0)), h.get("Labels") or []) for h in history if h.get("Value") == image_id)
        if not named:
            return None
        latest = max(int(h.get("Version", 0)) for h in history)
        number, labels = named[-1]
        where = "is the current value" if number == latest else f"named it in version {number}"
        return f"the SSM pointer {pointer} {where}" + (f" (release {', '.join(labels)})" if labels else "")

    def write_verdict(self, ec2: Any, image_id: str, outcome: str, reason: str | None) -> str:
        """Write what a verification learnt on the AMI; returns what it did (for the log and the error).

        * ``passed``: ``phoenix:verified=true``, earlier reasons and notes removed.
        * ``failed`` (the suite ran and judged the image): ``phoenix:verified=false`` with the reason, unless the
          image is published (see :meth:`published_evidence`): then only ``phoenix:verify-failed`` is written
          and the image stays as it was; a live image is replaced by a new release, never demoted.
        * ``error`` (no verdict): only ``phoenix:verify-error`` with the reason."""
        if outcome == PASSED:
            tag_verified(ec2, image_id, True, log=self.log)
            return "verified"
        if outcome == FAILED:
            image, _snaps = image_and_snapshots(ec2, image_id)
            evidence = self.published_evidence(ec2, image)
            if evidence:
                tag_note(ec2, image_id, FAILED_PUBLISHED_TAG, reason or "image tests failed", log=self.log)
                return f"published ({evidence}), so not demoted: recorded in {FAILED_PUBLISHED_TAG}"
            tag_verified(ec2, image_id, False, reason, log=self.log)
            return "tagged phoenix:verified=false"
        tag_note(ec2, image_id, ERROR_TAG, reason or "verification did not complete", log=self.log)
        return f"no verdict: recorded in {ERROR_TAG}, phoenix:verified unchanged"

    def _instance_from(self, context: Context, instance_id: Any, launch_task_id: str | None) -> str | None:
        found = _none_if_empty(instance_id)
        if found is None and launch_task_id:
            found = _none_if_empty(context["ti"].xcom_pull(task_ids=launch_task_id))
        return found


# ----------------------------------------------------------------------------------------- launch
class LaunchCanaryOperator(_VerifyOperator):
    """Launch one canary instance from ``image_id`` (setup task). Returns (XCom) the instance id.

    :param image_id: the AMI to verify (templated).
    :param role: fleet role: subnet (``canary_subnet_id`` / ``canary_subnet_tags``), instance profile,
        instance type and home region come from ``include/fleet.yaml``.
    :param subnet_id: override the role's canary subnet.
    :param instance_type: override ``roles.<role>.image.instance_type``.
    :param instance_profile: override ``roles.<role>.image.instance_profile`` (``""``: none).
    :param extra_tags: more instance tags.
    :param max_lifetime: the canary's bound (timedelta or seconds; default ``canaries.DEFAULT_LIFETIME``): tagged
        ``phoenix:canary-expires`` = launch + this. The release DAG sets the longest its verify stage can take;
        a canary past it is an orphan that every release's sweep terminates.

    Idempotent: a live canary (pending/running) of the same run, role and AMI is reused.
    """

    template_fields: Sequence[str] = (
        "image_id", "role", "subnet_id", "instance_type", "instance_profile", "extra_tags", "aws_conn_id", "region_name",
    )

    def __init__(
        self,
        *,
        image_id: str,
        role: str,
        subnet_id: str | None = None,
        instance_type: str | None = None,
        instance_profile: str | None = None,
        extra_tags: dict[str, str] | None = None,
        max_lifetime: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(role=role, **kwargs)
        self.image_id = image_id
        self.subnet_id = subnet_id
        self.instance_type = instance_type
        self.instance_profile = instance_profile
        self.extra_tags = extra_tags or {}
        self.max_lifetime = max_lifetime

    def execute(self, context: Context) -> str:
        assert self.role is not None
        role = self.fleet_config().role(self.role)
        run_id = str(context["run_id"])
        hook = self.ec2_hook()
        ec2 = hook.conn
        image, _snaps = image_and_snapshots(ec2, self.image_id)
        if image.get("State") != "available":
            raise CanaryError(
                f"AMI {self.image_id} is {image.get('State')}, not available. Fix: wait for it (AmiAvailableSensor) first"
            )
        existing = hook.get_instances(
            filters=[
                {"Name": f"tag:{CANARY_TAG}", "Values": ["true"]},
                {"Name": f"tag:{VERIFY_RUN_TAG}", "Values": [run_id]},
                {"Name": f"tag:{ROLE_TAG}", "Values": [self.role]},
                {"Name": "image-id", "Values": [self.image_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        if existing:
            instance_id = sorted(existing, key=lambda i: i.get("LaunchTime", ""))[0]["InstanceId"]
            self.log.info("Reusing canary %s of this run (%s) for %s", instance_id, run_id, self.image_id)
            return str(instance_id)
        subnet = resolve_role_subnet(ec2, self.role, role.image, self.subnet_id)
        profile = role.image.instance_profile if self.instance_profile is None else self.instance_profile
        version = _tag_map(image).get(VERSION_TAG, "")
        import datetime as dt

        from phoenix_fleet.canaries import DEFAULT_LIFETIME, EXPIRES_TAG, iso

        lifetime = self.max_lifetime if self.max_lifetime is not None else DEFAULT_LIFETIME
        if not isinstance(lifetime, timedelta):
            lifetime = timedelta(seconds=float(lifetime))
        expires = iso(dt.datetime.now(dt.UTC) + lifetime)
        tags = {
            "Name": f"phoenix-canary-{self.role}-{version or self.image_id}",
            CANARY_TAG: "true",
            EXPIRES_TAG: expires,
            ROLE_TAG: self.role,
            VERIFY_RUN_TAG: tag_value(run_id),
            "phoenix:image": self.image_id,
            MANAGED_BY_TAG: MANAGED_BY,
            **({VERSION_TAG: version} if version else {}),
            **{str(k): str(v) for k, v in self.extra_tags.items()},
        }
        args: dict[str, Any] = {
            "ImageId": self.image_id,
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": self.instance_type or role.image.instance_type,
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": _tags(tags)},
                {"ResourceType": "volume", "Tags": _tags({k: v for k, v in tags.items() if k != "Name"})},
            ],
        }
        if subnet:
            args["SubnetId"] = subnet
        else:
            self.log.info("No canary subnet configured for role %s: launching in the default VPC", self.role)
        if profile:
            args["IamInstanceProfile"] = {"Name": profile}
        else:
            self.log.warning("No instance profile for the canary: SSM Run Command needs one (roles.%s.image.instance_profile)", self.role)
        instance = ec2.run_instances(**args)["Instances"][0]
        instance_id = str(instance["InstanceId"])
        self.log.info(
            "Launched canary %s from %s (%s, subnet %s, profile %s, IMDSv2 required); its bound: %s",
            instance_id, self.image_id, args["InstanceType"], subnet or "default", profile or "none", expires,
        )
        return instance_id


# ------------------------------------------------------------------------------------------- wait
class WaitCanaryHealthyOperator(_VerifyOperator):
    """Wait until the canary runs and its instance and system status checks are ok.

    :param instance_id: the canary (templated), or ``launch_task_id`` to pull it from the launch task's XCom.
    :param deferrable: defer on ``CanaryStatusOkTrigger`` (default) or wait on the worker with the same waiter.
    :param poll_interval: seconds between DescribeInstanceStatus calls.
    :param timeout: seconds before giving up (defer timeout; the waiter's max attempts derive from it).
    :param inline_wait: seconds the checks are polled on the worker (every ``inline_poll_interval``) before
        deferring: checks that pass in seconds finish without a deferral (``inline_wait.py``). 0: defer at once;
        None: ``$PHOENIX_INLINE_WAIT_SECONDS``, else 20.

    Returns (XCom) the instance id. Fails when the canary stops/terminates or a check is impaired.
    """

    template_fields: Sequence[str] = ("instance_id", "launch_task_id", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        instance_id: str | None = None,
        launch_task_id: str | None = None,
        deferrable: bool = True,
        poll_interval: float = 15,
        timeout: float = 900,
        inline_wait: float | None = None,
        inline_poll_interval: float = INLINE_POLL_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_id = instance_id
        self.launch_task_id = launch_task_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.inline_wait = inline_wait
        self.inline_poll_interval = inline_poll_interval

    def _attempts(self) -> int:
        return max(1, math.ceil(self.timeout / self.poll_interval)) if self.poll_interval > 0 else 1000

    def execute(self, context: Context) -> str:
        instance_id = self._instance_from(context, self.instance_id, self.launch_task_id)
        if not instance_id:
            raise CanaryError(f"no canary instance id (instance_id or XCom of {self.launch_task_id!r})")
        if self.deferrable:
            from phoenix_fleet.operators.inline_wait import WaitFailed, inline_bound, wait_inline
            from phoenix_fleet.triggers.verify_triggers import CanaryStatusOkTrigger

            try:
                done = wait_inline(
                    self.waiter_hook().get_waiter("CanaryStatusOk"), min(inline_bound(self.inline_wait), self.timeout),
                    self.inline_poll_interval, InstanceIds=[instance_id], IncludeAllInstances=True,
                )
            except WaitFailed as exc:
                raise CanaryError(f"canary {instance_id} did not pass its status checks: {exc}") from exc
            if done:
                self.log.info("Canary %s is running, status checks ok (polled inline, no deferral)", instance_id)
                return instance_id

            self.log.info("Deferring until canary %s runs with status checks ok", instance_id)
            self.defer(
                trigger=CanaryStatusOkTrigger(
                    instance_id=instance_id,
                    waiter_delay=int(self.poll_interval),
                    waiter_max_attempts=self._attempts(),
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region(),
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        hook = self.waiter_hook()
        try:
            hook.get_waiter("CanaryStatusOk").wait(
                InstanceIds=[instance_id],
                IncludeAllInstances=True,
                WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": self._attempts()},
            )
        except Exception as exc:  # botocore WaiterError
            raise CanaryError(f"canary {instance_id} did not pass its status checks: {exc}") from exc
        self.log.info("Canary %s is running, status checks ok", instance_id)
        return instance_id

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        if not event or event.get("status") != "success":
            raise CanaryError((event or {}).get("message") or "canary status trigger sent no event")
        self.log.info("Canary %s is running, status checks ok", event["instance_id"])
        return str(event["instance_id"])


# ------------------------------------------------------------------------------------------ tests
class RunImageTestsOperator(_VerifyOperator):
    """Run the image test suite on the canary through SSM Run Command and keep its output.

    :param image_id: the AMI under test (tagged ``verified=false`` here on failure).
    :param instance_id: the canary (templated), or ``launch_task_id`` to pull it from the launch task's XCom.
    :param command: the shell command (default ``/usr/local/bin/phoenix-image-test``; on a booted canary the
        runner picks stage ``instance``).
    :param document_name: SSM document (``AWS-RunShellScript``).
    :param command_timeout: the document's ``executionTimeout`` in seconds.
    :param artifacts_bucket: bucket for the output (default: the fleet config's ``artifacts_bucket``);
        ``upload_output=False`` keeps it in the task log only. With ``upload_output``, SSM itself also writes
        the complete output (GetCommandInvocation truncates it at 24,000 characters) under
        ``images/<role>/<version>/verify-<run>/ssm/`` (``OutputS3BucketName``/``OutputS3KeyPrefix``).
    :param deferrable: defer on the provider's ``SsmRunCommandTrigger`` (default) or wait on the worker.
    :param poll_interval: seconds between GetCommandInvocation calls; ``timeout``: seconds overall.
    :param inline_wait: seconds the command is polled on the worker (every ``inline_poll_interval``) before
        deferring: a suite that ends in seconds finishes without a deferral (``inline_wait.py``). 0: defer at once;
        None: ``$PHOENIX_INLINE_WAIT_SECONDS``, else 20.

    Returns (XCom) and pushes as XCom ``verify_result``: ``{"passed", "image_id", "instance_id",
    "command_id", "status", "exit_code", "failed_checks", "reason", "output_s3_uri"}``.
    On failure: tags the AMI ``phoenix:verified=false`` + ``phoenix:verified-reason`` and raises
    ``ImageVerificationFailed`` listing the failing checks.
    """

    template_fields: Sequence[str] = (
        "image_id", "instance_id", "launch_task_id", "command", "artifacts_bucket", "aws_conn_id", "region_name",
    )

    def __init__(
        self,
        *,
        image_id: str,
        instance_id: str | None = None,
        launch_task_id: str | None = None,
        command: str = IMAGE_TEST_COMMAND,
        document_name: str = "AWS-RunShellScript",
        command_timeout: int = 600,
        artifacts_bucket: str | None = None,
        upload_output: bool = True,
        deferrable: bool = True,
        poll_interval: float = 10,
        timeout: float = 1800,
        inline_wait: float | None = None,
        inline_poll_interval: float = INLINE_POLL_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inline_wait = inline_wait
        self.inline_poll_interval = inline_poll_interval
        self.image_id = image_id
        self.instance_id = instance_id
        self.launch_task_id = launch_task_id
        self.command = command
        self.document_name = document_name
        self.command_timeout = command_timeout
        self.artifacts_bucket = artifacts_bucket
        self.upload_output = upload_output
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout

    def ssm_hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.ssm import SsmHook

        return SsmHook(**self._hook_kwargs())

    def _attempts(self) -> int:
        return max(1, math.ceil(self.timeout / self.poll_interval)) if self.poll_interval > 0 else 1000

    def execute(self, context: Context) -> dict[str, Any]:
        instance_id = self._instance_from(context, self.instance_id, self.launch_task_id)
        if not instance_id:
            raise CanaryError(f"no canary instance id (instance_id or XCom of {self.launch_task_id!r})")
        ssm = self.ssm_hook()
        args: dict[str, Any] = {
            "InstanceIds": [instance_id],
            "DocumentName": self.document_name,
            "Comment": tag_value(f"phoenix-fleet verify {self.image_id}", 100),
            "Parameters": {"commands": [self.command], "executionTimeout": [str(int(self.command_timeout))]},
        }
        if self.upload_output:
            image, _snaps = image_and_snapshots(self.ec2_hook().conn, self.image_id)
            bucket, prefix = self._output_location(context, image)
            args["OutputS3BucketName"] = bucket
            args["OutputS3KeyPrefix"] = f"{prefix}/ssm/"
        response = ssm.conn.send_command(**args)
        command_id = str(response["Command"]["CommandId"])
        self.log.info("SSM command %s runs %r on canary %s", command_id, self.command, instance_id)
        if self.deferrable:
            from phoenix_fleet.operators.inline_wait import WaitFailed, inline_bound, wait_inline
            from phoenix_fleet.triggers.verify_triggers import BudgetedSsmRunCommandTrigger

            try:
                done = wait_inline(
                    ssm.get_waiter("command_executed"), min(inline_bound(self.inline_wait), self.timeout),
                    self.inline_poll_interval, CommandId=command_id, InstanceId=instance_id,
                )
            except WaitFailed as exc:  # Failed/TimedOut/Cancelled: the invocation says which
                self.log.info("SSM command %s ended unsuccessfully: %s", command_id, exc)
                done = True
            if done:
                self.log.info("SSM command %s ended (polled inline, no deferral)", command_id)
                return self._finish(context, command_id, instance_id)

            self.defer(
                trigger=BudgetedSsmRunCommandTrigger(
                    command_id=command_id,
                    waiter_delay=int(self.poll_interval),
                    waiter_max_attempts=self._attempts(),
                    fail_on_nonzero_exit=False,  # a failed suite still comes back here, to keep its output
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region(),
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        try:
            ssm.get_waiter("command_executed").wait(
                CommandId=command_id,
                InstanceId=instance_id,
                WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": self._attempts()},
            )
        except Exception as exc:  # WaiterError: Failed/TimedOut/Cancelled; the invocation says which
            self.log.info("SSM command %s ended unsuccessfully: %s", command_id, exc)
        return self._finish(context, command_id, instance_id)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or "command_id" not in event:
            raise AirflowException(f"SSM trigger sent no usable event: {event!r}")
        instance_id = self._instance_from(context, self.instance_id, self.launch_task_id) or event.get("instance_id")
        if not instance_id:
            raise CanaryError("no canary instance id to read the command output from")
        return self._finish(context, str(event["command_id"]), str(instance_id))

    def _finish(self, context: Context, command_id: str, instance_id: str) -> dict[str, Any]:
        inv = self.ssm_hook().get_command_invocation(command_id, instance_id)
        status = str(inv.get("Status", "Unknown"))
        exit_code = inv.get("ResponseCode", -1)
        stdout = str(inv.get("StandardOutputContent") or "")
        stderr = str(inv.get("StandardErrorContent") or "")
        self.log.info("phoenix-image-test on %s: status %s, exit code %s. Output:", instance_id, status, exit_code)
        for line in stdout.splitlines():
            self.log.info("canary| %s", line)
        for line in stderr.splitlines():
            self.log.warning("canary stderr| %s", line)
        outcome = suite_outcome(status, exit_code, stdout)
        passed = outcome == PASSED
        checks = [] if passed else failed_checks(stdout)
        reason = None if passed else verdict_reason(status, exit_code, stdout, stderr)
        ec2 = self.ec2_hook().conn
        image, _snaps = image_and_snapshots(ec2, self.image_id)
        uri = self._upload(context, image, command_id, instance_id, status, exit_code, stdout, stderr)
        result = {
            "passed": passed,
            "outcome": outcome,
            "image_id": self.image_id,
            "instance_id": instance_id,
            "command_id": command_id,
            "status": status,
            "exit_code": exit_code,
            "failed_checks": checks,
            "reason": reason,
            "output_s3_uri": uri,
        }
        context["ti"].xcom_push(key=RESULT_XCOM_KEY, value=result)
        if passed:
            self.log.info("Image tests passed on canary %s for %s", instance_id, self.image_id)
            return result
        done = self.write_verdict(ec2, self.image_id, outcome, reason)
        lines = "\n  ".join(checks) if checks else (stderr.strip() or stdout.strip()[-2000:] or "(no output)")
        if outcome == ERROR:
            raise VerificationIncomplete(
                f"the image tests on canary {instance_id} did not reach a verdict on AMI {self.image_id} (SSM "
                f"{command_id}: {status}, exit {exit_code}): {reason}. Image {done}. Output:\n  {lines}\n"
                f"Full output: {uri or 'in this log'}"
            )
        raise ImageVerificationFailed(
            f"AMI {self.image_id} failed verification on canary {instance_id} (SSM {command_id}: {status}, exit "
            f"{exit_code}); {done}. Failing checks:\n  {lines}\nFull output: {uri or 'in this log'}"
        )

    def _output_location(self, context: Context, image: Mapping[str, Any]) -> tuple[str, str]:
        """(bucket, ``images/<role>/<version>/verify-<run>``) from the AMI's tags."""
        tags = _tag_map(image)
        role = tags.get(ROLE_TAG) or self.role or "unknown-role"
        version = tags.get(VERSION_TAG) or self.image_id
        bucket = str(self.artifacts_bucket or self.fleet_config().artifacts_bucket)
        return bucket, f"images/{role}/{version}/verify-{safe_key_part(context['run_id'])}"

    def _upload(
        self, context: Context, image: Mapping[str, Any], command_id: str, instance_id: str, status: str,
        exit_code: Any, stdout: str, stderr: str,
    ) -> str | None:
        if not self.upload_output:
            return None
        bucket, prefix = self._output_location(context, image)
        key = f"{prefix}.txt"
        body = (
            f"image: {self.image_id}\ninstance: {instance_id}\ncommand: {self.command}\nssm command: {command_id}\n"
            f"status: {status}\nexit code: {exit_code}\n\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n"
        )
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region(), verify=self.verify).load_string(
            body, key=key, bucket_name=bucket, replace=True
        )
        uri = f"s3://{bucket}/{key}"
        self.log.info("Test output saved to %s", uri)
        return uri


# ------------------------------------------------------------------------------------------- mark
class MarkVerifiedOperator(_VerifyOperator):
    """Write what the verification learnt on the AMI, whatever happened upstream (trigger rule ``all_done``).

    Passed (the tests task's XCom ``verify_result`` says so, for this AMI): ``phoenix:verified=true`` on the
    AMI and its snapshots, earlier reasons and notes removed; returns ``{"image_id", "verified": True}``.
    Otherwise (see :meth:`_VerifyOperator.write_verdict`): the tests ran and failed -> ``phoenix:verified=false``
    + the reason, or ``phoenix:verify-failed`` on a published image; they never ran or reached no verdict ->
    ``phoenix:verify-error`` only. Then ``ImageVerificationFailed``: the run fails and nothing releases this AMI.
    """

    template_fields: Sequence[str] = ("image_id", "tests_task_id", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        image_id: str,
        tests_task_id: str = "run_image_tests",
        trigger_rule: str = "all_done",
        **kwargs: Any,
    ) -> None:
        super().__init__(trigger_rule=trigger_rule, **kwargs)
        self.image_id = image_id
        self.tests_task_id = tests_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        result = context["ti"].xcom_pull(task_ids=self.tests_task_id, key=RESULT_XCOM_KEY)
        ec2 = self.ec2_hook().conn
        mine = isinstance(result, Mapping) and result.get("image_id") == self.image_id
        if mine and result.get("passed"):
            self.write_verdict(ec2, self.image_id, PASSED, None)
            return {"image_id": self.image_id, "verified": True, "output_s3_uri": result.get("output_s3_uri")}
        if mine:
            outcome = result.get("outcome") or (FAILED if result.get("failed_checks") else ERROR)
            reason = str(result.get("reason") or "image tests failed")
            if outcome == ERROR:
                reason = f"verification did not complete: {reason}"
        else:
            outcome = ERROR
            reason = f"verification did not complete: {self.tests_task_id} left no result (see the canary tasks' logs)"
        done = self.write_verdict(ec2, self.image_id, outcome, reason)
        raise ImageVerificationFailed(f"AMI {self.image_id} is not verified: {reason}. Image {done}")


# -------------------------------------------------------------------------------------- terminate
class TerminateCanaryOperator(_VerifyOperator):
    """Terminate this run's canary (teardown): by id (``instance_id`` / ``launch_task_id`` XCom) and by tag
    ``phoenix:verify-run=<run_id>`` + ``phoenix:canary=true``; waits for ``terminated``. Idempotent.

    Returns (XCom) the ids it terminated (or found already terminating).
    """

    template_fields: Sequence[str] = ("instance_id", "launch_task_id", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        instance_id: str | None = None,
        launch_task_id: str | None = None,
        wait_for_termination: bool = True,
        poll_interval: float = 5,
        timeout: float = 600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_id = instance_id
        self.launch_task_id = launch_task_id
        self.wait_for_termination = wait_for_termination
        self.poll_interval = poll_interval
        self.timeout = timeout

    def execute(self, context: Context) -> list[str]:
        hook = self.ec2_hook()
        by_id = self._instance_from(context, self.instance_id, self.launch_task_id)
        run_id = tag_value(str(context["run_id"]))
        candidates: dict[str, str] = {}
        if by_id:
            try:
                for inst in hook.get_instances(instance_ids=[by_id]):
                    candidates[inst["InstanceId"]] = inst["State"]["Name"]
            except Exception as exc:
                if _client_error_code(exc) != "InvalidInstanceID.NotFound":
                    raise
                self.log.info("Canary %s does not exist (any more)", by_id)
        for inst in hook.get_instances(
            filters=[
                {"Name": f"tag:{CANARY_TAG}", "Values": ["true"]},
                {"Name": f"tag:{VERIFY_RUN_TAG}", "Values": [run_id]},
            ]
        ):
            candidates[inst["InstanceId"]] = inst["State"]["Name"]
        live = sorted(i for i, state in candidates.items() if state in LIVE_STATES)
        if not live:
            self.log.info("No live canary for run %s (seen: %s)", run_id, candidates or "none")
            return []
        to_terminate = [i for i in live if candidates[i] != "shutting-down"]
        if to_terminate:
            hook.terminate_instances(instance_ids=to_terminate)
        self.log.info("Terminating canaries %s", ", ".join(live))
        if self.wait_for_termination:
            attempts = max(1, math.ceil(self.timeout / self.poll_interval)) if self.poll_interval > 0 else 1000
            hook.conn.get_waiter("instance_terminated").wait(
                InstanceIds=live, WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": attempts}
            )
            self.log.info("Canaries terminated: %s", ", ".join(live))
        return live
