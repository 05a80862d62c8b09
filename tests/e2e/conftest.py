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
    """``airflow db migrate`` once per session (idempotent, ~7 s the first time)."""
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def seeded(sandbox_clean, monkeypatch):
    """The sandbox after a reset and the seed (base AMI, releases, SSM pointers, bucket, canary subnet),
    with the Packer double first on PATH."""
    from sandbox.seed import seed

    monkeypatch.setenv("PATH", os.pathsep.join([str(REPO / "sandbox" / "bin"), os.environ["PATH"]]))
    info = seed(sandbox_clean.endpoint_url)
    info["handle"] = sandbox_clean
    return info
