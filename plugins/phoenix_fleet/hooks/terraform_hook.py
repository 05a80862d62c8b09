"""TerraformHook: the real ``terraform`` CLI as a subprocess, done right.

* arguments are lists, never a shell string; ``-input=false -no-color`` everywhere;
* our CLI config (provider mirror, plugin cache) from :func:`phoenix_fleet.terraform_env.terraform_env`;
* each command runs in its own process group (new session), and its output is streamed line by line into the
  task log; machine-readable output (``show -json``, ``output -json``) is captured, never parsed from prose;
* ``plan -detailed-exitcode -out <file>`` (0: no changes, 2: changes, 1: error), ``show -json <file>``,
  ``apply <file>`` (only ever the saved plan), ``output -json``;
* the state lock is always taken (``-lock=true``) with a ``-lock-timeout``; a held lock raises
  :class:`TerraformStateLockedError` naming who holds it;
* :meth:`TerraformHook.interrupt` sends SIGINT to the process group (Terraform stops gracefully, writes its state
  and releases the lock) and waits a grace period for it.

Variables: ``variables`` become ``-var name=value`` arguments (strings as-is, anything else as JSON, which HCL
reads), ``var_files`` become ``-var-file``, and ``env`` (e.g. ``TF_VAR_*``, credentials) is added to the
environment. Values are never logged (only variable names); neither are ``-backend-config`` values.

:func:`root_backend` reads which backend a root declares (its ``terraform { backend "..." {} }`` block, or
``cloud {}``) without running Terraform, so a caller can refuse local state before anything runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airflow.sdk.bases.hook import BaseHook

from phoenix_fleet.terraform_env import terraform_binary, terraform_env

_LOCK_TIMEOUT_RE = re.compile(r"^\d+(ms|s|m|h)$")
TAIL_LINES = 60


class TerraformError(RuntimeError):
    """A terraform command failed; the message holds the command and the end of its output."""

    def __init__(self, message: str, returncode: int | None = None, output: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class TerraformStateLockedError(TerraformError):
    """The state lock is held by someone else (and was not released within ``lock_timeout``)."""


class TerraformStalePlanError(TerraformError):
    """The saved plan no longer matches the state (someone applied in between)."""


class TerraformTimeoutError(TerraformError):
    pass


@dataclass
class TerraformResult:
    args: list[str]
    returncode: int
    stdout: str  # captured stdout (only for capture=True commands)
    tail: str  # the last lines of the streamed output
    seconds: float


def var_args(variables: Mapping[str, Any] | None) -> list[str]:
    """``-var name=value`` pairs: strings as they are, everything else as JSON (valid HCL)."""
    out: list[str] = []
    for name, value in (variables or {}).items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", str(name)):
            raise ValueError(f"variables: {name!r} is not a Terraform variable name. Fix: letters, digits, _ and -")
        text = value if isinstance(value, str) else json.dumps(value)
        out += ["-var", f"{name}={text}"]
    return out


def _exited(pid: int) -> bool:
    """Has child ``pid`` exited? (``waitid`` with ``WNOWAIT``: it stays waitable for ``Popen.wait``.)"""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def backend_config_args(settings: Mapping[str, Any] | None) -> list[str]:
    """``key=value`` strings for ``terraform init -backend-config`` (booleans as ``true``/``false``)."""
    out: list[str] = []
    for name, value in (settings or {}).items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
            raise ValueError(f"backend_config: {name!r} is not a backend setting name. Fix: e.g. bucket, key, region")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append(f"{name}={text}")
    return out


def _redact(args: Sequence[str]) -> str:
    shown: list[str] = []
    hide_next = False
    for a in args:
        if hide_next:
            shown.append(a.split("=", 1)[0] + "=***")
            hide_next = False
        elif a == "-var":
            shown.append(a)
            hide_next = True
        elif a.startswith("-var="):
            shown.append("-var=" + a[5:].split("=", 1)[0] + "=***")
        elif a.startswith("-backend-config=") and "=" in a[len("-backend-config=") :]:
            shown.append("-backend-config=" + a[len("-backend-config=") :].split("=", 1)[0] + "=***")
        else:
            shown.append(a)
    return " ".join(shown)


# ------------------------------------------------------------------------------------------ the root's backend


@dataclass(frozen=True)
class RootBackend:
    """The backend a Terraform root declares.

    ``kind``: the backend type (``"s3"``, ``"local"``, ...), ``"cloud"`` for a ``cloud {}`` block, or None when the
    root declares none (Terraform then keeps the state in ``terraform.tfstate`` in the working directory).
    ``settings``: the argument names set in the block itself (a partial configuration leaves some to
    ``-backend-config``). ``source``: the file that declares it.
    """

    kind: str | None
    settings: frozenset[str] = frozenset()
    source: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind not in (None, "local")


def _hcl_scan(text: str) -> str:
    """``text`` with comments blanked out and string contents replaced by ``_`` (same length, same lines).

    Enough of HCL's lexer to find blocks and braces: ``#`` and ``//`` line comments, ``/* */`` comments, and
    double-quoted strings with backslash escapes (whose braces must not count). Heredocs are not handled.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append('"' + "_" * (min(j, n) - i - 1) + ('"' if j < n else ""))
            i = j + 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _block_body(scanned: str, open_brace: int) -> tuple[int, int]:
    """(start, end) of the body of the block whose ``{`` is at ``open_brace`` (end: index of its ``}``)."""
    depth = 0
    for j in range(open_brace, len(scanned)):
        if scanned[j] == "{":
            depth += 1
        elif scanned[j] == "}":
            depth -= 1
            if depth == 0:
                return open_brace + 1, j
    return open_brace + 1, len(scanned)


