"""phoenix-fleet: immutable-infrastructure releases on AWS, driven by Airflow 3."""
