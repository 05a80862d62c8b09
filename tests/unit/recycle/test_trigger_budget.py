"""Triggers draw from the triggerer's shared per-region budget (phoenix_fleet.api_limiter), watched at the sandbox.

Many AsgHealthyTriggers poll one group at once, each as fast as it may (min interval 10 ms): the sandbox's call log
(counted at the server, not by the limiter) shows their calls together held to the budget. A throttled answer,
injected by the sandbox as AWS sends it, is retried, counted, and pauses the limiter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import recycle_fleet as F
import yaml
from phoenix_fleet.api_limiter import limiter_for, limiters, reset_limiters
from phoenix_fleet.rollout import Policy
from phoenix_fleet.triggers.rollout_triggers import AsgHealthyTrigger, policy_to_json

from tests.helpers.airflow_run import first_event
from tests.unit.sandbox.test_sandbox_http import call
from tests.unit.test_fleet_metrics import StatsdListener, statsd  # noqa: F401 - the StatsD listener fixture

FLEET_YAML = Path(__file__).resolve().parents[3] / "include" / "fleet.yaml"
POLICY = Policy(warmup_seconds=0, batch_size=2, max_surge=2, health_signals=frozenset({"asg", "ec2_status"}))


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    reset_limiters()
    yield
    reset_limiters()


def _never_healthy(asg: str, seconds: float) -> AsgHealthyTrigger:
    """Polls until its deadline: the group never runs this image."""
    return AsgHealthyTrigger(
        asg_name=asg, image_id="ami-0000000000000dead", policy=policy_to_json(POLICY),
        deadline=(datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(),
        min_poll_interval=0.01, poll_interval=0.01, region_name=F.REGION,
    )


def test_concurrent_triggers_share_one_budget_per_region(
    sandbox_clean: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 5
    raw = yaml.safe_load(FLEET_YAML.read_text())
    raw["environments"]["sandbox"]["api_budget"] = {"calls_per_second": rate}
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(tmp_path / "fleet.yaml"))  # the triggers read their budget here
    f = F.build_fleet(sandbox_clean)
    assert call(sandbox_clean, "calls", "POST", {"enabled": True})[0] == 200

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(first_event(_never_healthy(f.asg, 2.5), 60) for _ in range(8)))

    started = time.monotonic()
    events = asyncio.run(run_all())
    wall = time.monotonic() - started  # every grant happened inside it
    limiter = limiters()[f"aws_default/{F.REGION}"]
    assert limiter.calls_per_second == rate
    calls = [c for c in call(sandbox_clean, "calls")[1]["calls"] if c[1] == F.REGION]
    call(sandbox_clean, "calls", "DELETE")
    assert all(e.payload["status"] == "error" and "not healthy by the deadline" in e.payload["message"] for e in events)
    # each trigger alone would poll ~100 times a second (2 calls a poll); together they got the budget. Bounded by
    # the run's wall time (not the answers' timestamps, which a busy server may bunch): no timing tolerance needed
    assert len(calls) == limiter.stats.calls >= 8
    assert len(calls) <= rate * wall + 1, (len(calls), wall)
    assert sum(e.payload["calls"] for e in events) == len(calls)


def test_throttled_answers_back_off_and_are_counted(
    sandbox_clean: Any, caplog: pytest.LogCaptureFixture, statsd: StatsdListener,  # noqa: F811 - the fixture
) -> None:
    f = F.build_fleet(sandbox_clean)
    limiter = limiter_for("aws_default", F.REGION, 50.0)
    limiter.backoff_base = 0.2
    sandbox_clean.update_config(api_faults=[{
        "action": "DescribeAutoScalingGroups", "code": "Throttling", "message": "Rate exceeded", "status": 400,
        "times": 2,
    }])
    trigger = AsgHealthyTrigger(
        asg_name=f.asg, image_id=f.old_ami, policy=policy_to_json(POLICY),
        deadline=(datetime.now(UTC) + timedelta(seconds=60)).isoformat(), min_poll_interval=0.01, region_name=F.REGION,
    )
    t0 = limiter._clock()
    event = asyncio.run(first_event(trigger, 60)).payload
    assert event["status"] == "success", event  # botocore retried the throttled calls: the poll went through
    assert limiter.stats.throttled == 2
    assert limiter.paused_until >= t0 + 0.2 + 0.4  # the second throttle in a row doubled the pause
    assert limiter._clock() >= t0 + 0.2 + 0.4 - 0.05  # and the trigger's retries waited it out
    warnings = [r.getMessage() for r in caplog.records if "AWS throttled" in r.getMessage()]
    assert len(warnings) == 2 and "DescribeAutoScalingGroups (Throttling)" in warnings[0]
    assert [line for line in statsd.ours() if "throttled" in line] == ["airflow.phoenix.api.throttled:1|c"] * 2
