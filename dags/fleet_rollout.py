"""One Airflow rollout DAG per role in include/fleet.yaml: ``fleet_rollout_<role>``.

Scheduled on the role's image Asset (published by ``ami_release_<role>``) and triggerable by hand.
Thin: the roles' parse-time facts come from a cache keyed by the config's content (phoenix_fleet.dag_facts);
the DAG shape lives in phoenix_fleet.pipelines.rollout_dag; no AWS call at parse time.
"""

# Airflow modules this file uses, named so that the DAG processor imports them once, before it forks each
# parse ([dag_processor] parsing_pre_import_modules reads a DAG file's top-level airflow imports).
import airflow.providers.standard.decorators.branch_python  # noqa: F401
import airflow.providers.standard.decorators.python  # noqa: F401
import airflow.providers.standard.decorators.short_circuit  # noqa: F401
import airflow.providers.standard.operators.empty  # noqa: F401
import airflow.providers.standard.operators.hitl  # noqa: F401
import airflow.sdk.bases.sensor  # noqa: F401
import airflow.sdk.definitions.decorators  # noqa: F401
from phoenix_fleet.dag_facts import fleet_dag_facts
from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

for _role, _facts in fleet_dag_facts().items():
    globals()[f"fleet_rollout_{_role}"] = build_rollout_dag(_facts)
