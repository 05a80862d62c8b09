"""CliCredentials: what a CLI (Packer, Terraform) gets from a connection's credentials. Static keys as variables;
refreshable ones through a private profile whose credential_process prints credentials the task keeps fresh."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from phoenix_fleet.aws_credentials import KEY_VARIABLES, PROFILE, CliCredentials, apply_env


def test_static_keys_go_as_variables_and_no_stale_token() -> None:
    cli = CliCredentials(Credentials("AKIDSTATIC", "secret"))
    changes = cli.start()
    assert changes == {"AWS_ACCESS_KEY_ID": "AKIDSTATIC", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": None}
    env = apply_env({"AWS_SESSION_TOKEN": "the-workers-own", "PATH": "/bin"}, changes)
    assert env == {"AWS_ACCESS_KEY_ID": "AKIDSTATIC", "AWS_SECRET_ACCESS_KEY": "secret", "PATH": "/bin"}
    assert cli.directory is None and cli._thread is None
    cli.stop()


@pytest.fixture
def short_lived() -> RefreshableCredentials:
    """Credentials that last 2 s, a new key each time botocore renews them (as an assumed role's do)."""
    serial = itertools.count(1)

    def fetch() -> dict[str, str]:
        n = next(serial)
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        return {"access_key": f"ASIA{n:04d}", "secret_key": f"secret-{n}", "token": f"token-{n}",
                "expiry_time": expiry.isoformat()}

    return RefreshableCredentials.create_from_metadata(metadata=fetch(), refresh_using=fetch, method="sts-assume-role")


def _process_output(config: Path) -> dict[str, str]:
    line = next(x for x in config.read_text().splitlines() if x.startswith("credential_process"))
    argv = shlex.split(line.split("=", 1)[1])
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def test_refreshable_credentials_go_through_a_profile_kept_fresh(short_lived: RefreshableCredentials) -> None:
    cli = CliCredentials(short_lived)
    changes = cli.start()
    try:
        assert all(changes[name] is None for name in KEY_VARIABLES)  # nothing inherited may win over the profile
        assert changes["AWS_PROFILE"] == PROFILE and changes["AWS_SDK_LOAD_CONFIG"] == "1"
        config = Path(str(changes["AWS_CONFIG_FILE"]))
        assert config.parent.stat().st_mode & 0o777 == 0o700
        assert Path(str(changes["AWS_SHARED_CREDENTIALS_FILE"])).read_text() == ""
        first = _process_output(config)
        assert first["Version"] == 1 and first["AccessKeyId"].startswith("ASIA") and first["SessionToken"]
        expires = dt.datetime.fromisoformat(first["Expiration"].replace("Z", "+00:00"))
        left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
        assert 0 < left < 2  # announced before the real expiry: an SDK renews ahead of it
        assert (cli.document.stat().st_mode & 0o777) == 0o600  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while _process_output(config)["AccessKeyId"] == first["AccessKeyId"]:
            assert time.monotonic() < deadline, "the document was never renewed"
            time.sleep(0.1)
        later = _process_output(config)
        assert later["SecretAccessKey"] != first["SecretAccessKey"]
        assert len(cli.access_keys) >= 2
    finally:
        directory = cli.directory
        cli.stop()
    assert directory is not None and not directory.exists()  # secrets removed with the run
    assert cli._thread is None
