"""``make airflow``: Airflow standalone (SQLite) on http://127.0.0.1:8080, wired to the sandbox cloud.

Starts (or reuses) the sandbox, seeds it if it is empty, migrates the metadata DB and creates the API budget's
pools from the fleet config (``phoenix_<env>_<region>``, docs/scale.md), then execs ``airflow standalone`` with the
environment from sandbox.airflow_env: this project's dags/ and plugins/, the ``aws_default`` connection
pointing at the sandbox, and a UI that needs no login (local sandbox only).
"""

from __future__ import annotations

import os
import subprocess
import sys

from sandbox.airflow_env import airflow_env, create_pools, sandbox_dir


def main() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "sandbox", "start"], check=True, capture_output=True, text=True
    ).stdout.strip()
    endpoint = out.splitlines()[-1].split()[-1]
    from sandbox.seed import seed

    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    seed(endpoint)
    port = int(os.environ.get("PHOENIX_AIRFLOW_PORT", "8080"))
    env = airflow_env(endpoint, home=sandbox_dir() / "airflow", api_port=port)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    # the API budget's pools (docs/scale.md): phoenix_<env>_<region> for every environment and region of the
    # fleet config, before the scheduler starts (a task whose pool is missing is never scheduled)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    for line in create_pools(env, sandbox_dir() / "airflow"):
        print(line, flush=True)
    print(f"sandbox cloud: {endpoint}", flush=True)
    print(f"Airflow UI:    http://127.0.0.1:{port}  (Ctrl-C stops Airflow; the sandbox keeps running)", flush=True)
    os.execve(airflow, [airflow, "standalone"], env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
