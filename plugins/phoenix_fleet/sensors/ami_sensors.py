"""``AmiAvailableSensor``: wait until an AMI that *we* own is ``available``; fail at once when it goes ``failed``.

Import-light (DAG files import it at parse time): the provider, boto3 and our trigger are imported inside
the methods that run on a worker or the triggerer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from phoenix_fleet.operators.inline_wait import INLINE_POLL_SECONDS

FAILED_STATES = ("failed", "error", "invalid", "deregistered", "disabled")
OWNER_ALIASES = ("amazon", "aws-marketplace")


class AmiNotAvailableError(AirflowFailException):
    """The AMI will never become available (failed, deregistered, ...) or is not owned by the expected owners.
    An ``AirflowFailException``: retrying cannot help."""


def describe_pinned(ec2: Any, image_id: str, owners: Sequence[str]) -> dict[str, Any] | None:
    """DescribeImages(ImageIds=[image_id], Owners=owners): the image, or None if no such image of those owners."""
    try:
        images = ec2.describe_images(ImageIds=[image_id], Owners=list(owners))["Images"]
    except Exception as exc:  # botocore ClientError, without importing botocore here
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
            return None
        raise
    return images[0] if images else None


def owner_ids(owners: Sequence[str], account_id: str | None) -> set[str]:
    """The account ids ``owners`` stands for (``self`` = the caller's account)."""
    ids = {o for o in owners if o.isdigit()}
    if "self" in owners and account_id:
        ids.add(account_id)
    return ids


def check_owner(image: dict[str, Any], owners: Sequence[str], account_id: str | None) -> None:
    """Refuse an image that is not owned by ``owners`` (defence in depth over DescribeImages' Owners filter)."""
    ids = owner_ids(owners, account_id)
    if image.get("OwnerId") in ids:
        return
    if image.get("ImageOwnerAlias") in OWNER_ALIASES and image.get("ImageOwnerAlias") in owners:
        return
    raise AmiNotAvailableError(
        f"AMI {image.get('ImageId')} is owned by {image.get('OwnerId')}, not by {list(owners)}: refusing to use it. "
        "Fix: use an AMI of the trusted owners, or add its owner to owners="
    )


def image_state_message(image: dict[str, Any]) -> str:
    reason = image.get("StateReason") or {}
    text = reason.get("Message") or reason.get("Code") or "no reason given"
    return f"AMI {image.get('ImageId')} ({image.get('Name', '')}) is {image.get('State')}: {text}"


class AmiAvailableSensor(BaseSensorOperator):
    """Wait until ``image_id`` is ``available``; owner-pinned, bounded, failing at once on ``failed``.

    Deferrable by default: one DescribeImages on the worker (already available: done; failed or not ours:
    fail now), then the same waiter the trigger uses (``ImageAvailablePinned``) polls inline for up to
    ``inline_wait`` seconds (an AMI that becomes available in seconds needs no deferral), then the triggerer
    waits with ``AmiAvailableTrigger``.
    With ``deferrable=False`` it pokes DescribeImages every ``poll_interval`` seconds (``mode`` applies).

    :param image_id: the AMI id (templated, e.g. ``{{ ti.xcom_pull(task_ids='bake')['ami_id'] }}``).
    :param owners: owners the AMI must belong to (default ``["self"]``): passed to DescribeImages and checked
        against the image's ``OwnerId`` (``self`` is the caller's account).
    :param poll_interval: seconds between checks (the trigger's waiter delay, the sensor's poke interval).
    :param timeout: seconds until the sensor fails (the defer timeout; the waiter's max attempts derive
        from it).
    :param max_attempts: override the waiter's max attempts (default ``ceil(timeout / poll_interval)``).
    :param deferrable: wait in the triggerer (default) or on the worker.
    :param inline_wait: seconds to poll on the worker (every ``inline_poll_interval``) before deferring; 0: defer
        at once; None: ``$PHOENIX_INLINE_WAIT_SECONDS``, else 20 (``phoenix_fleet.operators.inline_wait``).

    XCom (return value): ``{"image_id", "state": "available", "name", "owner_id"}``.
    Failure: ``AmiNotAvailableError`` (an ``AirflowFailException``, no retry) naming the state and the AMI's
    ``StateReason``; a timeout fails the task (``AirflowSensorTimeout`` / the defer timeout).
    """

    template_fields: Sequence[str] = ("image_id", "owners", "aws_conn_id", "region_name")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        image_id: str,
        owners: Sequence[str] | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        deferrable: bool = True,
        poll_interval: float = 15,
        timeout: float = 3600,
        max_attempts: int | None = None,
        inline_wait: float | None = None,
        inline_poll_interval: float | None = None,
        **kwargs: Any,
    ) -> None:

        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.image_id = image_id
        self.owners = list(owners or ["self"])
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.inline_wait = inline_wait
        self.inline_poll_interval = INLINE_POLL_SECONDS if inline_poll_interval is None else inline_poll_interval

    # --------------------------------------------------------------------------------------- helpers
    def _ec2(self) -> Any:
        from phoenix_fleet.triggers.ami_triggers import PhoenixEc2Hook

        return PhoenixEc2Hook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )

    def _account_id(self, hook: Any) -> str | None:
        if "self" not in self.owners:
            return None
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        return StsHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        ).get_account_number()

    def _observe(self) -> dict[str, Any] | None:
        """One owner-pinned DescribeImages: the image if available; None while pending; raise if it never will."""
        if not self.image_id or not str(self.image_id).startswith("ami-"):
            raise AmiNotAvailableError(f"image_id: {self.image_id!r} is not an AMI id. Fix: pass the bake task's ami_id")
        hook = self._ec2()
        image = describe_pinned(hook.conn, self.image_id, self.owners)
        if image is None:
            raise AmiNotAvailableError(
                f"AMI {self.image_id} not found among the images of owners {self.owners}. "
                "Fix: check the id and that the AMI belongs to a trusted owner"
            )
        check_owner(image, self.owners, self._account_id(hook))
        state = image.get("State")
        self.log.info("AMI %s (%s) is %s", self.image_id, image.get("Name"), state)
        if state in FAILED_STATES:
            raise AmiNotAvailableError(image_state_message(image))
        return image if state == "available" else None

    @staticmethod
    def _result(image: dict[str, Any]) -> dict[str, Any]:
        return {
            "image_id": image.get("ImageId"),
            "state": image.get("State"),
            "name": image.get("Name"),
            "owner_id": image.get("OwnerId"),
        }

    def _waiter_attempts(self) -> int:
        if self.max_attempts:
            return int(self.max_attempts)
        if self.poll_interval > 0:
            return max(1, math.ceil(float(self.timeout) / float(self.poll_interval)))
        return 1000

    # ------------------------------------------------------------------------------------ execution
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        image = self._observe()
        if image is not None:
            return self._result(image)
        from phoenix_fleet.operators.inline_wait import WaitFailed, inline_bound, wait_inline
        from phoenix_fleet.triggers.ami_triggers import AmiAvailableTrigger

        try:
            done = wait_inline(
                self._ec2().get_waiter("ImageAvailablePinned"), min(inline_bound(self.inline_wait), float(self.timeout)),
                self.inline_poll_interval, ImageIds=[self.image_id], Owners=self.owners,
            )
        except WaitFailed:
            done = True  # a failure state: observing again raises the error that names it
        if done:
            image = self._observe()
            if image is not None:
                self.log.info("AMI %s is available (polled inline, no deferral)", self.image_id)
                return self._result(image)

        self.log.info(
            "Deferring until AMI %s is available (every %ss, at most %ss)", self.image_id, self.poll_interval, self.timeout
        )
        self.defer(
            trigger=AmiAvailableTrigger(
                image_id=self.image_id,
                owners=self.owners,
                waiter_delay=int(self.poll_interval),
                waiter_max_attempts=self._waiter_attempts(),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        image = self._observe()
        if image is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result(image))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise AirflowException(f"AMI {self.image_id}: the trigger sent no event")
        if event.get("status") != "success":
            message = event.get("message") or "unknown error"
            if event.get("state") in (*FAILED_STATES, "not-found"):
                raise AmiNotAvailableError(message)
            raise AirflowException(f"AMI {self.image_id} did not become available: {message}")
        image = self._observe()  # final, owner-checked look (also: the state the XCom reports)
        if image is None:
            raise AirflowException(f"AMI {self.image_id}: the trigger said available, DescribeImages disagrees")
        return self._result(image)
