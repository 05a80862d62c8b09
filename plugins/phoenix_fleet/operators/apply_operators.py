"""Apply a published image to a role's AutoScaling groups: Terraform (plan, guard, apply) or the native backend.

* :class:`TerraformApplyOperator` -- ``init``, ``plan -detailed-exitcode -out``, ``show -json``, the plan guard
  (only launch-template updates and ASG launch-template-version updates pass, unless the run explicitly allows
  more), ``apply`` of *the saved plan*, ``output -json`` into XCom. No changes: a successful no-op.
* :class:`NativeLaunchTemplateUpdateOperator` -- for roles whose groups Terraform does not manage
  (``terraform.backend: native``): a new launch-template version from the current default with the new ImageId,
  made the default; groups pinned to an explicit version are moved to it. Idempotent.
* :class:`VerifyAsgLaunchTemplatesOperator` and :func:`verify_asg_images` -- after either backend: every group of
  the role resolves (``$Default``/``$Latest``/number, mixed-instances overrides too) to a version launching the
  new AMI, or the task fails naming the groups.

The image defaults to what publish moved: the value of ``<prefix>/<role>/latest`` in the region (or, with
``version``, that parameter's version labelled ``v<version>``).

Import-light (DAG files import this at parse time): only ``airflow.sdk`` and the stdlib at module level; the fleet
config, the release logic (``phoenix_fleet.release``), hooks and the Amazon provider are imported inside methods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from phoenix_fleet.pipelines.template_restore import pins_of

if TYPE_CHECKING:
    from airflow.sdk import Context

    from phoenix_fleet.config import FleetConfig, Role
    from phoenix_fleet.hooks.image_hook import ImageHook
    from phoenix_fleet.hooks.terraform_hook import TerraformHook
    from phoenix_fleet.release.launch_templates import AsgTemplateImage


class _RoleMixin:
    role: str | None
    config_path: str | None

    def fleet(self) -> FleetConfig:
        from phoenix_fleet.config import cached_fleet_config

        return cached_fleet_config(self.config_path)

    def role_config(self) -> Role:
        if not self.role:
            raise ValueError("role: not given. Fix: pass role=<fleet role>")
        return self.fleet().role(str(self.role))


def _empty(value: Any) -> bool:
    return value in (None, "", "None")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_env(value: str, field: str) -> str:
    """``$NAME`` / ``${NAME}`` in ``value`` replaced from this process's environment (``os.path.expandvars`` syntax);
    a reference to an unset variable raises ValueError naming ``field`` (Terraform would get the literal text)."""
    import os

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise ValueError(
                f"{field}: ${{{name}}} is not set in the environment of the worker that runs Terraform. Fix: set "
                f"{name} there (or write the value into the config)"
            )
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def published_images(
    hook: ImageHook, fleet: FleetConfig, role: str, version: str, regions: Sequence[str]
) -> dict[str, str]:
    """``{region: AMI}`` of a published ``version``, for those of ``regions`` it was published to.

    The release log's record (``s3://<artifacts_bucket>/images/<role>/<version>/release.json``) answers for
    every release; a release published before the log existed is found by its SSM label (``latest:v<version>``).
    A record that is staged or rolled back is no release: nothing is returned for it.
    """
    from phoenix_fleet.release.versions import Version

    label = Version.parse(str(version), field="version").label
    record = hook.release_record(fleet.artifacts_bucket, role, str(version))
    if record is not None:
        return {r: record.amis[r] for r in regions if record.published and r in record.amis}
    name = fleet.latest_parameter(role)
    found = {}
    for region in regions:
        entry = hook.get_parameter(f"{name}:{label}", region)
        if entry is not None:
            found[region] = str(entry["Value"])
    return found


def resolve_release_image(
    hook: ImageHook, fleet: FleetConfig, role: str, region: str, image_id: str | None, version: str | None
) -> str:
    """The AMI to apply: ``image_id``; else ``version``'s AMI in the region (the release log, or its SSM label);
    else the current value of the ``latest`` pointer."""
    if not _empty(image_id):
        return str(image_id)
    name = fleet.latest_parameter(role)
    if not _empty(version):
        found = published_images(hook, fleet, role, str(version), [region]).get(region)
        if found is None:
            raise ValueError(
                f"version: {version} was never published for {role} in {region} (no published record in the "
                f"release log s3://{fleet.artifacts_bucket}/images/{role}/{version}/release.json, no "
                f"{name}:v{version}). Fix: publish it first, or pass image_id"
            )
        return found
    found_latest = hook.get_parameter(name, region)
    if found_latest is None:
        raise ValueError(f"{name} does not exist in {region}. Fix: publish an image of {role} first, or pass image_id")
    return str(found_latest["Value"])


def push_pins_before(context: Context, pins: dict[str, dict[str, dict[str, Any]]]) -> None:
    """The ``pins_before`` XCom: each group's launch-template version before this apply changed anything
    (``{region: {asg: Pin}}``), for the rollout's ``restore_launch_templates`` if the run ends before rolling it."""
    ti = context.get("ti") if context else None
    if ti is not None:
        ti.xcom_push(key="pins_before", value=pins)


class AsgLockedError(AirflowFailException):
    """An ASG the apply would move is held by another rollout (its ``phoenix:rollout:id`` tag); nothing changed."""


ROLLOUT_ID_TAG = "phoenix:rollout:id"


