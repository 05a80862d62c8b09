"""The one Airflow plugin of phoenix-fleet.

It registers the project's macros with Airflow. The package itself (plugins/phoenix_fleet) is excluded
from the plugin loader by plugins/.airflowignore and imported as a normal package.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


def phoenix_version_for(ds: str, n: int = 1) -> str:
    """The release version for a date: ``YYYY.MM.DD-N`` (``{{ macros.phoenix_fleet.phoenix_version_for(ds) }}``)."""
    return f"{ds.replace('-', '.')}-{n}"


class PhoenixFleetPlugin(AirflowPlugin):
    name = "phoenix_fleet"
    macros = [phoenix_version_for]