_TOP_TERRAFORM_RE = re.compile(r"(?m)^\s*terraform\s*\{")
_BACKEND_RE = re.compile(r'(?m)^\s*(?:backend\s+"([^"]*)"|(cloud))\s*\{')
_SETTING_RE = re.compile(r"(?m)^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=")


def _backend_in_tf(text: str) -> tuple[str, frozenset[str]] | None:
    scanned = _hcl_scan(text)
    for top in _TOP_TERRAFORM_RE.finditer(scanned):
        start, end = _block_body(scanned, top.end() - 1)
        body = scanned[start:end]
        found = _BACKEND_RE.search(body)
        if found is None:
            continue
        # the label itself was blanked by the scan: read it from the original text at the same offsets
        if found.group(2):
            kind = "cloud"
        else:
            a, b = found.span(1)
            kind = text[start + a : start + b]
        b_start, b_end = _block_body(body, found.end() - 1)
        inner = body[b_start:b_end]
        # only the block's own arguments (depth 0 inside it), not those of nested blocks
        names = {m.group(1) for m in _SETTING_RE.finditer(inner) if inner[: m.start()].count("{") == inner[: m.start()].count("}")}
        return kind, frozenset(names)
    return None


def _backend_in_tf_json(text: str) -> tuple[str, frozenset[str]] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    blocks = data.get("terraform") if isinstance(data, dict) else None
    for block in blocks if isinstance(blocks, list) else [blocks]:
        if not isinstance(block, dict):
            continue
        if "cloud" in block:
            return "cloud", frozenset((block["cloud"] or {}) if isinstance(block["cloud"], dict) else {})
        backend = block.get("backend")
        if isinstance(backend, dict) and backend:
            kind, settings = next(iter(backend.items()))
            return str(kind), frozenset(settings if isinstance(settings, dict) else {})
    return None


def root_backend(workdir: str | os.PathLike[str]) -> RootBackend:
    """The backend the root in ``workdir`` declares, read from its ``*.tf`` and ``*.tf.json`` files (override files
    last: their backend replaces the others', as in Terraform). No declaration: ``RootBackend(None)``."""
    root = Path(workdir)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith((".tf", ".tf.json")))
    override = [p for p in files if p.name.removesuffix(".json").removesuffix(".tf").endswith("override")]
    found = RootBackend(None)
    for path in [p for p in files if p not in override] + override:
        text = path.read_text(errors="replace")
        hit = _backend_in_tf_json(text) if path.name.endswith(".json") else _backend_in_tf(text)
        if hit is not None:
            found = RootBackend(hit[0], hit[1], path.name)
    return found


