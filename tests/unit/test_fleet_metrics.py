"""Metrics through Airflow's metrics API, read back from a StatsD listener on localhost (a UDP socket here).

Airflow's StatsD backend is switched on the way a deployment does it (``AIRFLOW__METRICS__STATSD_*``) and
initialised as the task runner does at the start of every task; then the real operators run against the sandbox:
a release is published, a rollout replaces instances, one rolls back, the inventory counts stale instances.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers.airflow_run import make_context, run_task

sys.path.insert(0, str(Path(__file__).resolve().parent / "publish"))  # publish_helpers, as the publish tests do


class StatsdListener:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[str] = []

    def read(self, quiet: float = 0.5) -> list[str]:
        """Every line received so far (a datagram may hold several), waiting until nothing arrives for ``quiet``."""
        self.sock.settimeout(quiet)
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return self.lines
            self.lines += data.decode().splitlines()

    def ours(self) -> list[str]:
        return [line for line in self.read() if line.startswith("airflow.phoenix.")]


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    for key, value in {
        "STATSD_ON": "True", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(sock.getsockname()[1]),
        "STATSD_PREFIX": "airflow", "OTEL_ON": "False",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    # what the task runner does when a task starts (task_runner.main)
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    try:
        yield StatsdListener(sock)
    finally:
        from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        sock.close()


def test_a_rollout_counts_the_instances_it_replaced(sandbox_clean: Any, statsd: StatsdListener) -> None:
    from tests.unit.recycle import recycle_fleet as F

    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, policy={"strategy": "replace", "batch_size": 1, "min_healthy_percent": 75}, inline_wait_seconds=30)
    op.hook = F.scripted_hook()
    assert run_task(op, make_context()).result["replaced"] == 4
    assert statsd.ours() == ["airflow.phoenix.rollout.instances_replaced:4|c"]

    # a dry run replaces nothing and counts nothing
    statsd.lines.clear()
    F.operator(f, dry_run=True).execute(make_context())
    assert statsd.ours() == []


def test_a_rollback_is_counted(sandbox_clean: Any, statsd: StatsdListener) -> None:
    from phoenix_fleet.operators.recycle_operators import SUMMARY_XCOM_KEY, RolloutFailed

    from tests.unit.recycle import recycle_fleet as F

    f = F.build_fleet(sandbox_clean, bad_new=True)  # the new version's instances are unhealthy: roll back
    op = F.operator(f)
    op.hook = F.scripted_hook()
    ctx = make_context()
    with pytest.raises(RolloutFailed, match="rolled back"):
        run_task(op, ctx)
    replaced = ctx["ti"].xcom[SUMMARY_XCOM_KEY]["replaced"]
    assert replaced > 0
    assert sorted(statsd.ours()) == sorted([
        f"airflow.phoenix.rollout.instances_replaced:{replaced}|c", "airflow.phoenix.rollout.rolled_back:1|c",
    ])


def test_the_inventory_reports_its_stale_instances(sandbox_clean: Any, statsd: StatsdListener, tmp_path: Path) -> None:
    from phoenix_fleet.operators.inventory_operators import (
        BuildInventoryReportOperator,
        CollectInventoryOperator,
    )

    from tests.unit.inventory import inventory_fleet as F

    F.build_fleet(sandbox_clean)  # an instance 20 days old: past the 14-day max age
    sandbox_clean.client("s3").create_bucket(Bucket="phoenix-fleet-artifacts")
    snap = run_task(CollectInventoryOperator(task_id="c", region_name="us-east-1"), make_context()).result
    out = run_task(BuildInventoryReportOperator(task_id="r", snapshots=[snap], report_dir=str(tmp_path)), make_context())
    stale = out.result["stale"]
    assert stale >= 1  # the fleet has an instance past max age (how many depends on today's date: ages are real)
    assert statsd.ours() == [f"airflow.phoenix.inventory.stale:{stale}|g"]


def test_a_release_is_timed_from_its_runs_start_to_publish(
    sandbox_clean: Any, statsd: StatsdListener, tmp_path: Path
) -> None:
    from phoenix_fleet.operators.publish_operators import (
        CopyImageToRegionOperator,
        PublishReleaseOperator,
        ReleaseImageOperator,
    )
    from publish_helpers import HOME, bake, fleet_config, make_bucket, outlet_context, today

    cfg = fleet_config(tmp_path, regions=(HOME,), accounts=[])
    make_bucket(sandbox_clean)
    ami = bake(sandbox_clean, version=today(1))
    ctx = outlet_context()
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=42)  # the release run started 42 minutes ago
    ctx["dag_run"] = SimpleNamespace(start_date=started, conf={}, run_id="manual__test")
    rel = run_task(ReleaseImageOperator(task_id="release", role="web", ami_id=ami, config_path=cfg), ctx).result
    copy = run_task(CopyImageToRegionOperator(task_id="copy", ami_id=ami, source_region=HOME, dest_region=HOME), ctx).result
    statsd.lines.clear()
    publish = PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=[copy], config_path=cfg)
    run_task(publish, ctx)
    (line,) = statsd.ours()
    m = re.fullmatch(r"airflow\.phoenix\.release\.duration:([0-9.]+)\|ms", line)
    assert m, line
    assert 42 * 60_000 <= float(m.group(1)) < 50 * 60_000  # milliseconds: 42 minutes and the test's own time
    # publishing the same release again moves nothing: no second release to time
    statsd.lines.clear()
    run_task(PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=[copy], config_path=cfg), ctx)
    assert statsd.ours() == []
