"""docker-compose.yml is written for users (no Docker engine here): check its shape by parsing it."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_of_a_celery_deployment():
    services = _compose()["services"]
    assert {
        "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
        "airflow-triggerer", "airflow-worker", "airflow-init",
    } <= set(services)
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"


def test_airflow_services_share_config_and_mount_the_project():
    services = _compose()["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        s = services[name]
        env = s["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["PHOENIX_FLEET_CONFIG"].endswith("include/fleet.yaml")
        mounts = " ".join(s["volumes"])
        for d in ("./dags:", "./plugins:", "./include:"):
            assert d in mounts, (name, d)
        assert "healthcheck" in s, name
        assert s["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_no_local_only_settings_or_literal_secrets():
    text = (REPO / "docker-compose.yml").read_text()
    assert "SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in text
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert env[key].startswith("${") and ":?" in env[key], f"{key} must come from .env, required"
    assert "${POSTGRES_PASSWORD" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_dockerfile_installs_from_the_lock():
    text = (REPO / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in text
    assert "uv export --locked" in text
