"""Triggers of the publish step: wait for a copied AMI to become ``available`` in its region.

A plain waiter trigger (botocore's own ``image_available`` EC2 waiter: success when ``State`` is ``available``,
terminal failure when it is ``failed``), no business logic. The event carries the copy's description so that
``execute_complete`` resumes without ``defer(kwargs=...)``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from phoenix_fleet.hooks.image_hook import ImageHook


class CopiedImageAvailableTrigger(AwsBaseWaiterTrigger):
    """Fires when ``image_id`` is ``available`` in ``region_name``; ``status: error`` when it fails or times out.

    :param image_id: the AMI to wait for (the copy, in its destination region)
    :param copy: JSON-serializable resume data, returned in the event under ``copy``
    """

    aws_hook_class = ImageHook

    def __init__(
        self,
        *,
        image_id: str,
        copy: dict[str, Any] | None = None,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 240,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_id = image_id
        super().__init__(
            serialized_fields={"image_id": image_id, "copy": copy},
            waiter_name="image_available",
            waiter_args={"ImageIds": [image_id]},
            failure_message=f"AMI {image_id} failed in {region_name}",
            status_message=f"AMI {image_id} in {region_name} is",
            status_queries=["Images[0].State", "Images[0].StateReason.Message"],
            return_key="copy",
            return_value=copy if copy is not None else {"ami_id": image_id, "region": region_name},
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            **kwargs,
        )
