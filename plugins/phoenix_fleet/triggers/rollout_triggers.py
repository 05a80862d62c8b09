"""Triggers of the rolling recycle: cheap pollers that hold no business logic.

``AsgRolloutWaitTrigger``
    Polls one AutoScaling group for the ``Wait`` the planner returned and yields as soon as the pure
    predicate ``phoenix_fleet.rollout.wait_over(wait, state, record, policy)`` holds (the planner would now do
    something else, or the wait's ``until`` passed), or when the rollout record in the group's tags is no
    longer ours. Timer waits (warmup, soak) are polled too: a failure during a soak ends the wait at once.
``AsgHealthyTrigger``
    Polls the group until the pure ``phoenix_fleet.rollout.fleet_healthy`` says it is at desired
    capacity with every instance healthy (on the image, when given), or its deadline passes.
``InstanceRefreshTrigger``
    The provider's ``AwsBaseWaiterTrigger`` on our botocore waiter ``InstanceRefreshComplete``
    (``phoenix_fleet/waiters/autoscaling.json``) for the ``instance-refresh`` strategy.

The pollers observe through **aiobotocore** (``AsgHook.async_observe``: the same batched calls as the
operator's boto3 observation, run concurrently): ``DescribeAutoScalingGroups`` + ``DescribeInstanceStatus``
per 100 instances + ``DescribeTargetHealth`` per target group (+ ``DescribeAlarms`` with alarms) per poll;
``DescribeInstances`` only for instances the operator had not seen (``known``).

**Adaptive interval:** the pause between two polls grows with the time already waited,
``clamp(poll_backoff * waited, min_poll_interval, poll_interval)``, and never sleeps past the wait's ``until``.
A short wait is detected within a fraction of a second; a long one costs few calls; the overshoot stays
around ``poll_backoff`` (10 %) of the wait.

Every event carries back the ``carry`` dict the operator gave (its resume data: counters, start) plus
``polls``, ``calls`` and ``waited_seconds``: the task resumes from the event payload alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from phoenix_fleet.hooks.asg_hook import AsgHook, AsgNotFoundError, Observation
from phoenix_fleet.rollout import Policy, Wait, WaitFor, fleet_healthy, wait_over

#: consecutive failed observations before a poller gives up with an error event
MAX_ERRORS = 5


# ------------------------------------------------------------------------------------------------------
# JSON forms of the planner's values (trigger kwargs must serialize)


def policy_to_json(policy: Policy) -> dict[str, Any]:
    data = asdict(policy)
    data["health_signals"] = sorted(policy.health_signals)
    data["alarms"] = list(policy.alarms)
    data["suspend_processes"] = list(policy.suspend_processes)
    return data


def policy_from_json(data: Mapping[str, Any]) -> Policy:
    data = dict(data)
    data["health_signals"] = frozenset(data.get("health_signals") or ())
    data["alarms"] = tuple(data.get("alarms") or ())
    data["suspend_processes"] = tuple(data.get("suspend_processes") or ())
    return Policy(**data)


def wait_to_json(wait: Wait) -> dict[str, Any]:
    return {
        "condition": wait.condition.value,
        "reason": wait.reason,
        "until": wait.until.astimezone(UTC).isoformat(),
        "instance_ids": list(wait.instance_ids),
    }


def wait_from_json(data: Mapping[str, Any]) -> Wait:
    return Wait(
        condition=WaitFor(data["condition"]),
        reason=str(data.get("reason", "")),
        until=datetime.fromisoformat(data["until"]),
        instance_ids=tuple(data.get("instance_ids") or ()),
    )


def known_to_json(known: Mapping[str, tuple[str, datetime]]) -> dict[str, list[str]]:
    return {iid: [image, t.astimezone(UTC).isoformat()] for iid, (image, t) in known.items()}


def known_from_json(data: Mapping[str, Any] | None) -> dict[str, tuple[str, datetime]]:
    return {iid: (str(v[0]), datetime.fromisoformat(v[1])) for iid, v in (data or {}).items()}


def next_interval(waited: float, *, min_interval: float, max_interval: float, backoff: float, left: float | None) -> float:
    """The pause before the next poll: grows with the time waited, never past the horizon (``left``)."""
    pause = min(max_interval, max(min_interval, backoff * waited))
    if left is not None:
        pause = min(pause, max(0.0, left))
    return max(0.0, pause)


# ------------------------------------------------------------------------------------------------------
# the pollers


class _AsgPollTrigger(BaseTrigger):
    """Observe the group with an adaptive interval until ``check`` returns an event or the deadline passes."""

    def __init__(
        self,
        *,
        asg_name: str,
        policy: Mapping[str, Any],
        deadline: str,
        poll_interval: float = 15.0,
        min_poll_interval: float = 1.0,
        poll_backoff: float = 0.1,
        known: Mapping[str, Any] | None = None,
        carry: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.asg_name = asg_name
        self.policy = dict(policy)
        self.deadline = deadline
        self.poll_interval = float(poll_interval)
        self.min_poll_interval = float(min_poll_interval)
        self.poll_backoff = float(poll_backoff)
        self.known = dict(known or {})
        self.carry = dict(carry or {})
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def _fields(self) -> dict[str, Any]:
        return {
            "asg_name": self.asg_name,
            "policy": self.policy,
            "deadline": self.deadline,
            "poll_interval": self.poll_interval,
            "min_poll_interval": self.min_poll_interval,
            "poll_backoff": self.poll_backoff,
            "known": self.known,
            "carry": self.carry,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._fields()

    def hook(self) -> AsgHook:
        return AsgHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )

    @property
    def deadline_at(self) -> datetime:
        return datetime.fromisoformat(self.deadline)

    def services(self, policy: Policy) -> list[str]:
        out = ["autoscaling", "ec2"]
        if policy.uses("elb"):
            out.append("elbv2")
        if policy.uses("alarms") and policy.alarms:
            out.append("cloudwatch")
        return out

    def check(self, obs: Observation, policy: Policy) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_deadline(self, obs: Observation | None, policy: Policy) -> dict[str, Any]:
        return {"status": "success", "outcome": "deadline"}

    def _event(self, payload: dict[str, Any], polls: int, calls: int, start: float) -> TriggerEvent:
        payload = {
            **payload,
            "asg_name": self.asg_name,
            "polls": polls,
            "calls": calls,
            "waited_seconds": round(time.monotonic() - start, 3),
            "carry": self.carry,
        }
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # the event is built inside the clients' context and yielded after it closed: the triggerer drops
        # the generator after the first event
        event = await self._poll()
        yield event

    async def _poll(self) -> TriggerEvent:
        policy = policy_from_json(self.policy)
        hook = self.hook()
        hook.known = known_from_json(self.known)
        start = time.monotonic()
        polls = errors = 0
        obs: Observation | None = None
        async with hook.async_clients(self.services(policy)) as clients:
            while True:
                try:
                    obs = await hook.async_observe(clients, self.asg_name, policy, resolve_launch_template=False)
                    polls += 1
                    errors = 0
                except AsgNotFoundError as exc:
                    return self._event({"status": "error", "message": str(exc)}, polls, hook.calls, start)
                except Exception as exc:  # AWS or network trouble past botocore's own retries
                    errors += 1
                    self.log.warning("Observing %s failed (%d in a row): %s", self.asg_name, errors, exc)
                    if errors >= MAX_ERRORS:
                        message = f"observing AutoScaling group {self.asg_name} failed {errors} times in a row: {exc}"
                        return self._event({"status": "error", "message": message}, polls, hook.calls, start)
                if obs is not None and errors == 0:
                    payload = self.check(obs, policy)
                    if payload is not None:
                        return self._event(payload, polls, hook.calls, start)
                left = (self.deadline_at - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    return self._event(self.on_deadline(obs, policy), polls, hook.calls, start)
                await asyncio.sleep(
                    next_interval(
                        time.monotonic() - start,
                        min_interval=self.min_poll_interval,
                        max_interval=self.poll_interval,
                        backoff=self.poll_backoff,
                        left=left,
                    )
                )


class AsgRolloutWaitTrigger(_AsgPollTrigger):
    """Yield when the planner's ``Wait`` is over (``wait_over``) or the record is no longer ``rollout_id``'s.

    Events: ``{"status": "success", "outcome": "over" | "deadline" | "record-changed", "polls",
    "calls", "waited_seconds", "carry"}`` or ``{"status": "error", "message", ...}``.

    :param wait: the planner's Wait as JSON (``wait_to_json``); its ``until`` is the deadline.
    :param rollout_id: the rollout whose record (in the group's tags) the wait belongs to.
    """

    def __init__(self, *, rollout_id: str, wait: Mapping[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("deadline", str(wait["until"]))
        super().__init__(**kwargs)
        self.rollout_id = rollout_id
        self.wait = dict(wait)

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "rollout_id": self.rollout_id, "wait": self.wait}

    def check(self, obs: Observation, policy: Policy) -> dict[str, Any] | None:
        record = obs.record
        if record is None or record.rollout_id != self.rollout_id:
            return {"status": "success", "outcome": "record-changed"}
        if wait_over(wait_from_json(self.wait), obs.state, record, policy):
            return {"status": "success", "outcome": "over"}
        return None


class AsgHealthyTrigger(_AsgPollTrigger):
    """Yield once the group is at desired capacity and every instance passes the health gate (on
    ``image_id`` when given): ``{"status": "success", "message"}``; at the deadline ``{"status": "error",
    "message"}`` with the last reason it was not healthy."""

    def __init__(self, *, image_id: str | None = None, skipped: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_id = image_id
        self.skipped = list(skipped or [])  # instances the rollout skipped by policy: may stay on another image

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "image_id": self.image_id, "skipped": self.skipped}

    def check(self, obs: Observation, policy: Policy) -> dict[str, Any] | None:
        ok, message = fleet_healthy(obs.state, policy, self.image_id, skipped=self.skipped)
        self._last = message
        return {"status": "success", "message": message} if ok else None

    def on_deadline(self, obs: Observation | None, policy: Policy) -> dict[str, Any]:
        last = getattr(self, "_last", "never observed")
        return {"status": "error", "message": f"{self.asg_name} not healthy by the deadline: {last}"}


# ------------------------------------------------------------------------------------------------------
# instance refresh (strategy instance-refresh): a botocore waiter


class InstanceRefreshTrigger(AwsBaseWaiterTrigger):
    """Wait for one instance refresh with the waiter ``InstanceRefreshComplete``.

    Events: ``{"status": "success", "instance_refresh_id"}`` or ``{"status": "error", "instance_refresh_id",
    "message", "refresh_status", "status_reason"}`` (``refresh_status`` is e.g. ``RollbackSuccessful``; None
    when the waiter ran out of attempts or AWS answered with an error).
    """

    aws_hook_class = AsgHook

    def __init__(
        self,
        *,
        asg_name: str,
        instance_refresh_id: str,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 240,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"asg_name": asg_name, "instance_refresh_id": instance_refresh_id},
            waiter_name="InstanceRefreshComplete",
            waiter_args={"AutoScalingGroupName": asg_name, "InstanceRefreshIds": [instance_refresh_id]},
            failure_message=f"instance refresh {instance_refresh_id} of {asg_name} did not succeed",
            status_message=f"instance refresh {instance_refresh_id} of {asg_name}: status, percent complete",
            status_queries=["InstanceRefreshes[0].Status", "InstanceRefreshes[0].PercentageComplete"],
            return_key="instance_refresh_id",
            return_value=instance_refresh_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.asg_name = asg_name
        self.instance_refresh_id = instance_refresh_id

    def _event_from_exception(self, error: Any) -> TriggerEvent:
        last = getattr(error, "last_response", None)
        refreshes = (last or {}).get("InstanceRefreshes") or [] if isinstance(last, dict) else []
        refresh = refreshes[0] if refreshes else {}
        status = refresh.get("Status")
        reason = refresh.get("StatusReason")
        message = str(error)
        if status:
            message = f"instance refresh {self.instance_refresh_id} of {self.asg_name} ended {status}" + (
                f": {reason}" if reason else ""
            )
        elif isinstance(last, dict) and "InstanceRefreshes" in last:
            message = f"instance refresh {self.instance_refresh_id} of {self.asg_name} not found"
        return TriggerEvent(
            {
                "status": "error",
                "instance_refresh_id": self.instance_refresh_id,
                "message": message,
                "refresh_status": status,
                "status_reason": reason,
            }
        )
