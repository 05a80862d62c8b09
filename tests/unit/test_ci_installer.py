""".ci/install-packages: the one installer of the Debian packages the tests need, run by `make test` (the README's
test command) and by .ci/run, so that neither skips a test for a missing tool.

apt-get, dpkg-query and id are doubles on PATH (the CLI boundary); the script under test is the real one, copied
next to a package list of the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / ".ci" / "install-packages"


def _doubles(bin_dir: Path, installed: list[str], uid: int) -> Path:
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / "apt-get.log"
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n# dpkg-query -W -f=... <pkg>\n"
        f'for p in {" ".join(installed)}; do [ "$p" = "$3" ] && {{ printf "install ok installed"; exit 0; }}; done\n'
        'echo "dpkg-query: no packages found matching $3" >&2; exit 1\n'
    )
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for f in ("dpkg-query", "apt-get", "id"):
        (bin_dir / f).chmod(0o755)
    return log


def _run(tmp_path: Path, packages: str, installed: list[str], uid: int = 0, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    ci = tmp_path / ".ci"
    ci.mkdir(exist_ok=True)
    shutil.copy2(INSTALLER, ci / "install-packages")
    (ci / "apt-packages.txt").write_text(packages)
    log = _doubles(tmp_path / "bin", installed, uid)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([".ci/install-packages", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    return proc, log


LIST = "# comment\nmake\ndebootstrap  # the image suite\n\nshellcheck\nchromium"  # no newline at the end


def test_as_root_it_installs_exactly_what_is_missing(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, LIST, ["make", "debootstrap"])
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq shellcheck chromium"]
    assert "installing shellcheck chromium" in proc.stdout


def test_nothing_missing_does_nothing(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, LIST, ["make", "debootstrap", "shellcheck", "chromium"], uid=1000)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not log.exists()


def test_not_root_it_prints_the_one_command_and_fails(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, LIST, ["make"], uid=1000)
    assert proc.returncode == 1 and not log.exists()
    assert "not installed: debootstrap shellcheck chromium" in proc.stderr
    assert [line.strip() for line in proc.stderr.splitlines()][-1] == "sudo .ci/install-packages"
    check, _ = _run(tmp_path, LIST, ["make"], 0, "--check")
    assert check.returncode == 1 and "missing Debian packages: debootstrap shellcheck chromium" in check.stderr


def test_make_test_and_ci_share_the_installer_and_the_one_list() -> None:
    dry = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, env={**os.environ})
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    first_pytest = next(i for i, line in enumerate(lines) if " pytest " in line)
    assert ".ci/install-packages" in lines[:first_pytest], dry.stdout
    assert "PHOENIX_NO_SKIP=1" in lines[first_pytest]
    run = (REPO / ".ci" / "run").read_text()
    assert "\n.ci/install-packages\n" in run and "apt-get" not in run and "apt-packages.txt" in run
    assert os.access(INSTALLER, os.X_OK)


def test_the_ci_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") or os.environ.get("PHOENIX_NO_SKIP"):  # make test and CI never skip
            pytest.fail("shellcheck is not installed. Fix: run .ci/install-packages", pytrace=False)
        pytest.skip("shellcheck is not installed")
    check = subprocess.run(
        ["shellcheck", "--shell=bash", str(INSTALLER), str(REPO / ".ci" / "run")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
