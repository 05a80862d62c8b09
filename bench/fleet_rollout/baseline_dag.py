"""bench_reschedule_rollout: the baseline of bench/fleet_rollout, what a plain-Airflow user would write.

The same recycle of every ASG of the role (the same rollout code, the same policy from the fleet config: the role's
``rollout:`` block), mapped over the targets in the run's conf at ``max_active_tis_per_dagrun`` ASGs at a time, but
every wait is a poke of a sensor in ``reschedule`` mode: the sensor runs one step of the rollout (observe, plan, act)
and, where phoenix would defer (or poll inline), it returns False; the task gives its worker slot back and Airflow
starts it again ``poke_interval`` seconds later, from scratch (the rollout resumes from its tags on the ASG).

Conf: ``{"targets": [{"asg_name", "region_name", "target_image_id"}], "concurrency": N, "poke_interval": S,
"role": R}``. Copied into the benchmark's own dags folder; not part of the project's DAGs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue

SETTINGS = json.loads(os.environ.get("PHOENIX_BENCH_BASELINE", "{}") or "{}")


class _Waiting(BaseException):  # noqa: N818 - not an error: a wait the sensor answers with "not yet"
    """Raised where the rollout would wait; a BaseException so the rollout's error handling lets it through."""


class RecycleStepSensor(BaseSensorOperator):
    """One step of AsgRecycleOperator's rollout per poke; done when the rollout ends."""

    template_fields = ("asg_name", "region_name", "target_image_id", "rollout_id")

    def __init__(
        self, *, asg_name: str, region_name: str, target_image_id: str, role: str, rollout_id: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.asg_name = asg_name
        self.region_name = region_name
        self.target_image_id = target_image_id
        self.role = role
        self.rollout_id = rollout_id

    def poke(self, context: Any) -> Any:
        from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator

        class Step(AsgRecycleOperator):
            def _wait(self, rid: Any, wait: Any, obs: Any, record: Any, policy: Any, carry: Any, *,
                      inline_only: bool = False) -> None:
                if inline_only:  # a safe halt's own waits: as the operator does them
                    return super()._wait(rid, wait, obs, record, policy, carry, inline_only=True)
                raise _Waiting(wait.reason)

        step = Step(
            task_id=self.task_id, asg_name=self.asg_name, region_name=self.region_name,
            target_image_id=self.target_image_id, role=self.role, rollout_id=self.rollout_id,
            deferrable=False, inline_wait_seconds=0,
        )
        try:
            result = step.execute(context)
        except _Waiting as waiting:
            self.log.info("%s: not yet (%s): rescheduled in %ss", self.asg_name, waiting, self.poke_interval)
            return False
        return PokeReturnValue(is_done=True, xcom_value=result)


with DAG(
    dag_id="bench_reschedule_rollout",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["bench"],
    doc_md=__doc__,
    default_args={"owner": "bench", "retries": 0},
):

    @task
    def targets(dag_run: Any = None) -> list[dict[str, Any]]:
        return list(dag_run.conf["targets"])

    RecycleStepSensor.partial(
        task_id="recycle", role=SETTINGS.get("role", "fleet"), rollout_id="bench:{{ run_id }}",
        mode="reschedule", poke_interval=float(SETTINGS.get("poke_interval", 10)),
        timeout=2 * 3600, max_active_tis_per_dagrun=int(SETTINGS.get("concurrency", 20)),
    ).expand_kwargs(targets())
