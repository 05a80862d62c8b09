"""The deployment files are written for users (there is no Docker engine here): check them statically.

docker-compose.yml (a Celery deployment with the FAB auth manager), the Dockerfile (versions that agree with
uv.lock, the Packer template and the Terraform roots; verified downloads; the package installed once),
pyproject's plugin entry point, and that every PHOENIX_* setting the code reads is documented and set.
tests/e2e/test_distributed.py runs the same topology for real (Postgres, Redis, two Celery workers).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    "airflow-init",
)
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
_VAR = re.compile(r"PHOENIX_[A-Z0-9_]*[A-Z0-9]")


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _arg(name: str) -> str:
    found = re.findall(rf"^ARG {name}=(\S+)$", _dockerfile(), re.M)
    assert len(found) == 1, f"Dockerfile: one ARG {name}=... expected, found {found}"
    return found[0]


def _locked(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def satisfies(version: str, constraints: str) -> bool:
    """Whether ``version`` meets a HashiCorp version constraint string (``>= 1.5``, ``~> 5.100``, ``= 1.3.10``,
    comma-separated)."""
    v = _version_tuple(version)
    for part in constraints.split(","):
        m = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*(\d+(?:\.\d+)*)\s*", part)
        assert m, f"unsupported constraint {part!r}"
        op, ref_text = m.group(1) or "=", m.group(2)
        ref = _version_tuple(ref_text)
        width = max(len(v), len(ref))
        a, b = v + (0,) * (width - len(v)), ref + (0,) * (width - len(ref))
        if op == "~>":  # >= ref, and below the next release of the next-to-last given component
            upper = ref[:-1] if len(ref) > 1 else ref
            upper = upper[:-1] + (upper[-1] + 1,)
            ok = a >= b and v[: len(upper)] < upper
        else:
            ok = {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "=": a == b, "!=": a != b}[op]
        if not ok:
            return False
    return True


def test_version_constraints_are_read_as_hashicorp_reads_them() -> None:
    assert satisfies("1.11.4", ">= 1.5") and not satisfies("1.4.9", ">= 1.5")
    assert satisfies("1.11.2", ">= 1.10.0, < 2.0.0") and not satisfies("2.0.0", ">= 1.10.0, < 2.0.0")
    assert satisfies("5.100.3", "~> 5.100") and satisfies("5.200.0", "~> 5.100") and not satisfies("6.0.0", "~> 5.100")
    assert satisfies("1.3.10", "~> 1.3.2") and not satisfies("1.4.0", "~> 1.3.2")
    assert satisfies("1.3.10", "= 1.3.10") and not satisfies("1.3.11", "= 1.3.10")


# ------------------------------------------------------------------------------------------ compose


def test_services_of_a_celery_deployment() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", *AIRFLOW_SERVICES} <= set(services)
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"


def test_airflow_services_share_config_and_mount_dags_and_include_only() -> None:
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        s = services[name]
        env = s["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB, name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["PHOENIX_FLEET_CONFIG"] == "/opt/airflow/include/fleet.yaml", name
        assert sorted(v for v in s["volumes"] if v.startswith("./")) == [
            "./dags:/opt/airflow/dags:ro", "./include:/opt/airflow/include:ro",
        ], f"{name}: mount dags/ and include/ only (the image holds the package)"
        if name != "airflow-init":
            assert "healthcheck" in s, name
            assert s["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name


def test_airflow_init_migrates_and_creates_the_admin() -> None:
    init = _compose()["services"]["airflow-init"]
    script = "\n".join(init["command"])
    assert script.index("airflow db migrate") < script.index("airflow users create --role Admin")
    # the API budget's pools (docs/scale.md) exist before the scheduler starts
    assert script.index("airflow db migrate") < script.index("python -m phoenix_fleet.api_budget > /tmp/phoenix-pools.json")
    assert script.index("> /tmp/phoenix-pools.json") < script.index("airflow pools import /tmp/phoenix-pools.json")
    assert "set -euo pipefail" in script
    assert init["environment"]["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")


def test_no_local_only_settings_or_literal_secrets() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "SIMPLE_AUTH_MANAGER" not in text and "SimpleAuthManager" not in text
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert env[key].startswith("${") and ":?" in env[key], f"{key} must come from .env, required"
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert "${POSTGRES_PASSWORD:?" in env[key], key


def test_s3_remote_logging_is_an_option_documented_in_the_guide() -> None:
    env = _compose()["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "${AIRFLOW_REMOTE_LOGGING:-false}"
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "${AIRFLOW_REMOTE_BASE_LOG_FOLDER:-}"
    guide = _guide()
    assert "AIRFLOW_REMOTE_LOGGING=true" in guide and "AIRFLOW_REMOTE_BASE_LOG_FOLDER=s3://" in guide


# ------------------------------------------------------------------------------------------ PHOENIX_*


def _read_by(*roots: str) -> set[str]:
    found: set[str] = set()
    for root in roots:
        for path in (REPO / root).rglob("*.py"):
            found |= set(_VAR.findall(path.read_text()))
    return found


def _guide() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Deploy to an AWS account")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end > 0 else None]


def test_every_phoenix_setting_the_code_reads_is_in_the_guide_and_on_every_service() -> None:
    code = _read_by("plugins", "dags")
    assert "PHOENIX_FLEET_CONFIG" in code and "PHOENIX_TF_PLUGIN_MIRROR" in code  # the scan works
    guide = _guide()
    assert not [v for v in sorted(code) if f"`{v}`" not in guide], "PHOENIX_* settings missing from the deploy guide"
    documented = set(_VAR.findall(guide))
    compose_vars = set(re.findall(r"\$\{(PHOENIX_[A-Z_]+)", (REPO / "docker-compose.yml").read_text()))
    assert "PHOENIX_IMAGE" in compose_vars
    assert not documented - code - compose_vars - _read_by("sandbox"), "the guide documents settings nothing reads"
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        missing = sorted(code - set(services[name]["environment"]))
        assert not missing, f"{name} does not set {missing}"


def test_every_sandbox_setting_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    assert not [v for v in sorted(_read_by("sandbox")) if v not in docs]


# --------------------------------------------------------------------------------------------- image


def test_the_image_is_the_locked_airflow_on_the_project_python() -> None:
    image = _arg("AIRFLOW_IMAGE")
    m = re.fullmatch(r"apache/airflow:(?:slim-)?(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
    assert m, image
    assert m.group(1) == _locked("apache-airflow"), "the image's Airflow must be uv.lock's"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={m.group(2)},<3.{int(m.group(2).split('.')[1]) + 1}", (image, requires)
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", _dockerfile(), re.M)


def test_packer_and_terraform_versions_satisfy_the_template_and_every_root() -> None:
    packer = _arg("PACKER_VERSION")
    template = hcl2.loads((REPO / "include" / "packer" / "phoenix.pkr.hcl").read_text())
    assert satisfies(packer, template["packer"][0]["required_version"].strip('"')), packer
    terraform = _arg("TERRAFORM_VERSION")
    roots = sorted((REPO / "include" / "terraform").rglob("versions.tf"))
    assert len(roots) >= 3
    for path in roots:
        for block in hcl2.loads(path.read_text()).get("terraform", []):
            if "required_version" in block:
                assert satisfies(terraform, block["required_version"].strip('"')), (path, terraform)


def test_hashicorp_downloads_are_verified_for_the_build_architecture() -> None:
    text = _dockerfile()
    assert "ARG TARGETARCH" in text and "linux_${arch}.zip" in text
    assert "_SHA256SUMS.sig" in text and "gpg --batch --verify" in text
    assert "sha256sum --check --strict" in text
    assert re.search(r"ARG HASHICORP_KEY_FINGERPRINT=C874011F0AB405110D02105534365D9472D7468F", text)


def test_the_packer_plugin_and_the_provider_mirror_are_baked_in() -> None:
    text = _dockerfile()
    # the plugin: `packer init` of the template itself installs exactly the version it pins
    assert "COPY include/packer/phoenix.pkr.hcl /build/packer/phoenix.pkr.hcl" in text
    assert "packer init /build/packer/phoenix.pkr.hcl" in text
    assert text.count("PACKER_PLUGIN_PATH=/opt/packer/plugins") == 2  # where init puts it, where bakes look
    # the mirror: from the fleet root's lock file, then PHOENIX_TF_PLUGIN_MIRROR
    lock = REPO / "include" / "terraform" / "envs" / "sandbox" / ".terraform.lock.hcl"
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock.read_text()
    assert "include/terraform/envs/sandbox/.terraform.lock.hcl" in text
    assert 'terraform providers mirror -platform="linux_${arch}"' in text
    assert "PHOENIX_TF_PLUGIN_MIRROR=/opt/terraform/plugin-mirror" in text


def test_the_project_is_installed_once_from_the_lock() -> None:
    text = _dockerfile()
    assert "uv export --locked --no-default-groups --group distributed --no-emit-project" in text
    assert '--python "${VIRTUAL_ENV}/bin/python"' in text
    assert "--no-deps /opt/phoenix" in text
    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]["distributed"]
    names = {re.split(r"[<>=\[ ;]", g, maxsplit=1)[0] for g in groups}
    assert {
        "apache-airflow-providers-celery", "apache-airflow-providers-postgres", "apache-airflow-providers-fab",
        "psycopg2-binary", "redis",
    } <= names


def test_the_image_ships_bytecode() -> None:
    """Every Airflow task is a new process that imports boto3, the providers and our modules: without .pyc files
    in the image each of them compiles those from source (most of a task start's CPU, docs/scale.md)."""
    installs = [line for line in _dockerfile().splitlines() if "uv pip install" in line]
    assert len(installs) == 2
    assert all("--compile-bytecode" in line for line in installs), installs


def test_celery_workers_fork_their_pool_after_the_worker_preload() -> None:
    services = _compose()["services"]
    key = "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"
    assert services["airflow-worker"]["environment"][key] == "phoenix_fleet.celery_worker_config.CELERY_CONFIG"
    assert [n for n in AIRFLOW_SERVICES if n != "airflow-worker" and key in services[n]["environment"]] == []
    code = (
        "import sys; from airflow.configuration import conf; "
        "from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG; "
        "options = conf.getimport('celery', 'celery_config_options'); "
        "assert options is DEFAULT_CELERY_CONFIG, options; "
        "assert {'phoenix_fleet.worker_preload', 'boto3', 'phoenix_fleet.operators.recycle_operators'} <= set(sys.modules)"
    )
    env = {**os.environ, key: services["airflow-worker"]["environment"][key]}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=240, capture_output=True)


