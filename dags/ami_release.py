"""One Airflow release DAG per role in include/fleet.yaml: ``ami_release_<role>`` (see its doc_md in the UI).

Thin on purpose: the roles' parse-time facts come from a cache keyed by the config's content
(phoenix_fleet.dag_facts) and the DAG shape lives in phoenix_fleet.pipelines.release_dag. No AWS call and no AWS
library import happens at parse time.
"""

# Airflow modules this file uses, named so that the DAG processor imports them once, before it forks each
# parse ([dag_processor] parsing_pre_import_modules reads a DAG file's top-level airflow imports).
import airflow.providers.standard.decorators.branch_python  # noqa: F401
import airflow.providers.standard.decorators.python  # noqa: F401
import airflow.providers.standard.operators.empty  # noqa: F401
import airflow.sdk.bases.sensor  # noqa: F401
import airflow.sdk.definitions.decorators  # noqa: F401
from phoenix_fleet.dag_facts import fleet_dag_facts
from phoenix_fleet.pipelines.release_dag import build_release_dag

for _role, _facts in fleet_dag_facts().items():
    globals()[f"ami_release_{_role}"] = build_release_dag(_facts)
