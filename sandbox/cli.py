"""``python -m sandbox {start,stop,status,reset,serve,config,settle}``: the sandbox cloud's launcher.

* ``start``   daemonize ``serve`` (own session, log in the state dir), wait until it answers, print the
              endpoint URL on stdout (``export AWS_ENDPOINT_URL=$(python -m sandbox start)``). If this state
              dir's sandbox already runs (pid file + ``/phoenix-sandbox/info`` naming that pid), reuse it.
* ``stop``    end this state dir's sandbox: only the pid in the pid file, and only once it is proven to be our
              server (its info endpoint names the pid, or its command line is ``-m sandbox serve --dir <ours>``).
* ``status``  ``running <url> (pid N)`` (exit 0) or ``stopped`` (exit 3).
* ``reset``   forget all AWS state and realism clocks (``--config`` also restores the start config).
* ``serve``   run in the foreground (what ``start`` runs; also for containers and debugging).
* ``config``  print the running sandbox's realism config, or change it (``--profile``, ``--set k=v``).
* ``settle``  finish every pending transition now (instances running, images done, commands complete).

Environment: ``PHOENIX_SANDBOX_PORT`` (5055), ``PHOENIX_SANDBOX_DIR`` (``<repo>/.sandbox``),
``PHOENIX_SANDBOX_PROFILE`` (``interactive``), ``PHOENIX_SANDBOX_CONFIG`` (JSON, or ``@file``/a path to a
JSON file), all overridden by the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .realism import RealismConfig, parse_assignment
from .server import (
    CONTROL_PREFIX,
    LOG_FILE,
    PID_FILE,
    ROOT,
    SERVICE,
    endpoint_for,
    read_pid_file,
    remove_pid_file,
    sandbox_dir,
    sandbox_port,
)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
EXIT_STOPPED = 3
DEFAULT_PROFILE = "interactive"

# Control requests go straight to 127.0.0.1: never through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------- HTTP


def http_json(port: int, path: str, body: dict[str, Any] | None = None, timeout: float = 2.0) -> Any:
    """GET (``body`` None) or POST a JSON body to ``/phoenix-sandbox/<path>`` on 127.0.0.1:port."""
    url = f"{endpoint_for(port)}{CONTROL_PREFIX}/{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise SystemExit(f"sandbox: {exc.code} from {url}: {detail}") from None


def probe(port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The sandbox info at ``port``, or None if nothing (or not a phoenix sandbox) answers there."""
    req = urllib.request.Request(f"{endpoint_for(port)}{CONTROL_PREFIX}/info")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            info = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("service") != SERVICE:
        return None
    return info


# --------------------------------------------------------------------------------------------- processes


