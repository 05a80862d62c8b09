"""A Debian root filesystem that stands in for the builder instance of include/packer/phoenix.pkr.hcl.

CI has no Packer, no AWS and no Docker, but it has debootstrap and root. So:

* ``base_tarball()`` debootstraps Debian (minbase plus what the phoenix base AMI has: systemd,
  openssh-server, sudo, the ``admin`` login user with a Packer-like temporary authorized key, apt
  sources for the release, -updates and -security) and caches it as a tarball under
  ``.sandbox/image-test/cache/``, keyed by a hash of every input, so a re-run extracts it in seconds;
* ``run_provisioners()`` reads the template with python-hcl2 and runs its ``build`` block's
  provisioners in order inside the root with chroot: ``file`` uploads and downloads, and every
  ``shell`` script with the provisioner's ``environment_vars`` (as ``sudo env VARS script``);
* ``run_suite()`` runs the testinfra suite from this checkout against the root (chroot backend).

Everything runs as root on the host, so all of it is defensive: files are written into the root only
through ``chroot`` (a symlink in the root cannot point a write at the host), the only mount is a fresh
procfs at ``<root>/proc``, every mount under a root is unmounted in ``finally`` blocks (checked in
/proc/mounts), and a root is deleted only when nothing is mounted below it.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKER_DIR = REPO / "include" / "packer"
TEMPLATE = PACKER_DIR / "phoenix.pkr.hcl"
SUITE_DIR = PACKER_DIR / "tests"
WORK_DIR = Path(os.environ.get("PHOENIX_SANDBOX_DIR", REPO / ".sandbox")) / "image-test"

DEBIAN_SUITE = "bookworm"
# What the phoenix base AMI (Debian 12 cloud image) brings that minbase lacks and the build relies on.
BASE_PACKAGES = ["systemd-sysv", "openssh-server", "sudo", "ca-certificates"]
BUILD_USER = "admin"
# A public key in the shape of Packer's temporary ed25519 key pair (the private half never existed).
FAKE_PACKER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKLY6hVtZhGxO4v7r0fFh3Tn4Vb1Y3gS2x3bq2W1rX9k packer_phoenix_ci"
)
# Bump when base_tarball()'s recipe changes: it is part of the cache key.
BASE_RECIPE = 1
# What the harness passes for the template's ${build.*} variables.
FAKE_BUILD_VARS = {"SourceAMI": "ami-0c1c1c1c1c1c1c1c1", "SourceAMIName": "phoenix-base-debian-12-ci"}
SCRIPT_TIMEOUT = 900
# sudo's env_reset environment on Debian (secure_path), plus what Packer's shell provisioner adds.
SUDO_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "PACKER_BUILD_NAME": "phoenix",
    "PACKER_BUILDER_TYPE": "amazon-ebs",
}


class ImageTestError(RuntimeError):
    """The harness itself could not do its job (debootstrap, mounts, ...)."""


class ProvisionerError(RuntimeError):
    """A provisioner failed: Packer would stop the build here."""

    def __init__(self, name: str, rc: int, output: str):
        self.name, self.rc, self.output = name, rc, output
        super().__init__(
            f"provisioner {name} failed: Script exited with non-zero exit status: {rc}\n{output}"
        )


# --------------------------------------------------------------------------------------------------
# The template
# --------------------------------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as python-hcl2 parses it, with plain strings (no HCL quotes) and no block markers."""
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with path.open() as f:
        return hcl2.load(f, serialization_options=options)


def template_variables(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for block in template.get("variable", []) for name, body in block.items()}


def resolve_variables(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``; like Packer, refuse undeclared and missing variables."""
    declared = template_variables(template)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ImageTestError(f"variables not declared in the template: {unknown}")
    values = {name: body["default"] for name, body in declared.items() if "default" in body}
    values.update(given)
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ImageTestError(f"variables without a value: {missing}")
    return values


_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def interpolate(value: str, variables: Mapping[str, Any]) -> str:
    """Resolve the ${var.x}, ${path.root} and ${build.X} references the provisioners use."""

    def replace(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("var.") and expr[4:] in variables:
            return str(variables[expr[4:]])
        if expr == "path.root":
            return str(PACKER_DIR)
        if expr.startswith("build.") and expr[6:] in FAKE_BUILD_VARS:
            return FAKE_BUILD_VARS[expr[6:]]
        raise ImageTestError(f"the image-test harness cannot evaluate ${{{expr}}} in {value!r}")

    return _INTERPOLATION.sub(replace, value)


def provisioners(template: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The build block's provisioners in order, as (type, body)."""
    (build,) = template["build"]
    return [(kind, body) for block in build.get("provisioner", []) for kind, body in block.items()]


# --------------------------------------------------------------------------------------------------
# Host facts: the Debian mirror this machine already uses
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uris: tuple[str, ...]
    suites: tuple[str, ...]


def _host_apt_sources() -> list[AptSource]:
    found: list[AptSource] = []
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                key = None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0].isspace() and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if (
                    fields.get("enabled", "yes").lower() == "no"
                    or "deb" not in fields.get("types", "").split()
                ):
                    continue
                found.append(
                    AptSource(tuple(fields.get("uris", "").split()), tuple(fields.get("suites", "").split()))
                )
        elif path.suffix == ".list" or path.name == "sources.list":
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    found.append(AptSource((parts[1],), (parts[2],)))
    return found


