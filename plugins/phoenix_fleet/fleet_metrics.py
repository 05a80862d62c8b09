"""phoenix-fleet's metrics, through Airflow's metrics API (``airflow.sdk.observability.stats``).

Whatever ``[metrics]`` configures (StatsD, DogStatsD, OpenTelemetry) receives them, with Airflow's prefix
(``statsd_prefix``, default ``airflow``) in front: a StatsD server sees ``airflow.phoenix.release.duration``.

=====================================  =======  ===============================================================
``phoenix.release.duration``           timer    a release, from the run's start to its publish (tag ``role``)
``phoenix.rollout.instances_replaced`` counter  instances a rollout task terminated for replacement (tags ``role``,
                                                ``asg``, ``outcome``); a rollback's replacements count too
``phoenix.rollout.rolled_back``        counter  rollouts of an ASG that ended rolled back (tags ``role``, ``asg``)
``phoenix.api.throttled``              counter  throttled AWS answers to the triggerer's polls (tags ``region``, ``service``,
                                                ``operation``; emitted by :mod:`phoenix_fleet.api_limiter`)
``phoenix.inventory.stale``            gauge    instances past max age in the latest inventory (a level, not a count
                                                of events: a gauge)
=====================================  =======  ===============================================================

Tags reach backends that take them (DogStatsD, OpenTelemetry, StatsD with ``statsd_influxdb_enabled``); plain StatsD
drops them. A metric never fails a task: any error emitting one is logged and swallowed.
Import-light: the metrics API is imported when a metric is emitted.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

RELEASE_DURATION = "phoenix.release.duration"
INSTANCES_REPLACED = "phoenix.rollout.instances_replaced"
ROLLED_BACK = "phoenix.rollout.rolled_back"
INVENTORY_STALE = "phoenix.inventory.stale"

log = logging.getLogger(__name__)


def _emit(kind: str, name: str, *args: Any, tags: Mapping[str, Any] | None = None) -> None:
    try:
        from airflow.sdk.observability import stats

        getattr(stats, kind)(name, *args, tags={k: v for k, v in (tags or {}).items() if v is not None})
    except Exception:  # noqa: BLE001 - a metric must never fail the task that emits it
        log.warning("could not emit metric %s", name, exc_info=True)


def release_published(role: str, started_at: dt.datetime | None, now: dt.datetime | None = None) -> None:
    """``phoenix.release.duration``: from ``started_at`` (the release run's start) to ``now``."""
    if started_at is None:
        return
    end = now or dt.datetime.now(dt.UTC)
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=dt.UTC)
    _emit("timing", RELEASE_DURATION, max(end - started_at, dt.timedelta(0)), tags={"role": role})


def rollout_ended(role: str | None, summary: Mapping[str, Any]) -> None:
    """From a rollout task's summary: ``instances_replaced`` += its ``replaced``; ``rolled_back`` += 1 if it
    rolled back. A dry run counts nothing."""
    outcome = str(summary.get("outcome"))
    if outcome == "dry_run":
        return
    tags = {"role": role, "asg": summary.get("asg"), "outcome": outcome}
    replaced = int(summary.get("replaced") or 0)
    if replaced > 0:
        _emit("incr", INSTANCES_REPLACED, replaced, tags=tags)
    if outcome == "rolled_back":
        _emit("incr", ROLLED_BACK, tags={"role": role, "asg": summary.get("asg")})


def inventory_stale(stale: int) -> None:
    """``phoenix.inventory.stale``: instances past max age in the report just written."""
    _emit("gauge", INVENTORY_STALE, int(stale))


__all__ = ["INSTANCES_REPLACED", "INVENTORY_STALE", "RELEASE_DURATION", "ROLLED_BACK", "inventory_stale",
           "release_published", "rollout_ended"]
