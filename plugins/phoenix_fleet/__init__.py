"""phoenix-fleet: immutable-infrastructure releases on AWS, driven by Airflow 3."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phoenix_fleet.config import FleetConfig


def fleet_config() -> FleetConfig:
    """The fleet config (``config.cached_fleet_config()``), imported on first use: operator modules that DAG
    files import at every parse call this at run time, so a parse never pays for the pydantic models."""
    from phoenix_fleet.config import cached_fleet_config

    return cached_fleet_config()
