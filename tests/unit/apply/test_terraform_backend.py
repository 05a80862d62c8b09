"""Terraform state in S3: the roots' partial ``backend "s3"`` with Terraform's S3 lock file, on the sandbox's S3.

* two applies of one root from two working directories at once (two workers): the second waits on the lock
  while the first applies, then plans against the state the first wrote; the state ends consistent and no lock
  object is left (real Terraform, ``TerraformApplyOperator``, the sandbox's S3 watched through boto3);
* a root whose state would stay local is refused before Terraform runs, naming the field and the fix, unless the
  role sets ``allow_local_state``;
* :func:`root_backend` reads what a root declares (comments, strings, override files, JSON).

The root here uses only Terraform's built-in ``terraform_data`` (no provider to start), so each command takes
well under a second; the sandbox fleet root is applied with the same backend in tests/e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException
from phoenix_fleet.hooks.terraform_hook import RootBackend, backend_config_args, root_backend
from phoenix_fleet.operators.apply_operators import TerraformApplyOperator

from tests.helpers.airflow_run import make_context

pytestmark = pytest.mark.terraform

BUCKET = "phoenix-fleet-tfstate"
STATE_KEY = "tests/concurrent.tfstate"
LOCAL_STATE_MESSAGE = (
    "roles.web.terraform: local state cannot be shared between workers. "
    "Fix: set backend_config, or allow_local_state for one machine"
)
REPO = Path(__file__).resolve().parents[3]

BACKEND_TF = """
terraform {
  backend "s3" {
    use_lockfile                = true
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }
}
"""
# Applying `x` announces itself (touch started) and then holds the state lock until the test opens the gate.
MAIN_TF = """
variable "value" {
  type = string
}
variable "started" {
  type = string
}
variable "gate" {
  type = string
}

resource "terraform_data" "x" {
  input            = var.value
  triggers_replace = var.value
  provisioner "local-exec" {
    command = "touch '${var.started}'; while [ ! -e '${var.gate}' ]; do sleep 0.2; done"
  }
}

output "value" {
  value = terraform_data.x.output
}
"""


@pytest.fixture(scope="module")
def terraform_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: the Terraform tests must run (never skipped).", pytrace=False)
    return tmp_path_factory.mktemp("tf-cli")


def write_config(path: Path, terraform: dict[str, Any]) -> str:
    role = {
        "env": "sandbox",
        "image": {"packer_template": "p", "base_ami": {"name": "n-*", "owners": ["self"]}},
        "asgs": {"tags": {"phoenix:role": "web"}},
        "regions": ["us-east-1"],
        "terraform": {"backend": "terraform", "workdir": "unused", **terraform},
    }
    path.write_text(yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}}))
    return str(path)


def processes_in(workdir: Path, word: str) -> list[int]:
    """Live processes whose working directory is ``workdir`` and whose command line has ``word`` (a terraform
    subcommand), seen from outside through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != workdir:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(a.decode(errors="replace") == word for a in argv) and b"terraform" in argv[0]:
            found.append(int(entry.name))
    return found


