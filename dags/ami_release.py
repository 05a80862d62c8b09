"""One Airflow release DAG per role in include/fleet.yaml: ``ami_release_<role>`` (see its doc_md in the UI).

Thin on purpose: the fleet config is read from a per-file-version cache and the DAG shape lives in
phoenix_fleet.pipelines.release_dag. No AWS call and no AWS library import happens at parse time.
"""

from phoenix_fleet.config import cached_fleet_config
from phoenix_fleet.pipelines.release_dag import build_release_dag

_fleet = cached_fleet_config()
for _role in _fleet.roles:
    globals()[f"ami_release_{_role}"] = build_release_dag(_fleet, _role)