def debian_mirrors() -> dict[str, str]:
    """``{"main": uri, "security": uri}`` from this machine's apt sources, read at run time.

    The Debian archive entry is the one whose suites include this machine's codename (or a Debian
    suite name); the security entry has a ``<codename>-security`` suite. Override with
    PHOENIX_DEBIAN_MIRROR / PHOENIX_DEBIAN_SECURITY_MIRROR.
    """
    codename = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                codename = line.split("=", 1)[1].strip().strip('"')
    names = {codename, DEBIAN_SUITE, "stable", "oldstable", "trixie", "bookworm", "bullseye"} - {""}
    mirrors: dict[str, str] = {}
    for source in _host_apt_sources():
        if not source.uris:
            continue
        for suite in source.suites:
            if suite in names:
                mirrors.setdefault("main", source.uris[0])
            elif suite.endswith("-security") and suite.split("-", 1)[0] in names:
                mirrors.setdefault("security", source.uris[0])
    if os.environ.get("PHOENIX_DEBIAN_MIRROR"):
        mirrors["main"] = os.environ["PHOENIX_DEBIAN_MIRROR"]
    if os.environ.get("PHOENIX_DEBIAN_SECURITY_MIRROR"):
        mirrors["security"] = os.environ["PHOENIX_DEBIAN_SECURITY_MIRROR"]
    if "main" not in mirrors or "security" not in mirrors:
        raise ImageTestError(
            f"no Debian archive and security mirror in this machine's apt sources (found {mirrors}); "
            "set PHOENIX_DEBIAN_MIRROR and PHOENIX_DEBIAN_SECURITY_MIRROR"
        )
    return mirrors


def _tool_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# --------------------------------------------------------------------------------------------------
# Mounts and safe removal
# --------------------------------------------------------------------------------------------------


def _decode_mount_path(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (from /proc/mounts)."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            point = _decode_mount_path(fields[1])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_all(root: Path) -> None:
    """Unmount everything below ``root``; lazily if busy. Raises if anything stays mounted."""
    for _ in range(3):
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    left = mounts_under(root)
    if left:
        raise ImageTestError(f"could not unmount {left}")


def remove_tree(path: Path) -> None:
    """rm -rf for a root filesystem, refusing while anything is mounted below it."""
    if not path.exists():
        return
    unmount_all(path)
    if mounts_under(path):
        raise ImageTestError(f"refusing to delete {path}: still mounted below it")
    shutil.rmtree(path)


@contextlib.contextmanager
def chroot_session(root: Path) -> Iterator[None]:
    """procfs at <root>/proc, the host's resolv.conf, and a policy-rc.d so packages start no daemons.

    The root's own /dev (device nodes made by debootstrap) is used: nothing of the host's /dev is
    mounted. Always unmounts and removes policy-rc.d again, also on failure.
    """
    proc = root / "proc"
    try:
        if not (root / "bin" / "sh").exists() or not proc.is_dir() or proc.is_symlink():
            raise ImageTestError(f"{root} does not look like a root filesystem")
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True, capture_output=True)
        resolv = Path("/etc/resolv.conf").read_bytes() if Path("/etc/resolv.conf").exists() else b""
        chroot_write(root, "/etc/resolv.conf", resolv, mode="0644")
        chroot_write(
            root, "/usr/sbin/policy-rc.d", b"#!/bin/sh\n# phoenix image-test harness\nexit 101\n", mode="0755"
        )
        yield
    finally:
        try:
            if (root / "bin" / "sh").exists():
                subprocess.run(
                    ["chroot", str(root), "rm", "-f", "/usr/sbin/policy-rc.d"], capture_output=True
                )
        finally:
            unmount_all(root)


def chroot_write(root: Path, path: str, content: bytes, mode: str = "0644") -> None:
    """Write a file inside the root, resolving the path inside the chroot (never on the host)."""
    script = 'rm -f "$1" && cat >"$1" && chmod "$2" "$1"'
    subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", script, "sh", path, mode], input=content, check=True
    )


def chroot_read(root: Path, path: str) -> bytes:
    return subprocess.run(["chroot", str(root), "/bin/cat", path], capture_output=True, check=True).stdout


