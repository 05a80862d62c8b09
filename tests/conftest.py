"""Shared fixtures: a dummy AWS environment and the sandbox cloud (moto + realism extensions).

``aws_env`` (function)
    Dummy credentials (``testing``), region ``us-east-1``, nothing that could reach real AWS: no profile, no
    shared config/credentials files, no instance metadata, no ``AWS_ENDPOINT_URL`` left over, and
    127.0.0.1 exempt from any HTTP proxy. Yields the environment changes as a dict.

``sandbox`` (session)
    A :class:`sandbox.server.SandboxHandle`: one sandbox server in a thread of the test process, started with
    the ``tests`` realism profile (describe-count latencies: nothing sleeps; fault tags and moto fixes on).
    It is shared by the whole session: use ``sandbox_clean`` in tests, which resets it.

``sandbox_clean`` (function)
    The same handle after ``reset()`` (no AWS state, realism config back to the ``tests`` profile), with
    ``aws_env`` applied and ``AWS_ENDPOINT_URL`` plus Airflow's ``AIRFLOW_CONN_AWS_DEFAULT`` pointing at it
    for the test. ``sandbox_clean.client("ec2")`` gives a boto3 client with no retries;
    ``sandbox_clean.update_config(instance_boot={"describes": 5})`` changes realism for this test only.

``boto_config``
    ``botocore.config.Config(retries={"max_attempts": 1})``: moto answers unimplemented calls with an HTML 500,
    which botocore would otherwise retry as a parse error.

Note: moto's backends are process-global. A ``mock_aws`` test and the sandbox share (and reset) the same
state, so do not mix them inside one test; realism never applies to ``mock_aws`` calls.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the sandbox package lives at the repo root, not in the installed wheel
    sys.path.insert(0, str(ROOT))

DUMMY_REGION = "us-east-1"
_REMOVED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy AWS credentials and region; nothing can reach real AWS."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": DUMMY_REGION,
        "AWS_REGION": DUMMY_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name in _REMOVED_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name, "")
        monkeypatch.setenv(name, ",".join(p for p in (current, "127.0.0.1", "localhost") if p))
    return values


@pytest.fixture
def boto_config() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 1})


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """A session-wide threaded sandbox server, realism profile ``tests``. Prefer ``sandbox_clean``."""
    from sandbox.realism import RealismConfig
    from sandbox.server import start_in_thread

    handle = start_in_thread(RealismConfig.profile("tests"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox_clean(sandbox: Any, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session sandbox, reset (state and config), with AWS_ENDPOINT_URL set to it for this test."""
    sandbox.reset(config=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox.endpoint_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": sandbox.endpoint_url, "region_name": DUMMY_REGION},
            }
        ),
    )
    return sandbox
