"""A bake outlives its first credentials.

The connection assumes a role (``role_arn``); the sandbox's STS makes every assumed role's credentials last
``CREDENTIAL_SECONDS`` (compressed time: an hour-long bake against one-hour credentials) and refuses requests
signed with expired ones (``ExpiredToken``), as AWS does. The Packer double lingers in its provisioner for
several lifetimes, then creates the AMI, its snapshots' tags, the manifest: every one of those calls needs
credentials younger than the build.

* through the hook's refreshed profile (``credential_process``, kept fresh by the task) the bake succeeds;
* handed a frozen copy of the first credentials (what the hook did before), the same bake fails with
  ``ExpiredToken`` halfway: the control that shows the sandbox really refuses them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from phoenix_fleet.operators.bake_operators import PackerBuildOperator

from tests.helpers.airflow_run import make_context, run_task

CREDENTIAL_SECONDS = 8.0  # long enough that a loaded machine's scheduling delays stay inside the renewal margin
LINGER_SECONDS = 18.0  # more than two lifetimes of the credentials
VERSION = "2026.11.30-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/phoenix-packer"


@pytest.fixture
def build_connection(seeded: Any, packer_env: Any, sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_BUILD", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": sandbox_clean.endpoint_url, "region_name": "us-east-1", "role_arn": ROLE_ARN},
    }))
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_DELAY", str(LINGER_SECONDS))
    sandbox_clean.update_config(sts_credential_seconds=CREDENTIAL_SECONDS)
    return "aws_build"


def _op(**kwargs: Any) -> PackerBuildOperator:
    return PackerBuildOperator(task_id="bake", role="web", version=VERSION, git_sha="abc1234", poll_interval=0,
                               tag_grace_seconds=0, aws_conn_id="aws_build", **kwargs)


def test_a_bake_outlives_its_first_credentials(build_connection: Any, packer_env: Any, sandbox_clean: Any) -> None:
    started = time.monotonic()
    out = run_task(_op(), make_context(run_id="long-bake")).result
    took = time.monotonic() - started
    assert took > LINGER_SECONDS > 2 * CREDENTIAL_SECONDS
    image = sandbox_clean.client("ec2").describe_images(ImageIds=[out["ami_id"]])["Images"][0]
    assert image["State"] == "available"
    assert {t["Key"]: t["Value"] for t in image["Tags"]}["phoenix:version"] == VERSION  # tagged after the linger
    # Packer got the refreshed profile, not a frozen copy of credentials
    build = next(json.loads(line) for line in packer_env.argv_log.read_text().splitlines()
                 if json.loads(line)["argv"][0] == "build")
    env = build["env"]
    assert env.get("AWS_PROFILE") == "phoenix-fleet" and env.get("AWS_CONFIG_FILE")
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)


def test_frozen_credentials_expire_mid_bake(build_connection: Any, packer_env: Any, sandbox_clean: Any) -> None:
    """The control: the first credentials as variables (they win over any profile) die before the build ends."""
    creds = sandbox_clean.client("sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="frozen")["Credentials"]
    frozen = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
              "AWS_SESSION_TOKEN": creds["SessionToken"]}
    with pytest.raises(Exception) as exc:
        run_task(_op(packer_env=frozen), make_context(run_id="frozen-bake"))
    assert "ExpiredToken" in str(exc.value), str(exc.value)[-2000:]
