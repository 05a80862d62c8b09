"""DAG builders: the release and rollout pipelines generated per role from include/fleet.yaml.

The DAG files in dags/ only call these. Import-light (parsed every 30 s): airflow.sdk, our operator
modules (which import no AWS library at module level) and the pure core.
"""
