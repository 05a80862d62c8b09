"""Environment for an Airflow wired to the sandbox cloud (``make airflow``, the demo, e2e tests).

Everything is environment variables, as a team would set them in compose or Helm; nothing is written
into airflow.cfg. The AWS connection ``aws_default`` points at the sandbox through ``endpoint_url``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sandbox_dir() -> Path:
    return Path(os.environ.get("PHOENIX_SANDBOX_DIR", REPO / ".sandbox"))


def fleet_config_with_warmup(directory: Path, warmup_seconds: int) -> Path:
    """``directory/fleet.yaml``: include/fleet.yaml with every role's rollout warmup set to ``warmup_seconds``
    (the demo, and whole-DAG tests, whose sandbox instances serve at once). Its ``packer/`` and ``terraform/``
    are linked next to it: paths in the config are relative to its directory."""
    import yaml

    raw = yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())
    raw.setdefault("defaults", {}).setdefault("rollout", {})["warmup_seconds"] = warmup_seconds
    for role in raw["roles"].values():
        role.get("rollout", {}).pop("warmup_seconds", None)
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("packer", "terraform"):
        link = directory / sub
        if not link.is_symlink():
            link.symlink_to(REPO / "include" / sub)
    path = directory / "fleet.yaml"
    path.write_text(
        f"# include/fleet.yaml with rollout warmup_seconds {warmup_seconds} (sandbox/airflow_env.py)\n" + yaml.safe_dump(raw)
    )
    return path


def aws_connection_uri(endpoint_url: str, region: str = "us-east-1") -> str:
    """``aws_default`` as the JSON form of AIRFLOW_CONN_* (the sandbox accepts any credentials)."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint_url, "region_name": region},
        }
    )


def airflow_env(
    endpoint_url: str,
    home: Path | None = None,
    api_port: int = 8080,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """A full process environment for Airflow on SQLite, talking to the sandbox at `endpoint_url`."""
    env = dict(os.environ if base is None else base)
    home = home or sandbox_dir() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            # local sandbox only: an unauthenticated UI/API. Never set this in compose or Helm.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(endpoint_url),
            "PHOENIX_FLEET_CONFIG": env.get("PHOENIX_FLEET_CONFIG", str(REPO / "include" / "fleet.yaml")),
            # the DAG files' parse cache (phoenix_fleet.dag_facts), kept with the sandbox's Airflow home
            "PHOENIX_PARSE_CACHE_DIR": env.get("PHOENIX_PARSE_CACHE_DIR", str(home / "parse-cache")),
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # the Packer double (sandbox/bin/packer) stands in for the real CLI here
            "PATH": os.pathsep.join([str(REPO / "sandbox" / "bin"), env.get("PATH", "")]),
            # PackerHook gives Packer only an allow-listed environment: add the double's controls to it
            "PHOENIX_PACKER_ENV_ALLOW": "PHOENIX_PACKER_DOUBLE_*",
        }
    )
    # XComs of 16 kB or more go to s3://<artifacts bucket>/xcom/ (docs/scale.md): none of the fleet's size in the DB
    env.update(xcom_backend_env())
    env.pop("AWS_PROFILE", None)
    return env


def xcom_backend_env(bucket: str | None = None) -> dict[str, str]:
    """Airflow's object-storage XCom backend on the sandbox's artifacts bucket (the seed makes it), through
    ``aws_default``: the settings a deployment makes (phoenix_fleet.xcom_storage.backend_env)."""
    from phoenix_fleet.xcom_storage import backend_env

    from .seed import ARTIFACTS_BUCKET

    return backend_env(bucket or ARTIFACTS_BUCKET)


def create_pools(env: dict[str, str], home: Path, timeout: float = 300) -> list[str]:
    """Create (or resize) the API budget's pools of the fleet config ``env`` names (``PHOENIX_FLEET_CONFIG``) with
    ``airflow pools import``, in the Airflow of ``env`` (its DB migrated). Returns one line per pool."""
    import json
    import subprocess
    import sys

    from phoenix_fleet.api_budget import pool_specs, pools_import_json
    from phoenix_fleet.config import load_fleet_config

    specs = pool_specs(load_fleet_config(env.get("PHOENIX_FLEET_CONFIG")))
    path = Path(home) / "phoenix-pools.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pools_import_json(specs), indent=1))
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run(
        [airflow, "pools", "import", str(path)], env=env, check=True, timeout=timeout,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return [f"pool {s.name}: {s.slots} slots ({s.field})" for s in specs]
