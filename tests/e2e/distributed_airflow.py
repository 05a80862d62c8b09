"""A distributed Airflow for e2e tests and benchmarks: PostgreSQL, Redis and Airflow on CeleryExecutor, each
component its own subprocess (process group), on free ports, under one directory.

Reusable pieces (stdlib only, besides ``psycopg2`` for the Postgres readiness probe):

* :class:`Postgres`: Debian's PostgreSQL (binaries from ``pg_config --bindir``), ``initdb`` into a data dir,
  ``pg_ctl start`` on a free port with its Unix socket in that dir, a database and a password role for Airflow.
  PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user (made by Debian's
  ``postgresql-common`` when ``postgresql-15`` is installed) on a data dir that user owns.
* :class:`Redis`: Debian's ``redis-server`` in the foreground on 127.0.0.1, a free port, no persistence.
* :class:`CeleryAirflow`: ``airflow db migrate`` on Postgres, then ``api-server``, ``scheduler``,
  ``dag-processor``, ``triggerer`` and N ``airflow celery worker`` processes (broker Redis, result backend
  Postgres, one JWT secret, the execution API on the api-server's port). Each worker is its own "machine":
  its own ``AIRFLOW_HOME`` (so its own task-log folder), ``HOME``, ``TMPDIR``, parse-cache dir, log-server
  port and hostname (what Airflow records on the task instances it runs). Before anything starts, the
  metadata database and the broker must answer within ``service_timeout`` seconds, or :class:`ServiceDown`
  names which one is not up.
* :class:`DistributedAirflow`: all of it as one context manager that stops every process group and removes
  the data dirs on the way out, also on failure, printing each component's log tail when something failed.

Used by ``tests/e2e/test_distributed.py``; written to be reused (for example by a benchmark that wants a
Postgres-backed Airflow with more workers): ``DistributedAirflow(root, env, workers=[...], concurrency=8)``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.real_airflow import (
    COMPONENTS,
    LOCAL_WORKER_PRELOAD,
    AirflowDown,
    RealAirflow,
    fast_env,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
HOSTNAME_ENV = "E2E_WORKER_HOSTNAME"
SERVICE_USER = "postgres"


class ServiceDown(AirflowDown):
    """A backing service (Postgres, Redis) is not up: the message names which, where, and what it said."""


def hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for a worker of :class:`CeleryAirflow`: the name the harness gave
    it (every worker runs on this one machine, so the FQDN cannot tell them apart)."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"--- {path.name}: missing"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text)


def _stop_group(proc: subprocess.Popen[bytes] | None, pgid: int | None, grace: float) -> None:
    """SIGTERM the process group, wait up to ``grace`` s for its leader, then SIGKILL the group."""
    if pgid is None:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        if proc is None and not group_alive(pgid):
            break
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid`` (zombies of our own children count as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --------------------------------------------------------------------------------------------- Postgres


class Postgres:
    """PostgreSQL in ``root``: ``initdb``, ``pg_ctl start`` on a free port, a database ``airflow`` owned by a
    role ``airflow`` with a random password. ``stop()`` stops the server and removes the data dir.

    Run as root, the data dir must belong to (and be reachable by) ``postgres``: pytest's temporary dirs are
    private to root (0700), so then the data dir is a fresh ``mkdtemp`` in the system temp dir, owned by
    ``postgres``, linked from ``root/data``. The server log stays in ``root/postgres.log`` either way.
    """

    name = "postgres"

    def __init__(self, root: Path, *, database: str = "airflow", user: str = "airflow", port: int | None = None):
        self.root = root
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = root / "postgres.log"
        self.bindir = Path(self._pg_config_bindir())
        self.data_dir: Path | None = None
        self._private_dir: Path | None = None
        self.pgid: int | None = None

    @staticmethod
    def _pg_config_bindir() -> str:
        pg_config = shutil.which("pg_config")
        if pg_config is None:
            raise ServiceDown("Postgres: pg_config is not on PATH. Fix: apt-get install postgresql-15")
        return subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()

    # ------------------------------------------------------------------------------------------ helpers
    def _as_service_user(self) -> dict[str, Any]:
        """Popen arguments that run a PostgreSQL binary as ``postgres`` when we are root (it refuses root)."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise ServiceDown(
                f"Postgres: running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as "
                "(it refuses root). Fix: apt-get install postgresql-15 (postgresql-common creates that user)"
            ) from None
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _run(self, *args: str, timeout: float = 60, shown: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        with self.log_path.open("a") as log:
            log.write(f"$ {shown or ' '.join(args)}\n")
            log.flush()
            return subprocess.run(
                list(args), cwd=self.data_dir.parent if self.data_dir else "/", env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                **self._as_service_user(),
            )

    def _make_data_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return self.root / "data"
        pw = pwd.getpwnam(SERVICE_USER)
        private = Path(tempfile.mkdtemp(prefix="phoenix-postgres-"))
        os.chown(private, pw.pw_uid, pw.pw_gid)
        self._private_dir = private
        link = self.root / "data"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(private / "data")
        return private / "data"

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}:{urllib.parse.quote(self.password)}@{self.host}:{self.port}/{self.database}"

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        self.data_dir = self._make_data_dir()
        rc = self._run(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
        ).returncode
        if rc != 0:
            raise ServiceDown(f"Postgres: initdb failed ({rc})\n{self.tail()}")
        (self.data_dir / "pg_hba.conf").write_text(
            "local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        options = " ".join(
            f"-c {k}={v}" for k, v in {
                "port": self.port, "listen_addresses": self.host, "unix_socket_directories": self.data_dir,
                "max_connections": 200, "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "shared_buffers": "64MB", "logging_collector": "off",
            }.items()
        )
        server_log = self.data_dir.parent / "server.log"  # written by the postgres user; copied in tail()
        rc = self._run(
            str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-o", options, "-l", str(server_log),
            "-w", "-t", str(max(1, int(deadline - time.monotonic()))),
        ).returncode
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():  # pg_ctl makes the postmaster a session leader: its pid is its group
            self.pgid = int(pid_file.read_text().split()[0])
        if rc != 0:
            raise ServiceDown(f"Postgres did not start on {self.host}:{self.port} ({rc})\n{self.tail()}")
        rc = self._run(
            str(self.bindir / "psql"), "-h", str(self.data_dir), "-p", str(self.port), "-U", "postgres",
            "-v", "ON_ERROR_STOP=1", "-q", "-d", "postgres",
            "-c", f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
            "-c", f"CREATE DATABASE {self.database} OWNER {self.user}",
            shown=f"psql: CREATE ROLE {self.user} LOGIN PASSWORD '***'; CREATE DATABASE {self.database}",
        ).returncode
        if rc != 0:
            raise ServiceDown(f"Postgres: creating the {self.database} database failed ({rc})\n{self.tail()}")

    def alive(self) -> bool:
        return self.pgid is not None and group_alive(self.pgid)

    def data_dirs(self) -> list[Path]:
        return [d for d in (self.data_dir, self._private_dir) if d is not None]

    def stop(self, grace: float = 10) -> None:
        """``pg_ctl stop -m fast``, the process group killed if anything is left, the data dir removed."""
        if self.data_dir is not None and self.alive():
            try:
                self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                          "-t", str(int(grace)), timeout=grace + 5)
            except subprocess.TimeoutExpired:
                pass
        if self.pgid is not None and group_alive(self.pgid):
            _stop_group(None, self.pgid, 2)
        self._keep_server_log()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            (self.root / "data").unlink(missing_ok=True)
        elif self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _keep_server_log(self) -> None:
        if self.data_dir is None:
            return
        server_log = self.data_dir.parent / "server.log"
        if server_log.exists():
            with self.log_path.open("a") as log:
                log.write(server_log.read_text(errors="replace"))
            server_log.unlink()

    def tail(self, lines: int = 40) -> str:
        out = [_tail(self.log_path, lines)]
        if self.data_dir is not None and (self.data_dir.parent / "server.log").exists():
            out.append(_tail(self.data_dir.parent / "server.log", lines))
        return "\n".join(out)

    def check(self) -> None:
        if self.pgid is not None and not self.alive():
            raise ServiceDown(f"Postgres on {self.host}:{self.port} exited\n{self.tail()}")