# ------------------------------------------------------------------------------------------ packaging


def test_the_plugin_registers_through_an_entry_point_and_lives_in_the_package_only() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["airflow.plugins"]["phoenix_fleet"]
    module, _, attr = target.partition(":")
    import importlib

    from airflow.plugins_manager import AirflowPlugin

    plugin = getattr(importlib.import_module(module), attr)
    assert issubclass(plugin, AirflowPlugin) and plugin.name == "phoenix_fleet"
    assert module.startswith("phoenix_fleet.")
    # one copy: nothing under plugins/ but the package (which .airflowignore keeps from the folder loader)
    assert sorted(p.name for p in (REPO / "plugins").iterdir() if not p.name.startswith(".")) == ["phoenix_fleet"]
    assert "phoenix_fleet/" in (REPO / "plugins" / ".airflowignore").read_text()


def test_the_installed_distribution_declares_the_entry_point() -> None:
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group="airflow.plugins") if e.name == "phoenix_fleet"]
    assert [e.value for e in found] == ["phoenix_fleet.airflow_plugin:PhoenixFleetPlugin"], found


def test_airflow_is_a_range_in_pyproject_and_exact_in_the_lock() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "apache-airflow>=3.3.2,<3.4" in deps
    assert re.fullmatch(r"\d+\.\d+\.\d+", _locked("apache-airflow"))


