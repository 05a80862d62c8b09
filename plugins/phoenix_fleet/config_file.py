"""Where the fleet config lives, and its error type. Import-light: DAG files use it at every parse, before (and
mostly without) the pydantic models of :mod:`phoenix_fleet.config`, which re-exports these names."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV_VAR = "PHOENIX_FLEET_CONFIG"


class FleetConfigError(ValueError):
    """The fleet config is invalid. ``problems`` holds one line per problem: ``<field>: <what>. Fix: <how>``."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid fleet config{where}:\n  " + "\n  ".join(problems))


def default_config_path() -> Path:
    """``$PHOENIX_FLEET_CONFIG``, else include/fleet.yaml next to dags/ (searched from here and from cwd)."""
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            candidate = parent / "include" / "fleet.yaml"
            if candidate.is_file():
                return candidate
    raise FleetConfigError(
        [f"no fleet config found. Fix: set {CONFIG_ENV_VAR}=/path/to/fleet.yaml or create include/fleet.yaml"]
    )


def include_dir(config_path: Path | None = None) -> Path:
    """The include/ directory that relative paths in the config (packer templates, terraform) resolve against."""
    return (config_path or default_config_path()).resolve().parent