def chroot_run(
    root: Path,
    *argv: str,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    input: bytes | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    environment = dict(SUDO_ENV) if env is None else dict(env)
    return subprocess.run(
        ["chroot", str(root), *argv],
        env=environment,
        input=input.decode() if input else None,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------------
# The base root filesystem (cached)
# --------------------------------------------------------------------------------------------------


def base_cache_key(mirrors: Mapping[str, str]) -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    inputs = {
        "recipe": BASE_RECIPE,
        "suite": DEBIAN_SUITE,
        "variant": "minbase",
        "packages": BASE_PACKAGES,
        "arch": arch,
        "mirrors": dict(mirrors),
        "debootstrap": _tool_version("debootstrap"),
        "build_user": BUILD_USER,
        "key": FAKE_PACKER_KEY,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def base_tarball(workspace: Workspace, log: Path | None = None) -> tuple[Path, bool]:
    """The cached base tarball, building it when missing. Returns (path, built_now)."""
    mirrors = debian_mirrors()
    cache = WORK_DIR / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{DEBIAN_SUITE}-base-{base_cache_key(mirrors)}.tar.gz"
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball, False
        build_root = workspace.path("debootstrap")
        try:
            _debootstrap(build_root, mirrors, log)
            partial = tarball.with_suffix(".partial")
            subprocess.run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "-C",
                    str(build_root),
                    "-I",
                    "gzip -1",
                    "-cf",
                    str(partial),
                    ".",
                ],
                check=True,
                capture_output=True,
            )
            partial.rename(tarball)
        finally:
            remove_tree(build_root)
        for old in cache.glob(f"debian-{DEBIAN_SUITE}-base-*.tar.gz"):
            if old != tarball:
                old.unlink()
        return tarball, True


def _debootstrap(root: Path, mirrors: Mapping[str, str], log: Path | None) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        f"--include={','.join(BASE_PACKAGES)}",
        DEBIAN_SUITE,
        str(root),
        mirrors["main"],
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}")
    if out.returncode != 0:
        unmount_all(root)
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
        raise ImageTestError(f"debootstrap failed with exit status {out.returncode}:\n{tail}")
    unmount_all(root)  # debootstrap may leave /proc or /sys mounted on errors in the second stage
    sources = (
        "# phoenix image-test base: like the Debian cloud image's sources\n"
        f"deb {mirrors['main']} {DEBIAN_SUITE} main\n"
        f"deb {mirrors['main']} {DEBIAN_SUITE}-updates main\n"
        f"deb {mirrors['security']} {DEBIAN_SUITE}-security main\n"
    )
    chroot_write(root, "/etc/apt/sources.list", sources.encode())
    # The login user of the Debian cloud image, with what Packer's temporary key pair leaves behind.
    chroot_run(
        root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", BUILD_USER, check=True
    )
    chroot_write(
        root, "/etc/sudoers.d/90-cloud-init-users", f"{BUILD_USER} ALL=(ALL) NOPASSWD:ALL\n".encode(), "0440"
    )
    chroot_run(
        root,
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        BUILD_USER,
        "-g",
        BUILD_USER,
        f"/home/{BUILD_USER}/.ssh",
        check=True,
    )
    chroot_write(root, f"/home/{BUILD_USER}/.ssh/authorized_keys", (FAKE_PACKER_KEY + "\n").encode(), "0600")
    chroot_run(
        root, "chown", f"{BUILD_USER}:{BUILD_USER}", f"/home/{BUILD_USER}/.ssh/authorized_keys", check=True
    )
    chroot_run(root, "sh", "-c", "rm -f /var/cache/apt/archives/*.deb", check=True)


def extract(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-xzf", str(tarball)],
        check=True,
        capture_output=True,
    )


def copy_root(source: Path, dest: Path) -> None:
    if mounts_under(source):
        raise ImageTestError(f"{source} has mounts; refusing to copy it")
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(dest)], check=True, capture_output=True)


class Workspace:
    """This session's directory under .sandbox/image-test/runs/, held by an flock while alive.

    Other sessions (another pytest in the same checkout) keep theirs; a directory whose lock nobody
    holds is left over from a killed run and is removed by clean_stale_runs().
    """

    def __init__(self) -> None:
        runs = WORK_DIR / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        self.dir = runs / f"session-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = (runs / f"{self.dir.name}.lock").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir.mkdir()

    def path(self, label: str) -> Path:
        return self.dir / f"{label}-{uuid.uuid4().hex[:6]}"

    def close(self) -> None:
        try:
            remove_tree(self.dir)
        finally:
            Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()


