"""The fleet configuration (include/fleet.yaml): models, loading and validation.

Every validation error names the field (as a dotted path into the YAML) and says how to fix it,
e.g. ``roles.web.rollout.batch_size: must be at least 1 (got 0). Fix: ...``.

DAG files do not import this at every parse: they read the few values their shape needs through
:mod:`phoenix_fleet.dag_facts`, which validates here only when the file (or this code) changed. No AWS calls here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# re-exported: the location and the error type live in an import-light module (DAG files need them at parse time)
from phoenix_fleet.api_budget import (
    DEFAULT_CALLS_PER_SECOND,
    DEFAULT_POOL_SLOTS,
    MAX_CALLS_PER_SECOND,
    MAX_POOL_SLOTS,
    pool_name,
    valid_env_name,
)
from phoenix_fleet.config_file import CONFIG_ENV_VAR as CONFIG_ENV_VAR
from phoenix_fleet.config_file import FleetConfigError as FleetConfigError
from phoenix_fleet.config_file import default_config_path as default_config_path
from phoenix_fleet.config_file import include_dir as include_dir

#: libyaml's safe loader when PyYAML was built with it (~10x faster: DAG files load the config at every parse)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


HealthSignal = Literal["asg", "elb", "ec2_status", "alarms"]
HEALTH_SIGNALS: tuple[HealthSignal, ...] = ("asg", "elb", "ec2_status", "alarms")
ASG_PROCESSES = (
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
)
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SNS_TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_BACKEND_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_AWS_CONN_ID = "aws_default"
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@once"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseAmiFilter(_Strict):
    """How to find the base AMI. Never by name alone: `owners` pins who may have published it."""

    name: str = Field(description="AMI name pattern (wildcards allowed), e.g. debian-12-amd64-*")
    owners: list[str] = Field(description="account ids, or 'self'/'amazon'; never empty")
    architecture: str = "x86_64"

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(
                "must name at least one owner (resolving an AMI by name alone invites name squatting). "
                "Fix: add owners: [<account id>] or [self]"
            )
        for o in v:
            if not (_ACCOUNT_RE.match(o) or o in ("self", "amazon", "aws-marketplace")):
                raise ValueError(f"{o!r} is not an account id. Fix: use a 12-digit account id, 'self' or 'amazon'")
        return v


class ImageSpec(_Strict):
    packer_template: str = Field(description="Packer template, relative to include/")
    base_ami: BaseAmiFilter
    instance_type: str = "t3.small"
    instance_profile: str | None = None
    canary_subnet_id: str | None = None
    canary_subnet_tags: dict[str, str] = Field(default_factory=dict)
    volume_size_gb: int = Field(default=8, ge=4, le=16384)
    packer_aws_conn_id: str | None = Field(
        default=None,
        description="AWS connection the Packer build runs as (the Packer builder's principal, include/iam/packer.json); "
        "empty: the DAG's connection",
    )

    _packer_conn = field_validator("packer_aws_conn_id")(classmethod(lambda cls, v: _check_conn_id(v)))

    @model_validator(mode="after")
    def _subnet(self) -> ImageSpec:
        if self.canary_subnet_id and self.canary_subnet_tags:
            raise ValueError(
                "canary_subnet_id and canary_subnet_tags both set. Fix: keep one of them"
            )
        return self


class AsgSelector(_Strict):
    tags: dict[str, str] = Field(default_factory=dict, description="every tag must match")
    names: list[str] = Field(default_factory=list, description="explicit ASG names (optional)")

    @model_validator(mode="after")
    def _not_empty(self) -> AsgSelector:
        if not self.tags and not self.names:
            raise ValueError(
                "selects nothing. Fix: give tags: {phoenix:role: <role>} or names: [<asg name>]"
            )
        return self


class RolloutPolicy(_Strict):
    strategy: Literal["surge", "replace", "instance-refresh"] = "surge"
    batch_size: int | None = Field(default=None, description="instances replaced per batch")
    batch_percent: int | None = Field(default=None, description="share of desired replaced per batch")
    min_healthy_percent: int = 100
    max_surge: int = 1
    warmup_seconds: int = Field(default=60, ge=0, le=3600)
    soak_seconds: int = Field(default=0, ge=0, le=86400)
    health_signals: list[HealthSignal] = Field(
        default_factory=lambda: list(HEALTH_SIGNALS)
    )
    alarms: list[str] = Field(default_factory=list, description="CloudWatch alarm names that halt a rollout")
    standby: Literal["skip", "wait", "replace"] = "skip"
    protected: Literal["skip", "wait", "replace"] = "skip"
    deadline_minutes: int = Field(default=60, ge=1, le=24 * 60)
    on_failure: Literal["rollback", "halt"] = "rollback"
    max_concurrent_asgs: int = Field(default=1, ge=1, le=64)
    inline_wait_seconds: float = Field(
        default=20,
        description="a wait expected to end within this many seconds is polled in the worker (a deferral costs "
        "~2.4 s); 0: every wait defers to the triggerer and no worker slot is held while waiting (many ASGs at once)",
    )
    run_timeout_hours: float = Field(
        default=24, gt=0, le=14 * 24,
        description="dagrun_timeout of fleet_rollout_<role>: a plan whose worst case (approval, canary and every "
        "ASG at max_concurrent_asgs, each up to its forward and rollback deadlines) exceeds it fails before any change",
    )
    suspend_processes: list[str] = Field(
        default_factory=lambda: ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(
                f"must be at least 1 (got {v}). Fix: set batch_size to a positive number of instances, "
                "or use batch_percent"
            )
        return v

    @field_validator("batch_percent")
    @classmethod
    def _batch_percent(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 100:
            raise ValueError(f"must be between 1 and 100 (got {v}). Fix: use a percentage of desired capacity")
        return v

    @field_validator("min_healthy_percent")
    @classmethod
    def _min_healthy(cls, v: int) -> int:
        if not 0 <= v <= 100:
            raise ValueError(
                f"must be between 0 and 100 (got {v}). Fix: it is the share of desired capacity that must "
                "stay healthy; to launch before terminating use strategy: surge with max_surge"
            )
        return v

    @field_validator("max_surge")
    @classmethod
    def _max_surge(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"must be 0 or more (got {v}). Fix: extra instances allowed above desired")
        return v

    @field_validator("inline_wait_seconds")
    @classmethod
    def _inline_wait(cls, v: float) -> float:
        if not 0 <= v <= 600:
            raise ValueError(
                f"must be between 0 and 600 seconds (got {v:g}). Fix: 0 defers every wait to the triggerer (no worker "
                "slot held while waiting: many ASGs at once); the default 20 polls short waits in the worker"
            )
        return v

    @field_validator("suspend_processes")
    @classmethod
    def _processes(cls, v: list[str]) -> list[str]:
        for p in v:
            if p not in ASG_PROCESSES:
                raise ValueError(f"{p!r} is not an AutoScaling process. Fix: use one of {', '.join(ASG_PROCESSES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RolloutPolicy:
        if self.batch_size is not None and self.batch_percent is not None:
            raise ValueError("batch_size and batch_percent both set. Fix: keep only one of them")
        if self.strategy == "surge" and self.max_surge == 0 and self.min_healthy_percent == 100:
            raise ValueError(
                "strategy surge with max_surge 0 and min_healthy_percent 100 can never replace anything. "
                "Fix: raise max_surge or lower min_healthy_percent"
            )
        return self

    def batch_for(self, desired: int) -> int:
        """Instances per batch for an ASG of `desired` capacity (at least 1)."""
        if self.batch_size is not None:
            return self.batch_size
        pct = self.batch_percent if self.batch_percent is not None else 25
        return max(1, (desired * pct) // 100)


class TerraformSpec(_Strict):
    backend: Literal["terraform", "native"] = "terraform"
    workdir: str | None = Field(default=None, description="Terraform root, relative to include/")
    allow_destroy: bool = False
    vars: dict[str, str] = Field(
        default_factory=dict,
        description="-var values; ${ENV_VAR} references are expanded on the worker at run time",
    )
    aws_conn_id: str | None = Field(
        default=None,
        description="AWS connection Terraform runs as (the Terraform principal, include/iam/terraform.json); "
        "empty: the DAG's connection",
    )
    backend_config: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description="-backend-config key=value pairs for the root's partial backend block (bucket, key, region); "
        "${ENV_VAR} references are expanded on the worker at run time",
    )
    allow_local_state: bool = Field(
        default=False,
        description="let a root without a remote backend keep its state in a local file (one machine only)",
    )

    _conn = field_validator("aws_conn_id")(classmethod(lambda cls, v: _check_conn_id(v)))

    @field_validator("backend_config")
    @classmethod
    def _backend_config(cls, v: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        for key in v:
            if not _BACKEND_KEY_RE.match(key):
                raise ValueError(
                    f"{key!r} is not a backend setting name. Fix: use the backend's argument names, e.g. bucket, "
                    "key, region"
                )
        return v

    @model_validator(mode="after")
    def _workdir(self) -> TerraformSpec:
        if self.backend == "terraform" and not self.workdir:
            raise ValueError(
                "backend terraform needs a workdir. Fix: set workdir: terraform/envs/<env>, or backend: native"
            )
        if self.backend == "native" and (self.backend_config or self.allow_local_state):
            raise ValueError(
                "backend native runs no Terraform: backend_config and allow_local_state mean nothing here. "
                "Fix: remove them, or set backend: terraform"
            )
        return self


def _check_topic(v: str | None) -> str | None:
    if v is not None and not _SNS_TOPIC_RE.match(v):
        raise ValueError(
            f"{v!r} is not an SNS topic ARN. Fix: arn:aws:sns:<region>:<12-digit account>:<topic name>, or leave it out"
        )
    return v


def _check_conn_id(v: str | None) -> str | None:
    if v is not None and not _CONN_ID_RE.match(v):
        raise ValueError(f"{v!r} is not an Airflow connection id. Fix: letters, digits, '_', '.', '-' (e.g. slack_releases)")
    return v


class ApiBudget(_Strict):
    """The environment's API budget per region (docs/scale.md): task slots (an Airflow pool per region,
    ``phoenix_<env>_<region>``) and the triggerer's polls (calls per second per region, shared by every trigger)."""

    pool_slots: int = Field(
        default=DEFAULT_POOL_SLOTS,
        description="slots of the Airflow pool phoenix_<env>_<region>: the most AWS-calling tasks of this "
        "environment running at once in one region (every role, rollout, inventory, max age, retention)",
    )
    calls_per_second: float = Field(
        default=DEFAULT_CALLS_PER_SECOND,
        description="AWS calls per second the triggerer's polls of this environment's account may make in one "
        "region, all triggers together; below AWS's published throttling rates",
    )

    @field_validator("pool_slots", mode="before")
    @classmethod
    def _slots(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_POOL_SLOTS:
            raise ValueError(
                f"must be a whole number from 1 to {MAX_POOL_SLOTS} (got {v!r}). Fix: the task slots of this "
                f"environment per region, e.g. {DEFAULT_POOL_SLOTS} (docs/scale.md sizes it)"
            )
        return v

    @field_validator("calls_per_second", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_CALLS_PER_SECOND:
            raise ValueError(
                f"must be a number above 0 and at most {MAX_CALLS_PER_SECOND:g} (got {v!r}): AWS refills an "
                f"account's EC2 describe calls at {MAX_CALLS_PER_SECOND:g} a second per region, and the triggerer "
                f"shares them with every other tool. Fix: e.g. {DEFAULT_CALLS_PER_SECOND:g}"
            )
        return v


class Environment(_Strict):
    """Per environment: approval, and where the release and rollout DAGs of its roles send notifications."""

    require_approval: bool = False
    approval_timeout_hours: float = Field(
        default=8, gt=0, le=168,
        description="how long a rollout's approval waits for a human; unanswered, the canary is rolled back",
    )
    notify_sns_topic_arn: str | None = Field(default=None, description="SNS topic (the Amazon provider's SnsNotifier)")
    slack_conn_id: str | None = Field(
        default=None, description="Slack incoming-webhook connection (the Slack provider's SlackWebhookNotifier)"
    )
    notify_on_success: bool = Field(
        default=True, description="also announce a successful release and rollout (failures are always sent)"
    )
    aws_conn_id: str = Field(
        default=DEFAULT_AWS_CONN_ID,
        description="the Airflow AWS connection of this environment's account: every DAG, operator and hook of its "
        "roles uses it (another account: the connection's role_arn)",
    )

    api_budget: ApiBudget = Field(
        default_factory=ApiBudget,
        description="the API budget of this environment's account per region: pool slots and triggerer calls/s",
    )

    _topic = field_validator("notify_sns_topic_arn")(classmethod(lambda cls, v: _check_topic(v)))
    _slack = field_validator("slack_conn_id")(classmethod(lambda cls, v: _check_conn_id(v)))
    _aws = field_validator("aws_conn_id")(classmethod(lambda cls, v: _check_conn_id(v)))


class Notifications(_Strict):
    """Where the fleet-wide DAGs (fleet_inventory, fleet_max_age, ami_retention) send notifications."""

    sns_topic_arn: str | None = Field(
        default=None, description="SNS topic; empty: the one topic the environments name, if exactly one"
    )
    slack_conn_id: str | None = Field(
        default=None, description="Slack incoming-webhook connection; empty: the environments' one, if exactly one"
    )
    on_success: bool = Field(
        default=False,
        description="also send a success with nothing to report (an inventory with stale instances is always sent)",
    )

    _topic = field_validator("sns_topic_arn")(classmethod(lambda cls, v: _check_topic(v)))
    _slack = field_validator("slack_conn_id")(classmethod(lambda cls, v: _check_conn_id(v)))


class AwsConn(NamedTuple):
    """An AWS connection id and the config field that chose it (error messages name the field)."""

    conn_id: str
    field: str


class Role(_Strict):
    env: str
    image: ImageSpec
    asgs: AsgSelector
    regions: list[str] = Field(min_length=1)
    share_with_accounts: list[str] = Field(default_factory=list)
    schedule: str | None = Field(default=None, description="cron of the weekly release, UTC")
    schedule_grace_hours: float = Field(
        default=6, gt=0, le=168, description="a scheduled release run created later than this after its slot skips"
    )
    terraform: TerraformSpec = Field(default_factory=TerraformSpec)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    max_age_days: int | None = Field(default=None, ge=1, le=365)
    keep_versions: int = Field(default=5, ge=1, le=100)

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        for r in v:
            if not _REGION_RE.match(r):
                raise ValueError(f"{r!r} is not an AWS region. Fix: use a region code such as us-east-1")
        if len(set(v)) != len(v):
            raise ValueError("lists a region twice. Fix: list each region once")
        return v

    @field_validator("share_with_accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        for a in v:
            if not _ACCOUNT_RE.match(a):
                raise ValueError(f"{a!r} is not an account id. Fix: quote a 12-digit account id, e.g. \"111122223333\"")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is None or v in _CRON_PRESETS:
            return v
        from croniter import croniter

        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(
                f"{v!r} is not a 5-field cron expression. Fix: e.g. \"0 3 * * 1\" (Monday 03:00 UTC) or @weekly"
            )
        return v

    @property
    def home_region(self) -> str:
        """Where the image is baked and verified: the first listed region."""
        return self.regions[0]


class FleetConfig(_Strict):
    version: Literal[1] = 1
    artifacts_bucket: str
    ssm_prefix: str = "/phoenix/images"
    max_age_days: int = Field(default=14, ge=1, le=365)
    # the budget: fleet_max_age renews what keeps up with the fleet (every ASG within max age - lead days), at most
    # this many a run. 48: 2 renewals at a time (the DAG's renew concurrency) of ~10 min each for 4 hours a night.
    max_age_asgs_per_run: int = Field(
        default=48, ge=1, le=500, description="the most ASGs fleet_max_age renews per run (its budget)"
    )
    environments: dict[str, Environment] = Field(default_factory=dict)
    notifications: Notifications = Field(default_factory=Notifications)
    artifacts_aws_conn_id: str | None = Field(
        default=None,
        description="the AWS connection that writes and reads s3://<artifacts_bucket>/inventory/ (the inventory "
        "report and its UI page); default: the one connection the roles' environments use",
    )
    defaults: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, Role]

    @field_validator("artifacts_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", v):
            raise ValueError(f"{v!r} is not a valid S3 bucket name. Fix: 3-63 lowercase letters, digits, dots, hyphens")
        return v

    @field_validator("ssm_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} must start with / and not end with /. Fix: e.g. /phoenix/images")
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, Role]) -> dict[str, Role]:
        if not v:
            raise ValueError("no roles. Fix: add at least one role under roles:")
        for name in v:
            if not _ROLE_RE.match(name):
                raise ValueError(
                    f"role name {name!r} is invalid. Fix: lowercase letters, digits and '-', starting with a letter"
                )
        return v

    @field_validator("artifacts_aws_conn_id")
    @classmethod
    def _artifacts_conn(cls, v: str | None) -> str | None:
        return v if v is None else _check_conn_id(v)

    @field_validator("environments")
    @classmethod
    def _env_names(cls, v: dict[str, Environment]) -> dict[str, Environment]:
        for name in v:
            if not valid_env_name(name):
                raise ValueError(
                    f"environment name {name!r} is invalid (it names the Airflow pools phoenix_<env>_<region>). "
                    "Fix: lowercase letters, digits, '-' and '_', starting with a letter"
                )
        return v

    @model_validator(mode="after")
    def _envs(self) -> FleetConfig:
        for name, role in self.roles.items():
            if not valid_env_name(role.env):
                raise ValueError(
                    f"roles.{name}.env: {role.env!r} is not a valid environment name (it names the Airflow pools "
                    "phoenix_<env>_<region>). Fix: lowercase letters, digits, '-' and '_', starting with a letter"
                )
            if self.environments and role.env not in self.environments:
                raise ValueError(
                    f"roles.{name}.env: {role.env!r} is not a declared environment. "
                    f"Fix: use one of {sorted(self.environments)} or add it under environments:"
                )
        used = {self.aws_conn(name).conn_id for name in self.roles}
        if self.artifacts_aws_conn_id is None and len(used) > 1:
            raise ValueError(
                f"artifacts_aws_conn_id: not set, and the roles' environments use several AWS connections "
                f"({', '.join(sorted(used))}). Fix: set artifacts_aws_conn_id to the one that reads and writes "
                f"s3://{self.artifacts_bucket}/inventory/"
            )
        return self

    # -- helpers used by DAGs and operators ------------------------------------------------------
    def role(self, name: str) -> Role:
        try:
            return self.roles[name]
        except KeyError:
            raise FleetConfigError(
                [f"role {name!r} is not in the fleet config. Fix: use one of {sorted(self.roles)}"]
            ) from None

    def environment(self, role: str) -> Environment:
        return self.environments.get(self.role(role).env, Environment())

    def api_budget(self, role: str) -> ApiBudget:
        """The API budget of the role's environment (``environments.<env>.api_budget``, defaults when undeclared)."""
        return self.environment(role).api_budget

    def pool(self, role: str, region: str) -> str:
        """The Airflow pool of the role's AWS-calling tasks in ``region``: ``phoenix_<env>_<region>``."""
        return pool_name(self.role(role).env, region)

    def fleet_notifications(self) -> Notifications:
        """Where the fleet-wide DAGs notify: ``notifications:``, each channel defaulting to the one the environments
        name when they all name the same (or only one names one)."""
        n = self.notifications
        topics = {e.notify_sns_topic_arn for e in self.environments.values() if e.notify_sns_topic_arn}
        slacks = {e.slack_conn_id for e in self.environments.values() if e.slack_conn_id}
        return Notifications(
            sns_topic_arn=n.sns_topic_arn or (next(iter(topics)) if len(topics) == 1 else None),
            slack_conn_id=n.slack_conn_id or (next(iter(slacks)) if len(slacks) == 1 else None),
            on_success=n.on_success,
        )

    def aws_conn(self, role: str) -> AwsConn:
        """The AWS connection of the role's environment (``environments.<env>.aws_conn_id``, default aws_default)."""
        env = self.role(role).env
        return AwsConn(self.environment(role).aws_conn_id, f"environments.{env}.aws_conn_id")

    def artifacts_aws_conn(self) -> AwsConn:
        """The connection for s3://<artifacts_bucket>/inventory/: ``artifacts_aws_conn_id``, else the one connection
        the roles' environments use (validation refuses several without ``artifacts_aws_conn_id``)."""
        if self.artifacts_aws_conn_id is not None:
            return AwsConn(self.artifacts_aws_conn_id, "artifacts_aws_conn_id")
        for name in self.roles:
            return self.aws_conn(name)
        return AwsConn(DEFAULT_AWS_CONN_ID, "artifacts_aws_conn_id")

    def max_age_for(self, role: str) -> int:
        r = self.role(role)
        return r.max_age_days if r.max_age_days is not None else self.max_age_days

    def latest_parameter(self, role: str) -> str:
        """SSM parameter holding the AMI id of the role's latest published version."""
        return f"{self.ssm_prefix}/{role}/latest"

    def latest_version_parameter(self, role: str) -> str:
        return f"{self.ssm_prefix}/{role}/latest-version"


