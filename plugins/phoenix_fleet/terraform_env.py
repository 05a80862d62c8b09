"""Run the real ``terraform`` CLI offline, against a local provider mirror.

Terraform downloads providers from the registry unless a CLI config says otherwise. This module
finds a provider mirror on the machine, writes a CLI config of ours that installs
``registry.terraform.io/hashicorp/*`` from it, and builds the environment for a ``terraform`` subprocess.

* :func:`mirror_dir` -- the mirror: ``$PHOENIX_TF_PLUGIN_MIRROR`` if set, else discovered by searching for a
  directory named ``registry.terraform.io`` (its parent is the mirror), else ``None`` (install directly).
* :func:`write_cli_config` -- the CLI config file (``provider_installation`` block).
* :func:`terraform_env` -- environment for the subprocess (``TF_CLI_CONFIG_FILE``, ``TF_IN_AUTOMATION`` ...).
* :func:`run_terraform` -- one ``terraform`` invocation, arguments as a list (never a shell string).
* :func:`socket_safe_tmpdir` -- a ``TMPDIR`` short enough for a provider plugin's Unix socket.

Standard library only: this is imported by DAG-side code, the sandbox seed and tests.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "MIRROR_ENV_VAR",
    "MirrorConfigError",
    "TerraformNotFoundError",
    "cli_config_text",
    "default_state_dir",
    "discover_mirror",
    "mirror_dir",
    "run_terraform",
    "socket_safe_tmpdir",
    "terraform_binary",
    "terraform_env",
    "write_cli_config",
]

MIRROR_ENV_VAR = "PHOENIX_TF_PLUGIN_MIRROR"
"""Environment variable naming the provider mirror directory (the parent of ``registry.terraform.io``)."""

REGISTRY_HOST = "registry.terraform.io"
MIRRORED_PROVIDERS = ("registry.terraform.io/hashicorp/*",)
CLI_CONFIG_NAME = "terraformrc"

_SEARCH_ROOT = "/"
_SEARCH_MAX_DEPTH = 5  # same meaning as `find / -maxdepth 5 -type d -name registry.terraform.io`
_SKIP_TOP = frozenset({"/proc", "/sys", "/dev", "/run"})
# `.terraform` working dirs hold `providers/registry.terraform.io` links into a real mirror or cache: not mirrors.
_SKIP_NAMES = frozenset({".git", ".terraform", "node_modules", "__pycache__", ".venv", "site-packages"})


class MirrorConfigError(RuntimeError):
    """``PHOENIX_TF_PLUGIN_MIRROR`` is set to something that is not a usable provider mirror."""


class TerraformNotFoundError(FileNotFoundError):
    """The ``terraform`` executable is not on PATH."""


# --------------------------------------------------------------------------- mirror discovery


@functools.lru_cache(maxsize=8)
def discover_mirror(root: str = _SEARCH_ROOT, max_depth: int = _SEARCH_MAX_DEPTH) -> Path | None:
    """Breadth-first search under ``root`` for a directory named ``registry.terraform.io``.

    Returns the *parent* of the shallowest match (that parent is what Terraform calls the mirror
    directory), or ``None``. Skips ``/proc``, ``/sys``, ``/dev``, ``/run``, VCS and virtualenv folders, and
    never follows symlinks. Cached per process; on this kind of machine the search takes well under a second.
    """
    start = Path(root)
    queue: deque[tuple[str, int]] = deque([(str(start), 0)])
    while queue:
        current, depth = queue.popleft()
        try:
            with os.scandir(current) as entries:
                children = sorted(
                    (e for e in entries if e.is_dir(follow_symlinks=False)), key=lambda e: e.name
                )
        except OSError:
            continue
        for entry in children:
            if entry.name == REGISTRY_HOST:
                return Path(current)
        if depth + 1 >= max_depth:
            continue
        for entry in children:
            if entry.path in _SKIP_TOP or entry.name in _SKIP_NAMES:
                continue
            queue.append((entry.path, depth + 1))
    return None


def mirror_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The provider mirror directory to use, or ``None`` when Terraform should install directly.

    ``$PHOENIX_TF_PLUGIN_MIRROR`` wins when set (and non-empty); it must name an existing directory,
    otherwise :class:`MirrorConfigError` explains the fix. When unset, the mirror is discovered with
    :func:`discover_mirror`.
    """
    env = os.environ if environ is None else environ
    value = env.get(MIRROR_ENV_VAR, "").strip()
    if not value:
        return discover_mirror()
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MirrorConfigError(
            f"{MIRROR_ENV_VAR}={value!r} is not a directory. Set {MIRROR_ENV_VAR} to a Terraform provider "
            f"mirror directory (the folder that contains '{REGISTRY_HOST}/'), or unset it to let phoenix-fleet "
            f"discover one (or install providers directly from the registry when none exists)."
        )
    if path.name == REGISTRY_HOST:
        raise MirrorConfigError(
            f"{MIRROR_ENV_VAR}={value!r} points at the '{REGISTRY_HOST}' folder itself. "
            f"Set {MIRROR_ENV_VAR} to its parent: {str(path.parent)!r}."
        )
    return path.resolve()