# ------------------------------------------------------------------------------------------------ Redis


class Redis:
    """``redis-server`` in the foreground on 127.0.0.1 (own process group), a free port, no persistence."""

    name = "redis"

    def __init__(self, root: Path, *, port: int | None = None):
        self.root = root
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.data_dir = root / "data"
        self.log_path = root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceDown("Redis: redis-server is not on PATH. Fix: apt-get install redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                 "--dir", str(self.data_dir), "--daemonize", "no", "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServiceDown(f"Redis exited with {self.proc.returncode} at start\n{self.tail()}")
            error = redis_ping(self.host, self.port)
            if error is None:
                return
            if time.monotonic() > deadline:
                raise ServiceDown(f"Redis on {self.host}:{self.port} not answering after {timeout:.0f}s: {error}")
            time.sleep(0.1)

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def data_dirs(self) -> list[Path]:
        return [self.data_dir]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5) -> None:
        if self.proc is not None:
            _stop_group(self.proc, self.proc.pid, grace)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceDown(f"Redis on {self.host}:{self.port} exited with {self.proc.returncode}\n{self.tail()}")


# ------------------------------------------------------------------------------------------- readiness


def redis_ping(host: str, port: int, timeout: float = 2) -> str | None:
    """None if Redis at host:port answers PING; else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = s.recv(64)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None if reply.startswith(b"+PONG") else f"unexpected reply {reply!r}"


def postgres_ping(url: str, timeout: float = 2) -> str | None:
    """None if the Postgres database of a SQLAlchemy URL accepts a login and ``SELECT 1``; else the error."""
    import psycopg2

    parts = urllib.parse.urlsplit(url)
    try:
        conn = psycopg2.connect(
            host=parts.hostname, port=parts.port or 5432, user=urllib.parse.unquote(parts.username or ""),
            password=urllib.parse.unquote(parts.password or ""), dbname=parts.path.lstrip("/"),
            connect_timeout=max(1, int(timeout)),
        )
    except psycopg2.Error as e:
        return f"{type(e).__name__}: {str(e).strip()}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()
    return None


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def wait_for_services(db_url: str, broker_url: str, timeout: float = 10) -> None:
    """Until the metadata database and the Celery broker both answer; else :class:`ServiceDown` naming the
    ones that did not (within ``timeout`` seconds, so a missing service is a clear error, not a hang in
    ``airflow db migrate`` or a worker retrying its broker connection forever)."""
    deadline = time.monotonic() + timeout
    while True:
        errors = {}
        if (e := postgres_ping(db_url)) is not None:
            errors["Postgres (the metadata database and Celery result backend)"] = (_where(db_url), e)
        parts = urllib.parse.urlsplit(broker_url)
        if (e := redis_ping(parts.hostname or "127.0.0.1", parts.port or 6379)) is not None:
            errors["Redis (the Celery broker)"] = (_where(broker_url), e)
        if not errors:
            return
        if time.monotonic() > deadline:
            raise ServiceDown(
                "; ".join(f"{name} at {where} is not up after {timeout:.0f}s: {err}" for name, (where, err) in errors.items())
                + ". Fix: start it, or correct the URL"
            )
        time.sleep(0.5)


# -------------------------------------------------------------------------------------- Airflow, Celery


@dataclass
class Worker:
    """One ``airflow celery worker``: its own home (AIRFLOW_HOME, HOME, TMPDIR, parse cache, task logs)."""

    name: str
    hostname: str
    home: Path
    log_port: int

    @property
    def log_dir(self) -> Path:
        return self.home / "airflow" / "logs"


def celery_env(env: dict[str, str], db_url: str, broker_url: str, *, api_port: int, concurrency: int) -> dict[str, str]:
    """``env`` (an Airflow environment, e.g. ``sandbox.airflow_env.airflow_env``) on CeleryExecutor, Postgres and
    Redis, the API (and the execution API every worker calls) on ``api_port``; with
    :func:`real_airflow.fast_env`'s speed knobs (one JWT secret for every component among them)."""
    from cryptography.fernet import Fernet

    env = fast_env(env)
    for key in LOCAL_WORKER_PRELOAD:  # the LocalExecutor's; Celery workers preload through their Celery config
        env.pop(key, None)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("postgresql+psycopg2://", "postgresql://"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            # the same key everywhere, as in docker-compose.yml: each worker has its own AIRFLOW_HOME, whose
            # generated airflow.cfg would otherwise hold a fernet key of its own
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__PARALLELISM": str(max(4, 2 * concurrency)),
            # each DAG file is parsed once (fast_env's 60 s re-parses every file every minute: CPU that the tasks
            # of a run of a few minutes on 2 cores need); a changed file is still seen within the refresh interval
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        }
    )
    return env


