"""The project's IAM principals in the sandbox: one IAM user per policy of ``include/iam/``, holding only it.

``create_principals(client_factory)`` makes (or finds) the users ``phoenix-worker``, ``phoenix-terraform`` and
``phoenix-packer``, each with the customer managed policy of its file attached and nothing else, and returns an
access key per user. With ``iam_access_control`` on (``sandbox/iam_access.py``) every request those keys sign
is authorized against that policy alone. ``connection(...)`` is the Airflow connection (the JSON form of
``AIRFLOW_CONN_*``) that signs as one of them.

Who runs as whom (the connections in ``include/fleet.yaml`` / the operators):

=============  ==============================  ===================================================================
principal      policy                          runs
=============  ==============================  ===================================================================
``worker``     ``include/iam/worker.json``     every Airflow task (the DAGs' AWS connection)
``terraform``  ``include/iam/terraform.json``  ``terraform plan/apply`` of TerraformApplyOperator
                                               (``roles.<role>.terraform.aws_conn_id``)
``packer``     ``include/iam/packer.json``     the Packer amazon-ebs build (``roles.<role>.image.packer_aws_conn_id``)
=============  ==============================  ===================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO / "include" / "iam"
#: principal -> (IAM user name, policy file stem)
PRINCIPALS: dict[str, tuple[str, str]] = {
    "worker": ("phoenix-worker", "worker"),
    "terraform": ("phoenix-terraform", "terraform"),
    "packer": ("phoenix-packer", "packer"),
}


@dataclass(frozen=True)
class Principal:
    name: str
    user_name: str
    arn: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """``AWS_*`` credential variables that sign as this principal (no session token)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def policy_document(stem: str, policy_dir: Path = POLICY_DIR) -> str:
    """The policy file ``<policy_dir>/<stem>.json`` as a compact JSON string (checked to parse)."""
    return json.dumps(json.loads((policy_dir / f"{stem}.json").read_text()))


def create_principals(client: Callable[[str], Any], policy_dir: Path = POLICY_DIR) -> dict[str, Principal]:
    """One IAM user per principal with only its policy attached, and a fresh access key each.

    ``client(service)`` returns a boto3 client signed as the account root (e.g. ``SandboxHandle.client``).
    A user that exists already gets its policy's default version replaced, so a rerun holds the current file.
    """
    iam = client("iam")
    out: dict[str, Principal] = {}
    for name, (user, stem) in PRINCIPALS.items():
        document = policy_document(stem, policy_dir)
        try:
            arn = iam.create_user(UserName=user, Tags=[{"Key": "phoenix:principal", "Value": name}])["User"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            arn = iam.get_user(UserName=user)["User"]["Arn"]
        policy_name = f"{user}-policy"
        policy_arn = f"arn:aws:iam::{arn.split(':')[4]}:policy/{policy_name}"
        try:
            iam.create_policy(PolicyName=policy_name, PolicyDocument=document,
                              Description=f"include/iam/{stem}.json (phoenix-fleet)")
        except iam.exceptions.EntityAlreadyExistsException:
            iam.create_policy_version(PolicyArn=policy_arn, PolicyDocument=document, SetAsDefault=True)
        iam.attach_user_policy(UserName=user, PolicyArn=policy_arn)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        out[name] = Principal(name, user, arn, key["AccessKeyId"], key["SecretAccessKey"])
    return out


def connection(endpoint_url: str, principal: Principal | None = None, region: str = "us-east-1") -> str:
    """An AWS Airflow connection (JSON form of ``AIRFLOW_CONN_*``) on the sandbox, signing as ``principal``
    (None: the account root key ``testing``)."""
    login, password = (principal.access_key_id, principal.secret_access_key) if principal else ("testing", "testing")
    return json.dumps(
        {
            "conn_type": "aws",
            "login": login,
            "password": password,
            "extra": {"endpoint_url": endpoint_url, "region_name": region},
        }
    )
