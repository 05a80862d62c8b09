"""Run whole-DAG tests as the project's IAM principals, with the sandbox authorizing every request.

``enforce_iam(handle, monkeypatch, fleet_config)`` (after the seed, which runs as the account root):

* creates the IAM users of ``include/iam/`` (``sandbox/iam_principals.py``): ``phoenix-worker``,
  ``phoenix-terraform``, ``phoenix-packer``, each holding only its policy;
* points the Airflow connections at them: ``aws_default`` signs as the worker, ``aws_terraform`` as Terraform,
  ``aws_packer`` as the Packer builder, and writes ``terraform.aws_conn_id: aws_terraform`` and
  ``image.packer_aws_conn_id: aws_packer`` into every role of the test's fleet config;
* makes the worker's keys the process's own ``AWS_*`` credentials (no session token), so a call that does not go
  through a connection is the worker's too;
* switches the sandbox's ``iam_access_control`` on.

The test's own checks keep using ``handle.client(...)`` (the account root, always allowed).
``assert_no_denials(handle)`` fails naming every principal and action that was refused, including calls that our
code caught and survived. Set ``PHOENIX_IAM_AUDIT_DIR`` to keep each test's audit (who called what) as JSON: the
way to see what a new code path needs. ``PHOENIX_IAM_POLICY_DIR`` runs the users on other policy files (e.g.
copies being edited) instead of ``include/iam/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.iam_access import describe_denials
from sandbox.iam_principals import POLICY_DIR, Principal, connection, create_principals

TERRAFORM_CONN_ID = "aws_terraform"
PACKER_CONN_ID = "aws_packer"


def enforce_iam(handle: Any, monkeypatch: pytest.MonkeyPatch, fleet_config: Path | None = None) -> dict[str, Principal]:
    policy_dir = Path(os.environ.get("PHOENIX_IAM_POLICY_DIR") or POLICY_DIR)
    principals = create_principals(handle.client, policy_dir)
    url = handle.endpoint_url
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection(url, principals["worker"]))
    monkeypatch.setenv(f"AIRFLOW_CONN_{TERRAFORM_CONN_ID.upper()}", connection(url, principals["terraform"]))
    monkeypatch.setenv(f"AIRFLOW_CONN_{PACKER_CONN_ID.upper()}", connection(url, principals["packer"]))
    for name, value in principals["worker"].env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if fleet_config is not None:
        use_principal_connections(fleet_config)
    handle.update_config(iam_access_control=True)
    return principals


def use_principal_connections(fleet_config: Path) -> None:
    """Every role of ``fleet_config`` runs Terraform as ``aws_terraform`` and Packer as ``aws_packer``."""
    import yaml

    raw = yaml.safe_load(fleet_config.read_text())
    for role in raw["roles"].values():
        role.setdefault("terraform", {})["aws_conn_id"] = TERRAFORM_CONN_ID
        role["image"]["packer_aws_conn_id"] = PACKER_CONN_ID
    fleet_config.write_text(yaml.safe_dump(raw))


def assert_no_denials(handle: Any, test_name: str = "") -> dict[str, Any]:
    """Fail if the sandbox refused any call while access control was on; keep the audit where asked."""
    audit = handle.iam_audit()
    keep = os.environ.get("PHOENIX_IAM_AUDIT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name or "audit")[:150]
        (Path(keep) / f"{name}.json").write_text(json.dumps(audit, indent=1))
    denied = describe_denials(audit)
    if denied:
        pytest.fail(
            "calls outside the shipped IAM policies (include/iam/; add each to the right policy with a Sid, see "
            "include/iam/README.md):\n  " + "\n  ".join(denied),
            pytrace=False,
        )
    return audit
