"""Fixtures shared by tests/unit/bake and tests/unit/verify (their conftest.py files import them): the Packer double on PATH, a seeded sandbox, images in any state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

DOUBLE = Path(__file__).resolve().parents[2] / "sandbox" / "bin" / "packer"
_DOUBLE_ENV = (
    "PHOENIX_PACKER_DOUBLE_FAIL",
    "PHOENIX_PACKER_DOUBLE_DELAY",
    "PHOENIX_PACKER_DOUBLE_PACKAGES",
    "PHOENIX_PACKER_BIN",
    "PKR_VAR_role",
    "PKR_VAR_version",
)


@pytest.fixture
def packer_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """``sandbox/bin`` first on PATH (so ``packer`` is the double), plugins in a temp dir, argv and environment
    logged, the double's controls (``PHOENIX_PACKER_DOUBLE_*``) on PackerHook's environment allow-list."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(DOUBLE.parent), os.environ.get("PATH", "")]))
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(tmp_path / "packer-plugins"))
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_POLL_MAX", "0.05")
    # PackerHook passes Packer only an allow-listed environment: the double's controls are added to it
    monkeypatch.setenv("PHOENIX_PACKER_ENV_ALLOW", "PHOENIX_PACKER_DOUBLE_*")
    argv_log = tmp_path / "packer-argv.jsonl"
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_ARGV_LOG", str(argv_log))
    for name in _DOUBLE_ENV:
        monkeypatch.delenv(name, raising=False)

    def invocations() -> list[list[str]]:
        if not argv_log.exists():
            return []
        return [json.loads(line)["argv"] for line in argv_log.read_text().splitlines() if line.strip()]

    return SimpleNamespace(argv_log=argv_log, tmp=tmp_path, invocations=invocations)


@pytest.fixture
def seeded(sandbox_clean: Any) -> dict[str, Any]:
    """The sandbox seeded like `make demo`: base AMI, release AMIs, bucket, instance profile, canary subnet."""
    from sandbox.seed import seed

    return seed(sandbox_clean.endpoint_url)

