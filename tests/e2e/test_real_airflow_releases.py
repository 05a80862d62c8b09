"""Five releases back to back through a real Airflow: every task succeeds on its first try, and each release's
notification reaches the topic from the DAG processor with the operator's notes.

The sandbox answers the canary's status checks and the SSM command after ~2 s of wall-clock time (what made
Airflow 3.3 race a ~2 s deferral: "reported success, but the task instance's state attribute is running", a
task that had succeeded sent to up_for_retry; docs/e2e.md). Those waits now poll on the worker up to a bound
before they defer, so the runs have no deferral to race. Any task that goes up_for_retry or fails stops the
test at once (``RealAirflow.wait_run``); at the end every task instance of every run is checked for try 1.

The rollout DAG stays paused: this is about the release's short waits (the rollout's are tested in
test_real_airflow.py). Role ``worker`` (one region), no weekly schedule (see test_real_airflow.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.airflow_env import airflow_env
from tests.e2e.real_airflow import RealAirflow, fast_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]  # ~4 min unloaded; the shared box at load 16 takes 2-3x

ROLE = "worker"
RELEASE = f"ami_release_{ROLE}"
RELEASES = 5
SHORT_WAIT_SECONDS = 2


@pytest.fixture
def topic(seeded: dict[str, Any], fast_fleet_config: Path) -> dict[str, Any]:
    """An SNS topic with an SQS queue subscribed, named by the role's environment; the role unscheduled."""
    h = seeded["handle"]
    sns, sqs = h.client("sns"), h.client("sqs")
    arn = sns.create_topic(Name="phoenix-releases")["TopicArn"]
    queue = sqs.create_queue(QueueName="phoenix-releases-mail")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)
    raw = yaml.safe_load(fast_fleet_config.read_text())
    raw["roles"][ROLE]["schedule"] = None
    raw["environments"][raw["roles"][ROLE]["env"]]["notify_sns_topic_arn"] = arn
    fast_fleet_config.write_text(yaml.safe_dump(raw))
    return {"arn": arn, "queue": queue, "sqs": sqs}


@pytest.fixture
def real_airflow(seeded: dict[str, Any], topic: dict[str, Any], fast_fleet_config: Path, tmp_path: Path):
    home = tmp_path / "airflow"
    port = free_port()
    env = airflow_env(seeded["handle"].endpoint_url, home=home, api_port=port)
    env["PHOENIX_FLEET_CONFIG"] = str(fast_fleet_config)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[2] / "dags")
    af = RealAirflow(fast_env(env), home, port)
    try:
        af.start()
        yield af
    finally:
        af.stop()


def _messages(topic: dict[str, Any], want: int, timeout: float = 60) -> list[dict[str, str]]:
    """Messages on the queue until ``want`` have arrived (DAG callbacks run a little after the run ends)."""
    out: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for m in topic["sqs"].receive_message(QueueUrl=topic["queue"], MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(m["Body"])
            out.append({"subject": body.get("Subject", ""), "message": body["Message"]})
            topic["sqs"].delete_message(QueueUrl=topic["queue"], ReceiptHandle=m["ReceiptHandle"])
        time.sleep(0.5)
    return out


def test_five_releases_in_a_row_have_no_retry(seeded, topic, real_airflow: RealAirflow):
    h, af = seeded["handle"], real_airflow
    # the sandbox's short waits take wall-clock seconds, as in `make demo` (instant everywhere else in e2e)
    h.update_config(
        instance_status_checks={"seconds": SHORT_WAIT_SECONDS}, ssm_command={"seconds": SHORT_WAIT_SECONDS}
    )
    t0 = time.monotonic()
    af.wait_api(timeout=120)
    af.wait_dags([RELEASE], timeout=120)
    up = time.monotonic() - t0
    af.unpause(RELEASE)
    runs: list[str] = []
    took: list[float] = []
    try:
        for i in range(RELEASES):
            start = time.monotonic()
            run_id = af.trigger(RELEASE, {"release_notes": f"release {i + 1} of {RELEASES}: kernel and openssl"})
            runs.append(run_id)
            af.wait_run(RELEASE, run_id, timeout=400)  # fails at once on any up_for_retry or failed task
            took.append(round(time.monotonic() - start, 1))
        print(f"\nAirflow up in {up:.0f}s; {RELEASES} releases took {took} s")

        versions = []
        for run_id in runs:
            tis = af.api("GET", f"/api/v2/dags/{RELEASE}/dagRuns/{run_id}/taskInstances?limit=200")["task_instances"]
            ran = [ti for ti in tis if ti["state"] != "skipped"]
            assert {ti["state"] for ti in ran} == {"success"}, [(ti["task_id"], ti["state"]) for ti in tis]
            assert [(ti["task_id"], ti["try_number"]) for ti in ran if ti["try_number"] != 1] == [], run_id
            assert {"verify.wait_canary_healthy", "verify.run_image_tests", "publish"} <= {ti["task_id"] for ti in ran}
            logs = af.task_logs(RELEASE, run_id, ["verify.wait_canary_healthy", "verify.run_image_tests"], lines=400)
            assert logs.count("polled inline, no deferral") == 2, logs
            versions.append(af.xcom(RELEASE, run_id, "plan", "version"))
        assert len(set(versions)) == RELEASES, versions

        # each release announced from the DAG processor (its success callback), with the operator's notes
        got = _messages(topic, RELEASES)
        assert sorted(m["subject"] for m in got) == sorted(
            f"[phoenix-fleet] {ROLE} {v}: release succeeded" for v in versions
        ), got
        for i, v in enumerate(versions):
            (m,) = [m for m in got if v in m["subject"]]
            assert f"Operator's notes: release {i + 1} of {RELEASES}: kernel and openssl" in m["message"], m
            assert f"/dags/{RELEASE}/runs/" in m["message"] and "AMIs: us-east-1 ami-" in m["message"], m
    except BaseException:
        for run_id in runs:
            print(af.failure_report(RELEASE, run_id))
        print(af.tails(80))
        raise
