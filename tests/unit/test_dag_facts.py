"""The DAG files' parse-time facts (phoenix_fleet.dag_facts): derived from the validated config, cached by content.

What could break: a stale cache after an edit of the config (or of the code that validates it), an invalid config
served from (or written to) the cache, a parse failing when the cache cannot be written, facts that differ from
the config they came from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import phoenix_fleet.config as config
import pytest
from phoenix_fleet import dag_facts
from phoenix_fleet.config import FleetConfigError, load_fleet_config
from phoenix_fleet.dag_facts import facts_from_config, fleet_dag_facts

REPO = Path(__file__).resolve().parents[2]
SANDBOX_CONFIG = REPO / "include" / "fleet.yaml"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sandbox config and an empty cache directory; counts validations."""
    monkeypatch.setenv(dag_facts.CACHE_DIR_ENV, str(tmp_path / "cache"))
    path = tmp_path / "fleet.yaml"
    shutil.copy(SANDBOX_CONFIG, path)
    return path


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = config.fleet_config_from_text

    def counting(text: str, source: str | None = None) -> config.FleetConfig:
        seen.append(source or "")
        return real(text, source)

    monkeypatch.setattr(config, "fleet_config_from_text", counting)
    return seen


def test_facts_are_the_validated_configs_values() -> None:
    fleet = load_fleet_config(SANDBOX_CONFIG)
    facts = facts_from_config(fleet)
    assert list(facts) == list(fleet.roles)
    for name, f in facts.items():
        role, env = fleet.role(name), fleet.environment(name)
        assert f["role"] == name
        assert f["home_region"] == role.home_region == f["regions"][0]
        assert f["schedule"] == role.schedule
        assert f["terraform_backend"] == role.terraform.backend
        assert f["max_concurrent_asgs"] == role.rollout.max_concurrent_asgs
        assert f["inline_wait_seconds"] == role.rollout.inline_wait_seconds
        assert f["require_approval"] is env.require_approval
        assert f["base_ami_owners"] == role.image.base_ami.owners
    assert json.loads(json.dumps(facts)) == facts  # plain JSON: what the cache stores is what a parse gets


def test_the_recycle_task_fits_a_rollback() -> None:
    """Issue 13 item 12: the recycle task's execution_timeout was the deadline + 10 min: a rollback (a second
    deadline) was killed mid-way. It is the role policy's execution budget: forward + rollback deadlines, what a
    replaced fleet may take past one (warmup, health timeout, soak), unknown health's bound, a halt, slack."""
    from datetime import timedelta

    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag
    from phoenix_fleet.rollout import Policy

    fleet = load_fleet_config(SANDBOX_CONFIG)
    facts = facts_from_config(fleet)["web"]
    policy = Policy.from_config(fleet.role("web").rollout)
    budget = policy.execution_budget()
    assert budget >= timedelta(minutes=2 * policy.deadline_minutes) + timedelta(
        seconds=policy.soak_seconds + policy.warmup_seconds + policy.health_timeout_seconds) + timedelta(minutes=5)
    assert facts["recycle_timeout_minutes"] * 60 >= budget.total_seconds()
    recycle = build_rollout_dag(facts).task_dict["recycle"]
    assert recycle.partial_kwargs["execution_timeout"] == timedelta(minutes=facts["recycle_timeout_minutes"])
    assert Policy(on_failure="halt").execution_budget() < Policy(on_failure="rollback").execution_budget()


def test_second_parse_reads_the_cache_and_an_edit_validates_again(cfg: Path, validations: list[str]) -> None:
    first = fleet_dag_facts(cfg)
    assert validations == [str(cfg)]
    assert fleet_dag_facts(cfg) == first
    assert validations == [str(cfg)], "an unchanged config was validated again"
    assert len(list((cfg.parent / "cache").glob("dag-facts-*.json"))) == 1

    cfg.write_text(cfg.read_text().replace('schedule: "0 3 * * 1"', 'schedule: "0 4 * * 2"', 1))
    edited = fleet_dag_facts(cfg)
    assert len(validations) == 2
    assert {f["schedule"] for f in edited.values()} != {f["schedule"] for f in first.values()}
    assert "0 4 * * 2" in {f["schedule"] for f in edited.values()}


