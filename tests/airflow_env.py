"""pytest plugin (loaded with ``-p tests.airflow_env`` from pyproject): point Airflow at this project.

It runs before any test module imports Airflow, so that Airflow reads our settings instead of creating
~/airflow: a new AIRFLOW_HOME per session under .sandbox/ (gitignored; so two sessions never share a
metadata DB, and DAGs or assets of an earlier session never leak in), one per pytest-xdist worker, the
project's dags/ and plugins/, no examples. A developer's own values win (setdefault).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist every worker process is its own session: it inherits the controller's environment, so a
# home made here by the controller (marked by _OURS) is replaced by one per worker (SQLite is not shared).
_OURS = "PHOENIX_TEST_AIRFLOW_HOME"
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if "AIRFLOW_HOME" not in os.environ or (_worker and os.environ.get(_OURS) == os.environ["AIRFLOW_HOME"]):
    (REPO / ".sandbox").mkdir(exist_ok=True)
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix=f"airflow-test-{_worker or 'main'}-", dir=REPO / ".sandbox")
    os.environ[_OURS] = os.environ["AIRFLOW_HOME"]
    # the DAG files' parse cache follows the home (a value inherited from the controller would be shared)
    os.environ["PHOENIX_PARSE_CACHE_DIR"] = os.path.join(os.environ["AIRFLOW_HOME"], "parse-cache")
_DEFAULTS = {
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "PHOENIX_FLEET_CONFIG": str(REPO / "include" / "fleet.yaml"),
    # never reach real AWS from a test
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# the DAG files' parse cache (phoenix_fleet.dag_facts): per session, not in the developer's ~/.cache
_DEFAULTS["PHOENIX_PARSE_CACHE_DIR"] = os.path.join(os.environ["AIRFLOW_HOME"], "parse-cache")
for _k, _v in _DEFAULTS.items():
    os.environ.setdefault(_k, _v)
os.environ.pop("AWS_PROFILE", None)
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