def clean_stale_runs() -> list[Path]:
    """Remove session directories nobody holds a lock on (left by killed runs), unmounting first."""
    runs = WORK_DIR / "runs"
    removed: list[Path] = []
    if not runs.is_dir():
        return removed
    for lock_path in runs.glob("session-*.lock"):
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live session
            stale = runs / lock_path.name[: -len(".lock")]
            remove_tree(stale)
            lock_path.unlink(missing_ok=True)
            removed.append(stale)
    for path in runs.iterdir():
        if (
            path.is_dir()
            and not (runs / f"{path.name}.lock").exists()
            and time.time() - path.stat().st_mtime > 3600
        ):
            remove_tree(path)
            removed.append(path)
    return removed


# --------------------------------------------------------------------------------------------------
# Running the template's provisioners
# --------------------------------------------------------------------------------------------------


@dataclass
class ProvisionResult:
    log: Path
    downloads: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _upload(root: Path, source: str, destination: str) -> None:
    """Packer's file upload: ``dir`` -> destination/dir, ``dir/`` -> contents into destination."""
    src = Path(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if src.is_dir() and source.endswith("/"):
            for child in sorted(src.iterdir()):
                tar.add(child, arcname=child.name)
            target_dir = destination
        elif src.is_dir():
            tar.add(src, arcname=src.name)
            target_dir = destination
        else:
            tar.add(src, arcname=Path(destination).name if not destination.endswith("/") else src.name)
            target_dir = destination if destination.endswith("/") else str(Path(destination).parent)
    subprocess.run(
        ["chroot", str(root), "tar", "-xf", "-", "-C", target_dir, "--no-same-owner"],
        input=buffer.getvalue(),
        check=True,
        capture_output=True,
    )


def run_script(root: Path, script: Path, env: Mapping[str, str], log: Path, index: int = 0) -> float:
    """Run one provisioner script as root in the chroot, the way ``sudo env VARS script`` would.

    Streams the output to ``log``; raises ProvisionerError with the output's tail on a non-zero exit.
    Returns the duration in seconds.
    """
    remote = f"/tmp/script_{index:04d}_{uuid.uuid4().hex[:6]}.sh"
    chroot_write(root, remote, script.read_bytes(), mode="0755")
    environment = {**SUDO_ENV, **env}
    tail: collections.deque[str] = collections.deque(maxlen=80)
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"==> {script.name} (env: {' '.join(sorted(env))})\n")
        out.flush()
        proc = subprocess.Popen(
            ["chroot", str(root), remote],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(f"    {script.name}: {line}")
                tail.append(line.rstrip("\n"))
            rc = proc.wait(timeout=SCRIPT_TIMEOUT)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        elapsed = time.monotonic() - start
        out.write(f"<== {script.name}: exit {rc} after {elapsed:.1f}s\n")
    chroot_run(root, "rm", "-f", remote)
    if rc != 0:
        raise ProvisionerError(script.name, rc, "\n".join(tail))
    return elapsed


def run_provisioners(
    root: Path,
    variables: Mapping[str, Any],
    outdir: Path,
    log: Path,
    template: Mapping[str, Any] | None = None,
) -> ProvisionResult:
    """Run the template's provisioners in order against ``root`` (must be in a chroot_session)."""
    template = template if template is not None else load_template()
    values = resolve_variables(template, variables)
    result = ProvisionResult(log=log)
    outdir.mkdir(parents=True, exist_ok=True)
    index = 0
    for kind, body in provisioners(template):
        if kind == "file" and body.get("direction", "upload") == "upload":
            _upload(root, interpolate(body["source"], values), interpolate(body["destination"], values))
        elif kind == "file" and body["direction"] == "download":
            target = outdir / interpolate(body["destination"], values)
            target.write_bytes(chroot_read(root, interpolate(body["source"], values)))
            result.downloads[body["destination"]] = target
        elif kind == "shell":
            env = dict(interpolate(item, values).split("=", 1) for item in body.get("environment_vars", []))
            for script in body["scripts"]:
                index += 1
                path = Path(interpolate(script, values))
                result.timings[path.name] = run_script(root, path, env, log, index)
        else:
            raise ImageTestError(f"the image-test harness does not emulate provisioner {kind!r}")
    return result


def run_suite(
    root: Path, role: str, junit: Path, *extra: str, stage: str = "final", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The testinfra suite of this checkout against ``root`` (chroot backend), in a subprocess."""
    env = {**os.environ, "PHOENIX_ROLE": role, "PHOENIX_IMAGE_STAGE": stage, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(SUITE_DIR / "pytest.ini"),
        "--rootdir",
        str(SUITE_DIR),
        "--connection=chroot",
        f"--hosts={root}",
        "-v",
        "--junitxml",
        str(junit),
        *extra,
        str(SUITE_DIR),
    ]
    with chroot_session(root):
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def junit_results(path: Path) -> dict[str, str]:
    """``{"<file>::<test>": "passed"|"failed"|"error"|"skipped"}`` from a JUnit XML report."""
    import xml.etree.ElementTree as ET

    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        state = "passed"
        for child, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if case.find(child) is not None:
                state = label
        results[name] = state
    return results