class CeleryAirflow(RealAirflow):
    """:class:`RealAirflow` on CeleryExecutor: the four components plus ``len(workers)`` Celery workers.

    ``services`` (the :class:`Postgres` and :class:`Redis` this harness started, if any) are watched too: a
    service that dies fails the next wait naming it.
    """

    def __init__(
        self,
        env: dict[str, str],
        home: Path,
        port: int,
        *,
        db_url: str,
        broker_url: str,
        workers: Sequence[str] = ("worker-a", "worker-b"),
        concurrency: int = 2,
        services: Sequence[Postgres | Redis] = (),
        service_timeout: float = 10,
        admin: tuple[str, str] | None = None,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        env = celery_env(env, db_url, broker_url, api_port=port, concurrency=concurrency)
        if admin is not None:  # docker-compose.yml's auth: the FAB auth manager and an admin user
            env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", None)
            env["AIRFLOW__CORE__AUTH_MANAGER"] = FAB_AUTH_MANAGER
        super().__init__(env, home, port)
        self.admin = admin
        self.credentials = admin

        self.db_url = db_url
        self.broker_url = broker_url
        self.concurrency = concurrency
        self.services = list(services)
        self.service_timeout = service_timeout
        self.workers = [
            Worker(name=name, hostname=f"{name}.phoenix.test", home=home.parent / name, log_port=free_port())
            for name in workers
        ]

    @property
    def components(self) -> tuple[str, ...]:
        return (*COMPONENTS, *(w.name for w in self.workers))

    def worker_env(self, worker: Worker) -> dict[str, str]:
        """A worker's own machine: nothing it writes locally is seen by another worker or the control plane."""
        airflow_home, home, tmp = worker.home / "airflow", worker.home / "home", worker.home / "tmp"
        for d in (airflow_home, home, tmp):
            d.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(worker.log_dir),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker.log_port),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.hostname",
                HOSTNAME_ENV: worker.hostname,
                "HOME": str(home),
                "TMPDIR": str(tmp),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "PHOENIX_PARSE_CACHE_DIR": str(worker.home / "parse-cache"),
                "PHOENIX_REPORT_DIR": str(worker.home / "reports"),
                # the hostname callable lives in this module
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
                # as docker-compose.yml's workers: Airflow's Celery config, after phoenix_fleet.worker_preload (what
                # every task imports and parses) before the pool forks: each task process shares it
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "phoenix_fleet.celery_worker_config.CELERY_CONFIG",
            }
        )
        return env

    def start(self, migrate_timeout: float = 180) -> None:
        """What docker-compose.yml does: the services answer; ``db migrate``; then, while the scheduler, dag-processor,
        triggerer and workers already start, the API budget's pools (``airflow pools import``) and, with ``admin``, the
        same ``airflow users create`` as compose's ``airflow-init``, at once (different tables); both end before the
        api-server starts, so before any run can be triggered (a pool is needed only to queue a task). The api-server
        waits for the admin: both sync the FAB roles, and run together they collide on its unique keys."""
        wait_for_services(self.db_url, self.broker_url, timeout=self.service_timeout)
        self.run_once("db-migrate", ["db", "migrate"], migrate_timeout)
        self.start_components(tuple(c for c in COMPONENTS if c != "api-server"))
        for worker in self.workers:
            self.procs[worker.name] = self._airflow(
                "celery", "worker", "--celery-hostname", f"{worker.name}@phoenix.test",
                "--concurrency", str(self.concurrency), "--pid", str(worker.home / "worker.pid"),
                log=worker.name, env=self.worker_env(worker), cwd=worker.home,
            )
        errors: list[BaseException] = []

        def pools() -> None:
            try:
                self.create_pools(migrate_timeout)
            except BaseException as e:  # re-raised below
                errors.append(e)

        importing = threading.Thread(target=pools, name="pools-import")
        importing.start()
        try:
            if self.admin is not None:
                user, password = self.admin
                # --password=<value>: a generated password may start with "-", which argparse reads as an option
                self.run_once("airflow-init", [
                    "users", "create", "--role", "Admin", "--username", user, f"--password={password}",
                    "--email", "admin@example.com", "--firstname", "Phoenix", "--lastname", "Admin",
                ], migrate_timeout)
        finally:
            importing.join()
        if errors:
            raise errors[0]
        self.start_components(("api-server",))

    def check_alive(self) -> None:
        for service in self.services:
            service.check()
        super().check_alive()

    def tails(self, lines: int = 60) -> str:
        out = [s.tail(lines) for s in self.services]
        out += [self.tail(n, lines) for n in self.components]
        return "\n".join(out)

    def log_roots(self) -> list[Path]:
        """Every local task-log folder: the control plane's (triggerer) and each worker's."""
        return [self.home / "logs", *(w.log_dir for w in self.workers)]

    def task_logs(self, dag_id: str, run_id: str, task_ids: list[str], lines: int = 40) -> str:
        out = []
        for root in self.log_roots():
            run_dir = root / f"dag_id={dag_id}" / f"run_id={run_id}"
            for task_id in task_ids:
                for path in sorted(run_dir.glob(f"task_id={task_id}/**/*.log")):
                    text = path.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"--- task log {path}\n" + "\n".join(text))
        return "\n".join(out) or f"(no task logs of {dag_id} {run_id} under {self.log_roots()})"

    def process_groups(self) -> list[int]:
        return [p.pid for p in self.procs.values()]


