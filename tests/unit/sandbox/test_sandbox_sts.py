"""Temporary credentials expire in the sandbox, as on AWS (moto accepts them forever): a request signed with an
expired STS credential is refused with ExpiredToken, in each protocol's shape; ``sts_credential_seconds``
compresses their life for tests."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/phoenix-build"


def clients(sandbox: Any, creds: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """boto3 clients sharing one credentials object (made first: making clients is slow on a busy machine, and
    the credentials' few seconds must be spent on calls); :func:`use` puts issued credentials in it."""
    import botocore.credentials
    import botocore.session

    shared = botocore.credentials.Credentials("placeholder", "placeholder", "placeholder")
    core = botocore.session.get_session()
    core._credentials = shared
    session = boto3.Session(botocore_session=core, region_name="us-east-1")
    config = Config(retries={"max_attempts": 1})
    made = {s: session.client(s, endpoint_url=sandbox.endpoint_url, config=config)
            for s in ("ec2", "s3", "ssm", "autoscaling", "sts")}
    if creds is not None:
        use(shared, creds)
    return made, shared


def use(shared: Any, creds: dict[str, Any]) -> None:
    shared.access_key, shared.secret_key, shared.token = creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]


def calls(c: dict[str, Any]) -> dict[str, Any]:
    """One call per protocol: EC2 (ec2 query), S3 (rest-xml), SSM (JSON), AutoScaling and STS (query)."""
    return {
        "ec2": lambda: c["ec2"].describe_instances(),
        "s3": lambda: c["s3"].list_buckets(),
        "ssm": lambda: c["ssm"].describe_parameters(),
        "autoscaling": lambda: c["autoscaling"].describe_auto_scaling_groups(),
        "sts": lambda: c["sts"].get_caller_identity(),
    }


def test_expired_credentials_are_refused_in_every_protocol(sandbox_clean: Any) -> None:
    sandbox_clean.update_config(sts_credential_seconds=4)
    c, shared = clients(sandbox_clean)
    plain, _ = clients(sandbox_clean, {"AccessKeyId": "testing", "SecretAccessKey": "testing", "SessionToken": "t"})
    for call in calls(plain).values():  # moto's first call of a service loads its defaults (seconds, when busy)
        call()
    issued = sandbox_clean.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="bake", DurationSeconds=3600)
    creds = issued["Credentials"]
    assert 0 < creds["Expiration"].timestamp() - time.time() <= 4.1  # compressed: 4 s, not the hour asked
    use(shared, creds)
    for call in calls(c).values():
        call()  # valid while fresh
    time.sleep(max(0.0, creds["Expiration"].timestamp() - time.time()) + 0.5)
    for name, call in calls(c).items():
        with pytest.raises(ClientError) as exc:
            call()
        code = exc.value.response["Error"]["Code"]
        assert code in ("ExpiredToken", "ExpiredTokenException"), (name, exc.value.response)
    # new credentials work again; other callers (the sandbox's plain keys) were never affected
    fresh = sandbox_clean.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="bake")["Credentials"]
    use(shared, fresh)
    c["ec2"].describe_instances()
    sandbox_clean.client("ec2").describe_instances()


def test_credentials_last_as_long_as_asked_without_compression(sandbox_clean: Any) -> None:
    creds = sandbox_clean.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="bake", DurationSeconds=900)[
        "Credentials"
    ]
    left = (creds["Expiration"].timestamp() - time.time())
    assert 850 < left <= 900
    time.sleep(0.5)
    clients(sandbox_clean, creds)[0]["ec2"].describe_instances()


def test_the_setting_is_validated(sandbox_clean: Any) -> None:
    from sandbox.realism import RealismConfig

    with pytest.raises(ValueError, match="sts_credential_seconds must be a number > 0 or null"):
        RealismConfig().updated({"sts_credential_seconds": 0})
    assert RealismConfig().updated({"sts_credential_seconds": 2}).to_dict()["sts_credential_seconds"] == 2
