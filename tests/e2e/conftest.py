"""e2e fixtures: a migrated Airflow metadata DB (SQLite under AIRFLOW_HOME) and a seeded sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """``airflow db migrate`` once per session (the SQLite file is new each session: tests/airflow_env.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def fast_fleet_config(tmp_path, monkeypatch) -> Path:
    """include/fleet.yaml with no warmup, so whole-DAG runs spend no wall-clock time waiting on timers."""
    from sandbox.airflow_env import fleet_config_with_warmup

    path = fleet_config_with_warmup(tmp_path / "include", 0)
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(path))
    return path


@pytest.fixture
def seeded(sandbox_clean, fast_fleet_config, monkeypatch, request):
    """The sandbox after a reset and the seed (base AMI, releases, SSM pointers, bucket, canary subnet),
    with the Packer double first on PATH, and **IAM enforced**: the DAGs' AWS connection signs as the worker
    principal, Terraform and Packer as theirs, each holding only its policy of include/iam/, and the sandbox
    authorizes every request (tests/helpers/iam_enforced.py). The test's own checks use ``handle.client`` (the
    account root). A call outside the policies fails the test at teardown, naming the action and the principal.

    Whole-DAG runs here check the wiring, so AWS transitions are instant (realism fixes stay on); the
    pending/failed paths are exercised per operator in tests/unit with describe-count latencies.
    """
    from sandbox.seed import seed
    from tests.helpers.iam_enforced import assert_no_denials, enforce_iam

    monkeypatch.setenv("PATH", os.pathsep.join([str(REPO / "sandbox" / "bin"), os.environ["PATH"]]))
    monkeypatch.setenv("PHOENIX_PACKER_ENV_ALLOW", "PHOENIX_PACKER_DOUBLE_*")  # the double's controls reach it
    sandbox_clean.update_config(
        instance_boot=None, instance_status_checks=None, target_health_checks=None, image_build=None, ssm_command=None
    )
    info = seed(sandbox_clean.endpoint_url)
    info["handle"] = sandbox_clean
    info["principals"] = enforce_iam(sandbox_clean, monkeypatch, fast_fleet_config)
    yield info
    sandbox_clean.update_config(iam_access_control=False)
    assert_no_denials(sandbox_clean, request.node.nodeid)


@pytest.fixture
def worker_fleet(seeded):
    """The seeded worker release running in one ASG (2 instances): the native-backend group the sandbox makes
    outside Terraform (sandbox/native_groups.py)."""
    from sandbox.native_groups import make_native_groups

    h = seeded["handle"]
    group = make_native_groups(h.endpoint_url, roles=["worker"])["sandbox-worker-a"]
    assert group["ami"] == seeded["roles"]["worker"]["ami_id"]
    h.settle()
    return {"asg": group["asg"], "old_ami": group["ami"], "lt": group["lt"]}
