"""The project's principals in the sandbox (sandbox/iam_principals.py) and the IAM-enforced test helper
(tests/helpers/iam_enforced.py): each user holds only its policy of include/iam/, and a refused call fails the test
naming the principal and the action."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


def _client(sandbox: Any, service: str, key: dict[str, str]) -> Any:
    return boto3.client(
        service, region_name="us-east-1", endpoint_url=sandbox.endpoint_url, aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"], config=Config(retries={"max_attempts": 1}),
    )


def test_the_project_principals_hold_only_their_policy(sandbox_clean: Any) -> None:
    """create_principals: one user per include/iam/ policy; the worker may not build images, Packer may."""
    from sandbox.iam_principals import create_principals

    principals = create_principals(sandbox_clean.client)
    assert set(principals) == {"worker", "terraform", "packer"}
    iam = sandbox_clean.client("iam")
    for p in principals.values():
        attached = iam.list_attached_user_policies(UserName=p.user_name)["AttachedPolicies"]
        assert [a["PolicyName"] for a in attached] == [f"{p.user_name}-policy"]
        assert iam.list_user_policies(UserName=p.user_name)["PolicyNames"] == []
    again = create_principals(sandbox_clean.client)  # a rerun finds the users and holds the current files
    assert again["worker"].arn == principals["worker"].arn
    sandbox_clean.update_config(iam_access_control=True)

    def ec2(name: str) -> Any:
        p = principals[name]
        return _client(sandbox_clean, "ec2", {"AccessKeyId": p.access_key_id, "SecretAccessKey": p.secret_access_key})

    with pytest.raises(ClientError) as worker_bakes:
        ec2("worker").create_key_pair(KeyName="packer_x")
    assert "phoenix-worker is not authorized to perform: ec2:CreateKeyPair" in str(worker_bakes.value)
    ec2("packer").create_key_pair(KeyName="packer_x")
    with pytest.raises(ClientError) as packer_shares:
        ec2("packer").describe_launch_templates()
    assert "phoenix-packer is not authorized to perform: ec2:DescribeLaunchTemplates" in str(packer_shares.value)


def test_an_enforced_test_fails_naming_the_action_and_the_principal(sandbox_clean: Any, monkeypatch: Any) -> None:
    """tests/helpers/iam_enforced.py: a call outside the policies fails the test even if the code caught the error."""
    from tests.helpers.iam_enforced import assert_no_denials, enforce_iam

    enforce_iam(sandbox_clean, monkeypatch)
    # a new session reads the environment now (boto3.client reuses the default session, whose credentials an
    # earlier test may have resolved and cached)
    worker = boto3.session.Session().client(
        "autoscaling", endpoint_url=sandbox_clean.endpoint_url, region_name="us-east-1"
    )
    assert worker.describe_auto_scaling_groups()["AutoScalingGroups"] == []  # the worker's env credentials
    try:
        worker.create_launch_configuration(LaunchConfigurationName="x", ImageId="ami-12c6146b", InstanceType="t3.small")
    except ClientError:
        pass  # swallowed, as careless code would
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_no_denials(sandbox_clean)
    assert ("arn:aws:iam::123456789012:user/phoenix-worker may not autoscaling:CreateLaunchConfiguration"
            in str(failed.value))