def test_a_change_of_the_validating_code_is_a_new_key(cfg: Path, validations: list[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "config.py"
    code.write_text("# version 1\n")
    monkeypatch.setattr(dag_facts, "_CODE", (code,))
    fleet_dag_facts(cfg)
    fleet_dag_facts(cfg)
    assert len(validations) == 1
    code.write_text("# version 2: a new default\n")
    fleet_dag_facts(cfg)
    assert len(validations) == 2


def test_an_invalid_config_fails_every_parse_naming_the_field_and_is_never_cached(cfg: Path) -> None:
    good = cfg.read_text()
    assert "batch_size: 1" in good
    cfg.write_text(good.replace("batch_size: 1", "batch_size: 0", 1))
    for _ in range(2):
        with pytest.raises(FleetConfigError, match=r"roles\.worker\.rollout\.batch_size: .*Fix"):
            fleet_dag_facts(cfg)
    assert not list((cfg.parent / "cache").glob("dag-facts-*.json"))
    cfg.write_text(good)
    assert fleet_dag_facts(cfg)


def test_a_missing_config_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match=r"cannot read .*nope\.yaml.*Fix"):
        fleet_dag_facts(tmp_path / "nope.yaml")


def test_a_torn_cache_file_is_validated_again_and_rewritten(cfg: Path, validations: list[str]) -> None:
    facts = fleet_dag_facts(cfg)
    (cached,) = (cfg.parent / "cache").glob("dag-facts-*.json")
    cached.write_text('{"web": {"role"')  # a writer that died mid-file (writes are atomic; a disk may not be)
    assert fleet_dag_facts(cfg) == facts
    assert len(validations) == 2
    assert json.loads(cached.read_text()) == facts


def test_an_unwritable_cache_directory_still_parses(cfg: Path, validations: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = cfg.parent / "not-a-dir"  # unwritable even for root (a read-only mount behaves alike)
    blocker.write_text("")
    monkeypatch.setenv(dag_facts.CACHE_DIR_ENV, str(blocker))
    assert fleet_dag_facts(cfg) == fleet_dag_facts(cfg)
    assert len(validations) == 2  # no cache: each parse validates, none fails


def test_old_cache_files_are_removed_when_a_new_one_is_written(cfg: Path) -> None:
    cache = cfg.parent / "cache"
    cache.mkdir()
    old, recent = cache / "dag-facts-old.json", cache / "dag-facts-recent.json"
    for f in (old, recent):
        f.write_text("{}")
    week_ago = os.path.getmtime(old) - dag_facts.STALE_AFTER_SECONDS - 60
    os.utime(old, (week_ago, week_ago))
    fleet_dag_facts(cfg)
    assert not old.exists()
    assert recent.exists()


def test_the_roles_inline_wait_reaches_the_canary_and_every_recycle(tmp_path: Path) -> None:
    """Issue 16 item 4: at 20 ASGs at once on a few worker slots, a wait polled in the worker holds a slot the
    next ASG needs. ``rollout.inline_wait_seconds: 0`` makes every wait of the canary and the recycle defer."""
    import yaml
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    raw = yaml.safe_load(SANDBOX_CONFIG.read_text())
    raw["roles"]["web"].setdefault("rollout", {}).update(inline_wait_seconds=0, max_concurrent_asgs=20)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    for sub in ("packer", "terraform"):
        (tmp_path / sub).symlink_to(SANDBOX_CONFIG.parent / sub)
    facts = facts_from_config(load_fleet_config(path))
    assert facts["web"]["inline_wait_seconds"] == 0
    dag = build_rollout_dag(facts["web"])
    assert dag.task_dict["canary"].inline_wait_seconds == 0
    recycle = dag.task_dict["recycle"]
    assert recycle.partial_kwargs["inline_wait_seconds"] == 0
    assert recycle.partial_kwargs["max_active_tis_per_dagrun"] == 20
    # a role that says nothing keeps the default: short waits polled in the worker
    assert build_rollout_dag(facts["worker"]).task_dict["recycle"].partial_kwargs["inline_wait_seconds"] == 20