# ------------------------------------------------------------------------------------------ everything


class DistributedAirflow:
    """Postgres, Redis and a :class:`CeleryAirflow` under ``root``, as a context manager::

        with DistributedAirflow(root, env) as af:   # services up, db migrated, every component started
            af.wait_api()
            ...

    On the way out, also when the start or the body failed, every process group is stopped and the data dirs
    removed; when something failed, each component's log tail is printed first. ``db_url`` / ``broker_url``
    point Airflow at a Postgres / Redis of your own instead of starting one. After the ``with``,
    :meth:`leftovers` says what is still there (nothing, unless teardown failed). ``admin=(user, password)``:
    the FAB auth manager with that admin, created as ``airflow-init`` in docker-compose.yml creates it, and every
    REST call made as that user (bearer token); None: the simple auth manager of ``env``.
    """

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *,
        port: int | None = None,
        workers: Sequence[str] = ("worker-a", "worker-b"),
        concurrency: int = 2,
        db_url: str | None = None,
        broker_url: str | None = None,
        service_timeout: float = 10,
        tail_lines: int = 80,
        admin: tuple[str, str] | None = None,
    ) -> None:
        self.root = root
        self.admin = admin
        self.env = env
        self.port = port or free_port()
        self.workers = workers
        self.concurrency = concurrency
        self.postgres = Postgres(root / "postgres") if db_url is None else None
        self.redis = Redis(root / "redis") if broker_url is None else None
        self.db_url = db_url
        self.broker_url = broker_url
        self.service_timeout = service_timeout
        self.tail_lines = tail_lines
        self.airflow: CeleryAirflow | None = None
        self._groups: list[int] = []

    @property
    def services(self) -> list[Postgres | Redis]:
        return [s for s in (self.postgres, self.redis) if s is not None]

    def __enter__(self) -> CeleryAirflow:
        try:
            self._start_services()
            self.airflow = CeleryAirflow(
                self.env, self.root / "airflow", self.port,
                db_url=self.db_url or self.postgres.url(),  # type: ignore[union-attr]
                broker_url=self.broker_url or self.redis.url,  # type: ignore[union-attr]
                workers=self.workers, concurrency=self.concurrency, services=self.services,
                service_timeout=self.service_timeout, admin=self.admin,
            )
            self.airflow.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.airflow

    def _start_services(self) -> None:
        """Postgres and Redis at once (each in its thread: initdb, the server's start and Redis's are independent);
        the first error is raised after both have finished, so teardown finds what did start."""
        errors: list[BaseException] = []

        def start(service: Postgres | Redis) -> None:
            try:
                service.start()
            except BaseException as e:  # re-raised below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,), name=f"start-{s.name}") for s in self.services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            print(self.tails())
        self._groups = self.process_groups()
        try:
            if self.airflow is not None:
                # 5 s, then SIGKILL: nothing here needs a graceful end (the triggerer's took 10 s, every time)
                self.airflow.stop(grace=5)
        finally:
            for service in reversed(self.services):
                service.stop()

    def tails(self) -> str:
        if self.airflow is not None:
            return self.airflow.tails(self.tail_lines)
        return "\n".join(s.tail(self.tail_lines) for s in self.services)

    def process_groups(self) -> list[int]:
        """Every process group started: each Airflow component's and each service's."""
        groups = self.airflow.process_groups() if self.airflow is not None else []
        return groups + [s.pgid for s in self.services if s.pgid is not None]

    def leftovers(self) -> list[str]:
        """What teardown left behind: live process groups and data dirs (empty when all is clean)."""
        out = [f"process group {g}" for g in self._groups or self.process_groups() if group_alive(g)]
        for service in self.services:
            out += [f"{service.name} data dir {d}" for d in service.data_dirs() if d.exists()]
        return out
