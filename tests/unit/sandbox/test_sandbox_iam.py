"""IAM access control in the sandbox (sandbox/iam_access.py): off by default; on, every request is authorized against
the caller's IAM policies (the account root key ``testing`` is allowed everything), and every decision is audited
per principal and action."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.iam_access import describe_denials

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": ["ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups"],
         "Resource": "*"},
        # scoped to a resource type: moto does not know EC2 resources, the sandbox lets the action decide
        {"Sid": "Terminate", "Effect": "Allow", "Action": "ec2:TerminateInstances",
         "Resource": "arn:aws:ec2:*:*:instance/*",
         "Condition": {"Null": {"aws:ResourceTag/phoenix:role": "false"}}},
        # S3 resources are known to moto: only this bucket
        {"Sid": "Bucket", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::phoenix-allowed"},
        {"Sid": "Alarms", "Effect": "Allow", "Action": "cloudwatch:DescribeAlarms",
         "Resource": "arn:aws:cloudwatch:*:*:alarm:*"},
    ],
}


def _user(sandbox: Any, name: str = "someone", policy: dict[str, Any] = POLICY) -> dict[str, str]:
    iam = sandbox.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return iam.create_access_key(UserName=name)["AccessKey"]


def _client(sandbox: Any, service: str, key: dict[str, str]) -> Any:
    return boto3.client(
        service, region_name="us-east-1", endpoint_url=sandbox.endpoint_url, aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"], config=Config(retries={"max_attempts": 1}),
    )


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_off_by_default_any_key_is_accepted(sandbox_clean: Any) -> None:
    assert sandbox_clean.config.iam_access_control is False
    stranger = {"AccessKeyId": "AKIAUNKNOWN000000000", "SecretAccessKey": "x"}
    assert _client(sandbox_clean, "ec2", stranger).describe_images(Owners=["self"])["Images"] == []
    assert sandbox_clean.iam_audit() == {"calls": [], "denied": []}


def test_on_the_policy_decides_and_every_refusal_names_principal_and_action(sandbox_clean: Any) -> None:
    key = _user(sandbox_clean)
    s3 = sandbox_clean.client("s3")
    for bucket in ("phoenix-allowed", "phoenix-other"):
        s3.create_bucket(Bucket=bucket)
    sandbox_clean.update_config(iam_access_control=True)
    arn = "arn:aws:iam::123456789012:user/someone"

    ec2 = _client(sandbox_clean, "ec2", key)
    assert ec2.describe_instances()["Reservations"] == []
    with pytest.raises(ClientError) as denied:
        ec2.describe_images(Owners=["self"])
    assert _code(denied) == "UnauthorizedOperation"  # EC2's code, as AWS answers
    assert f"User: {arn} is not authorized to perform: ec2:DescribeImages" in str(denied.value)
    # the resource-scoped statement allows the action (the condition is not evaluated: the instance is unknown)
    with pytest.raises(ClientError) as missing:
        ec2.terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    assert _code(missing) == "InvalidInstanceID.NotFound"

    asg = _client(sandbox_clean, "autoscaling", key)
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    with pytest.raises(ClientError) as denied_asg:
        asg.set_desired_capacity(AutoScalingGroupName="sandbox-web-a", DesiredCapacity=1)
    assert _code(denied_asg) == "AccessDenied"
    assert f"{arn} is not authorized to perform: autoscaling:SetDesiredCapacity" in str(denied_asg.value)

    user_s3 = _client(sandbox_clean, "s3", key)
    user_s3.head_bucket(Bucket="phoenix-allowed")  # HeadBucket is authorized as s3:ListBucket, as on AWS
    assert user_s3.list_objects_v2(Bucket="phoenix-allowed")["KeyCount"] == 0
    with pytest.raises(ClientError) as other_bucket:
        user_s3.list_objects_v2(Bucket="phoenix-other")
    assert _code(other_bucket) == "AccessDenied"

    # CloudWatch signs as "monitoring": authorized as cloudwatch:*
    _client(sandbox_clean, "cloudwatch", key).describe_alarms()

    # the root key is allowed everything, and audited as the root
    assert sandbox_clean.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []

    audit = sandbox_clean.iam_audit()
    calls = {(c["principal"], c["action"]): (c["allowed"], c["denied"]) for c in audit["calls"]}
    assert calls[(arn, "ec2:DescribeInstances")] == (1, 0)
    assert calls[(arn, "s3:ListBucket")] == (2, 1)
    assert calls[(arn, "cloudwatch:DescribeAlarms")] == (1, 0)
    assert calls[("arn:aws:iam::123456789012:root", "autoscaling:DescribeAutoScalingGroups")] == (1, 0)
    assert describe_denials(audit) == [
        f"{arn} may not autoscaling:SetDesiredCapacity (1 call(s): AccessDenied)",
        f"{arn} may not ec2:DescribeImages (1 call(s): AccessDenied)",
        f"{arn} may not s3:ListBucket (1 call(s): AccessDenied)",
    ]


def test_unknown_keys_and_bad_signatures_are_refused(sandbox_clean: Any) -> None:
    key = _user(sandbox_clean)
    sandbox_clean.update_config(iam_access_control=True)
    stranger = {"AccessKeyId": "AKIAUNKNOWN000000000", "SecretAccessKey": "x"}
    with pytest.raises(ClientError) as unknown:
        _client(sandbox_clean, "autoscaling", stranger).describe_auto_scaling_groups()
    assert _code(unknown) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as forged:
        _client(sandbox_clean, "ec2", {**key, "SecretAccessKey": "wrong"}).describe_instances()
    assert _code(forged) == "AuthFailure"
    denied = {(d["principal"], d["action"]) for d in sandbox_clean.iam_audit()["denied"]}
    assert denied == {
        ("unknown access key AKIAUNKNOWN000000000", "autoscaling:DescribeAutoScalingGroups"),
        ("arn:aws:iam::123456789012:user/someone", "ec2:DescribeInstances"),
    }


def test_over_http_switch_read_and_forget_the_audit_and_reset_turns_it_off(sandbox_clean: Any) -> None:
    def call(path: str, method: str = "GET", body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{sandbox_clean.endpoint_url}/phoenix-sandbox/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
        )
        with _OPENER.open(request, timeout=10) as resp:
            return json.loads(resp.read())

    key = _user(sandbox_clean)
    assert call("config", "POST", {"iam_access_control": True})["iam_access_control"] is True
    with pytest.raises(ClientError):
        _client(sandbox_clean, "ec2", key).describe_images(Owners=["self"])
    assert [d["action"] for d in call("iam")["denied"]] == ["ec2:DescribeImages"]
    assert call("iam", "DELETE") == {"status": "ok"}
    assert call("iam") == {"calls": [], "denied": []}
    _client(sandbox_clean, "ec2", key).describe_instances()
    sandbox_clean.reset()
    assert sandbox_clean.config.iam_access_control is False and sandbox_clean.iam_audit()["calls"] == []


def test_delete_objects_is_authorized_per_key_as_aws_does(sandbox_clean: Any) -> None:
    """DeleteObjects (s3fs's delete, e.g. Airflow's XCom purge) needs s3:DeleteObject on each key's ARN: a statement
    scoped to a prefix allows keys under it (moto alone checks the bucket's ARN: refused); a key outside it is
    refused (the whole request here; AWS refuses that key alone) and named in the audit."""
    bucket = "phoenix-prefixed"
    root = sandbox_clean.client("s3")
    root.create_bucket(Bucket=bucket)
    for key in ("xcom/d/r/t/a.gz", "xcom/d/r/t/b.gz", "images/web/manifest.json"):
        root.put_object(Bucket=bucket, Key=key, Body=b"x")
    key = _user(sandbox_clean, "purger", {"Version": "2012-10-17", "Statement": [
        {"Sid": "Purge", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/xcom/*"},
    ]})
    sandbox_clean.update_config(iam_access_control=True)
    s3 = _client(sandbox_clean, "s3", key)

    done = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "xcom/d/r/t/a.gz"}, {"Key": "xcom/d/r/t/b.gz"}]})
    assert sorted(d["Key"] for d in done.get("Deleted", [])) == ["xcom/d/r/t/a.gz", "xcom/d/r/t/b.gz"], done
    refused = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "images/web/manifest.json"}]})
    assert [e["Code"] for e in refused.get("Errors", [])] == ["AccessDenied"] and not refused.get("Deleted"), refused
    assert [o["Key"] for o in root.list_objects_v2(Bucket=bucket)["Contents"]] == ["images/web/manifest.json"]
    denied = sandbox_clean.iam_audit()["denied"]
    assert [(d["action"], d["resource"]) for d in denied] == [
        ("s3:DeleteObject", f"arn:aws:s3:::{bucket}/images/web/manifest.json")
    ], denied