def _proc_state(pid: int) -> str | None:
    """The process state letter from /proc (``Z`` zombie, ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (zombies, which have exited but not been reaped, count as dead)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        return _proc_state(pid) not in (None, "Z", "X")
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # no /proc (macOS): ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return out.stdout.split()
    except OSError:
        return []


def is_our_server(pid: int, state_dir: Path) -> bool:
    """Is ``pid`` a ``python -m sandbox serve --dir <state_dir>`` process (a pid file may outlive its process and
    the pid be recycled: never signal a process on the pid file's word alone)?"""
    args = _cmdline(pid)
    try:
        i = args.index("-m")
    except ValueError:
        return False
    if args[i + 1 : i + 3] != ["sandbox", "serve"]:
        return False
    try:
        given = args[args.index("--dir") + 1]
    except (ValueError, IndexError):
        return False
    return Path(given).resolve() == state_dir.resolve()


def find_running(state_dir: Path, *, cleanup: bool = True) -> dict[str, Any] | None:
    """This state dir's running sandbox, proven by its info endpoint (``responsive`` True) or, if it does not
    answer, by its command line (``responsive`` False). A stale pid file is removed (``cleanup``)."""
    pid_file = state_dir / PID_FILE
    data = read_pid_file(pid_file)
    if data is None:
        return None
    pid, port = data["pid"], data["port"]
    if alive(pid):
        info = probe(port)
        if info is not None and info.get("pid") == pid:
            return {**info, "responsive": True}
        if is_our_server(pid, state_dir):
            return {**data, "endpoint_url": endpoint_for(port), "responsive": False}
    if cleanup:
        remove_pid_file(pid_file, pid)
    return None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(state_dir: Path, lines: int = 20) -> str:
    try:
        return "\n".join((state_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------- config


def build_config(profile: str | None, config: str | None, sets: list[str] | None) -> RealismConfig:
    """Profile (flag, ``PHOENIX_SANDBOX_PROFILE``, ``interactive``), then the JSON config (flag or
    ``PHOENIX_SANDBOX_CONFIG``: inline JSON, ``@file`` or a file path), then each ``--set key=value``."""
    cfg = RealismConfig.profile(profile or os.environ.get("PHOENIX_SANDBOX_PROFILE") or DEFAULT_PROFILE)
    raw = config if config is not None else os.environ.get("PHOENIX_SANDBOX_CONFIG")
    if raw and raw.strip():
        raw = raw.strip()
        if raw.startswith("@"):
            raw = Path(raw[1:]).read_text()
        elif not raw.startswith("{") and Path(raw).is_file():
            raw = Path(raw).read_text()
        try:
            changes = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"realism config is not JSON: {exc}") from None
        cfg = cfg.updated(changes)
    for assignment in sets or []:
        cfg = cfg.updated(parse_assignment(assignment))
    return cfg


# --------------------------------------------------------------------------------------------- commands


def cmd_start(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    try:
        config = build_config(args.profile, args.config, args.set)
    except (ValueError, OSError) as exc:
        print(f"sandbox: bad realism config: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    with _locked(state_dir):
        running = find_running(state_dir)
        if running is not None and not running["responsive"]:
            running = _wait_responsive(state_dir, running["pid"], START_TIMEOUT)
        if running is not None:
            print(f"sandbox: reusing the running sandbox (pid {running['pid']})", file=sys.stderr)
            if running["port"] != args.port:
                print(f"sandbox: note: it listens on {running['port']}, not {args.port}", file=sys.stderr)
            print(running["endpoint_url"])
            return 0
        other = probe(args.port)
        if other is not None:
            print(
                f"sandbox: port {args.port} is taken by another phoenix sandbox (pid {other.get('pid')}, "
                f"state dir {other.get('state_dir')}); stop it or set PHOENIX_SANDBOX_PORT",
                file=sys.stderr,
            )
            return 1
        command = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--port",
            str(args.port),
            "--dir",
            str(state_dir),
            "--profile",
            "plain",
            "--config",
            json.dumps(config.to_dict()),
        ]
        if args.quiet:
            command.append("--quiet")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(state_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        info = _wait_responsive(state_dir, proc.pid, START_TIMEOUT, proc)
        if info is None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            print(
                f"sandbox: did not start (see {state_dir / LOG_FILE}):\n{_log_tail(state_dir)}",
                file=sys.stderr,
            )
            return 1
    print(f"sandbox: started pid {info['pid']} in {time.monotonic() - began:.1f}s", file=sys.stderr)
    print(info["endpoint_url"])
    return 0


def _wait_responsive(
    state_dir: Path, pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        if proc is None and not alive(pid):
            return None
        data = read_pid_file(state_dir / PID_FILE)
        if data is not None and data["pid"] == pid:
            info = probe(data["port"], timeout=0.5)
            if info is not None and info.get("pid") == pid:
                return {**info, "responsive": True}
        time.sleep(0.05)
    return None


def cmd_stop(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    pid_file = state_dir / PID_FILE
    with _locked(state_dir):
        data = read_pid_file(pid_file)
        if data is None:
            print("stopped (no sandbox running)")
            return 0
        pid = data["pid"]
        running = find_running(state_dir, cleanup=False)
        if running is None or running["pid"] != pid:
            remove_pid_file(pid_file, pid)
            print(f"stopped (stale pid file: pid {pid} is not this sandbox; nothing signalled)")
            return 0
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid) and is_our_server(pid, state_dir):
            os.kill(pid, signal.SIGKILL)
            while alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        remove_pid_file(pid_file, pid)
    print(f"stopped (pid {pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    running = find_running(args.dir)
    if running is None:
        print("stopped")
        return EXIT_STOPPED
    note = "" if running["responsive"] else ", not answering"
    print(f"running {running['endpoint_url']} (pid {running['pid']}{note})")
    return 0


def _require_running(state_dir: Path) -> dict[str, Any]:
    running = find_running(state_dir)
    if running is None or not running["responsive"]:
        raise SystemExit(
            f"sandbox: not running (state dir {state_dir}); start it with: python -m sandbox start"
        )
    return running


def cmd_reset(args: argparse.Namespace) -> int:
    running = _require_running(args.dir)
    http_json(running["port"], "reset", {"config": bool(args.config)}, timeout=30)
    print(f"reset {running['endpoint_url']}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    running = _require_running(args.dir)
    changes: dict[str, Any] = {}
    if args.profile:
        changes["profile"] = args.profile
    if args.json:
        changes.update(json.loads(args.json))
    for assignment in args.set or []:
        for key, value in parse_assignment(assignment).items():
            changes[key] = value
    result = (
        http_json(running["port"], "config", changes) if changes else http_json(running["port"], "config")
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_settle(args: argparse.Namespace) -> int:
    running = _require_running(args.dir)
    print(json.dumps(http_json(running["port"], "settle", {}, timeout=30)["settled"], sort_keys=True))
    return 0


def cmd_age(args: argparse.Namespace) -> int:
    running = _require_running(args.dir)
    body = {"region": args.region, "instance_ids": args.instance or [], "asg": args.asg, "days": args.days}
    aged = http_json(running["port"], "age", body, timeout=30)["aged"]
    print(f"aged {len(aged)} instance(s) by {args.days:g} days: {' '.join(aged)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    try:
        config = build_config(args.profile, args.config, args.set)
    except (ValueError, OSError) as exc:
        print(f"sandbox: bad realism config: {exc}", file=sys.stderr)
        return 2
    running = find_running(args.dir)
    if running is not None and running["pid"] != os.getpid():
        # Two servers must not share a pid file: stop would then lose track of one of them.
        print(f"sandbox: already running (pid {running['pid']}, {running['endpoint_url']})", file=sys.stderr)
        return 1
    return serve(config, port=args.port, state_dir=args.dir, quiet=args.quiet)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--port", type=int, default=sandbox_port(), help="TCP port on 127.0.0.1 (PHOENIX_SANDBOX_PORT)"
        )
        p.add_argument(
            "--dir",
            type=lambda s: Path(s).expanduser().resolve(),
            default=sandbox_dir(),
            help="state dir: pid file and log (PHOENIX_SANDBOX_DIR)",
        )
        return p

    def realism_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--profile", help="plain | tests | interactive (PHOENIX_SANDBOX_PROFILE; default interactive)"
        )
        p.add_argument(
            "--config", help="realism config JSON, @file or a JSON file path (PHOENIX_SANDBOX_CONFIG)"
        )
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="e.g. instance_boot.seconds=5 (repeatable)"
        )

    p_start = add("start", "start the sandbox in the background (or reuse it); print its endpoint")
    realism_flags(p_start)
    p_start.add_argument("--quiet", action="store_true", help="no per-request lines in the log")
    add("stop", "stop this state dir's sandbox")
    add("status", "running or stopped")
    p_reset = add("reset", "forget all AWS state and realism clocks")
    p_reset.add_argument(
        "--config", action="store_true", help="also restore the config the sandbox started with"
    )
    p_serve = add("serve", "serve in the foreground")
    realism_flags(p_serve)
    p_serve.add_argument("--quiet", action="store_true", help="no per-request log lines")
    p_config = add("config", "print or change the running sandbox's realism config")
    p_config.add_argument("--profile", help="start over from this profile")
    p_config.add_argument("--json", help="partial config as JSON")
    p_config.add_argument("--set", action="append", metavar="KEY=VALUE")
    add("settle", "finish every pending transition now")
    p_age = add("age", "move instances' launch times into the past (to try fleet_max_age)")
    p_age.add_argument("--region", default="us-east-1")
    p_age.add_argument("--asg", help="every member of this AutoScaling group")
    p_age.add_argument("--instance", action="append", metavar="ID", help="an instance id (repeatable)")
    p_age.add_argument("--days", type=float, required=True, help="how many days older they become")
    return top


COMMANDS = {
    "start": cmd_start,
    "stop": cmd_stop,
    "status": cmd_status,
    "reset": cmd_reset,
    "serve": cmd_serve,
    "config": cmd_config,
    "settle": cmd_settle,
    "age": cmd_age,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)
