"""Auto Scaling changes are applied one at a time, as AWS orders the changes of a group: moto's DetachInstances
(under TerminateInstanceInAutoScalingGroup) reads desired and the member list, then writes both back, so two
concurrent terminations in one group would lose a decrement. docs/sandbox.md."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest


def test_concurrent_terminations_in_one_group_each_take_their_decrement(sandbox_clean: Any, monkeypatch: Any) -> None:
    from moto.ec2.models import EC2Backend

    from tests.unit.recycle import recycle_fleet as F

    F.build_fleet(sandbox_clean, desired=6, max_size=8)
    victims = sorted(F.fleet_images(sandbox_clean))[:4]
    slow = EC2Backend.delete_tags

    def delete_tags(self: Any, *args: Any, **kwargs: Any) -> Any:  # widens moto's read-modify-write window
        time.sleep(0.05)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(EC2Backend, "delete_tags", delete_tags)
    asg = sandbox_clean.client("autoscaling", region_name=F.REGION)
    errors: list[BaseException] = []

    def terminate(instance_id: str) -> None:
        try:
            asg.terminate_instance_in_auto_scaling_group(InstanceId=instance_id, ShouldDecrementDesiredCapacity=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=terminate, args=(i,)) for i in victims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    g = F.group(sandbox_clean)
    members = {i["InstanceId"] for i in g["Instances"]}
    assert g["DesiredCapacity"] == 2, "a concurrent termination lost its decrement"
    assert not members & set(victims) and len(members) == 2


@pytest.mark.parametrize("action", ["DescribeAutoScalingGroups", "DescribeAutoScalingInstances"])
def test_only_autoscaling_writes_take_the_lock_not_its_describes(action: str) -> None:
    from sandbox.server import _is_autoscaling_write

    def environ(service: str, body: str) -> dict[str, Any]:
        import io

        return {"HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/{service}/aws4_request",
                "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body.encode()), "QUERY_STRING": ""}

    assert _is_autoscaling_write(environ("autoscaling", f"Action={action}&Version=2011-01-01")) is False
    assert _is_autoscaling_write(environ("autoscaling", "Action=SetDesiredCapacity&Version=2011-01-01")) is True
    assert _is_autoscaling_write(environ("ec2", "Action=TerminateInstances&Version=2016-11-15")) is False
