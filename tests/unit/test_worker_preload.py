"""phoenix_fleet.worker_preload: what a task process forked after it no longer loads itself (docs/scale.md)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import botocore.loaders
import pytest
from phoenix_fleet.hooks import image_hook
from phoenix_fleet.hooks.asg_hook import SERVICES, AsgHook
from phoenix_fleet.hooks.image_hook import ImageHook


def _model_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = botocore.loaders.JSONFileLoader.load_file
    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file",
                        lambda self, path: reads.append(path) or real(self, path))
    return reads


def _make_clients() -> None:
    hook = AsgHook(aws_conn_id="aws_default", region_name="eu-west-1")
    for service in SERVICES:
        hook.client(service)
    ImageHook(aws_conn_id="aws_default", region_name="us-west-2").client("ssm")


def test_after_the_preload_a_tasks_clients_parse_no_service_model(sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from phoenix_fleet import worker_preload

    monkeypatch.setattr(image_hook, "_shared_loader", None)  # as in a process nothing loaded models in yet
    loaded = worker_preload.warm_models()
    assert {"ec2/service-2", "autoscaling/service-2", "elbv2/service-2", "ssm/service-2", "s3/service-2"} <= set(loaded)
    reads = _model_reads(monkeypatch)
    _make_clients()
    assert reads == []


def test_without_it_the_first_clients_parse_their_models(sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_hook, "_shared_loader", None)
    reads = _model_reads(monkeypatch)
    _make_clients()
    assert any("ec2" in r and "service-2" in r for r in reads), reads


def test_the_preload_imports_everything_it_names_and_reads_the_config(tmp_path: Any) -> None:
    """In a fresh interpreter, as the fork server imports it: nothing skipped, the fleet config read and cached."""
    code = (
        "import json, sys; import phoenix_fleet.worker_preload as w; "
        "from phoenix_fleet.config import _cached; "
        "print(json.dumps({'skipped': w.report['skipped'], 'config': w.report['config'], "
        "'plugins': 'phoenix_fleet' in (w.report['plugins'] or []), "
        "'missing': [m for m in w.PRELOAD if m not in sys.modules], 'cached': _cached.cache_info().currsize}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True)
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"skipped": {}, "config": "read", "plugins": True, "missing": [], "cached": 1}, out.stderr[-2000:]


def test_a_module_that_fails_to_import_is_skipped_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from phoenix_fleet import worker_preload

    monkeypatch.setattr(worker_preload, "PRELOAD", ("json", "phoenix_fleet.no_such_module"))
    monkeypatch.setattr(worker_preload, "warm_models", lambda: [])
    report = worker_preload.preload()
    assert report["imported"] == ["json"]
    assert list(report["skipped"]) == ["phoenix_fleet.no_such_module"]
    assert "No module named" in str(report["skipped"]["phoenix_fleet.no_such_module"])
