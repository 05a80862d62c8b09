"""One Airflow rollout DAG per role in include/fleet.yaml: ``fleet_rollout_<role>``.

Scheduled on the role's image Asset (published by ``ami_release_<role>``) and triggerable by hand.
Thin: the DAG shape lives in phoenix_fleet.pipelines.rollout_dag; no AWS call at parse time.
"""

from phoenix_fleet.config import cached_fleet_config
from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

_fleet = cached_fleet_config()
for _role in _fleet.roles:
    globals()[f"fleet_rollout_{_role}"] = build_rollout_dag(_fleet, _role)
