"""The one Airflow plugin of phoenix-fleet.

It registers the project's macros and the fleet inventory page: a FastAPI app mounted at ``/phoenix``
(``/phoenix/inventory`` serves the latest report of the fleet_inventory DAG) and an external view that puts it in
the UI's navigation (Browse → Fleet inventory). A root middleware of the api-server answers a trigger refused by a
Param's schema with the field and the fix instead of Airflow's schema dump (phoenix_fleet.ui.trigger_errors).

Airflow finds it through the ``airflow.plugins`` entry point of the installed distribution (pyproject.toml),
so the package is the one copy: nothing is loaded from the plugins folder (plugins/.airflowignore keeps the
folder loader out of the package, which lives there for development).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from phoenix_fleet.ui.inventory_app import app as inventory_app
from phoenix_fleet.ui.trigger_errors import TriggerErrorMiddleware

INVENTORY_URL_PREFIX = "/phoenix"


def phoenix_version_for(ds: str, n: int = 1) -> str:
    """The release version for a date: ``YYYY.MM.DD-N`` (``{{ macros.phoenix_fleet.phoenix_version_for(ds) }}``)."""
    return f"{ds.replace('-', '.')}-{n}"


class PhoenixFleetPlugin(AirflowPlugin):
    name = "phoenix_fleet"
    macros = [phoenix_version_for]
    fastapi_apps = [
        {"app": inventory_app, "url_prefix": INVENTORY_URL_PREFIX, "name": "phoenix-fleet inventory"},
    ]
    fastapi_root_middlewares = [
        {"middleware": TriggerErrorMiddleware, "args": [], "kwargs": {}, "name": "phoenix-fleet trigger errors"},
    ]
    external_views = [
        {
            "name": "Fleet inventory",
            "href": f"{INVENTORY_URL_PREFIX}/inventory",
            "url_route": "fleet-inventory",
            "destination": "nav",
            "category": "browse",
        },
    ]