def wait_until(probe: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_applies_of_one_root_from_two_workdirs_take_turns_on_the_s3_lock(
    sandbox_clean: Any, tmp_path: Path, terraform_state_dir: Path
) -> None:
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    config = write_config(
        tmp_path / "fleet.yaml", {"backend_config": {"bucket": BUCKET, "key": STATE_KEY, "region": "us-east-1"}}
    )
    gate = tmp_path / "gate"
    workdirs = {}
    for name in ("a", "b"):  # two workers, each with its own checkout of the root
        workdirs[name] = tmp_path / name
        workdirs[name].mkdir()
        (workdirs[name] / "backend.tf").write_text(BACKEND_TF)
        (workdirs[name] / "main.tf").write_text(MAIN_TF)

    def operator(name: str, value: str) -> TerraformApplyOperator:
        return TerraformApplyOperator(
            task_id=f"apply_{name}", role="web", config_path=config, workdir=str(workdirs[name]),
            variables={"value": value, "started": str(tmp_path / f"started-{name}"), "gate": str(gate)},
            allow_other_changes=True, allow_destroy=True, lock_timeout="300s", state_dir=str(terraform_state_dir),
        )

    results: dict[str, Any] = {}

    def run(name: str, value: str) -> None:
        try:
            results[name] = operator(name, value).execute(make_context())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            results[name] = exc

    def hold_the_lock_and_watch_b(a_started: float, b: threading.Thread) -> float:
        wait_until(lambda: (tmp_path / "started-a").exists() or "a" in results, "A to start applying")
        a_reach = time.monotonic() - a_started  # init, plan and the start of apply, unhindered
        assert "a" not in results, results.get("a")
        held = json.loads(s3.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read())
        assert held["Operation"] == "OperationTypeApply" and held["Path"] == f"{BUCKET}/{STATE_KEY}", held

        b.start()
        # B plans while A holds the lock: its plan must wait (it would otherwise plan, apply and reach its
        # provisioner, about as fast as A did)
        wait_until(lambda: processes_in(workdirs["b"], "plan") or "b" in results, "B's terraform plan")
        blocked_since = time.monotonic()
        while time.monotonic() - blocked_since < max(2 * a_reach, 5.0):
            assert not (tmp_path / "started-b").exists(), "B applied while A held the state lock"
            assert "b" not in results, results.get("b")
            time.sleep(0.2)
        assert processes_in(workdirs["b"], "plan"), "B's plan is not waiting on the lock"
        still = json.loads(s3.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read())
        assert still["ID"] == held["ID"]  # nobody took A's lock
        return time.time()

    lock_key = f"{STATE_KEY}.tflock"
    a = threading.Thread(target=run, args=("a", "A"))
    b = threading.Thread(target=run, args=("b", "B"))
    t0 = time.monotonic()
    a.start()
    try:
        opened = hold_the_lock_and_watch_b(a_started=t0, b=b)
    finally:  # whatever happened, let both applies finish (a failed test must not leave terraform waiting)
        gate.touch()
        a.join(300)
        if b.ident is not None:
            b.join(300)
    assert not isinstance(results["a"], BaseException), results["a"]
    assert not isinstance(results["b"], BaseException), results["b"]
    assert results["a"]["outputs"] == {"value": "A"}
    # B planned against the state A wrote: a replacement of A's resource, not a second create
    # (its terraform_data carries no phoenix:role tag: the guard's role check is allowed too, and said apart here)
    assert [
        (x["address"], x["reason"].split(" (")[0]) for x in results["b"]["allowed"] if "phoenix:role" not in x["reason"]
    ] == [("terraform_data.x", "would replace")], results["b"]["allowed"]
    assert results["b"]["outputs"] == {"value": "B"}
    assert (tmp_path / "started-b").stat().st_mtime >= opened - 1

    # nothing left locked; one state, B's
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [STATE_KEY], keys
    state = json.loads(s3.get_object(Bucket=BUCKET, Key=STATE_KEY)["Body"].read())
    (resource,) = state["resources"]
    assert resource["type"] == "terraform_data" and resource["instances"][0]["attributes"]["input"]["value"] == "B"
    assert state["outputs"]["value"]["value"] == "B"
    # the other working directory sees the same state: nothing to do there
    again = operator("a", "B").execute(make_context())
    assert again["changed"] is False and again["outputs"] == {"value": "B"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])] == [STATE_KEY]
    assert not any((workdirs[n] / "terraform.tfstate").exists() for n in workdirs)


@pytest.mark.parametrize(
    "root_tf, why",
    [
        ("", "the root declares no backend"),
        ('terraform {\n  backend "local" {}\n}\n', 'declares backend "local"'),
        (BACKEND_TF, 'declares backend "s3" without a bucket, and backend_config names none'),
    ],
    ids=["no-backend", "local-backend", "s3-without-bucket"],
)
def test_local_state_is_refused_before_terraform_runs(
    tmp_path: Path, terraform_state_dir: Path, root_tf: str, why: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "versions.tf").write_text(root_tf)
    (root / "main.tf").write_text('resource "terraform_data" "x" {\n  input = "x"\n}\n')
    config = write_config(tmp_path / "fleet.yaml", {})
    op = TerraformApplyOperator(
        task_id="apply", role="web", config_path=config, workdir=str(root), state_dir=str(terraform_state_dir),
        aws_conn_id=None, allow_other_changes=True, check_locks=False,  # no AWS here: the root moves no group
    )
    with pytest.raises(AirflowFailException) as exc:
        op.execute(make_context())
    assert str(exc.value).startswith(LOCAL_STATE_MESSAGE), str(exc.value)
    assert why in str(exc.value)
    assert sorted(p.name for p in root.iterdir()) == ["main.tf", "versions.tf"]  # terraform never ran


