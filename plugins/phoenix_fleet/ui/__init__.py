"""Pages phoenix-fleet adds to the Airflow UI (FastAPI apps registered by plugins/phoenix_plugin.py)."""
