"""Pages phoenix-fleet adds to the Airflow UI (FastAPI apps registered by phoenix_fleet.airflow_plugin)."""