def rollout_lock_problems(asgs: Sequence[Mapping[str, Any]], rollout_id: str | None, region: str | None) -> list[str]:
    """One line per group in ``asgs`` (DescribeAutoScalingGroups entries) that a rollout other than ``rollout_id``
    holds: who holds it (the record's id, phase, target, start)."""
    from phoenix_fleet.rollout.rollout_record import RecordError, RolloutRecord

    problems = []
    for g in asgs:
        tags = {t["Key"]: t.get("Value", "") for t in g.get("Tags", [])}
        holder = tags.get(ROLLOUT_ID_TAG)
        if holder is None or (rollout_id and holder == str(rollout_id)):
            continue
        try:
            record = RolloutRecord.from_tags(tags)
        except RecordError as exc:
            detail = f"malformed rollout tags: {exc}"
        else:
            assert record is not None
            detail = (f"phase {record.phase}, target {record.target_image}, started "
                      f"{record.started_at.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        where = f" ({region})" if region else ""
        problems.append(f"{g['AutoScalingGroupName']}{where} is locked by rollout {holder} ({detail})")
    return problems


def refuse_locked(problems: Sequence[str], rollout_id: str | None, what: str) -> None:
    """Raise :class:`AsgLockedError` naming every holder and the fix, if ``problems``."""
    if not problems:
        return
    me = f"rollout {rollout_id}" if rollout_id else "this apply"
    raise AsgLockedError(
        f"{me} refuses to {what}: " + "; ".join(problems) + ". Moving the launch template under another rollout "
        "would leave its instances and its target on one image while every launch takes the new one. Nothing was "
        "changed. Fix: let that rollout finish; if its run died, resume it (clear its recycle task, or run "
        "AsgRecycleOperator with its rollout_id); if it halted (phase failed), look at the group, then delete its "
        "phoenix:rollout:* tags; then run this rollout again"
    )


def verify_asg_images(
    hook: ImageHook,
    image_id: str,
    *,
    tags: Mapping[str, str] | None = None,
    names: Sequence[str] = (),
    region: str | None = None,
    allow_empty: bool = False,
) -> list[AsgTemplateImage]:
    """Check every selected ASG launches ``image_id`` next; raise :class:`LaunchTemplateCheckError` naming those that don't.

    Returns every launch-template reference, resolved (one per ASG, plus mixed-instances overrides).
    """
    from phoenix_fleet.release.launch_templates import LaunchTemplateCheckError, check_asg_images

    asgs = hook.find_asgs(tags=tags, names=names, region=region)
    if not asgs:
        if allow_empty:
            return []
        raise LaunchTemplateCheckError(
            image_id, [], [f"<none>: no AutoScaling group matches tags={dict(tags or {})} names={list(names)} in {region}"]
        )
    resolved, problems = hook.resolve_asg_images(asgs, region)
    mismatches = check_asg_images(resolved, image_id)
    if mismatches or problems:
        raise LaunchTemplateCheckError(image_id, mismatches, problems)
    return resolved


# ---------------------------------------------------------------------------------------------------------------------
# Terraform
# ---------------------------------------------------------------------------------------------------------------------


class TerraformApplyOperator(_RoleMixin, BaseOperator):
    """Plan, guard and apply a Terraform root; outputs into XCom.

    :param role: fleet role: its ``terraform.workdir`` (relative to include/) and ``terraform.allow_destroy``
    :param workdir: the Terraform root (overrides the role's; relative paths resolve against include/)
    :param variables: ``-var`` values (e.g. ``{"endpoint": ...}`` for the sandbox); maps and lists go as JSON. With
        ``role``, they are added to (and win over) the role's ``terraform.vars``, whose ``${ENV_VAR}`` references are
        expanded here, on the worker that runs Terraform, as the task runs (:meth:`resolved_variables`): expanded
        values never travel through XCom or a rendered template field. Values given here are used as they are.
    :param var_files: ``-var-file`` paths (relative to the workdir)
    :param env: extra environment for Terraform (``TF_VAR_*``; never logged)
    :param allow_destroy: let destroys and replacements through the guard (default: the role's
        ``terraform.allow_destroy``, else False). Template it from a run param to allow it for one run.
    :param allow_other_changes: let creates and other updates through the guard
    :param lock_timeout: ``-lock-timeout`` (how long to wait for a held state lock)
    :param state_dir: CLI config and shared plugin cache directory (default ``~/.cache/phoenix-fleet/terraform``)
    :param data_dir: ``TF_DATA_DIR`` (default: a temporary one per run)
    :param terraform_timeout: seconds per Terraform command
    :param kill_grace_seconds: how long ``on_kill`` waits for Terraform to stop after SIGINT
    :param aws_conn_id: the task's own AWS calls (the rollout-lock check), and, unless ``terraform_aws_conn_id`` or
        the role's ``terraform.aws_conn_id`` names another, the connection whose credentials (and region,
        endpoint_url) Terraform gets as ``AWS_*`` variables; None: Terraform finds credentials itself (instance
        role, environment)
    :param terraform_aws_conn_id: the connection Terraform runs as (the Terraform principal,
        ``include/iam/terraform.json``; a ``role_arn`` in its extra is assumed with the worker's credentials);
        default: the role's ``terraform.aws_conn_id``, else ``aws_conn_id``
    :param region_name: exported as ``AWS_REGION``/``AWS_DEFAULT_REGION`` when set
    :param dry_run: init, plan and the plan guard as usual (a plan the guard refuses still fails), then stop:
        the saved plan is logged and not applied
    :param rollout_id: the rollout this apply belongs to (``fleet_rollout_<role>`` passes the one its recycle tasks
        use). With ``role``, every ASG of the role (in each of its regions) is checked before Terraform starts and
        again right before the saved plan is applied: a group another rollout holds (tag ``phoenix:rollout:id``)
        fails the task with :class:`AsgLockedError`, naming the holder and the fix, and nothing is applied.
    :param check_locks: False skips that check (a root that moves no role's groups)
    :param backend_config: ``-backend-config`` settings for the root's (partial) backend block, e.g. ``{"bucket":
        ..., "key": ..., "region": ...}``; ``${VAR}`` references are expanded from the worker's environment.
        Default: the role's ``terraform.backend_config``
    :param allow_local_state: let a root without a remote backend keep its state in a local file (default: the
        role's ``terraform.allow_local_state``, else False). Without it such a root is refused before Terraform
        runs: local state is lost, or split, between workers.
    :param release_images: the release this apply rolls out, ``{region: AMI}`` (the rollout plan's ``amis``, from
        the publish event). Passed to the root as ``-var <release_variable>={"role": <role>, "image_ids": {...}}``,
        so Terraform launches exactly that AMI (not whatever ``latest`` holds at plan time), and the guard refuses
        any launch template moved to another image than the one of this root's region (``region_name``)
    :param release_variable: the root's variable that takes the release (default ``release``)

    With ``role``, the guard also refuses any changed resource that is not tagged ``phoenix:role=<role>``: a
    release of one role never moves another role's templates, even in a shared root.

    Returns (and pushes under each key) ``{"changed", "workdir", "launch_templates", "asgs", "allowed",
    "outputs", "dry_run"}``: ``outputs`` is ``{name: value}`` from ``output -json`` (sensitive values replaced;
    in a dry run, the current state's).
    """

    template_fields: Sequence[str] = (
        "role",
        "workdir",
        "variables",
        "var_files",
        "env",
        "allow_destroy",
        "allow_other_changes",
        "lock_timeout",
        "aws_conn_id",
        "terraform_aws_conn_id",
        "region_name",
        "dry_run",
        "rollout_id",
        "backend_config",
        "release_images",
    )
    template_fields_renderers = {
        "variables": "json", "env": "json", "backend_config": "json", "release_images": "json",
    }
    ui_color = "#ede0ff"

    def __init__(
        self,
        *,
        role: str | None = None,
        workdir: str | None = None,
        variables: Mapping[str, Any] | None = None,
        var_files: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        allow_destroy: bool | str | None = None,
        allow_other_changes: bool | str = False,
        lock_timeout: str = "5m",
        state_dir: str | None = None,
        data_dir: str | None = None,
        terraform_timeout: float = 3600,
        kill_grace_seconds: float = 60,
        config_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        terraform_aws_conn_id: str | None = None,
        region_name: str | None = None,
        dry_run: bool | str = False,
        rollout_id: str | None = None,
        check_locks: bool = True,
        backend_config: Mapping[str, Any] | None = None,
        allow_local_state: bool | None = None,
        release_images: Mapping[str, str] | None = None,
        release_variable: str = "release",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.dry_run = dry_run
        self.rollout_id = rollout_id
        self.check_locks = check_locks
        self.backend_config = dict(backend_config) if backend_config is not None else None
        self.allow_local_state = allow_local_state
        self.release_images = release_images
        self.release_variable = release_variable
        self.workdir = workdir
        self.variables = variables  # a mapping (or None: the role's vars only); never holds an expanded value
        self.var_files = list(var_files or [])
        self.env = dict(env or {})
        self.allow_destroy = allow_destroy
        self.allow_other_changes = allow_other_changes
        self.lock_timeout = lock_timeout
        self.state_dir = state_dir
        self.data_dir = data_dir
        self.terraform_timeout = terraform_timeout
        self.kill_grace_seconds = kill_grace_seconds
        self.config_path = config_path
        self.aws_conn_id = aws_conn_id
        self.terraform_aws_conn_id = terraform_aws_conn_id
        self.region_name = region_name
        self._hook: TerraformHook | None = None

    def resolve_workdir(self) -> Path:
        from phoenix_fleet.config import include_dir

        config_path = Path(self.config_path) if self.config_path else None
        if not _empty(self.workdir):
            path = Path(str(self.workdir))
        else:
            spec = self.role_config().terraform
            if spec.backend != "terraform" or not spec.workdir:
                raise ValueError(
                    f"roles.{self.role}.terraform.backend is {spec.backend!r}: this role is not applied with "
                    "Terraform. Fix: use NativeLaunchTemplateUpdateOperator for it, or pass workdir"
                )
            path = Path(spec.workdir)
        if not path.is_absolute():
            path = include_dir(config_path) / path
        if not path.is_dir():
            raise FileNotFoundError(f"workdir: {str(path)!r} does not exist. Fix: set roles.{self.role}.terraform.workdir")
        return path

    def resolve_backend(self, workdir: Path) -> list[str]:
        """The ``-backend-config`` arguments for ``init``, after refusing a root whose state would stay local.

        A root keeps local state when it declares no backend (or ``backend "local"``), or declares ``backend
        "s3"`` with no bucket in the block nor in ``backend_config``. That is refused unless ``allow_local_state``:
        every worker would keep its own state file, lost with the worker. Raises before anything runs.
        """
        from phoenix_fleet.hooks.terraform_hook import backend_config_args, root_backend

        spec = self.role_config().terraform if self.role else None
        settings = self.backend_config if self.backend_config is not None else dict(spec.backend_config) if spec else {}
        base = f"roles.{self.role}.terraform.backend_config" if self.role and self.backend_config is None else "backend_config"
        settings = {k: expand_env(v, f"{base}.{k}") if isinstance(v, str) else v for k, v in settings.items()}
        allow_local = self.allow_local_state if self.allow_local_state is not None else bool(spec and spec.allow_local_state)
        declared = root_backend(workdir)
        where = f"roles.{self.role}.terraform" if self.role else "TerraformApplyOperator"
        if declared.remote and declared.kind == "s3" and "bucket" not in declared.settings and "bucket" not in settings:
            why = f"{declared.source} declares backend \"s3\" without a bucket, and backend_config names none"
        elif not declared.remote:
            why = (f"{declared.source} declares backend \"local\"" if declared.kind else "the root declares no backend")
            why += ": Terraform keeps the state in a file in the working directory"
        else:
            why = ""
        if why and not allow_local:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                f"{where}: local state cannot be shared between workers. Fix: set backend_config, or "
                f"allow_local_state for one machine ({workdir}: {why})"
            )
        if why:
            self.log.warning("%s: local state allowed (allow_local_state): %s", where, why)
        else:
            self.log.info("state: backend %r (%s), settings given at init: %s", declared.kind, declared.source,
                          sorted(settings) or "none")
        return backend_config_args(settings)

    def _guard_flags(self) -> tuple[bool, bool]:
        from phoenix_fleet.release.publish_rules import parse_bool

        allow_destroy = self.allow_destroy
        if _empty(allow_destroy):
            allow_destroy = self.role_config().terraform.allow_destroy if self.role else False
        return parse_bool(allow_destroy, "allow_destroy"), parse_bool(self.allow_other_changes, "allow_other_changes")

    def terraform_conn_id(self) -> str | None:
        """The connection Terraform runs as: ``terraform_aws_conn_id``, else the role's ``terraform.aws_conn_id``,
        else ``aws_conn_id``."""
        if not _empty(self.terraform_aws_conn_id):
            return str(self.terraform_aws_conn_id)
        if self.role and self.role_config().terraform.aws_conn_id:
            return self.role_config().terraform.aws_conn_id
        return self.aws_conn_id

    def _aws_env(self) -> dict[str, str | None]:
        """The connection's region, endpoint and credentials for Terraform (a value None: remove the inherited
        variable). An assumed role's credentials go through a profile kept fresh while Terraform runs
        (:mod:`phoenix_fleet.aws_credentials`): started here, stopped by :meth:`stop_credentials`."""
        env: dict[str, str | None] = {}
        if self.region_name:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = str(self.region_name)
        conn_id = self.terraform_conn_id()
        if not conn_id:
            return env
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from phoenix_fleet.aws_conn import require_aws_connection
        from phoenix_fleet.aws_credentials import CliCredentials

        if not _empty(self.terraform_aws_conn_id):
            field = "terraform_aws_conn_id"
        elif self.role and self.role_config().terraform.aws_conn_id:
            field = f"roles.{self.role}.terraform.aws_conn_id"
        else:
            field = "aws_conn_id"
        require_aws_connection(conn_id, field)
        hook = AwsBaseHook(aws_conn_id=conn_id, region_name=self.region_name, client_type="sts")
        hook.get_credentials(region_name=self.region_name)  # masks the secrets in task logs (the provider does)
        self.stop_credentials()
        self._cli_credentials = CliCredentials(hook.get_session(region_name=self.region_name).get_credentials(),
                                               logger=self.log)
        # static keys: as variables, and never the worker's own session token beside them (a value None removes
        # it); an assumed role: a profile kept fresh, the inherited key variables removed
        env.update(self._cli_credentials.start())
        region = self.region_name or hook.conn_config.region_name
        if region:
            env.setdefault("AWS_REGION", region)
            env.setdefault("AWS_DEFAULT_REGION", region)
        endpoint = hook.conn_config.endpoint_url
        if endpoint:
            env["AWS_ENDPOINT_URL"] = endpoint
        return env

    def stop_credentials(self) -> None:
        creds, self._cli_credentials = getattr(self, "_cli_credentials", None), None
        if creds is not None:
            creds.stop()

    def resolved_variables(self) -> dict[str, Any]:
        """The ``-var`` values for this run: the role's ``terraform.vars`` with ``${ENV_VAR}`` expanded from this
        process's environment, then ``variables`` over them. Call it only where Terraform runs."""
        out: dict[str, Any] = {}
        if self.role:
            for name, value in self.role_config().terraform.vars.items():
                out[name] = expand_env(value, f"roles.{self.role}.terraform.vars.{name}")
        out.update(dict(self.variables or {}))
        return out

    def release_target(self) -> tuple[dict[str, Any], str | None]:
        """(the release variable to add, the AMI the guard expects in this root's region); ({}, None) without one."""
        images = self.release_images
        if isinstance(images, str):
            import json

            images = json.loads(images) if images.strip() not in ("", "None") else None
        if not images:
            return {}, None
        if not isinstance(images, Mapping) or not all(
            isinstance(r, str) and isinstance(a, str) and a.startswith("ami-") for r, a in images.items()
        ):
            raise ValueError(f"release_images: {images!r} is not {{region: AMI}}. Fix: pass the rollout plan's amis")
        if not self.role:
            raise ValueError("release_images: given without role. Fix: pass role=<the role being released>")
        region = str(self.region_name or self.role_config().home_region)
        if region not in images:
            raise ValueError(
                f"release_images: no AMI for {region}, the region this root is applied in (region_name); the "
                f"release has {sorted(images)}. Fix: apply the root of a region the release went to"
            )
        release = {"role": str(self.role), "image_ids": dict(images)}
        return {self.release_variable: release}, str(images[region])

    def make_hook(self, workdir: Path) -> TerraformHook:
        from phoenix_fleet.hooks.terraform_hook import TerraformHook

        release_var, _ = self.release_target()
        return TerraformHook(
            workdir,
            variables={**self.resolved_variables(), **release_var},
            var_files=self.var_files,
            env={**self._aws_env(), **{k: str(v) for k, v in self.env.items()}},  # stop_credentials() after
            lock_timeout=self.lock_timeout,
            state_dir=self.state_dir,
            data_dir=self.data_dir,
            timeout=self.terraform_timeout,
            kill_grace_seconds=self.kill_grace_seconds,
            line_logger=lambda line: self.log.info("terraform: %s", line),
        )

    def _role_groups(self) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
        """``{region: (ImageHook, the role's ASGs there)}`` (empty without a role)."""
        if not self.role:
            return {}
        from phoenix_fleet.hooks.image_hook import ImageHook

        role = self.role_config()
        out: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        for region in role.regions:
            hook = ImageHook(aws_conn_id=self.aws_conn_id, region_name=region)
            out[region] = (hook, hook.find_asgs(tags=role.asgs.tags, names=role.asgs.names, region=region))
        return out

    def _check_locks(self, groups: dict[str, tuple[Any, list[dict[str, Any]]]] | None = None) -> None:
        """Every ASG of the role, in each of its regions: none may be held by another rollout."""
        if not self.check_locks or not self.role:
            return
        rid = None if _empty(self.rollout_id) else str(self.rollout_id)
        problems: list[str] = []
        for region, (_, asgs) in (self._role_groups() if groups is None else groups).items():
            problems += rollout_lock_problems(asgs, rid, region)
        refuse_locked(problems, rid, f"apply Terraform for role {self.role}")

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.hooks.terraform_hook import output_values
        from phoenix_fleet.release.plan_guard import PlanGuardError, check_plan
        from phoenix_fleet.release.publish_rules import parse_bool

        dry_run = parse_bool(self.dry_run, "dry_run")
        workdir = self.resolve_workdir()
        backend_args = self.resolve_backend(workdir)
        allow_destroy, allow_other = self._guard_flags()
        self._check_locks()  # before Terraform starts: fail fast
        _, target_image = self.release_target()
        if self.role and target_image is None:
            self.log.warning(
                "no release_images: Terraform launches what the SSM pointers hold at plan time, and the guard "
                "checks the role but cannot check the AMI"
            )
        hook = self._hook = self.make_hook(workdir)
        try:
            hook.init(backend_args)
            plan_file = hook.scratch_dir() / "release.tfplan"
            changed = hook.plan(plan_file)
            summary = None
            if changed:
                plan = hook.show_json(plan_file)
                summary = check_plan(
                    plan, allow_destroy=allow_destroy, allow_other_changes=allow_other,
                    role=str(self.role) if self.role else None, image_id=target_image,
                )
                for v in summary.allowed:
                    self.log.warning("allowed by this run only: %s: %s", v.address, v.reason)
                if summary.violations:
                    raise PlanGuardError(list(summary.violations))
                if not summary.has_changes:
                    self.log.info("the plan changes no resources (outputs only): applying it")
                self.log.info(
                    "plan guard passed: launch templates %s; ASGs %s",
                    list(summary.launch_templates) or "-",
                    list(summary.asgs) or "-",
                )
                if dry_run:
                    self.log.info("dry run: the plan above passed the guard and was NOT applied")
                else:
                    # check_locks=False: a root that moves no role's group, so none to record either
                    groups = self._role_groups() if self.check_locks else {}
                    self._check_locks(groups)  # again, right before anything changes (a renewal may have started)
                    push_pins_before(context, {region: pins_of(h, asgs, region) for region, (h, asgs) in groups.items()})
                    hook.apply_plan(plan_file)
            else:
                self.log.info("no changes: the infrastructure already matches (nothing applied)")
            outputs = output_values(hook.output_json())
        finally:
            hook.cleanup()
            self._hook = None
            self.stop_credentials()
        result = {
            "changed": changed,
            "workdir": str(workdir),
            "launch_templates": list(summary.launch_templates) if summary else [],
            "asgs": list(summary.asgs) if summary else [],
            "allowed": summary.to_dict()["allowed"] if summary else [],
            "outputs": outputs,
            "dry_run": dry_run,
        }
        ti = context.get("ti")
        if ti is not None:
            for key, value in result.items():
                ti.xcom_push(key=key, value=value)
        return result

    def on_kill(self) -> None:
        hook = self._hook
        if hook is not None:
            hook.interrupt()


# ---------------------------------------------------------------------------------------------------------------------
# Native backend and the post-apply check
# ---------------------------------------------------------------------------------------------------------------------


class _AsgImageOperator(_RoleMixin, BaseOperator):
    template_fields: Sequence[str] = (
        "role", "image_id", "version", "asg_names", "aws_conn_id", "region_name", "rollout_id", "release_images",
    )
    template_fields_renderers = {"release_images": "json"}

    def __init__(
        self,
        *,
        role: str,
        image_id: str | None = None,
        version: str | None = None,
        asg_names: Sequence[str] | None = None,
        asg_tags: Mapping[str, str] | None = None,
        config_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        rollout_id: str | None = None,
        release_images: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.rollout_id = rollout_id
        self.release_images = release_images
        self.image_id = image_id
        self.version = version
        self.asg_names = list(asg_names) if asg_names is not None else None
        self.asg_tags = dict(asg_tags) if asg_tags is not None else None
        self.config_path = config_path
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def region(self) -> str:
        return str(self.region_name or self.role_config().home_region)

    def hook(self) -> ImageHook:
        from phoenix_fleet.hooks.image_hook import ImageHook

        return ImageHook(aws_conn_id=self.aws_conn_id, region_name=self.region())

    def selector(self) -> tuple[dict[str, str], list[str]]:
        """(tags, names): explicit ``asg_names``/``asg_tags`` win over the role's ``asgs`` selector."""
        sel = self.role_config().asgs
        if self.asg_names is not None or self.asg_tags is not None:
            return dict(self.asg_tags or {}), list(self.asg_names or [])
        return dict(sel.tags), list(sel.names)

    def image(self, hook: ImageHook) -> str:
        return resolve_release_image(hook, self.fleet(), str(self.role), self.region(), self.image_id, self.version)

    def release_targets(self, hook: ImageHook) -> dict[str, str]:
        """``{region: AMI}`` to move, the home region (``region_name``) first."""
        images = self.release_images
        home = self.region()
        if images is None or images == {} or _empty(images):
            return {home: self.image(hook)}
        if not isinstance(images, Mapping) or not all(
            isinstance(r, str) and isinstance(a, str) and a.startswith("ami-") for r, a in images.items()
        ):
            raise ValueError(f"release_images: {images!r} is not {{region: AMI}}. Fix: pass the rollout plan's amis")
        if not _empty(self.image_id) or not _empty(self.version):
            raise ValueError("release_images: given with image_id or version. Fix: pass only one of them")
        regions = list(self.role_config().regions)
        unknown = sorted(set(images) - set(regions))
        if unknown:
            raise ValueError(
                f"release_images: {', '.join(unknown)} not a region of role {self.role} ({', '.join(regions)}). "
                "Fix: pass the rollout plan's amis, or add the region to the role"
            )
        if home not in images:
            raise ValueError(
                f"release_images: no AMI for {home}, the home region (region_name). Fix: pass the rollout plan's amis"
            )
        return {home: str(images[home]), **{r: str(images[r]) for r in sorted(images) if r != home}}


class VerifyAsgLaunchTemplatesOperator(_AsgImageOperator):
    """Fail unless every ASG of the role launches the new AMI next (after Terraform or the native backend).

    :param role: fleet role (its ``asgs`` selector; ``asg_names``/``asg_tags`` override it)
    :param image_id: the AMI expected (default: the role's ``latest`` pointer in the region, or ``version``'s)
    :param version: a published version to expect instead of the current pointer
    :param allow_empty: pass when no ASG matches (default: fail, a rollout to nothing is suspicious)
    :param dry_run: skip (a dry run moved no template: there is nothing to verify)
    :param release_images: ``{region: AMI}`` (the rollout plan's ``amis``): check every one of those regions
        against its own AMI, the home region (``region_name``) first, instead of one region and ``image_id``

    Returns ``{"image_id", "region"`` (the home region's), ``"asgs": [{"asg_name", "launch_template_id",
    "launch_template_name", "version", "resolved_version", "image_id", "where"}]`` (the home region's),
    ``"regions": {region: {"image_id", "asgs"}}}``.
    """

    template_fields: Sequence[str] = (*_AsgImageOperator.template_fields, "dry_run")
    ui_color = "#e0f7fa"

    def __init__(self, *, allow_empty: bool = False, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_empty = allow_empty
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.release.publish_rules import parse_bool

        if parse_bool(self.dry_run, "dry_run"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("dry run: no launch template was moved, so there is nothing to verify")
        hook = self.hook()
        targets = self.release_targets(hook)
        tags, names = self.selector()
        per_region: dict[str, list[dict[str, Any]]] = {}
        for region, image_id in targets.items():
            resolved = verify_asg_images(
                hook, image_id, tags=tags, names=names, region=region, allow_empty=self.allow_empty
            )
            for r in resolved:
                self.log.info(
                    "%s: %s version %s -> %s launches %s", r.asg_name, r.template_name or r.template_id,
                    r.spec_version, r.resolved_version, r.image_id,
                )
            self.log.info("%d AutoScaling group(s) launch %s in %s", len({r.asg_name for r in resolved}), image_id, region)
            per_region[region] = [r.to_dict() for r in resolved]
        home = next(iter(targets))
        return {
            "image_id": targets[home], "region": home, "asgs": per_region[home],
            "regions": {r: {"image_id": targets[r], "asgs": a} for r, a in per_region.items()},
        }


class NativeApplyError(RuntimeError):
    """A write of the native apply failed: what it had changed (every region) was put back; the message says what."""


class NativeLaunchTemplateUpdateOperator(_AsgImageOperator):
    """Move the launch templates of the role's ASGs to the new AMI without Terraform, in every region of the release.

    For each launch template any selected ASG uses: unless its default version already launches the AMI, create a
    version from the default (``SourceVersion``) with only ``ImageId`` changed and make it the default (a newest
    version that already has the AMI, left by an interrupted run, is made the default instead of creating another).
    Groups that pin an explicit version number are moved to it (``move_pinned_asgs``); ``$Default`` and ``$Latest``
    groups follow by themselves. Then :func:`verify_asg_images` in each region (``verify=True``).

    ``release_images`` (``{region: AMI}``, the rollout plan's ``amis``) names the regions and each region's AMI
    (copies have their own ids): every region is moved to its own AMI, the home region (``region_name``) first.
    Without it: the one region ``region_name`` and ``image_id``/``version``/the ``latest`` pointer there.

    All or nothing: every region is read and checked before anything changes (the AMI ours and verified
    (``phoenix:verified=true``), groups found, their templates readable, no group held by another rollout (tag
    ``phoenix:rollout:id`` other than ``rollout_id``: :class:`AsgLockedError`; ``check_locks=False`` skips it)); a
    refusal in any region changes nothing anywhere. A write that fails once changes began (an API error in the
    second region) puts back what this run changed, in every region, in reverse order: pinned groups to their
    version, each template's default to its previous version, and, for a template it added a version to, a copy of
    the previous ``$Latest`` (EC2 numbers versions forward, so ``$Latest`` groups launch the old image again); then
    :class:`NativeApplyError` names the failure and what was put back. A failed check afterwards does not undo
    (the moves are complete; the check names the groups that do not follow).

    With ``dry_run`` the same checks run and every change is logged as "would ...", none is made (and nothing is
    verified: the templates did not move).

    Returns ``{"image_id", "region"`` (the home region's), ``"launch_templates"``, ``"moved_asgs"``, ``"asgs"``
    (every region's, each entry with its ``region``), ``"regions": {region: {"image_id", "launch_templates",
    "moved_asgs", "asgs"}}, "dry_run"}`` (a dry run's new ``version`` is None). Pushes ``pins_before`` (every
    region's groups) before the first change.
    """

    template_fields: Sequence[str] = (*_AsgImageOperator.template_fields, "dry_run")
    ui_color = "#e0f7fa"

    def __init__(
        self, *, move_pinned_asgs: bool = True, verify: bool = True, dry_run: bool | str = False,
        check_locks: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.check_locks = check_locks
        self.move_pinned_asgs = move_pinned_asgs
        self.verify = verify
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.release.launch_templates import LaunchTemplateCheckError, template_refs
        from phoenix_fleet.release.publish_rules import parse_bool, refuse_unless_publishable

        dry_run = parse_bool(self.dry_run, "dry_run")
        hook = self.hook()
        targets = self.release_targets(hook)
        tags, names = self.selector()
        account = hook.get_account_id()

        # 1. read and check every region before anything changes anywhere
        plans: list[tuple[str, str, list[dict[str, Any]], dict[str, dict[str, Any]]]] = []
        for region, image_id in targets.items():
            refuse_unless_publishable(hook.describe_image(image_id, region), account, str(self.role))
            asgs = hook.find_asgs(tags=tags, names=names, region=region)
            if not asgs:
                raise LaunchTemplateCheckError(
                    image_id, [], [f"<none>: no AutoScaling group matches tags={tags} names={names} in {region}"]
                )
            templates: dict[str, dict[str, Any]] = {}
            for asg in asgs:
                refs, problems = template_refs(asg)
                if problems:
                    raise LaunchTemplateCheckError(image_id, [], problems)
                for ref in refs:
                    lt = hook.describe_launch_template(ref.template_id, ref.template_name, region)
                    templates.setdefault(lt["LaunchTemplateId"], lt)
            plans.append((region, image_id, asgs, templates))
        if self.check_locks:
            rid = None if _empty(self.rollout_id) else str(self.rollout_id)
            problems = [p for region, _, asgs, _ in plans for p in rollout_lock_problems(asgs, rid, region)]
            refuse_locked(problems, rid, f"move the launch templates of role {self.role}")
        if not dry_run:
            push_pins_before(context, {region: pins_of(hook, asgs, region) for region, _, asgs, _ in plans})

        # 2. move region by region; a failed write puts back everything this run changed
        undo: list[tuple[str, Any]] = []
        per_region: dict[str, dict[str, Any]] = {}
        try:
            for region, image_id, asgs, templates in plans:
                per_region[region] = self._move_region(hook, region, image_id, asgs, templates, dry_run, undo)
        except Exception as exc:
            if not undo:
                raise
            put_back, failed = self._undo(undo)
            raise NativeApplyError(
                f"native apply of role {self.role} failed: {type(exc).__name__}: {exc}. Everything it had changed "
                f"was put back ({'; '.join(put_back)})"
                + (f"; could NOT put back: {'; '.join(failed)} (fix these by hand)" if failed else "")
                + ". Fix: see the error above, then run the apply again (it is idempotent)"
            ) from exc

        # 3. the check, in every region
        for region, image_id, _, _ in plans:
            resolved: list[AsgTemplateImage] = []
            if self.verify and not dry_run:
                resolved = verify_asg_images(hook, image_id, tags=tags, names=names, region=region)
            per_region[region]["asgs"] = [r.to_dict() for r in resolved]
        home = next(iter(targets))
        return {
            "image_id": targets[home],
            "region": home,
            "launch_templates": [{**t, "region": r} for r, v in per_region.items() for t in v["launch_templates"]],
            "moved_asgs": [a for v in per_region.values() for a in v["moved_asgs"]],
            "asgs": [{**a, "region": r} for r, v in per_region.items() for a in v["asgs"]],
            "regions": per_region,
            "dry_run": dry_run,
        }

    def _move_region(
        self, hook: ImageHook, region: str, image_id: str, asgs: list[dict[str, Any]],
        templates: dict[str, dict[str, Any]], dry_run: bool, undo: list[tuple[str, Any]],
    ) -> dict[str, Any]:
        would = "dry run: would make" if dry_run else "making"
        description = f"phoenix-fleet {self.role}: {image_id}" + (f" ({self.version})" if not _empty(self.version) else "")
        moved_templates = []
        new_default: dict[str, int] = {}
        for lt_id, lt in sorted(templates.items()):
            name = lt.get("LaunchTemplateName")
            default_no, latest_no = int(lt["DefaultVersionNumber"]), int(lt["LatestVersionNumber"])
            default = hook.launch_template_version(lt_id, default_no, region)
            entry: dict[str, Any] = {"id": lt_id, "name": name, "from_version": default_no}
            number: int | None = default_no
            if (default.get("LaunchTemplateData") or {}).get("ImageId") == image_id:
                self.log.info("%s: default version %s already launches %s (%s)", name, default_no, image_id, region)
                entry.update(version=number, changed=False)
            else:
                latest = hook.launch_template_version(lt_id, latest_no, region) if latest_no != default_no else default
                latest_image = (latest.get("LaunchTemplateData") or {}).get("ImageId")
                if latest_no != default_no and latest_image == image_id:
                    number = latest_no
                    self.log.info("%s: newest version %s already launches %s: %s it the default (%s)", lt_id,
                                  number, image_id, would, region)
                elif dry_run:
                    number = None  # the real run makes it
                    self.log.info("%s: %s a version from %s that launches %s, the default (%s)", name, would,
                                  default_no, image_id, region)
                else:
                    number = hook.create_launch_template_version(lt_id, default_no, image_id, description, region)
                    undo.append((f"{name} ({region}): $Latest launches {latest_image} again (version {latest_no} "
                                 "copied)",
                                 lambda lt_id=lt_id, n=latest_no, img=latest_image, r=region: (
                                     hook.create_launch_template_version(
                                         lt_id, n, img, f"phoenix-fleet {self.role}: put back after a failed apply", r))))
                    self.log.info("%s: version %s (from %s) launches %s (%s)", name, number, default_no, image_id, region)
                if number is not None and not dry_run:
                    hook.set_default_launch_template_version(lt_id, number, region)
                    undo.append((f"{name} ({region}): default version {default_no}",
                                 lambda lt_id=lt_id, n=default_no, r=region: (
                                     hook.set_default_launch_template_version(lt_id, n, r))))
                entry.update(version=number, changed=True)
            if number is not None:
                new_default[lt_id] = number
            moved_templates.append(entry)

        moved_asgs = []
        for asg in asgs:
            spec = asg.get("LaunchTemplate") or {}
            version = str(spec.get("Version") or "$Default")
            if not spec or version in ("$Default", "$Latest"):
                continue
            lt_id = spec.get("LaunchTemplateId") or hook.describe_launch_template(
                None, spec.get("LaunchTemplateName"), region
            )["LaunchTemplateId"]
            target = str(new_default.get(lt_id, "<new>"))
            if version == target:
                continue
            group = asg["AutoScalingGroupName"]
            if not self.move_pinned_asgs:
                self.log.warning("%s pins version %s (not moved: move_pinned_asgs=False) (%s)", group, version, region)
                continue
            if not dry_run:
                hook.set_asg_launch_template_version(group, lt_id, target, region)
                undo.append((f"{group} ({region}): version {version}",
                             lambda g=group, lt_id=lt_id, v=version, r=region: (
                                 hook.set_asg_launch_template_version(g, lt_id, v, r))))
            self.log.info("%s: %spinned version %s -> %s (%s)", group,
                          "dry run: would move " if dry_run else "", version, target, region)
            moved_asgs.append(group)
        return {"image_id": image_id, "launch_templates": moved_templates, "moved_asgs": moved_asgs, "asgs": []}

    def _undo(self, undo: list[tuple[str, Any]]) -> tuple[list[str], list[str]]:
        put_back, failed = [], []
        for what, step in reversed(undo):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - go on putting back the rest; the message names this one
                self.log.error("could not put back %s: %s", what, exc)
                failed.append(f"{what}: {type(exc).__name__}: {exc}")
            else:
                self.log.warning("put back %s", what)
                put_back.append(what)
        return put_back, failed


__all__ = [
    "AsgLockedError",
    "NativeApplyError",
    "NativeLaunchTemplateUpdateOperator",
    "TerraformApplyOperator",
    "VerifyAsgLaunchTemplatesOperator",
    "resolve_release_image",
    "verify_asg_images",
]
