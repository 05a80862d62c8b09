"""The sandbox's call log (``/phoenix-sandbox/calls``): every AWS call the server answers, counted at the server,
and :func:`sandbox.call_log.call_rates`, the per-second accounting ``bench/fleet_rollout`` prints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sandbox.call_log import call_rates
from tests.unit.sandbox.test_sandbox_http import call


def test_the_call_log_records_each_answered_call_by_region_service_and_action(sandbox_clean: Any) -> None:
    sandbox_clean.client("ec2", region_name="eu-west-1").describe_instances()  # before recording: not counted
    assert call(sandbox_clean, "calls", "POST", {"enabled": True}) == (200, {"status": "ok", "enabled": True})
    t0 = time.time()
    sandbox_clean.client("ec2", region_name="eu-west-1").describe_instances()
    sandbox_clean.client("autoscaling", region_name="us-west-2").describe_auto_scaling_groups()
    sandbox_clean.client("ssm").get_parameters(Names=["/nope"])  # JSON protocol: the action from X-Amz-Target
    sandbox_clean.client("s3").list_buckets()  # REST: the HTTP method
    with pytest.raises(Exception):  # noqa: B017 - any client error: an answer is counted with its status
        sandbox_clean.client("ec2").describe_images(ImageIds=["ami-00000000000000000"])
    status, log = call(sandbox_clean, "calls")
    assert status == 200 and log["enabled"] is True
    rows = [c[1:] for c in log["calls"]]
    assert rows == [
        ["eu-west-1", "ec2", "DescribeInstances", 200, "sync"],
        ["us-west-2", "autoscaling", "DescribeAutoScalingGroups", 200, "sync"],
        ["us-east-1", "ssm", "GetParameters", 200, "sync"],
        ["us-east-1", "s3", "GET", 200, "sync"],
        ["us-east-1", "ec2", "DescribeImages", 400, "sync"],
    ]
    assert all(t0 - 1 <= c[0] <= time.time() + 1 for c in log["calls"])
    last = log["calls"][1][0]
    assert [c[3] for c in call(sandbox_clean, f"calls?since={last}")[1]["calls"]] == ["GetParameters", "GET", "DescribeImages"]


    async def trigger_like() -> None:  # aiobotocore, as Airflow's triggers call AWS
        import aiobotocore.session

        session = aiobotocore.session.get_session()
        async with session.create_client(
            "ec2", region_name="eu-west-1", endpoint_url=sandbox_clean.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ) as ec2:
            await ec2.describe_instances()

    asyncio.run(trigger_like())
    assert call(sandbox_clean, "calls")[1]["calls"][-1][1:] == ["eu-west-1", "ec2", "DescribeInstances", 200, "async"]
    assert call(sandbox_clean, "calls", "DELETE")[1]["enabled"] is False
    sandbox_clean.client("ec2").describe_instances()
    assert call(sandbox_clean, "calls") == (200, {"enabled": False, "calls": []})
    status, err = call(sandbox_clean, "calls", "POST", {"enabled": "yes"})
    assert status == 400 and "enabled" in err["error"]


def test_call_rates_peak_and_mean_per_region_and_api() -> None:
    calls = [
        [100.0, "us-east-1", "ec2", "DescribeInstances", 200],
        [100.5, "us-east-1", "ec2", "DescribeInstances", 200],
        [100.9, "us-east-1", "autoscaling", "DescribeAutoScalingGroups", 200],
        [101.0, "us-east-1", "ec2", "DescribeInstances", 200],  # the next one-second window
        [103.2, "eu-west-1", "ec2", "DescribeInstances", 200],
        [99.9, "us-east-1", "ec2", "DescribeInstances", 200],  # before start: left out
    ]
    calls = [[*c, "sync"] for c in calls]
    calls[1][5] = "async"
    rates = call_rates(calls, start=100.0, end=104.0)
    assert rates["us-east-1"]["ec2:DescribeInstances"] == {"count": 3, "peak": 2, "mean": 0.75}
    assert rates["us-east-1"]["autoscaling:DescribeAutoScalingGroups"] == {"count": 1, "peak": 1, "mean": 0.25}
    assert rates["us-east-1"]["*"] == {"count": 4, "peak": 3, "mean": 1.0}
    assert rates["eu-west-1"]["*"] == {"count": 1, "peak": 1, "mean": 0.25}
    # default span: the first call's second to the end of the last call's
    assert call_rates(calls[:4])["us-east-1"]["*"] == {"count": 4, "peak": 3, "mean": 2.0}
    assert call_rates([]) == {}
    # one client's calls: the triggerer's (aiobotocore) against its budget
    assert call_rates(calls, start=100.0, end=104.0, client="async") == {
        "us-east-1": {"ec2:DescribeInstances": {"count": 1, "peak": 1, "mean": 0.25}, "*": {"count": 1, "peak": 1, "mean": 0.25}}
    }
    # some services' calls only: the triggers' polls, not S3 (s3fs under the object-storage XCom backend is
    # aiobotocore too)
    calls.append([100.2, "us-east-1", "s3", "GET", 200, "async"])
    assert call_rates(calls, start=100.0, end=104.0, client="async")["us-east-1"]["*"]["count"] == 2
    assert call_rates(calls, start=100.0, end=104.0, client="async", services=("ec2", "autoscaling")) == {
        "us-east-1": {"ec2:DescribeInstances": {"count": 1, "peak": 1, "mean": 0.25}, "*": {"count": 1, "peak": 1, "mean": 0.25}}
    }
