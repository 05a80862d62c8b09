"""``PackerHook``: the Packer CLI as a subprocess, done right (in the manner of astronomer-cosmos' subprocess hook).

* Arguments are a list, never a shell string: a variable value such as ``1; rm -rf /`` or ``$(touch x)``
  reaches Packer as one literal ``-var name=value`` argument.
* ``packer build -machine-readable -color=false`` is parsed, never its prose: each line
  ``timestamp,target,type,data...`` is decoded as it arrives; ``ui`` lines go to the task log as the human
  text Packer would have printed, ``artifact,N,id,<region>:<ami>[,...]`` lines give ``{region: ami_id}``,
  ``error`` lines give the build's errors.
* Packer runs in its own session (``start_new_session=True``), so a Ctrl-C on a terminal or the worker's
  own signals never reach it directly. :meth:`PackerHook.on_kill` sends SIGINT to its process group:
  Packer then cancels the build and deletes its builder instance, key pair and security group. After a
  grace period it escalates to SIGTERM, then SIGKILL. A command interrupted by any ``BaseException`` (the
  ``AirflowTaskTimeout`` of ``execution_timeout``, which Airflow raises before calling ``on_kill``, or the
  ``KeyboardInterrupt`` of a worker shutdown) is stopped the same way, and waited for, before it re-raises.
* A failed build raises :class:`PackerBuildError` with Packer's error lines and the failed checks of the
  build-time test suite.

The binary: ``packer_bin``, else ``$PHOENIX_PACKER_BIN``, else ``packer`` on ``PATH``. In the sandbox and
the tests, ``sandbox/bin`` comes first on ``PATH``: that ``packer`` is the Packer double (see
``docs/bake-verify.md``); the hook cannot tell the difference and does not try to.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

PACKER_BIN_ENV = "PHOENIX_PACKER_BIN"
ENV_ALLOW_ENV = "PHOENIX_PACKER_ENV_ALLOW"
# What Packer gets from the worker's environment: nothing else (no AIRFLOW__*, AIRFLOW_CONN_*, AIRFLOW_VAR_*, no
# other tool's tokens). A name ending in "*" is a prefix.
ENV_ALLOW: tuple[str, ...] = (
    # the process itself
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TMP", "TEMP",
    # network: proxies and trust roots
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    # Packer's own settings and variables
    "PACKER_*", "PKR_VAR_*", "CHECKPOINT_DISABLE",
    # the AWS SDK's (credentials, region, endpoints, profiles, web identity, container credentials)
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_*", "AWS_EC2_METADATA_DISABLED", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_USE_FIPS_ENDPOINT", "AWS_SDK_LOAD_CONFIG",
)
_NEVER_ALLOWED = ("AIRFLOW", "_AIRFLOW")


def allowed_names(entries: Sequence[str], names: Sequence[str]) -> list[str]:
    """The ``names`` that an allow-list entry matches (exactly, or by prefix for an entry ending in ``*``)."""
    exact = {e for e in entries if not e.endswith("*")}
    prefixes = tuple(e[:-1] for e in entries if e.endswith("*"))
    return [n for n in names if n in exact or (prefixes and n.startswith(prefixes))]


def extra_allow_list(raw: str | None, field: str = ENV_ALLOW_ENV) -> list[str]:
    """More names for the allow-list, comma-separated (``NAME`` or ``PREFIX*``). An entry that could match
    Airflow's own settings or secrets (``AIRFLOW*``) is refused."""
    entries = [e.strip() for e in (raw or "").split(",") if e.strip()]
    for entry in entries:
        stem = entry.rstrip("*")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", entry) or not stem:
            raise PackerError(f"{field}: {entry!r} is not a variable name or NAME_PREFIX*. Fix: e.g. MY_TOOL_HOME,PACKER_DOUBLE_*")
        if any(stem.upper().startswith(n) or n.startswith(stem.upper()) for n in _NEVER_ALLOWED):
            raise PackerError(
                f"{field}: {entry!r} would pass Airflow's settings and secrets (AIRFLOW__*, AIRFLOW_CONN_*, "
                "AIRFLOW_VAR_*) to Packer. Fix: remove it; give Packer what it needs through the hook's env"
            )
    return entries
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_FAILED_CHECK_RE = re.compile(r"\b(FAILED|ERROR)\b|^E\s")


