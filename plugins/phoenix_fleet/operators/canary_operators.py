"""CanaryRollbackOperator: after a canary whose approval was rejected or never answered, put its group back.

``fleet_rollout_<role>`` runs one batch on the first ASG (the canary, ``AsgRecycleOperator(max_batches=1)``), which
stops healthy and leaves the group locked by the rollout id: processes suspended, max size raised, its new instances
on the new image, for the recycle task to resume after the approval. When the approval fails (``fail_on_reject``)
or times out, nothing resumes it: this operator (the DAG's ``canary_rollback`` task, after ``canary_needs_rollback``:
``one_failed`` on ``approval``, and only if the canary ran) turns that rollout into a rollback and runs it to the end with the recycle engine itself:

* the record in phase ``forward`` becomes ``rollback`` (``RolloutRecord.for_rollback``: the previous image and
  launch-template version are the target now; the rollback gets the policy's full deadline), or, with nothing to
  roll back to, ``failed`` (halt: capacity and processes restored, the group stays locked for a human);
* the same reconcile loop then points the group back at its previous launch-template version, replaces the
  canary's instances batch by batch without going below the floor, restores desired/min/max and the suspended
  processes, and deletes the record (the lock);
* the result (the task's return value) says what it did, for the run's notification: ``{"asg", "outcome":
  "rolled_back" | "halted" | "nothing", "from_image", "to_image", "replaced", "capacity", "message"}``.

It acts only on a record of *its own* rollout id: no record (the canary rolled itself back, or never started), a
record of another rollout, or a dry run: nothing to do, it says so. A record already in phase ``rollback`` is
resumed; one in phase ``failed`` (halted, waiting for a human) is left alone.

Import-light: only ``airflow.sdk`` and the recycle operator's module at module level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from phoenix_fleet.operators.operator_args import as_bool
from phoenix_fleet.operators.recycle_operators import PAUSED_TAG, AsgRecycleOperator, RolloutFailed, _rollout


class CanaryRollbackOperator(AsgRecycleOperator):
    """Roll the canary of ``rollout_id`` on ``asg_name`` back (see the module docstring).

    :param reason: why (kept in the record and the result), e.g. "the approval was rejected or not answered".
    Every other argument is :class:`AsgRecycleOperator`'s (the same ``role``, ``policy`` and ``rollout_id`` as the
    canary's; ``target_image_id`` is the canary's target, only to name it).
    """

    template_fields: Sequence[str] = (*AsgRecycleOperator.template_fields, "reason")
    ui_color = "#ffd6d6"

    def __init__(self, *, reason: str = "the approval was rejected or not answered", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: Context) -> Any:
        R = _rollout()
        rid = self._rid(context)
        obs = self._observe()
        if obs.record_error:
            raise AirflowFailException(
                f"{self.asg_name}: the rollout tags are malformed ({obs.record_error}); the canary cannot be rolled "
                "back. Fix: look at the group, restore it by hand, then delete its phoenix:rollout:* tags"
            )
        record = obs.record
        if as_bool(self.dry_run):
            return self._result(obs, "nothing", "dry run: the canary changed nothing, so there is nothing to roll back")
        if record is None or record.rollout_id != rid:
            holder = f" (it is locked by another rollout, {record.rollout_id}: left alone)" if record else ""
            if obs.tags.get(PAUSED_TAG) == rid:
                self.hook.delete_tags(self.asg_name, [PAUSED_TAG])
            return self._result(
                obs, "nothing",
                f"no canary of rollout {rid} holds the group{holder}: nothing to roll back (it ended, rolled itself "
                "back, or never started)",
            )
        if record.phase == R.FAILED:
            return self._result(
                obs, "halted",
                f"the canary of rollout {rid} already halted ({record.reason}); capacity and processes were restored "
                "and the group stays locked for a human. Fix: look at the group, then delete its phoenix:rollout:* tags",
            )
        reason = str(self.reason or "the approval was rejected or not answered")
        if record.phase == R.FORWARD:
            now = obs.state.now
            if record.previous_image:
                self.log.warning("%s: rolling the canary of %s back: %s", self.asg_name, rid, reason)
                self._persist(obs.tags, record.for_rollback(now, f"canary abandoned: {reason}"))
            else:
                self.log.warning("%s: %s, and no version to roll back to is known: halting the canary of %s "
                                 "(capacity and processes restored, the group stays locked)", self.asg_name, reason, rid)
                self._persist(obs.tags, record.halted(now, f"halted: canary abandoned ({reason}), nothing to roll "
                                                           "back to"))
        if obs.tags.get(PAUSED_TAG) == rid:
            self.hook.delete_tags(self.asg_name, [PAUSED_TAG])
        carry: dict[str, Any] = {
            "batches": 0, "terminated": 0, "launched": 0, "steps": 0, "defers": 0, "inline_polls": 0,
            "trigger_polls": 0, "trigger_calls": 0, "resumed": True, "from_image": record.target_image,
            "to_image": record.previous_image or record.target_image, "rollback_reason": reason,
        }
        if record.phase == R.ROLLBACK:
            carry.update(from_image=record.previous_image, to_image=record.target_image)
        return self._run(context, rid, carry)

    # the loop (also after each deferral) ends in Done(rolled_back), which the recycle engine reports by raising
    # RolloutFailed: here that is the success this task is for

    def _summary(self, context: Context, obs: Any, record: Any, carry: Any, outcome: str, message: str,
                 **kwargs: Any) -> dict[str, Any]:
        summary = super()._summary(context, obs, record, carry, outcome, message, **kwargs)
        self._last_summary = summary
        return summary

    def _run(self, context: Context, rid: str, carry: dict[str, Any]) -> Any:
        try:
            result = super()._run(context, rid, carry)
        except RolloutFailed as exc:
            summary = getattr(self, "_last_summary", None) or {}
            if summary.get("outcome") != "rolled_back":
                raise AirflowFailException(
                    f"{self.asg_name}: the canary of rollout {rid} could not be rolled back: {exc}"
                ) from None
            obs = self._observe(resolve=False)
            return self._result(
                obs, "rolled_back",
                f"rolled back to {summary.get('to_image')} ({carry.get('rollback_reason')}): "
                f"{summary.get('replaced')} canary instance(s) replaced, back on its previous launch-template version; "
                f"capacity desired={obs.state.desired} min={obs.state.min_size} max={obs.state.max_size} and "
                f"processes restored; the lock released",
                replaced=int(summary.get("replaced") or 0), from_image=summary.get("from_image"),
                to_image=summary.get("to_image"),
            )
        return result  # pragma: no cover - a rollback ends in Done(rolled_back) or a failure

    def _result(self, obs: Any, outcome: str, message: str, **extra: Any) -> dict[str, Any]:
        state = obs.state
        out = {
            "asg": self.asg_name,
            "outcome": outcome,
            "from_image": None,
            "to_image": None,
            "replaced": 0,
            "final_images": dict(Counter(i.image_id for i in state.live)),
            "capacity": {"desired": state.desired, "min": state.min_size, "max": state.max_size},
            "message": message,
            **extra,
        }
        log = self.log.warning if outcome == "rolled_back" else self.log.info
        log("%s: %s", self.asg_name, message)
        return out
