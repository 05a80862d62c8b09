"""Triggers of the verify stage, on the Amazon provider's waiter-trigger machinery.

``CanaryStatusOkTrigger`` waits with the custom waiter ``CanaryStatusOk`` (``phoenix_fleet/waiters/ec2.json``):
DescribeInstanceStatus with ``IncludeAllInstances`` until the canary runs and both its instance and system
status checks are ``ok``; failure at once when it stops or terminates, or a check is ``impaired``.
(botocore's ``instance_status_ok`` waiter would keep polling an impaired or terminated instance until it
runs out of attempts.) The Run Command wait is the provider's ``SsmRunCommandTrigger`` with its polls drawn from
the triggerer's API budget (``BudgetedSsmRunCommandTrigger``, :mod:`phoenix_fleet.api_limiter`).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.providers.amazon.aws.triggers.ssm import SsmRunCommandTrigger
from airflow.triggers.base import TriggerEvent

from phoenix_fleet.api_limiter import LimitedAsyncConnMixin
from phoenix_fleet.triggers.ami_triggers import PhoenixEc2Hook


class CanaryStatusOkTrigger(AwsBaseWaiterTrigger):
    """Events: ``{"status": "success", "instance_id"}`` or ``{"status": "error", "instance_id", "message",
    "state", "instance_status", "system_status"}``."""

    aws_hook_class = PhoenixEc2Hook

    def __init__(
        self,
        *,
        instance_id: str,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 80,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"instance_id": instance_id},
            waiter_name="CanaryStatusOk",
            waiter_args={"InstanceIds": [instance_id], "IncludeAllInstances": True},
            failure_message=f"canary {instance_id} did not pass its status checks",
            status_message=f"canary {instance_id} state, instance status, system status",
            status_queries=[
                "InstanceStatuses[0].InstanceState.Name",
                "InstanceStatuses[0].InstanceStatus.Status",
                "InstanceStatuses[0].SystemStatus.Status",
            ],
            return_key="instance_id",
            return_value=instance_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.instance_id = instance_id

    def _event_from_exception(self, error: Any) -> TriggerEvent:
        last = getattr(error, "last_response", None)
        statuses = (last or {}).get("InstanceStatuses") or [] if isinstance(last, dict) else []
        st = statuses[0] if statuses else {}
        state = (st.get("InstanceState") or {}).get("Name")
        inst = (st.get("InstanceStatus") or {}).get("Status")
        system = (st.get("SystemStatus") or {}).get("Status")
        message = str(error)
        if st:
            message = f"canary {self.instance_id} is {state} (instance status {inst}, system status {system})"
        return TriggerEvent(
            {
                "status": "error",
                "instance_id": self.instance_id,
                "message": message,
                "state": state,
                "instance_status": inst,
                "system_status": system,
            }
        )


class PhoenixSsmHook(LimitedAsyncConnMixin, SsmHook):
    """The provider's ``SsmHook`` whose async client draws from the triggerer's limiter (api_limiter)."""


class BudgetedSsmRunCommandTrigger(SsmRunCommandTrigger):
    """The provider's ``SsmRunCommandTrigger`` (same arguments and events), polling through :class:`PhoenixSsmHook`."""

    def hook(self) -> PhoenixSsmHook:  # type: ignore[override]
        return PhoenixSsmHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
