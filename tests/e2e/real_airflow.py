"""A real Airflow for e2e tests: api-server, scheduler, dag-processor and triggerer as subprocesses (SQLite,
LocalExecutor), wired to the sandbox cloud with ``sandbox.airflow_env``, driven only through the public REST API.

Each component runs in its own session (process group) and logs to ``<home>/<component>.log``; ``stop()``
terminates every group (the task processes the executor forked go with it), then kills what is left.
Every wait here is bounded and fails with the component logs' tails (and the failed tasks' logs).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = {"success", "failed"}
# a task in one of these states means the run went wrong: fail at once instead of sitting out retry delays
BAD_TASK_STATES = {"failed", "up_for_retry", "upstream_failed"}

#: the LocalExecutor's workers come from a fork server that imported what every phoenix task needs
#: (phoenix_fleet.worker_preload): each task process, forked from a worker, starts with it (docs/scale.md, "What a
#: deployment sets"); tasks still fork, never a new interpreter
LOCAL_WORKER_PRELOAD = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": "phoenix_fleet.worker_preload",
    "AIRFLOW__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER": "False",
}

# no proxy for 127.0.0.1, whatever the environment says
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fast_env(env: dict[str, str]) -> dict[str, str]:
    """Knobs that make a fresh Airflow notice DAG files and move tasks along quickly on 2 cores."""
    env = dict(env)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # one secret for every component: the scheduler signs the workers' execution-API tokens
            # (64+ bytes: HS512 wants at least that)
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # the scheduler's and triggerer's log servers default to 8793/8794: free ports, so a developer's
            # `make airflow` or a parallel run does not collide
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            # the dag-processor lists the folder every 5 s; a file is re-parsed at most every 60 s
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            **LOCAL_WORKER_PRELOAD,
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "NO_PROXY": ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1", "localhost") if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env["no_proxy"] = env["NO_PROXY"]
    # bytecode, as an installed deployment has it: `make setup` compiles the venv's; this lets the Airflow processes
    # write the rest (plugins/, dags/: __pycache__, git-ignored) once instead of each task process compiling them
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class AirflowDown(AssertionError):
    pass


class RealAirflow:
    """Four Airflow components in subprocesses; REST helpers against the api-server."""

    def __init__(self, env: dict[str, str], home: Path, port: int) -> None:
        self.env = env
        self.home = home
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.started = time.monotonic()
        #: (username, password) of an Airflow user: REST calls then carry a bearer token from ``POST
        #: /auth/token`` (the FAB auth manager's login); None: no auth (the simple auth manager, all admins)
        self.credentials: tuple[str, str] | None = None
        self._token: str | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def _airflow(
        self, *args: str, log: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        fh = (self.home / f"{log}.log").open("ab")
        self._logs.append(fh)
        return subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env if env is None else env,
            cwd=cwd or self.home,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, migrate_timeout: float = 180) -> None:
        """``airflow db migrate`` (it also writes airflow.cfg before four processes race to), the API budget's pools,
        then the components."""
        self.run_once("db-migrate", ["db", "migrate"], migrate_timeout)
        self.create_pools(migrate_timeout)
        self.start_components()

    def create_pools(self, timeout: float = 180) -> None:
        """The API budget's pools of the run's fleet config (``phoenix_<env>_<region>``, docs/scale.md) with
        ``airflow pools import``, as ``make airflow`` creates them: without them no AWS task would be scheduled."""
        from phoenix_fleet.api_budget import pool_specs, pools_import_json
        from phoenix_fleet.config import load_fleet_config

        specs = pool_specs(load_fleet_config(self.env.get("PHOENIX_FLEET_CONFIG")))
        path = self.home / "phoenix-pools.json"
        path.write_text(json.dumps(pools_import_json(specs)))
        self.run_once("pools-import", ["pools", "import", str(path)], timeout)

    def pools(self) -> dict[str, int]:
        """The Airflow pools through the REST API: name -> slots."""
        return {p["name"]: p["slots"] for p in self.api("GET", "/api/v2/pools?limit=100")["pools"]}

    def run_once(self, log: str, args: list[str], timeout: float) -> None:
        """``airflow <args>`` to completion (bounded), logging to ``<log>.log``; fails with its log's tail."""
        proc = self._airflow(*args, log=log)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AirflowDown(f"airflow {args[0]} {args[1]} took over {timeout}s\n{self.tail(log)}") from None
        if rc != 0:
            raise AirflowDown(f"airflow {args[0]} {args[1]} failed ({rc})\n{self.tail(log)}")

    def start_components(self, names: tuple[str, ...] = COMPONENTS) -> None:
        for name in names:
            self.procs[name] = self._airflow(name, log=name)
        self.started = time.monotonic()

    def stop(self, grace: float = 15) -> None:
        """SIGTERM every component's process group, wait up to `grace` s in total, then SIGKILL the groups."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():  # the group too: forked task processes may outlive their parent
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for fh in self._logs:
            fh.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AirflowDown(f"airflow {name} exited with {proc.returncode}\n{self.tail(name)}")

    # ---------------------------------------------------------------------------------------------- logs
    def tail(self, name: str, lines: int = 60) -> str:
        path = self.home / f"{name}.log"
        if not path.exists():
            return f"--- {name}.log: missing"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name}.log (last {len(text)} lines)\n" + "\n".join(text)

    def tails(self, lines: int = 60) -> str:
        return "\n".join(self.tail(n, lines) for n in COMPONENTS)

    def task_logs(self, dag_id: str, run_id: str, task_ids: list[str], lines: int = 40) -> str:
        root = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        out = []
        for task_id in task_ids:
            for path in sorted(root.glob(f"task_id={task_id}/**/*.log")):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- task log {path.relative_to(self.home)}\n" + "\n".join(text))
        return "\n".join(out) or f"(no task logs under {root})"

    # ---------------------------------------------------------------------------------------------- REST
    def request(self, method: str, path: str, body: Any = None, timeout: float = 15) -> tuple[int, Any]:
        """One REST call: (status, JSON payload or text). With ``credentials``, as that user (a bearer token,
        fetched once and again when it is refused)."""
        status, payload = self._send(method, path, body, timeout, self._bearer(timeout))
        if status == 401 and self.credentials is not None:
            self._token = None
            status, payload = self._send(method, path, body, timeout, self._bearer(timeout))
        return status, payload

    def _bearer(self, timeout: float) -> str | None:
        if self.credentials is None:
            return None
        if self._token is None:
            user, password = self.credentials
            status, payload = self._send("POST", "/auth/token", {"username": user, "password": password}, timeout, None)
            assert status in (200, 201) and isinstance(payload, dict), f"POST /auth/token as {user} -> {status}: {payload}"
            self._token = str(payload["access_token"])
        return self._token

    def _send(self, method: str, path: str, body: Any, timeout: float, token: str | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, payload = self.request(method, path, body)
        assert status in ok, f"{method} {path} -> {status}: {payload}"
        return payload

    def wait(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        """Call `probe` until it returns something truthy; bounded; checks the components stay up."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            self.check_alive()
            try:
                value = probe()
                if value:
                    return value
            except (OSError, urllib.error.URLError) as e:  # api-server not listening yet
                last_error = e
            if time.monotonic() > deadline:
                raise AirflowDown(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")
            time.sleep(every)

    def wait_api(self, timeout: float = 120) -> dict[str, Any]:
        def probe() -> Any:  # public: no token needed (nor to be had before the api-server answers)
            status, payload = self._send("GET", "/api/v2/version", None, 3, None)
            return payload if status == 200 else None

        return self.wait("the api-server (/api/v2/version)", probe, timeout)

    def wait_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        def probe() -> bool:
            return all(self.request("GET", f"/api/v2/dags/{d}")[0] == 200 for d in dag_ids)

        self.wait(f"the dag-processor to parse {dag_ids}", probe, timeout)

    # ---------------------------------------------------------------------------------------------- DAGs
    def unpause(self, dag_id: str) -> None:
        dag = self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert dag["is_paused"] is False, dag

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the REST API gives them (state, hostname, operator, trigger, ...)."""
        tis = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances?limit=200")
        return list(tis["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti_key(ti): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        status, ti = self.request("GET", path)
        return ti["state"] if status == 200 else None

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{_q(key)}"
        return self.api("GET", path)["value"]

    def failure_report(self, dag_id: str, run_id: str) -> str:
        try:
            states = self.task_states(dag_id, run_id)
        except Exception as e:  # a report must not hide the original failure
            return f"(task states unavailable: {e})"
        bad = sorted({t.split("[")[0] for t, s in states.items() if s in BAD_TASK_STATES})
        return f"{dag_id} {run_id} task states: {states}\n{self.task_logs(dag_id, run_id, bad)}"

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Until the run succeeds; fails at once when the run fails or any task fails or goes up for retry.
        ``on_poll`` sees the run's task instances at every poll (to watch deferrals, act on a state, ...)."""

        def probe() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            if run["state"] == "success":
                return run
            tis = self.task_instances(dag_id, run_id)
            if on_poll is not None:
                on_poll(tis)
            states = {ti_key(ti): ti["state"] for ti in tis}
            if run["state"] == "failed" or BAD_TASK_STATES & set(states.values()):
                raise AssertionError(f"run {dag_id} {run_id} is {run['state']}\n{self.failure_report(dag_id, run_id)}")
            return None

        return dict(self.wait(f"{dag_id} {run_id} to succeed", probe, timeout))


def ti_key(ti: dict[str, Any]) -> str:
    """``task_id``, or ``task_id[map_index]`` for a mapped task instance."""
    return str(ti["task_id"]) + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")