# --------------------------------------------------------------------------- CLI config


def _hcl_string(value: str) -> str:
    """A double-quoted string literal for the CLI config.

    The CLI config is read with HCL 1, which knows the JSON escapes (``\\"``, ``\\\\``, ``\\n``) and has no
    templates: ``${`` is literal there (escaping it as in HCL 2, ``$${``, would change the path).
    """
    return json.dumps(value, ensure_ascii=False)


def _hcl_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_hcl_string(v) for v in values) + "]"


def cli_config_text(mirror: Path | None, plugin_cache_dir: Path | None = None) -> str:
    """The text of our Terraform CLI config for ``mirror`` (``None``: install everything directly)."""
    lines = [
        "# Terraform CLI configuration written by phoenix_fleet.terraform_env. Do not edit: it is rewritten.",
        "# Provider mirror: "
        + (_hcl_string(str(mirror)) if mirror is not None else "none found, installing from the registry"),
    ]
    if plugin_cache_dir is not None:
        lines.append(f"plugin_cache_dir = {_hcl_string(str(plugin_cache_dir))}")
    lines.append("provider_installation {")
    if mirror is not None:
        lines += [
            "  filesystem_mirror {",
            f"    path    = {_hcl_string(str(mirror))}",
            f"    include = {_hcl_list(MIRRORED_PROVIDERS)}",
            "  }",
            "  direct {",
            f"    exclude = {_hcl_list(MIRRORED_PROVIDERS)}",
            "  }",
        ]
    else:
        lines.append("  direct {}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_cli_config(
    path: str | os.PathLike[str],
    mirror: Path | None = None,
    *,
    discover: bool = True,
    plugin_cache_dir: Path | None = None,
) -> Path:
    """Write our CLI config to ``path`` and return it.

    ``mirror`` defaults to :func:`mirror_dir` (``discover=False`` with ``mirror=None`` writes a direct-only
    config). The file is only rewritten when its content changes, so concurrent readers never see it half
    written (the new content goes to a temporary file that is renamed into place).
    """
    target = Path(path)
    if mirror is None and discover:
        mirror = mirror_dir()
    text = cli_config_text(mirror, plugin_cache_dir=plugin_cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target.read_text() == text:
            return target
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- environment and runner


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where our CLI config lives by default: ``$XDG_CACHE_HOME/phoenix-fleet/terraform`` (``~/.cache/...``)."""
    env = os.environ if environ is None else environ
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "phoenix-fleet" / "terraform"


def terraform_env(
    base_env: Mapping[str, str] | None = None,
    workdir_state_dir: str | os.PathLike[str] | None = None,
    *,
    plugin_cache: bool = False,
) -> dict[str, str]:
    """Environment for a ``terraform`` subprocess.

    Starts from ``base_env`` (default: ``os.environ``), writes the CLI config into ``workdir_state_dir``
    (default :func:`default_state_dir`) and sets ``TF_CLI_CONFIG_FILE`` to it, plus ``TF_IN_AUTOMATION=1``,
    ``TF_INPUT=0``, ``CHECKPOINT_DISABLE=1`` and a ``TMPDIR`` short enough for provider sockets
    (:func:`socket_safe_tmpdir`). ``$PHOENIX_TF_PLUGIN_MIRROR`` is read from ``base_env``.

    ``plugin_cache=True`` also sets ``TF_PLUGIN_CACHE_DIR`` (under ``workdir_state_dir``). Not needed with a
    mirror: ``terraform init`` links the mirror's unpacked provider into ``.terraform/`` instead of copying it.
    It helps when installing directly from the registry, so that is when it is set by default.
    """
    env = dict(os.environ if base_env is None else base_env)
    state_dir = Path(workdir_state_dir) if workdir_state_dir is not None else default_state_dir(env)
    state_dir.mkdir(parents=True, exist_ok=True)
    mirror = mirror_dir(env)
    cache_dir: Path | None = None
    if plugin_cache or mirror is None:
        cache_dir = state_dir / "plugin-cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        env["TF_PLUGIN_CACHE_DIR"] = str(cache_dir)
    config = write_cli_config(state_dir / CLI_CONFIG_NAME, mirror, discover=False)
    env["TF_CLI_CONFIG_FILE"] = str(config)
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    env["CHECKPOINT_DISABLE"] = "1"
    env["TMPDIR"] = socket_safe_tmpdir(env.get("TMPDIR") or tempfile.gettempdir())
    return env


# A provider plugin listens on a Unix socket at $TMPDIR/plugin<up to 10 digits>, and sun_path holds 107 bytes and
# a NUL. Under a longer TMPDIR (a deep pytest or container temp dir) every provider fails to start, with "failed
# to instantiate provider ... Unrecognized remote plugin message" and nothing that names the path.
SOCKET_PATH_MAX = 107
PLUGIN_SOCKET_NAME_MAX = len("/plugin") + 10
SHORT_TMP_ROOT = "/tmp"


def socket_safe_tmpdir(tmpdir: str) -> str:
    """``tmpdir`` when a provider's socket under it fits in ``sun_path``; else a short private directory.

    The short one is ``/tmp/phoenix-tf-<uid>`` (mode 0700, ours, not a symlink: else a fresh ``mkdtemp``). Plugins
    name their sockets uniquely, so processes of one user can share it.
    """
    if len(os.fsencode(tmpdir)) + PLUGIN_SOCKET_NAME_MAX <= SOCKET_PATH_MAX:
        return tmpdir
    short = os.path.join(SHORT_TMP_ROOT, f"phoenix-tf-{os.getuid()}")
    try:
        os.mkdir(short, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return tempfile.mkdtemp(prefix="ptf-", dir=SHORT_TMP_ROOT)
    info = os.lstat(short)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return tempfile.mkdtemp(prefix="ptf-", dir=SHORT_TMP_ROOT)
    return short


def terraform_binary() -> str:
    """Absolute path of ``terraform`` on PATH, or :class:`TerraformNotFoundError` saying how to fix it."""
    found = shutil.which("terraform")
    if found is None:
        raise TerraformNotFoundError(
            "terraform was not found on PATH. Install Terraform >= 1.5 (https://developer.hashicorp.com/"
            "terraform/install) and make sure `terraform version` works in this shell."
        )
    return found


def run_terraform(
    args: Sequence[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    check: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform <args>`` in ``cwd`` and return the completed process (stdout/stderr captured as text).

    ``args`` is a list, never a shell string. ``env`` defaults to :func:`terraform_env`. With ``check=True``
    a non-zero exit raises :class:`subprocess.CalledProcessError` (its ``stderr`` holds Terraform's message).
    Callers that use ``-detailed-exitcode`` keep ``check=False`` and read ``returncode`` (0, 1 error, 2 diff).
    """
    if isinstance(args, str | bytes):
        raise TypeError("run_terraform takes a list of arguments, not a shell string")
    cmd = [terraform_binary(), *map(str, args)]
    return subprocess.run(
        cmd,
        cwd=os.fspath(cwd),
        env=dict(env) if env is not None else terraform_env(),
        text=True,
        capture_output=True,
        check=check,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
