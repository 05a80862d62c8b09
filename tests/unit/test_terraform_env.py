"""phoenix_fleet.terraform_env: the provider mirror, our Terraform CLI config, and the subprocess environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hcl2
import pytest
from hcl2.utils import SerializationOptions
from phoenix_fleet import terraform_env as tfe
from phoenix_fleet.terraform_env import (
    MIRROR_ENV_VAR,
    MirrorConfigError,
    TerraformNotFoundError,
    cli_config_text,
    discover_mirror,
    mirror_dir,
    run_terraform,
    socket_safe_tmpdir,
    terraform_env,
    write_cli_config,
)


def make_mirror(root: Path) -> Path:
    """A directory laid out like a provider mirror: <root>/registry.terraform.io/hashicorp/aws/..."""
    (root / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64").mkdir(parents=True)
    return root


def parse_hcl(text: str) -> dict:
    """Parse HCL with python-hcl2 (it fails on anything Terraform's parser would reject here)."""
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    return hcl2.loads(text, serialization_options=options)


@pytest.fixture(autouse=True)
def _fresh_discovery_cache() -> None:
    discover_mirror.cache_clear()


# --------------------------------------------------------------------------------------------- CLI config


def test_cli_config_with_mirror_is_valid_hcl_with_mirror_and_direct_blocks(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    path = write_cli_config(tmp_path / "cfg" / "terraformrc", mirror)

    assert path == tmp_path / "cfg" / "terraformrc"
    parsed = parse_hcl(path.read_text())
    (installation,) = parsed["provider_installation"]
    (fs_mirror,) = installation["filesystem_mirror"]
    (direct,) = installation["direct"]
    assert fs_mirror["path"] == str(mirror)
    assert fs_mirror["include"] == ["registry.terraform.io/hashicorp/*"]
    assert direct["exclude"] == ["registry.terraform.io/hashicorp/*"]


def test_cli_config_without_mirror_installs_directly(tmp_path: Path) -> None:
    path = write_cli_config(tmp_path / "terraformrc", None, discover=False)
    text = path.read_text()
    assert "filesystem_mirror" not in text
    (installation,) = parse_hcl(text)["provider_installation"]
    assert list(installation) == ["direct"]


def test_cli_config_quotes_awkward_paths_for_hcl1(tmp_path: Path) -> None:
    # The CLI config is HCL 1: JSON escapes, no templates (so "${" stays as it is).
    awkward = Path('/mirrors/quote"and${interp} %{dir}\\x')
    text = cli_config_text(awkward)
    assert '    path    = "/mirrors/quote\\"and${interp} %{dir}\\\\x"\n' in text


def test_write_cli_config_leaves_an_unchanged_file_alone(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    path = write_cli_config(tmp_path / "terraformrc", mirror)
    os.utime(path, (1_000_000, 1_000_000))
    write_cli_config(path, mirror)
    assert path.stat().st_mtime == 1_000_000
    write_cli_config(path, None, discover=False)
    assert path.stat().st_mtime != 1_000_000
    assert not list(tmp_path.glob(".terraformrc.*.tmp"))


# --------------------------------------------------------------------------------------------- the mirror


def test_env_var_overrides_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = make_mirror(tmp_path / "my-mirror")
    monkeypatch.setattr(
        tfe, "discover_mirror", lambda *a, **k: pytest.fail("must not search when the variable is set")
    )
    assert mirror_dir({MIRROR_ENV_VAR: str(mirror)}) == mirror.resolve()


def test_empty_env_var_means_discover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = tmp_path / "found"
    monkeypatch.setattr(tfe, "discover_mirror", lambda *a, **k: found)
    assert mirror_dir({MIRROR_ENV_VAR: "  "}) == found
    assert mirror_dir({}) == found


def test_env_var_naming_no_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(MirrorConfigError) as exc:
        mirror_dir({MIRROR_ENV_VAR: str(missing)})
    message = str(exc.value)
    assert MIRROR_ENV_VAR in message
    assert str(missing) in message
    assert "registry.terraform.io" in message and "unset it" in message


def test_env_var_naming_a_file_is_a_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(MirrorConfigError, match=MIRROR_ENV_VAR):
        mirror_dir({MIRROR_ENV_VAR: str(a_file)})


def test_env_var_naming_the_registry_folder_itself_suggests_its_parent(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    with pytest.raises(MirrorConfigError) as exc:
        mirror_dir({MIRROR_ENV_VAR: str(mirror / "registry.terraform.io")})
    assert MIRROR_ENV_VAR in str(exc.value) and repr(str(mirror)) in str(exc.value)


def test_discovery_returns_the_parent_of_the_shallowest_registry_folder(tmp_path: Path) -> None:
    make_mirror(tmp_path / "b" / "deep" / "mirror")
    shallow = make_mirror(tmp_path / "a")
    assert discover_mirror(str(tmp_path), 5) == shallow


def test_discovery_respects_depth_and_skips_working_dirs_and_symlinks(tmp_path: Path) -> None:
    make_mirror(tmp_path / "one" / "two" / "three" / "four")  # registry folder at depth 5
    assert discover_mirror(str(tmp_path), 4) is None
    assert discover_mirror(str(tmp_path), 5) == tmp_path / "one" / "two" / "three" / "four"

    other = tmp_path / "other"
    make_mirror(other / "project" / ".terraform" / "providers")  # a working dir, not a mirror
    (other / "link").symlink_to(make_mirror(tmp_path / "elsewhere"))
    assert discover_mirror(str(other), 5) is None


def test_discovery_finds_this_machines_mirror_when_there_is_one() -> None:
    found = discover_mirror()
    if found is not None:
        assert (found / "registry.terraform.io").is_dir()


# --------------------------------------------------------------------------------------------- environment


def test_terraform_env_points_terraform_at_our_config(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    base = {
        "PATH": os.environ.get("PATH", ""),
        MIRROR_ENV_VAR: str(mirror),
        "TF_CLI_CONFIG_FILE": "/root/.terraformrc",
    }
    env = terraform_env(base, workdir_state_dir=tmp_path / "state")

    assert base["TF_CLI_CONFIG_FILE"] == "/root/.terraformrc", "base_env must not be modified"
    assert env["TF_CLI_CONFIG_FILE"] == str(tmp_path / "state" / "terraformrc")
    assert env["TF_IN_AUTOMATION"] == "1"
    assert env["TF_INPUT"] == "0"
    assert env["CHECKPOINT_DISABLE"] == "1"
    assert "TF_PLUGIN_CACHE_DIR" not in env  # the mirror is linked, not copied: no cache needed
    assert env["PATH"] == base["PATH"]
    config = parse_hcl(Path(env["TF_CLI_CONFIG_FILE"]).read_text())
    assert config["provider_installation"][0]["filesystem_mirror"][0]["path"] == str(mirror.resolve())


def test_terraform_env_without_a_mirror_installs_directly_with_a_plugin_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tfe, "discover_mirror", lambda *a, **k: None)
    env = terraform_env({}, workdir_state_dir=tmp_path)
    assert "filesystem_mirror" not in Path(env["TF_CLI_CONFIG_FILE"]).read_text()
    assert Path(env["TF_PLUGIN_CACHE_DIR"]).is_dir()


def test_terraform_env_defaults_to_the_user_cache(tmp_path: Path) -> None:
    env = terraform_env({"XDG_CACHE_HOME": str(tmp_path), MIRROR_ENV_VAR: str(make_mirror(tmp_path / "m"))})
    assert env["TF_CLI_CONFIG_FILE"] == str(tmp_path / "phoenix-fleet" / "terraform" / "terraformrc")


def test_terraform_env_with_a_bad_mirror_variable_raises(tmp_path: Path) -> None:
    with pytest.raises(MirrorConfigError, match=MIRROR_ENV_VAR):
        terraform_env({MIRROR_ENV_VAR: str(tmp_path / "missing")}, workdir_state_dir=tmp_path)


# --------------------------------------------------------------------------------------------- running terraform


def test_run_terraform_refuses_a_shell_string(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list"):
        run_terraform("version", cwd=tmp_path, env={})  # type: ignore[arg-type]


def test_run_terraform_without_terraform_on_path_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TerraformNotFoundError, match="terraform was not found on PATH"):
        run_terraform(["version"], cwd=tmp_path, env={})


def require_terraform() -> None:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: the Terraform tests must run, never skip", pytrace=False)


@pytest.mark.terraform
def test_run_terraform_runs_the_real_cli_with_our_config(tmp_path: Path) -> None:
    require_terraform()
    env = terraform_env(workdir_state_dir=tmp_path / "state")
    proc = run_terraform(["version", "-json"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"terraform_version"' in proc.stdout
    # our CLI config is valid (terraform warns about a missing or broken one on stderr)
    assert "CLI configuration" not in proc.stderr


@pytest.mark.terraform
def test_terraform_init_installs_from_a_mirror_at_an_awkward_path(tmp_path: Path) -> None:
    """The config Terraform really reads: init installs hashicorp/aws from a mirror whose path needs quoting.

    The mirror is this machine's (linked file by file under an awkward name); with none, init goes to the registry.
    """
    require_terraform()
    real = mirror_dir()
    env_base = {k: v for k, v in os.environ.items() if k != MIRROR_ENV_VAR}
    if real is not None:
        awkward = tmp_path / 'mirror "quoted" ${not a template} \\ end'
        for src in (real / "registry.terraform.io").rglob("*"):
            dst = awkward / src.relative_to(real)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src)
        env_base[MIRROR_ENV_VAR] = str(awkward)
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws", version = "~> 5.100" }\n  }\n}\n'
    )
    env = terraform_env(env_base, workdir_state_dir=tmp_path / "state")
    proc = run_terraform(["init", "-input=false", "-no-color"], cwd=work, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Installed hashicorp/aws v5.100" in proc.stdout
    if real is not None:
        (installed,) = (
            work / ".terraform" / "providers" / "registry.terraform.io" / "hashicorp" / "aws"
        ).glob("*/*")
        assert str(awkward) in os.readlink(installed)


def _long_dir(tmp_path: Path) -> Path:
    """A temp dir as deep as pytest-xdist's in CI (93 bytes there), so deep no provider socket fits under it."""
    deep = tmp_path / ("d" * max(1, 100 - len(str(tmp_path))))
    deep.mkdir(parents=True)
    assert len(str(deep)) >= 100
    return deep


def test_a_short_tmpdir_is_kept_and_a_long_one_is_replaced_by_a_private_short_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tfe, "SHORT_TMP_ROOT", str(tmp_path))  # pytest's tmp_path itself is short enough
    assert socket_safe_tmpdir("/tmp") == "/tmp"
    short = Path(socket_safe_tmpdir(str(_long_dir(tmp_path))))
    assert short == tmp_path / f"phoenix-tf-{os.getuid()}"
    assert len(str(short)) + len("/plugin4294967295") <= 107
    assert oct(short.stat().st_mode & 0o777) == oct(0o700)
    assert socket_safe_tmpdir(str(_long_dir(tmp_path / "again"))) == str(short)  # reused, not one per call
    env = terraform_env({"TMPDIR": str(_long_dir(tmp_path / "env"))}, workdir_state_dir=tmp_path / "state")
    assert env["TMPDIR"] == str(short)


@pytest.mark.parametrize("planted", ["symlink", "open to others"])
def test_a_short_dir_planted_by_someone_else_is_not_used(
    planted: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tfe, "SHORT_TMP_ROOT", str(tmp_path))
    target = tmp_path / f"phoenix-tf-{os.getuid()}"
    if planted == "symlink":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.mkdir()
        target.chmod(0o777)
    chosen = Path(socket_safe_tmpdir(str(_long_dir(tmp_path))))
    assert chosen.parent == tmp_path and chosen.name.startswith("ptf-")
    assert oct(chosen.stat().st_mode & 0o777) == oct(0o700)


@pytest.mark.terraform
def test_a_provider_starts_under_a_tmpdir_too_deep_for_its_socket(tmp_path: Path) -> None:
    """CI's xdist temp dirs are deep enough that the AWS provider's socket path overflows: plan must still work."""
    require_terraform()
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws", version = "~> 5.100" }\n  }\n}\n'
        'provider "aws" {\n  region = "us-east-1"\n  access_key = "x"\n  secret_key = "y"\n'
        "  skip_credentials_validation = true\n  skip_requesting_account_id = true\n"
        "  skip_metadata_api_check = true\n}\n"
    )
    env = terraform_env({**os.environ, "TMPDIR": str(_long_dir(tmp_path))}, workdir_state_dir=tmp_path / "state")
    init = run_terraform(["init", "-input=false", "-no-color"], cwd=work, env=env, timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    plan = run_terraform(["plan", "-input=false", "-no-color"], cwd=work, env=env, timeout=300)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes" in plan.stdout
