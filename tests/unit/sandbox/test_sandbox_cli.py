"""``python -m sandbox start|status|reset|stop`` as a user runs them, each test with its own temp state dir and a
free port, so they never touch a developer's running sandbox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import alive, probe
from sandbox.realism import RealismConfig
from sandbox.server import PID_FILE, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cli:
    state_dir: Path
    port: int
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int:
        return json.loads((self.state_dir / PID_FILE).read_text())["pid"]


def _make_cli(tmp_path: Path, name: str) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_SANDBOX_")}
    state_dir = tmp_path / name
    port = free_port()
    env.update(
        PHOENIX_SANDBOX_DIR=str(state_dir), PHOENIX_SANDBOX_PORT=str(port), PHOENIX_SANDBOX_PROFILE="tests"
    )
    return Cli(state_dir, port, env)


@pytest.fixture
def make_cli(tmp_path: Path) -> Iterator[Any]:
    made: list[Cli] = []

    def make(name: str = "sandbox") -> Cli:
        made.append(_make_cli(tmp_path, name))
        return made[-1]

    yield make
    for cli in made:  # stop only what the test started (stop itself verifies the pid is ours)
        cli.run("stop")


def test_start_fast_reuse_status_reset_stop(make_cli: Any, aws_env: Any) -> None:
    import boto3

    cli = make_cli()
    began = time.monotonic()
    started = cli.run("start")
    elapsed = time.monotonic() - began
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == cli.url
    print(f"sandbox start took {elapsed:.1f}s")  # not asserted: wall-clock bounds fail on a loaded machine

    pid = cli.pid()
    info = probe(cli.port)
    assert info is not None and info["pid"] == pid and info["state_dir"] == str(cli.state_dir)
    assert info["config"] == RealismConfig.profile("tests").to_dict()
    status = cli.run("status")
    assert status.returncode == 0 and status.stdout.strip() == f"running {cli.url} (pid {pid})"

    again = cli.run("start")
    assert again.returncode == 0 and again.stdout.strip() == cli.url
    assert "reusing" in again.stderr
    assert cli.pid() == pid and probe(cli.port)["pid"] == pid

    ec2 = boto3.client("ec2", endpoint_url=cli.url, region_name="us-east-1")
    iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert len(ec2.describe_instances()["Reservations"]) == 1
    launched = ec2.describe_instances()["Reservations"][0]["Instances"][0]["LaunchTime"]
    aged = cli.run("age", "--instance", iid, "--days", "20")
    assert aged.returncode == 0 and aged.stdout.strip() == f"aged 1 instance(s) by 20 days: {iid}", aged.stderr
    now_launched = ec2.describe_instances()["Reservations"][0]["Instances"][0]["LaunchTime"]
    assert round((launched - now_launched).total_seconds()) == 20 * 86400
    bad = cli.run("age", "--asg", "nope", "--days", "3")
    assert bad.returncode != 0 and "asg: no AutoScaling group 'nope'" in bad.stderr
    reset = cli.run("reset")
    assert reset.returncode == 0, reset.stderr
    assert ec2.describe_instances()["Reservations"] == []

    stopped = cli.run("stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert not alive(pid)
    assert not (cli.state_dir / PID_FILE).exists()
    status = cli.run("status")
    assert status.returncode == 3 and status.stdout.strip() == "stopped"
    assert probe(cli.port) is None


def test_stop_ends_only_its_own_process(make_cli: Any) -> None:
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        mine, theirs = make_cli("mine"), make_cli("theirs")
        assert mine.run("start").returncode == 0
        # the same port from another state dir is refused, not hijacked
        clash = subprocess.run(
            [sys.executable, "-m", "sandbox", "start", "--port", str(mine.port)],
            cwd=ROOT,
            env=theirs.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert clash.returncode == 1 and "taken by another phoenix sandbox" in clash.stderr
        assert theirs.run("start").returncode == 0
        my_pid, their_pid = mine.pid(), theirs.pid()

        assert mine.run("stop").returncode == 0
        assert not alive(my_pid)
        assert alive(their_pid) and probe(theirs.port)["pid"] == their_pid
        assert alive(decoy.pid)

        # a stale pid file naming some other process: stop must not signal it
        (mine.state_dir / PID_FILE).write_text(json.dumps({"pid": decoy.pid, "port": mine.port}))
        stale = mine.run("stop")
        assert stale.returncode == 0 and "stale pid file" in stale.stdout
        assert alive(decoy.pid)
        assert not (mine.state_dir / PID_FILE).exists()
        assert mine.run("status").returncode == 3
    finally:
        decoy.kill()
        decoy.wait()


def test_bad_config_is_refused_before_starting(make_cli: Any) -> None:
    cli = make_cli()
    result = cli.run("start", "--set", "instance_boot.seconds=-1")
    assert result.returncode == 2 and "bad realism config" in result.stderr
    assert not (cli.state_dir / PID_FILE).exists()
    assert cli.run("reset").returncode != 0  # nothing to reset
