"""AsgHealthySensor: an AutoScaling group at desired capacity with every instance healthy (on an image).

The health gate is the rollout's (the pure ``phoenix_fleet.rollout.fleet_healthy``): InService, Healthy in the
ASG, ``healthy`` in every attached target group, EC2 status checks ok, none of the policy's alarms in ALARM,
warmup passed (each signal only if the policy counts it). The policy comes from ``role`` in the fleet
config (or the defaults) with ``policy`` overrides, e.g. ``policy={"warmup_seconds": 0}``.

Use it as the final gate after the mapped recycles, or on its own::

    AsgHealthySensor(task_id="fleet_healthy", asg_name="web", image_id="{{ params.ami }}", role="web",
                     timeout=1800)

Import-light: only ``airflow.sdk`` and the stdlib at module level (the rollout core on first use).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

if TYPE_CHECKING:  # the rollout core is imported on first use: DAG files import this module at every parse
    from phoenix_fleet.rollout import Policy


def policy_with(base: Policy, overrides: Mapping[str, Any] | str | None, field_name: str = "policy") -> Policy:
    """``base`` with the overrides applied; unknown keys and bad values raise ValueError naming the field."""
    from phoenix_fleet.rollout import Policy

    if overrides is None or overrides == "":
        return base
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except ValueError:
            raise ValueError(f"{field_name}: {overrides!r} is not a JSON object. Fix: pass a dict of policy fields") from None
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{field_name}: must be a dict of rollout policy fields, got {type(overrides).__name__}")
    names = {f.name for f in fields(Policy)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"{field_name}: unknown rollout policy field(s) {', '.join(unknown)}. Fix: use some of {', '.join(sorted(names))}"
        )
    values = dict(overrides)
    for key in ("health_signals",):
        if key in values:
            values[key] = frozenset(_as_list(values[key]))
    for key in ("alarms", "suspend_processes"):
        if key in values:
            values[key] = tuple(_as_list(values[key]))
    # batch_size and batch_percent are alternatives: an override of one drops the other
    if values.get("batch_size") is not None and "batch_percent" not in values:
        values["batch_percent"] = None
    if values.get("batch_percent") is not None and "batch_size" not in values:
        values["batch_size"] = None
    try:
        return replace(base, **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field_name}: {exc}. Fix: see the rollout policy in include/fleet.yaml") from None


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.replace(",", " ").split() if v.strip()]
    return list(value)


def resolve_policy(role: str | None, overrides: Mapping[str, Any] | str | None, fleet_config_path: str | None) -> Policy:
    """The role's rollout policy from the fleet config (the defaults without a role), with overrides."""
    from phoenix_fleet.rollout import Policy

    base = Policy()
    if role:
        from phoenix_fleet.config import cached_fleet_config

        base = Policy.from_config(cached_fleet_config(fleet_config_path).role(role).rollout)
    return policy_with(base, overrides)


class AsgHealthySensor(BaseSensorOperator):
    """Wait until ``asg_name`` is at desired capacity and all its instances are healthy (on ``image_id``).

    :param asg_name: the AutoScaling group.
    :param image_id: every instance must run this AMI (EC2 ImageId); None: any image.
    :param skipped_instances: instances the rollout left on their image by policy (the recycle result's
        ``skipped``: ``protected: skip``, ``standby: skip``): exactly these may run another image (healthy still).
    :param role: take the health signals, alarms and warmup from this role's rollout policy.
    :param policy: overrides of the rollout policy (e.g. ``{"health_signals": ["asg", "elb"]}``).
    :param deferrable: wait in the triggerer (``AsgHealthyTrigger``) instead of a worker slot.
    :param poll_interval: the longest pause between two looks (deferrable: adaptive from
        ``min_poll_interval`` up to this); not deferrable: ``poke_interval`` applies.
    """

    template_fields: Sequence[str] = (
        "asg_name", "image_id", "skipped_instances", "role", "policy", "aws_conn_id", "region_name",
    )
    template_fields_renderers = {"policy": "json"}
    ui_color = "#e6f7e6"

    def __init__(
        self,
        *,
        asg_name: str,
        image_id: str | None = None,
        skipped_instances: Sequence[str] | None = None,
        role: str | None = None,
        policy: Mapping[str, Any] | str | None = None,
        fleet_config_path: str | None = None,
        deferrable: bool = True,
        poll_interval: float = 15.0,
        min_poll_interval: float = 2.0,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 3600)
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.asg_name = asg_name
        self.image_id = image_id
        self.skipped_instances = skipped_instances
        self.role = role
        self.policy = policy
        self.fleet_config_path = fleet_config_path
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.min_poll_interval = min_poll_interval
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self._hook: Any = None

    def _skipped(self) -> list[str]:
        value = self.skipped_instances
        if value in (None, "", "None"):
            return []
        if isinstance(value, str):  # rendered from a template
            return [v for v in value.replace(",", " ").split() if v.startswith("i-")]
        return [str(v) for v in value]

    def _policy(self) -> Policy:
        return resolve_policy(self.role, self.policy, self.fleet_config_path)

    @property
    def hook(self) -> Any:
        if self._hook is None:
            from phoenix_fleet.hooks.asg_hook import AsgHook

            self._hook = AsgHook(
                aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
            )
        return self._hook

    def poke(self, context: Context) -> bool:
        from phoenix_fleet.rollout import fleet_healthy

        obs = self.hook.observe(self.asg_name, self._policy(), resolve_launch_template=False)
        ok, message = fleet_healthy(obs.state, self._policy(), self.image_id or None, skipped=self._skipped())
        self.log.info("%s", message)
        return ok

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from phoenix_fleet.triggers.rollout_triggers import AsgHealthyTrigger, known_to_json, policy_to_json

        deadline = datetime.now(UTC) + timedelta(seconds=float(self.timeout))
        self.defer(
            trigger=AsgHealthyTrigger(
                asg_name=self.asg_name,
                image_id=self.image_id or None,
                skipped=self._skipped(),
                policy=policy_to_json(self._policy()),
                deadline=deadline.isoformat(),
                poll_interval=self.poll_interval,
                min_poll_interval=self.min_poll_interval,
                known=known_to_json(self.hook.known),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        if not event:
            raise AirflowException(f"{self.asg_name}: no event from the trigger")
        if event.get("status") != "success":
            message = event.get("message") or f"{self.asg_name}: the trigger failed"
            if "deadline" in message:
                raise AirflowSensorTimeout(message)
            raise AirflowException(message)
        self.log.info("%s", event.get("message"))
