"""api_faults: API calls answered with an AWS error, chosen by action, service, region and request parameters."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.realism import ApiFault, RealismConfig

LATEST = "/phoenix/images/web/latest"


def _put(ssm: Any, name: str, value: str = "ami-12c6146b") -> int:
    return ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)["Version"]


def test_a_json_protocol_call_fails_in_one_region_by_parameter_then_passes(sandbox_clean: Any) -> None:
    sandbox_clean.update_config(api_faults=[{
        "service": "ssm", "action": "PutParameter", "region": "us-east-1", "params": {"Name": "*/latest"},
        "code": "AccessDeniedException", "message": "not allowed here", "times": 2,
    }])
    home, eu = sandbox_clean.client("ssm", "us-east-1"), sandbox_clean.client("ssm", "eu-west-1")
    assert _put(eu, LATEST) == 1  # another region: served
    assert _put(home, "/phoenix/images/web/latest-version", "v1") == 1  # another name: served
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            _put(home, LATEST)
        assert exc.value.response["Error"] == {"Code": "AccessDeniedException", "Message": "not allowed here"}
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert home.describe_parameters()["Parameters"][0]["Name"] == "/phoenix/images/web/latest-version"  # not written
    assert _put(home, LATEST) == 1  # times=2: the third call is served


def test_a_query_protocol_call_fails_with_the_services_error_shape(sandbox_clean: Any) -> None:
    sandbox_clean.update_config(api_faults=[
        {"service": "ec2", "action": "CopyImage", "code": "ResourceLimitExceeded", "message": "too many copies"},
        {"action": "DescribeAutoScalingGroups", "code": "Throttling", "status": 400},
    ])
    ec2 = sandbox_clean.client("ec2", "eu-west-1")
    with pytest.raises(ClientError) as exc:
        ec2.copy_image(SourceImageId="ami-12c6146b", SourceRegion="us-east-1", Name="web-copy")
    assert exc.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert exc.value.response["Error"]["Message"] == "too many copies"
    assert ec2.describe_images(Owners=["self"])["Images"] == []  # nothing copied
    with pytest.raises(ClientError, match="Throttling"):
        sandbox_clean.client("autoscaling").describe_auto_scaling_groups()
    sandbox_clean.update_config(api_faults=[])
    assert sandbox_clean.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_faults_are_set_over_http_and_validated(sandbox_clean: Any) -> None:
    url = f"{sandbox_clean.endpoint_url}/phoenix-sandbox/config"
    body = json.dumps({"api_faults": [{"action": "GetParameter", "code": "InternalServerError", "status": 500}]})
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        shown = json.loads(r.read())["api_faults"]
    assert shown == [{"action": "GetParameter", "code": "InternalServerError", "status": 500, "params": {},
                      "message": "phoenix-sandbox: injected API fault"}]
    for bad, message in (
        ({"code": "X"}, "action"),
        ({"action": "A", "status": 200}, "status"),
        ({"action": "A", "times": 0}, "times"),
        ({"action": "A", "params": {"Name": 1}}, "params"),
        ({"action": "A", "when": "now"}, "unknown api fault key"),
    ):
        with pytest.raises(ValueError, match=message):
            RealismConfig().updated({"api_faults": [bad]})
    assert RealismConfig.from_dict(RealismConfig().updated({"api_faults": [{"action": "A"}]}).to_dict()).api_faults == (
        ApiFault(action="A"),
    )
