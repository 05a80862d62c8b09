"""pytest plugin (loaded with ``-p tests.airflow_env`` from pyproject): point Airflow at this project.

It runs before any test module imports Airflow, so that Airflow reads our settings instead of creating
~/airflow: AIRFLOW_HOME under .sandbox/ (gitignored), the project's dags/ and plugins/, no examples.
A developer's own values win (setdefault).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_DEFAULTS = {
    "AIRFLOW_HOME": str(REPO / ".sandbox" / "airflow-test"),
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
for _k, _v in _DEFAULTS.items():
    os.environ.setdefault(_k, _v)
os.environ.pop("AWS_PROFILE", None)
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
if os.environ["AIRFLOW_HOME"] == _DEFAULTS["AIRFLOW_HOME"]:
    # a new metadata DB every session, before anything opens it: DAGs and assets registered by an
    # earlier session (e.g. under an older asset URI) must not leak into this one
    (Path(os.environ["AIRFLOW_HOME"]) / "airflow.db").unlink(missing_ok=True)