# -- loading ----------------------------------------------------------------------------------------
_DEFAULTABLE = {"rollout"}
_ALTERNATIVES = (("batch_size", "batch_percent"),)


def _merge_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `defaults.rollout` under each role's `rollout` block (role keys win)."""
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        return raw
    roles = raw.get("roles")
    if not isinstance(roles, Mapping):
        return raw
    merged_roles: dict[str, Any] = {}
    for name, role in roles.items():
        if isinstance(role, Mapping):
            role = dict(role)
            for key in _DEFAULTABLE:
                base = defaults.get(key)
                if isinstance(base, Mapping):
                    own = role.get(key) or {}
                    if isinstance(own, Mapping):
                        base = dict(base)
                        # batch_size and batch_percent are alternatives: a role setting one drops the other
                        for a, b in _ALTERNATIVES:
                            if a in own:
                                base.pop(b, None)
                            if b in own:
                                base.pop(a, None)
                        role[key] = {**base, **own}
        merged_roles[name] = role
    return {**raw, "roles": merged_roles}


def _model_for_loc(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at a validation-error location (to list the allowed keys)."""
    model: type[BaseModel] | None = FleetConfig
    if loc[:2] == ("defaults", "rollout"):
        model, loc = RolloutPolicy, loc[2:]
    i = 0
    while model is not None and i < len(loc) - 1:
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return None
        ann = field.annotation
        origin = getattr(ann, "__origin__", None)
        if origin is dict:
            ann = ann.__args__[1]  # type: ignore[union-attr]
            i += 1  # skip the key
        i += 1
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _format_error(err: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc) or "<top level>"
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        parent = _model_for_loc(loc)
        allowed = sorted(parent.model_fields) if parent else []
        import difflib

        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"remove it; allowed keys here: {', '.join(allowed)}"
        return f"{path}: unknown key. Fix: {fix}"
    if kind == "missing":
        return f"{path}: required but missing. Fix: add {loc[-1]}: to this block"
    if kind == "literal_error":
        return f"{path}: {msg}. Fix: use one of the listed values"
    msg = msg.removeprefix("Value error, ")
    if "Fix:" not in msg:
        msg = f"{msg}. Fix: correct the value (got {err.get('input')!r})"
    return f"{path}: {msg}"


def parse_fleet_config(raw: Any, source: str | None = None) -> FleetConfig:
    if not isinstance(raw, Mapping):
        raise FleetConfigError(["<top level>: must be a mapping. Fix: start with version: 1 and roles:"], source)
    merged = _merge_defaults(dict(raw))
    defaults = merged.get("defaults") or {}
    problems: list[str] = []
    if isinstance(defaults, Mapping):
        for key in defaults:
            if key not in _DEFAULTABLE:
                problems.append(f"defaults.{key}: unknown key. Fix: only {sorted(_DEFAULTABLE)} can have defaults")
        if isinstance(defaults.get("rollout"), Mapping):
            try:
                RolloutPolicy.model_validate(defaults["rollout"])
            except ValidationError as e:
                problems += [
                    _format_error({**err, "loc": ("defaults", "rollout", *err["loc"])}, merged) for err in e.errors()
                ]
    if problems:
        raise FleetConfigError(problems, source)
    try:
        return FleetConfig.model_validate(merged)
    except ValidationError as e:
        # errors under roles.* that came from defaults were already reported once above
        raise FleetConfigError(sorted({_format_error(err, merged) for err in e.errors()}), source) from None


def load_fleet_config(path: str | os.PathLike[str] | None = None) -> FleetConfig:
    p = Path(path) if path is not None else default_config_path()
    try:
        text = p.read_text()
    except OSError as e:
        raise FleetConfigError([f"cannot read {p}: {e.strerror}. Fix: check the path or {CONFIG_ENV_VAR}"]) from None
    return fleet_config_from_text(text, str(p))


def fleet_config_from_text(text: str, source: str | None = None) -> FleetConfig:
    """Parse and validate the YAML text of a fleet config (``source`` names it in errors)."""
    try:
        raw = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (libyaml's when built in)
    except yaml.YAMLError as e:
        raise FleetConfigError([f"not valid YAML: {e}. Fix: correct the syntax"], source) from None
    return parse_fleet_config(raw, source)


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> FleetConfig:
    return load_fleet_config(path)


def cached_fleet_config(path: str | os.PathLike[str] | None = None) -> FleetConfig:
    """Load once per file version: DAG files call this at every parse."""
    p = Path(path) if path is not None else default_config_path()
    return _cached(str(p), p.stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_fleet_config(args[0] if args else None)
    except FleetConfigError as e:
        print(e, file=sys.stderr)
        return 1
    for name, role in cfg.roles.items():
        print(
            f"{name}: env={role.env} regions={','.join(role.regions)} schedule={role.schedule!r} "
            f"strategy={role.rollout.strategy} backend={role.terraform.backend}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