def _wait_exit(proc: subprocess.Popen[str], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class PackerError(AirflowException):
    """Packer could not be run at all (not found, init/validate failed, bad arguments)."""


class PackerBuildError(PackerError):
    """``packer build`` failed. ``errors``: the build errors Packer reported (machine-readable ``error``
    lines, else its last ``ui error`` lines); ``failed_checks``: output lines of the build-time test suite
    that report a failure; ``tail``: the last lines of output; ``cancelled``: the build was interrupted."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None,
        errors: Sequence[str] = (),
        error_lines: Sequence[str] = (),
        failed_checks: Sequence[str] = (),
        tail: Sequence[str] = (),
        cancelled: bool = False,
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.errors = list(errors)
        self.error_lines = list(error_lines)
        self.failed_checks = list(failed_checks)
        self.tail = list(tail)
        self.cancelled = cancelled


@dataclass(frozen=True)
class MachineLine:
    """One ``timestamp,target,type,data...`` line, data unescaped (``%!(PACKER_COMMA)``, ``\\n``, ``\\r``)."""

    timestamp: int
    target: str
    type: str
    data: tuple[str, ...]


def unescape(value: str) -> str:
    return value.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_machine_line(line: str) -> MachineLine | None:
    """A machine-readable line, or None for anything else (plain output, log lines, panics)."""
    parts = line.rstrip("\r\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return MachineLine(int(parts[0]), parts[1], parts[2], tuple(unescape(p) for p in parts[3:]))


def parse_artifact_id(artifact_id: str) -> dict[str, str]:
    """``us-east-1:ami-1,eu-west-1:ami-2`` (the amazon builders' artifact id) -> ``{region: ami_id}``."""
    out: dict[str, str] = {}
    for part in artifact_id.split(","):
        region, sep, ami = part.strip().partition(":")
        if sep and region and ami:
            out[region] = ami
    return out


def var_args(variables: Mapping[str, Any]) -> list[str]:
    """``-var name=value`` pairs as separate argv items. Strings are passed literally; lists, maps, numbers
    and booleans as HCL literals (JSON is valid HCL), as Packer parses non-string variables."""
    args: list[str] = []
    for name, value in variables.items():
        if not isinstance(name, str) or not _VAR_NAME_RE.match(name):
            raise PackerError(
                f"Packer variable name {name!r} is invalid. Fix: use letters, digits, '_' and '-' "
                "(an HCL identifier), e.g. base_ami_owners"
            )
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        elif isinstance(value, str):
            text = value
        elif isinstance(value, (list, tuple, dict)):
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
        else:
            raise PackerError(f"Packer variable {name}: cannot pass a {type(value).__name__}. Fix: use str, number, bool, list or dict")
        args += ["-var", f"{name}={text}"]
    return args


@dataclass
class PackerBuildResult:
    """What a successful ``packer build`` left: artifacts, the manifest and the package list."""

    artifacts: dict[str, str]  # region -> ami id (from the machine-readable artifact lines)
    artifact_ids: list[str]  # the raw artifact ids
    manifest: dict[str, Any] | None  # the manifest's build entry of this run (packer_run_uuid == last_run_uuid)
    manifest_path: Path | None
    packages_path: Path | None
    working_dir: Path
    returncode: int
    output: list[str] = field(default_factory=list)  # the human-readable lines, as logged


class PackerHook(BaseHook):
    """Run the Packer CLI: ``init``, ``validate``, ``build`` (machine-readable), with a kill that lets
    Packer clean up.

    :param packer_bin: the packer executable (default ``$PHOENIX_PACKER_BIN`` or ``packer`` on PATH).
    :param working_dir: where Packer runs (the manifest and the package list land here); default: a new
        temporary directory per hook (the caller removes it; see ``PackerBuildResult.working_dir``).
    :param env: extra environment for Packer (set as given, over everything else).
    :param env_allow: more worker variables Packer may see (``NAME`` or ``PREFIX*``), besides ``ENV_ALLOW`` and
        ``$PHOENIX_PACKER_ENV_ALLOW``. Packer never gets the rest of the worker's environment (Airflow's settings,
        connections and variables included); nothing matching ``AIRFLOW*`` can be allowed.
    :param aws_conn_id: when set, Packer gets this Airflow AWS connection's region, endpoint
        (``AWS_ENDPOINT_URL``) and, if the connection carries credentials or a role, its credentials (never
        logged): access keys as ``AWS_*`` variables; an assumed role's temporary credentials through a private
        AWS profile whose ``credential_process`` the hook keeps fresh while Packer runs, so a bake outlives the
        first credentials (:mod:`phoenix_fleet.aws_credentials`). None: Packer uses the worker's own AWS
        environment.
    :param region_name: AWS region for Packer (``AWS_REGION``/``AWS_DEFAULT_REGION``).
    :param kill_grace_seconds: after SIGINT, how long Packer may take to clean up before SIGTERM.
    :param term_grace_seconds: after SIGTERM, how long before SIGKILL.
    """

    conn_name_attr = "aws_conn_id"
    hook_name = "Packer CLI"

    def __init__(
        self,
        *,
        packer_bin: str | None = None,
        working_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        kill_grace_seconds: float = 600.0,
        term_grace_seconds: float = 30.0,
        tail_lines: int = 40,
        env_allow: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.env_allow = list(env_allow)
        self.packer_bin = packer_bin
        self._working_dir = Path(working_dir) if working_dir else None
        self.extra_env = dict(env or {})
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.kill_grace_seconds = kill_grace_seconds
        self.term_grace_seconds = term_grace_seconds
        self.tail_lines = tail_lines
        self._proc: subprocess.Popen[str] | None = None
        self._proc_lock = threading.Lock()
        self._killed = False
        self._cli_credentials: Any = None

    # ------------------------------------------------------------------------------------------ setup
    @property
    def working_dir(self) -> Path:
        if self._working_dir is None:
            self._working_dir = Path(tempfile.mkdtemp(prefix="phoenix-packer-"))
        self._working_dir.mkdir(parents=True, exist_ok=True)
        return self._working_dir

    def find_packer(self) -> str:
        candidate = self.packer_bin or os.environ.get(PACKER_BIN_ENV) or "packer"
        if os.sep in candidate:
            path = Path(candidate)
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
            raise PackerError(f"packer binary {candidate!r} is not an executable file. Fix: set {PACKER_BIN_ENV} or packer_bin")
        found = shutil.which(candidate)
        if not found:
            raise PackerError(
                f"packer not found on PATH. Fix: install Packer, set {PACKER_BIN_ENV}=/path/to/packer, or (sandbox) "
                "put sandbox/bin first on PATH"
            )
        return found

    def _aws_env(self) -> dict[str, str]:
        if not self.aws_conn_id:
            return {"AWS_REGION": self.region_name, "AWS_DEFAULT_REGION": self.region_name} if self.region_name else {}
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        aws = AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="ec2")
        cfg = aws.conn_config
        env: dict[str, str] = {}
        region = self.region_name or aws.conn_region_name
        if region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
        if cfg.endpoint_url:
            env["AWS_ENDPOINT_URL"] = cfg.endpoint_url
        if cfg.aws_access_key_id or cfg.role_arn or cfg.profile_name:
            from phoenix_fleet.aws_credentials import CliCredentials

            aws.get_credentials(region_name=region)  # masks the secrets in task logs (the provider does)
            self._cli_credentials = CliCredentials(aws.get_session(region_name=region).get_credentials(), logger=self.log)
            changes = self._cli_credentials.start()
            env.update({k: v for k, v in changes.items() if v is not None})
            self._unset = [k for k, v in changes.items() if v is None]
        return env

    def _stop_credentials(self) -> None:
        creds, self._cli_credentials = self._cli_credentials, None
        if creds is not None:
            creds.stop()

    def environment(self) -> dict[str, str]:
        """Packer's environment: only the allow-listed worker variables (``ENV_ALLOW`` plus ``env_allow`` and
        ``$PHOENIX_PACKER_ENV_ALLOW``), the connection's AWS settings and credentials, then ``env``."""
        entries = [*ENV_ALLOW, *extra_allow_list(",".join(self.env_allow), "env_allow"), *extra_allow_list(os.environ.get(ENV_ALLOW_ENV))]
        env = {name: os.environ[name] for name in allowed_names(entries, list(os.environ))}
        self._stop_credentials()
        self._unset: list[str] = []
        env.update(self._aws_env())
        for name in self._unset:  # the profile's credentials: inherited key variables would win over them
            env.pop(name, None)
        env.setdefault("CHECKPOINT_DISABLE", "1")  # no version check call-home from Packer
        env.update(self.extra_env)
        return env

    # -------------------------------------------------------------------------------------- commands
    def version(self) -> str:
        out = self._run([self.find_packer(), "version", "-machine-readable"], check=True)
        for ml in (parse_machine_line(line) for line in out.raw):
            if ml and ml.type == "version" and ml.data:
                return ml.data[0]
        return out.human[-1].removeprefix("Packer v") if out.human else ""

    def init(self, template: str | os.PathLike[str]) -> None:
        self.log.info("packer init %s", template)
        self._run([self.find_packer(), "init", "-machine-readable", str(template)], check=True, what="packer init")

    def validate(self, template: str | os.PathLike[str], variables: Mapping[str, Any] | None = None) -> None:
        self.log.info("packer validate %s", template)
        self._run(
            [self.find_packer(), "validate", "-machine-readable", *var_args(variables or {}), str(template)],
            check=True,
            what="packer validate",
        )

    def build(
        self,
        template: str | os.PathLike[str],
        variables: Mapping[str, Any] | None = None,
        *,
        init: bool = True,
        validate: bool = True,
        force: bool = False,
        manifest_file: str | None = None,
        packages_file: str | None = None,
    ) -> PackerBuildResult:
        """``packer [init,] [validate,] build -machine-readable -color=false -var ... <template>`` in
        ``working_dir``. Returns the artifacts, manifest and package list; raises :class:`PackerBuildError`."""
        template = str(Path(template).resolve())
        variables = dict(variables or {})
        if init:
            self.init(template)
        if validate:
            self.validate(template, variables)
        argv = [self.find_packer(), "build", "-machine-readable", "-color=false"]
        if force:
            argv.append("-force")
        argv += [*var_args(variables), template]
        self.log.info("packer build %s (%d variables) in %s", template, len(variables), self.working_dir)
        out = self._run(argv, check=False)
        if out.returncode != 0 or self._killed:
            raise self._build_error(out)
        artifacts: dict[str, str] = {}
        for artifact_id in out.artifact_ids:
            artifacts.update(parse_artifact_id(artifact_id))
        manifest_path, manifest = self._read_manifest(manifest_file)
        if not artifacts and manifest:
            artifacts = parse_artifact_id(str(manifest.get("artifact_id", "")))
        if not artifacts:
            raise PackerBuildError(
                "packer build succeeded but reported no artifact (no 'artifact,N,id' line, no manifest). "
                "Fix: check the template's source and post-processors",
                returncode=out.returncode,
                tail=out.human[-self.tail_lines :],
            )
        if packages_file is None and manifest:
            packages_file = (manifest.get("custom_data") or {}).get("packages_file")
        packages_path = self._find(packages_file, "packages*.tsv")
        self.log.info("packer build done: artifacts %s", ", ".join(f"{r}={a}" for r, a in sorted(artifacts.items())))
        return PackerBuildResult(
            artifacts=artifacts,
            artifact_ids=out.artifact_ids,
            manifest=manifest,
            manifest_path=manifest_path,
            packages_path=packages_path,
            working_dir=self.working_dir,
            returncode=out.returncode,
            output=out.human,
        )

    def on_kill(self) -> None:
        """SIGINT to Packer's process group (Packer cleans up), then SIGTERM, then SIGKILL after the graces.

        Called by Airflow on SIGTERM (from a signal handler, while ``build`` still runs) and after an
        ``execution_timeout``; in the latter case ``build`` has already stopped Packer itself (see ``_run``) and
        there is nothing left to do."""
        with self._proc_lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._stop(proc, lambda timeout: _wait_exit(proc, timeout))

    def _stop(self, proc: subprocess.Popen[str], wait: Any, why: str = "") -> bool:
        """Interrupt Packer's process group and wait for it to exit: SIGINT (Packer cancels the build and deletes
        its builder instance, key pair and security group) for ``kill_grace_seconds``, then SIGTERM for
        ``term_grace_seconds``, then SIGKILL. ``wait(timeout)`` returns True once Packer has exited. Returns
        True when it stopped."""
        self._killed = True
        for sig, grace in (
            (signal.SIGINT, self.kill_grace_seconds),
            (signal.SIGTERM, self.term_grace_seconds),
            (signal.SIGKILL, 10.0),
        ):
            self.log.warning(
                "%sSending %s to packer (process group %s)%s", why, sig.name, proc.pid,
                f"; waiting up to {grace:g}s for it to delete its builder instance, key pair and security group"
                if sig == signal.SIGINT else "",
            )
            why = ""
            try:
                os.killpg(proc.pid, sig)  # start_new_session: its pid is its process group id
            except ProcessLookupError:
                return True
            if wait(grace):
                self.log.warning("packer exited with code %s after %s", proc.returncode, sig.name)
                return True
        self.log.error("packer (process group %s) did not exit even after SIGKILL", proc.pid)
        return False

    # ------------------------------------------------------------------------------------- internals
    @dataclass
    class _Output:
        returncode: int = 0
        raw: list[str] = field(default_factory=list)
        human: list[str] = field(default_factory=list)
        ui_errors: list[str] = field(default_factory=list)
        build_errors: list[str] = field(default_factory=list)
        artifact_ids: list[str] = field(default_factory=list)
        cancelled: bool = False

    def _handle_line(self, line: str, out: PackerHook._Output) -> None:
        line = line.rstrip("\r\n")
        out.raw.append(line)
        if len(out.raw) > 5000:
            del out.raw[:1000]
        ml = parse_machine_line(line)
        if ml is None:
            if line.strip():
                self.log.info("%s", line)
                out.human.append(line)
                if line.startswith(("Error", "error", "panic")):
                    out.ui_errors.append(line)
            return
        if ml.type == "ui" and ml.data:
            kind, text = ml.data[0], ",".join(ml.data[1:])
            for piece in text.split("\n"):
                if kind == "error":
                    self.log.warning("%s", piece)
                    if piece.strip():
                        out.ui_errors.append(piece)
                else:
                    self.log.info("%s", piece)
                out.human.append(piece)
                if "Cleanly cancelled builds" in piece:
                    out.cancelled = True
        elif ml.type == "artifact" and len(ml.data) >= 3 and ml.data[1] == "id":
            out.artifact_ids.append(",".join(ml.data[2:]))
        elif ml.type == "error" and ml.data:
            out.build_errors.append(f"{ml.target}: {','.join(ml.data)}" if ml.target else ",".join(ml.data))
        elif ml.type in ("version", "version-prelease", "version-commit", "artifact-count", "error-count", "artifact"):
            self.log.debug("packer %s %s %s", ml.target, ml.type, ml.data)
        else:
            self.log.debug("packer machine line: %s", line)
        if len(out.human) > 5000:
            del out.human[:1000]

    def _run(self, argv: list[str], *, check: bool, what: str = "packer") -> PackerHook._Output:
        out = PackerHook._Output()
        self.log.debug("running %s", argv[:2])
        try:
            proc = subprocess.Popen(  # noqa: S603 - a list of arguments, never a shell
                argv,
                cwd=str(self.working_dir),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            self._stop_credentials()
            raise PackerError(f"cannot run {argv[0]}: {exc.strerror}. Fix: check {PACKER_BIN_ENV} / PATH") from exc
        with self._proc_lock:
            self._proc = proc
        assert proc.stdout is not None
        stdout = proc.stdout

        # A reader thread drains the pipe (Packer never blocks on a full pipe, also while on_kill waits in a
        # signal handler); this thread logs, so task logging stays on the task's own thread.
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            try:
                for line in stdout:
                    lines.put(line)
            finally:
                lines.put(None)

        reader = threading.Thread(target=pump, name="packer-output", daemon=True)
        reader.start()
        try:
            while (item := lines.get()) is not None:
                self._handle_line(item, out)
            out.returncode = proc.wait()
        except BaseException as exc:
            # The task itself is being stopped while Packer runs: execution_timeout raises inside execute (Airflow
            # calls on_kill only afterwards, when this hook has let go of Packer), a worker shutdown forwards
            # SIGINT as KeyboardInterrupt. Packer runs in its own session and would build on, orphaned: stop it
            # first, keep logging its cleanup, and only then let the exception go.
            if proc.poll() is None:

                eof = False

                def drain(timeout: float) -> bool:
                    nonlocal eof
                    deadline = time.monotonic() + timeout
                    while not eof and (left := deadline - time.monotonic()) > 0:
                        try:
                            item = lines.get(timeout=min(left, 1.0))
                        except queue.Empty:
                            continue
                        if item is None:  # end of output: Packer (and whatever it started) closed the pipe
                            eof = True
                        else:
                            self._handle_line(item, out)
                    return _wait_exit(proc, max(0.0, deadline - time.monotonic()) if eof else 0.0)

                self._stop(proc, drain, why=f"Task stopped ({type(exc).__name__}) while packer runs. ")
            raise
        finally:
            with self._proc_lock:
                self._proc = None
            self._stop_credentials()  # the credentials' refresher ends with the command
        if check and out.returncode != 0:
            lines = [line for line in out.human if line.strip()][-self.tail_lines :]
            raise PackerError(f"{what} failed (exit {out.returncode}):\n" + "\n".join(lines))
        return out

    def _build_error(self, out: PackerHook._Output) -> PackerBuildError:
        cancelled = out.cancelled or self._killed
        failed_checks = [
            line.split(": ", 1)[-1] if line.startswith("    ") else line
            for line in out.human
            if _FAILED_CHECK_RE.search(line.split(": ", 1)[-1] if line.startswith("    ") else line)
            and "errored after" not in line
            and "Some builds didn't complete" not in line
        ][-self.tail_lines :]
        errors = out.build_errors or out.ui_errors[-5:]
        head = "packer build was cancelled (interrupted)" if cancelled else f"packer build failed (exit {out.returncode})"
        parts = [f"{head}: " + ("; ".join(errors) if errors else "no error reported")]
        if out.ui_errors:
            parts.append("Packer's last error lines:\n  " + "\n  ".join(out.ui_errors[-self.tail_lines // 2 :]))
        if failed_checks:
            parts.append("Failed checks (build-time image tests):\n  " + "\n  ".join(failed_checks[-20:]))
        return PackerBuildError(
            "\n".join(parts),
            returncode=out.returncode,
            errors=errors,
            error_lines=out.ui_errors[-self.tail_lines :],
            failed_checks=failed_checks,
            tail=out.human[-self.tail_lines :],
            cancelled=cancelled,
        )

    def _find(self, name: str | None, pattern: str) -> Path | None:
        if name:
            path = Path(name)
            path = path if path.is_absolute() else self.working_dir / path
            return path if path.exists() else None
        found = sorted(self.working_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

    def _read_manifest(self, manifest_file: str | None) -> tuple[Path | None, dict[str, Any] | None]:
        path = self._find(manifest_file, "*manifest*.json")
        if path is None:
            return None, None
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise PackerBuildError(f"cannot parse the Packer manifest {path.name}: {exc}", returncode=0) from exc
        builds = data.get("builds") or []
        last = data.get("last_run_uuid")
        mine = [b for b in builds if b.get("packer_run_uuid") == last] or builds[-1:]
        return path, (mine[-1] if mine else None)