@pytest.mark.parametrize("name", ["values.yaml", "values.yml"])
def test_no_helm_values_file(name: str) -> None:
    assert not [p for p in REPO.rglob(name) if ".venv" not in p.parts], "no Helm values file that no test renders"


def test_the_guides_env_recipe_gives_every_secret_compose_requires(tmp_path: Path) -> None:
    """Run the guide's `.env` commands: every `${VAR:?...}` compose requires is set, the Fernet key is one."""
    import subprocess

    from cryptography.fernet import Fernet

    guide = _guide()
    section = guide[guide.index("### 4. Generate `.env`"):]
    script = section[section.index("```sh\n") + 6: section.index("\n```", section.index("```sh\n"))]
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True, capture_output=True)
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if line)
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (REPO / "docker-compose.yml").read_text()))
    assert required and not [k for k in sorted(required) if not env.get(k)], (required, sorted(env))
    Fernet(env["AIRFLOW_FERNET_KEY"].encode())  # raises unless 32 url-safe base64-encoded bytes
    assert len(env["AIRFLOW_JWT_SECRET"]) >= 64 and (tmp_path / ".env").stat().st_mode & 0o077 == 0


def test_every_airflow_service_keeps_large_xcoms_in_s3_as_xcom_storage_says() -> None:
    from phoenix_fleet.xcom_storage import XComStorage, backend_env, problem

    expected = backend_env("phoenix-fleet-artifacts")
    path = "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"
    for name in AIRFLOW_SERVICES:
        env = _compose()["services"][name]["environment"]
        got = {k: env.get(k) for k in expected}
        assert got[path] == "${AIRFLOW_XCOM_OBJECTSTORAGE_PATH:-" + expected[path] + "}", name  # .env may move it
        got[path] = expected[path]
        assert got == expected, name
        stored = XComStorage(got["AIRFLOW__CORE__XCOM_BACKEND"] or "", got[path] or "", int(got["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD"] or -1))
        assert problem(stored) is None
