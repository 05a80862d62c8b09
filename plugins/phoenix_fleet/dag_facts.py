"""What the generated DAGs need from include/fleet.yaml at parse time, cached by content.

Airflow's DAG processor re-parses every DAG file every 30 s (by default). ``ami_release.py`` and
``fleet_rollout.py`` build one DAG per role from the fleet config, but a DAG's shape and docs depend on a handful
of values per role (:class:`RoleFacts`). Validating the config (pydantic models, ~10 ms) at every parse would
cost more than building a DAG, so the facts are derived once from the *validated* config and kept as JSON in a
cache file named by the SHA-256 of the config file's bytes and of the code that validates it and derives them
(``config.py``, ``config_file.py``, this module). An edit of either is a new key: the next parse validates again.
An invalid config is never cached: every parse raises the same :class:`FleetConfigError` (the DAG file's import
error in the UI names the field and the fix).

The cache directory is ``$PHOENIX_PARSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/phoenix-fleet`` (``~/.cache/...``).
When it cannot be written (a read-only filesystem) every parse validates; nothing fails. Tasks never use these
facts: operators load the full config (:func:`phoenix_fleet.config.cached_fleet_config`) when they run.

Import-light: the standard library and `phoenix_fleet.config_file` at module level; the models load on a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from phoenix_fleet.config_file import FleetConfigError, default_config_path

if TYPE_CHECKING:
    from phoenix_fleet.config import FleetConfig

CACHE_DIR_ENV = "PHOENIX_PARSE_CACHE_DIR"
#: cache files written longer ago than this are removed when a new one is written (a live one is rewritten)
STALE_AFTER_SECONDS = 7 * 86400
_CODE = tuple(Path(__file__).with_name(n) for n in ("config.py", "config_file.py", "dag_facts.py", "api_budget.py")) + (
    Path(__file__).parent / "rollout" / "rollout_policy.py",  # the recycle's execution budget
)


class RoleFacts(TypedDict):
    """One role's values that shape its DAGs (schedule, docs, concurrency); all JSON."""

    role: str
    env: str
    regions: list[str]
    home_region: str
    schedule: str | None
    schedule_grace_hours: float
    packer_template: str
    base_ami_name: str
    base_ami_owners: list[str]
    share_with_accounts: list[str]
    ssm_prefix: str
    artifacts_bucket: str
    asg_tags: dict[str, str]
    terraform_backend: str
    terraform_workdir: str | None
    require_approval: bool
    approval_timeout_hours: float
    run_timeout_hours: float
    strategy: str
    max_concurrent_asgs: int
    inline_wait_seconds: float
    on_failure: str
    deadline_minutes: int
    #: the recycle task's execution_timeout: the role policy's execution budget (forward + rollback deadlines,
    #: what a replaced fleet may take past a deadline, a safe halt, slack), in whole minutes
    recycle_timeout_minutes: int

    aws_conn_id: str
    aws_conn_field: str


def facts_from_config(fleet: FleetConfig) -> dict[str, RoleFacts]:
    """Every role's facts, in the config's role order, from a validated config."""
    from phoenix_fleet.rollout.rollout_policy import Policy

    out: dict[str, RoleFacts] = {}
    for name, role in fleet.roles.items():
        env = fleet.environment(name)
        budget = Policy.from_config(role.rollout).execution_budget()
        out[name] = RoleFacts(
            role=name,
            env=role.env,
            regions=list(role.regions),
            home_region=role.home_region,
            schedule=role.schedule,
            schedule_grace_hours=role.schedule_grace_hours,
            packer_template=role.image.packer_template,
            base_ami_name=role.image.base_ami.name,
            base_ami_owners=list(role.image.base_ami.owners),
            share_with_accounts=list(role.share_with_accounts),
            ssm_prefix=fleet.ssm_prefix,
            artifacts_bucket=fleet.artifacts_bucket,
            asg_tags=dict(role.asgs.tags),
            terraform_backend=role.terraform.backend,
            terraform_workdir=role.terraform.workdir,
            require_approval=env.require_approval,
            approval_timeout_hours=env.approval_timeout_hours,
            run_timeout_hours=role.rollout.run_timeout_hours,
            strategy=role.rollout.strategy,
            max_concurrent_asgs=role.rollout.max_concurrent_asgs,
            inline_wait_seconds=role.rollout.inline_wait_seconds,
            on_failure=role.rollout.on_failure,
            deadline_minutes=role.rollout.deadline_minutes,
            recycle_timeout_minutes=-(-int(budget.total_seconds()) // 60),

            aws_conn_id=fleet.aws_conn(name).conn_id,
            aws_conn_field=fleet.aws_conn(name).field,
        )
    return out


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phoenix-fleet"


def cache_key(config_bytes: bytes) -> str:
    h = hashlib.sha256(config_bytes)
    for code in _CODE:
        h.update(code.read_bytes())
    return h.hexdigest()[:40]


def fleet_dag_facts(path: str | os.PathLike[str] | None = None) -> dict[str, RoleFacts]:
    """The facts of every role in the fleet config at ``path`` (default: :func:`default_config_path`).

    Raises :class:`FleetConfigError` (naming the field and the fix) when the config is missing or invalid.
    """
    p = Path(path) if path is not None else default_config_path()
    try:
        data = p.read_bytes()
    except OSError:
        from phoenix_fleet.config import load_fleet_config

        load_fleet_config(p)  # raises the FleetConfigError that names the path and the fix
        raise
    target = cache_dir() / f"dag-facts-{cache_key(data)}.json"
    try:
        cached: dict[str, RoleFacts] = json.loads(target.read_bytes())
        return cached
    except (OSError, ValueError):  # not cached yet (or a torn file from a crashed writer): validate
        pass
    from phoenix_fleet.config import fleet_config_from_text

    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise FleetConfigError([f"not UTF-8 text: {e}. Fix: save the file as UTF-8"], str(p)) from None
    facts = facts_from_config(fleet_config_from_text(text, str(p)))
    _store(target, facts)
    return facts


def _store(target: Path, facts: dict[str, RoleFacts]) -> None:
    """Write atomically (parsers run in parallel); on any OSError go on without a cache."""
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dag-facts-", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(facts, f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        cutoff = time.time() - STALE_AFTER_SECONDS
        for old in target.parent.glob("dag-facts-*.json"):
            if old != target and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
    except OSError:
        return