def test_allow_local_state_lets_one_machine_keep_a_local_state(tmp_path: Path, terraform_state_dir: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text('resource "terraform_data" "x" {\n  input = "x"\n}\n')
    config = write_config(tmp_path / "fleet.yaml", {"allow_local_state": True})
    result = TerraformApplyOperator(
        task_id="apply", role="web", config_path=config, workdir=str(root), state_dir=str(terraform_state_dir),
        aws_conn_id=None, allow_other_changes=True, check_locks=False,  # no AWS here: the root moves no group
    ).execute(make_context())
    assert result["changed"] is True and (root / "terraform.tfstate").exists()


def test_root_backend_reads_the_declaration(tmp_path: Path) -> None:
    def backend(**files: str) -> RootBackend:
        root = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        for name, text in files.items():
            (root / name.replace("__", ".")).write_text(text)
        return root_backend(root)

    assert backend(main__tf='resource "terraform_data" "x" {}\n') == RootBackend(None)
    assert backend(versions__tf=BACKEND_TF) == RootBackend(
        "s3",
        frozenset({"use_lockfile", "use_path_style", "skip_credentials_validation", "skip_requesting_account_id",
                   "skip_metadata_api_check", "skip_region_validation"}),
        "versions.tf",
    )
    commented = (
        '# backend "s3" {}\nterraform {\n  // backend "s3" {}\n  /* backend "gcs" {\n  } */\n'
        '  required_version = ">= 1.11 } {"\n}\n'
    )
    assert backend(versions__tf=commented) == RootBackend(None)
    full = 'terraform {\n  backend "s3" {\n    bucket = "b}"\n    key    = "k"\n    assume_role {\n      role_arn = "r"\n    }\n  }\n}\n'
    assert backend(main__tf=full).settings == {"bucket", "key"}  # not role_arn: it is in a nested block
    assert backend(main__tf='terraform {\n  cloud {\n    organization = "o"\n  }\n}\n').kind == "cloud"
    assert backend(main__tf=BACKEND_TF, override__tf='terraform {\n  backend "local" {}\n}\n').kind == "local"
    assert backend(main__tf__json=json.dumps({"terraform": {"backend": {"s3": {"bucket": "b"}}}})) == RootBackend(
        "s3", frozenset({"bucket"}), "main.tf.json"
    )
    assert RootBackend("s3").remote and not RootBackend("local").remote and not RootBackend(None).remote


def test_backend_config_args() -> None:
    assert backend_config_args({"bucket": "b", "key": "k/x.tfstate", "encrypt": True, "max_retries": 3}) == [
        "bucket=b", "key=k/x.tfstate", "encrypt=true", "max_retries=3",
    ]
    with pytest.raises(ValueError, match="backend_config: 'a=b' is not a backend setting name"):
        backend_config_args({"a=b": "c"})


def test_the_sandbox_roots_keep_their_state_in_the_seeded_bucket() -> None:
    """The shipped roots declare the partial S3 backend with the lock file; the web role names the bucket the
    sandbox seed creates."""
    from phoenix_fleet.config import load_fleet_config

    from sandbox.seed import STATE_BUCKET

    for root in ("envs/sandbox", "envs/sandbox/network"):
        declared = root_backend(REPO / "include" / "terraform" / root)
        assert declared.kind == "s3" and "use_lockfile" in declared.settings, (root, declared)
        assert "bucket" not in declared.settings  # partial: the bucket is the deployment's choice
    web = load_fleet_config(REPO / "include" / "fleet.yaml").role("web").terraform
    assert web.backend_config["bucket"] == STATE_BUCKET and web.backend_config["key"] and not web.allow_local_state


SLOW_TF = """
variable "seconds" {
  type = number
}

resource "terraform_data" "slow" {
  input = var.seconds
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}
"""


def test_an_apply_outlives_its_first_credentials(
    sandbox_clean: Any, tmp_path: Path, terraform_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection assumes a role whose credentials (compressed by the sandbox) last 8 s; the apply takes
    more than two lifetimes, then writes the state to S3 and releases the lock: with credentials the task renewed meanwhile
    (``phoenix_fleet.aws_credentials``), since the sandbox refuses expired ones as AWS does."""
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_APPLY", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": sandbox_clean.endpoint_url, "region_name": "us-east-1",
                  "role_arn": "arn:aws:iam::123456789012:role/phoenix-terraform"},
    }))
    sandbox_clean.update_config(sts_credential_seconds=8)
    root = tmp_path / "root"
    root.mkdir()
    (root / "backend.tf").write_text(BACKEND_TF)
    (root / "main.tf").write_text(SLOW_TF)
    config = write_config(tmp_path / "fleet.yaml", {"backend_config": {"bucket": BUCKET, "key": "tests/slow.tfstate",
                                                                         "region": "us-east-1"}})
    op = TerraformApplyOperator(
        task_id="apply", role="web", config_path=config, workdir=str(root), variables={"seconds": 18},
        allow_other_changes=True, check_locks=False, aws_conn_id="aws_apply", state_dir=str(terraform_state_dir),
    )
    started = time.monotonic()
    result = op.execute(make_context())
    assert time.monotonic() - started > 18 > 2 * 8
    assert result["changed"] is True
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == ["tests/slow.tfstate"], keys  # the state written after the sleep, and the lock released
    state = json.loads(s3.get_object(Bucket=BUCKET, Key="tests/slow.tfstate")["Body"].read())
    assert [r["type"] for r in state["resources"]] == ["terraform_data"]
    assert op._cli_credentials is None  # stopped: no refresher left running