class TerraformHook(BaseHook):
    """Run Terraform in ``workdir``.

    :param workdir: the Terraform root (``terraform -chdir``-style: commands run there)
    :param variables: ``-var`` values for plan
    :param var_files: ``-var-file`` paths for plan
    :param env: extra environment (``TF_VAR_*``, ``AWS_*``); secrets here are never logged; a value None removes
        the inherited variable
    :param lock_timeout: ``-lock-timeout`` (``"5m"``): how long to wait for a held state lock
    :param state_dir: where our CLI config and the shared plugin cache live (default ``~/.cache/phoenix-fleet/
        terraform``)
    :param data_dir: ``TF_DATA_DIR``; None: a fresh temporary one per hook (``.terraform`` never lands in workdir,
        concurrent runs never share it)
    :param plugin_cache: set ``TF_PLUGIN_CACHE_DIR`` (shared under ``state_dir``) so re-inits are cheap
    :param timeout: seconds per command (then SIGINT; SIGKILL only if it has not stopped after the grace period)
    :param kill_grace_seconds: how long :meth:`interrupt` (``on_kill``) waits for an interrupted Terraform to stop
    :param line_logger: where streamed lines go (default: this hook's logger, INFO)
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        variables: Mapping[str, Any] | None = None,
        var_files: Iterable[str] = (),
        env: Mapping[str, str | None] | None = None,
        lock_timeout: str = "5m",
        state_dir: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        plugin_cache: bool = True,
        timeout: float | None = 3600,
        kill_grace_seconds: float = 60,
        line_logger: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        if not self.workdir.is_dir():
            raise FileNotFoundError(f"workdir: {str(self.workdir)!r} is not a directory. Fix: point it at a Terraform root")
        if not _LOCK_TIMEOUT_RE.match(str(lock_timeout)):
            raise ValueError(f"lock_timeout: {lock_timeout!r} is not a duration. Fix: e.g. 300s or 5m")
        self.variables = dict(variables or {})
        self.var_files = list(var_files)
        self.extra_env = dict(env or {})
        self.lock_timeout = str(lock_timeout)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="phoenix-tf-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = Path(data_dir)
        self.plugin_cache = plugin_cache
        self.timeout = timeout
        self.kill_grace_seconds = kill_grace_seconds
        self.line_logger = line_logger
        self._proc: subprocess.Popen[str] | None = None
        self._interrupted = False
        self._env: dict[str, str] | None = None

    # ------------------------------------------------------------------ environment

    @property
    def env(self) -> dict[str, str]:
        if self._env is None:
            env = terraform_env(os.environ, workdir_state_dir=self.state_dir, plugin_cache=self.plugin_cache)
            env["TF_DATA_DIR"] = str(self.data_dir)
            for name, value in self.extra_env.items():  # None: remove the inherited variable
                if value is None:
                    env.pop(name, None)
                else:
                    env[name] = str(value)
            self._env = env
        return self._env

    def scratch_dir(self) -> Path:
        """A private temporary directory for plan files (removed by :meth:`cleanup`)."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="phoenix-tf-")
        return Path(self._tmp.name)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ running

    def _emit(self, line: str) -> None:
        if self.line_logger is not None:
            self.line_logger(line)
        else:
            self.log.info("%s", line)

    def run(self, args: Sequence[str], *, ok: tuple[int, ...] = (0,), capture: bool = False) -> TerraformResult:
        """Run ``terraform <args>``; stream its output; raise :class:`TerraformError` unless the exit code is in ``ok``.

        ``capture=True`` keeps stdout (for ``-json`` commands) and streams only stderr.
        """
        if isinstance(args, str | bytes):
            raise TypeError("TerraformHook.run takes a list of arguments, not a shell string")
        cmd = [terraform_binary(), *map(str, args)]
        self.log.info("$ terraform %s  (in %s)", _redact(list(map(str, args))), self.workdir)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        captured: list[str] = []
        started = time.monotonic()
        self._interrupted = False
        proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: on_kill signals the group, not us
        )
        self._proc = proc

        def pump(stream: IO[str], keep: bool) -> None:
            for raw in stream:
                if keep:
                    captured.append(raw)
                    continue
                line = raw.rstrip("\n")
                tail.append(line)
                self._emit(line)

        readers = []
        assert proc.stdout is not None
        readers.append(threading.Thread(target=pump, args=(proc.stdout, capture), daemon=True))
        if capture:
            assert proc.stderr is not None
            readers.append(threading.Thread(target=pump, args=(proc.stderr, False), daemon=True))
        for r in readers:
            r.start()
        try:
            returncode = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.log.error("terraform %s ran longer than %ss: interrupting it", args[0] if args else "", self.timeout)
            if not self.interrupt():
                self._kill(proc)
            returncode = proc.wait()
            raise TerraformTimeoutError(
                f"terraform {args[0] if args else ''} timed out after {self.timeout}s and was interrupted",
                returncode,
                "\n".join(tail),
            ) from None
        except BaseException:
            # the task itself is being stopped (execution_timeout raises inside execute, before on_kill runs;
            # KeyboardInterrupt): stop Terraform gracefully before letting go of it
            if self.interrupt():
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover - it has exited: reaping is immediate
                    pass
            raise
        finally:
            for r in readers:
                r.join(timeout=30 if proc.returncode is not None else 1)
            self._proc = None
        seconds = time.monotonic() - started
        result = TerraformResult(list(map(str, args)), returncode, "".join(captured), "\n".join(tail), seconds)
        self.log.info("terraform %s exited %s after %.1fs", args[0] if args else "", returncode, seconds)
        if returncode not in ok:
            raise self._error(result)
        return result

    def _error(self, result: TerraformResult) -> TerraformError:
        text = result.tail
        command = result.args[0] if result.args else ""
        if self._interrupted:
            return TerraformError(
                f"terraform {command} was interrupted (exit {result.returncode})", result.returncode, text
            )
        if "Error acquiring the state lock" in text:
            info = [
                line.strip()
                for line in text.splitlines()
                if line.strip().startswith(("ID:", "Path:", "Operation:", "Who:", "Created:"))
            ]
            return TerraformStateLockedError(
                f"terraform {command}: the state lock of {self.workdir} is held by someone else and was not released "
                f"within {self.lock_timeout} ({'; '.join(info) or 'no lock info'}). Fix: wait for the other run to "
                "finish; if it died, release the lock with `terraform force-unlock <ID>` in that root",
                result.returncode,
                text,
            )
        if "Saved plan is stale" in text:
            return TerraformStalePlanError(
                f"terraform {command}: the saved plan is stale (the state changed since it was planned). "
                "Fix: run the task again to plan afresh",
                result.returncode,
                text,
            )
        return TerraformError(
            f"terraform {command} failed (exit {result.returncode}) in {self.workdir}:\n{text}", result.returncode, text
        )

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        """Last resort for our own command timeout only: SIGKILL the group (the state lock may stay behind)."""
        self.log.error(
            "terraform did not stop after SIGINT: SIGKILL. If the state stays locked: `terraform force-unlock <ID>` "
            "in %s",
            self.workdir,
        )
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def interrupt(self, wait_seconds: float | None = None) -> bool:
        """SIGINT to the running command's process group, then wait (up to ``kill_grace_seconds``) for it to exit.

        One SIGINT is Terraform's graceful stop: it finishes the API calls in flight, writes the state and releases
        the lock. Nothing harder is sent (a second SIGINT or a SIGKILL can lose state). Safe to call from a signal
        handler (``on_kill``): it never reaps the child, so the thread running the command sees its exit. Returns
        True when the command has stopped.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        self._interrupted = True
        try:
            pgid = os.getpgid(proc.pid)
            self.log.warning("sending SIGINT to terraform (process group %s)", pgid)
            os.killpg(pgid, signal.SIGINT)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + (self.kill_grace_seconds if wait_seconds is None else wait_seconds)
        while time.monotonic() < deadline:
            if _exited(proc.pid):
                self.log.info("terraform stopped after SIGINT")
                return True
            time.sleep(0.1)
        self.log.error(
            "terraform (pid %s) is still stopping after %ss; it goes on in the background and releases the state "
            "lock when done. If it never does: `terraform force-unlock <ID>` in %s",
            proc.pid,
            self.kill_grace_seconds if wait_seconds is None else wait_seconds,
            self.workdir,
        )
        return False

    # ------------------------------------------------------------------ commands

    def _lock_args(self) -> list[str]:
        return ["-lock=true", f"-lock-timeout={self.lock_timeout}"]

    def init(self, backend_config: Iterable[str] = ()) -> TerraformResult:
        args = ["init", "-input=false", "-no-color", *self._lock_args()]
        args += [f"-backend-config={b}" for b in backend_config]
        return self.run(args)

    def plan(self, plan_file: str | os.PathLike[str], *, destroy: bool = False) -> bool:
        """``plan -detailed-exitcode -out <plan_file>``; True when it has changes (exit 2), False for none (exit 0)."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", *self._lock_args(), f"-out={plan_file}"]
        if destroy:
            args.append("-destroy")
        args += var_args(self.variables)
        args += [f"-var-file={f}" for f in self.var_files]
        result = self.run(args, ok=(0, 2))
        return result.returncode == 2

    def show_json(self, plan_file: str | os.PathLike[str]) -> dict[str, Any]:
        result = self.run(["show", "-json", "-no-color", str(plan_file)], capture=True)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as e:
            raise TerraformError(f"terraform show -json printed no JSON ({e}): {result.stdout[:500]!r}") from None

    def apply_plan(self, plan_file: str | os.PathLike[str]) -> TerraformResult:
        """Apply exactly the saved plan (no re-plan, no prompt)."""
        return self.run(["apply", "-input=false", "-no-color", *self._lock_args(), str(plan_file)])

    def output_json(self) -> dict[str, Any]:
        """``{name: {"value", "type", "sensitive"}}`` of the root's outputs."""
        result = self.run(["output", "-json", "-no-color"], capture=True)
        text = result.stdout.strip()
        return json.loads(text) if text else {}


def output_values(outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Plain ``{name: value}``; sensitive outputs are replaced by ``"<sensitive>"`` (they never reach XCom)."""
    return {k: ("<sensitive>" if v.get("sensitive") else v.get("value")) for k, v in outputs.items()}
