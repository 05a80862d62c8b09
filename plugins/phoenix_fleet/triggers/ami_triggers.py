"""Triggers for image availability, on the Amazon provider's waiter-trigger machinery.

``AmiAvailableTrigger`` waits with the custom botocore waiter ``ImageAvailablePinned``
(``phoenix_fleet/waiters/ec2.json``): DescribeImages with ``ImageIds`` *and* ``Owners`` (owner-pinned),
success on ``available``, failure at once on ``failed``/``error``/``invalid``/``deregistered``/``disabled``
or when no image of that id belongs to the owners, retry while ``pending``. Its error event carries the
AMI's state and ``StateReason`` so the task can fail with them.

``PhoenixEc2Hook`` is the provider's ``EC2Hook`` (client API) with ``waiter_path`` pointing at our waiter
JSON; botocore's own EC2 waiters (``instance_running``, ``instance_terminated``, ...) stay available through
it. No business logic here: the sensor and operators decide what a state means.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import TriggerEvent

from phoenix_fleet.api_limiter import LimitedAsyncConnMixin
from phoenix_fleet.aws_conn import StrictAwsConnMixin
from phoenix_fleet.waiters import waiter_path


class PhoenixEc2Hook(LimitedAsyncConnMixin, StrictAwsConnMixin, EC2Hook):  # an unknown aws_conn_id fails (aws_conn.py)
    """``EC2Hook(api_type="client_type")`` whose custom waiters come from ``phoenix_fleet/waiters/ec2.json``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("api_type", "client_type")
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Any:  # type: ignore[override]
        return waiter_path("ec2")


def _first(response: Any, key: str) -> dict[str, Any]:
    items = (response or {}).get(key) or [] if isinstance(response, dict) else []
    return items[0] if items else {}


class AmiAvailableTrigger(AwsBaseWaiterTrigger):
    """Wait until ``image_id``, owned by one of ``owners``, is ``available``.

    Events: ``{"status": "success", "image_id"}``, or ``{"status": "error", "image_id", "message",
    "state", "state_reason"}`` (``state`` is ``"not-found"`` when no image of that id has one of the owners,
    ``None`` when the waiter ran out of attempts or AWS answered with an error).

    :param image_id: the AMI id.
    :param owners: DescribeImages ``Owners`` (default ``["self"]``): never wait on someone else's image.
    :param waiter_delay: seconds between two DescribeImages calls.
    :param waiter_max_attempts: calls before giving up (the sensor derives it from its timeout).
    """

    aws_hook_class = PhoenixEc2Hook

    def __init__(
        self,
        *,
        image_id: str,
        owners: list[str] | None = None,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 240,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        owners = list(owners or ["self"])
        super().__init__(
            serialized_fields={"image_id": image_id, "owners": owners},
            waiter_name="ImageAvailablePinned",
            waiter_args={"ImageIds": [image_id], "Owners": owners},
            failure_message=f"AMI {image_id} did not become available",
            status_message=f"AMI {image_id} state",
            status_queries=["Images[0].State", "Images[0].StateReason.Code", "Images[0].StateReason.Message"],
            return_key="image_id",
            return_value=image_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.image_id = image_id
        self.owners = owners

    def _event_from_exception(self, error: Any) -> TriggerEvent:
        last = getattr(error, "last_response", None)
        image = _first(last, "Images")
        state: str | None = image.get("State") if image else None
        reason = (image.get("StateReason") or {}) if image else {}
        message = str(error)
        if isinstance(last, dict) and "Images" in last and not last["Images"]:
            state = "not-found"
            message = f"AMI {self.image_id} not found among the images of owners {self.owners}"
        elif state:
            message = f"AMI {self.image_id} is {state}: {reason.get('Message') or reason.get('Code') or 'no reason given'}"
        return TriggerEvent(
            {
                "status": "error",
                "image_id": self.image_id,
                "message": message,
                "state": state,
                "state_reason": reason.get("Message") or reason.get("Code"),
            }
        )
