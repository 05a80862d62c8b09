"""AWS credentials for a CLI that runs longer than its first credentials last (Packer, Terraform).

A bake or an apply can run for hours; the credentials of a connection with a ``role_arn`` (STS AssumeRole) last an
hour by default, and AWS caps role chaining at one hour whatever is asked. Handing the CLI a frozen copy as
``AWS_ACCESS_KEY_ID``/``AWS_SESSION_TOKEN`` makes it fail halfway (``ExpiredToken``), with a builder instance or a
half-applied plan left behind. Instead, :class:`CliCredentials`:

* for **refreshable** credentials (an assumed role, web identity: anything botocore refreshes), writes a private
  AWS config file whose profile has a ``credential_process`` that prints a JSON document of the current
  credentials with their ``Expiration`` (the standard process-credentials format), and hands the CLI that
  profile (``AWS_CONFIG_FILE``, ``AWS_PROFILE``; the static key variables removed, or they would win). Every AWS
  SDK (Go v1 and v2 for Packer and Terraform, botocore) runs the process again when the credentials it holds
  expire; a thread of the task keeps the document fresh (the hook's session assumes the role again before the
  old credentials expire) until the CLI is done. The announced ``Expiration`` is a margin before the real one
  (half of what is left, at most 5 minutes), so an SDK never signs with credentials about to lapse, and the
  renewed document is there before the SDK asks again;
* for **static** credentials (access keys in the connection), passes them as variables, as before: they do not
  expire.

The directory is private to the task (``0700``, the document ``0600``), removed by :meth:`CliCredentials.stop`;
secrets never go to the task log. Import-light: botocore is imported inside the methods.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

PROFILE = "phoenix-fleet"
#: what the CLI must not inherit when it reads the profile: environment credentials take precedence over it
KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
MAX_MARGIN_SECONDS = 300.0

log = logging.getLogger(__name__)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


class CliCredentials:
    """Credentials for one CLI run; ``start()`` gives the environment changes (a value None: remove the variable),
    ``stop()`` ends the refreshing and removes the files. A context manager too.

    :param credentials: botocore credentials (``session.get_credentials()``), refreshable or not
    :param poll_seconds: how often (at most) the document is refreshed; sooner when the credentials are short-lived
    """

    def __init__(self, credentials: Any, *, poll_seconds: float = 30.0, logger: Any = None) -> None:
        self.credentials = credentials
        self.poll_seconds = poll_seconds
        self.log = logger or log
        self.directory: Path | None = None
        self.document: Path | None = None
        self.written = 0  # documents written (tests and logs: how often the credentials were renewed)
        self._access_keys: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def refreshable(self) -> bool:
        from botocore.credentials import RefreshableCredentials

        return isinstance(self.credentials, RefreshableCredentials)

    @property
    def access_keys(self) -> list[str]:
        """The access key ids handed out so far (never the secrets), oldest first."""
        return list(self._access_keys)

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> dict[str, str | None]:
        if self.credentials is None:
            return {}
        if not self.refreshable:
            frozen = self.credentials.get_frozen_credentials()
            out: dict[str, str | None] = {
                "AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
            }
            out["AWS_SESSION_TOKEN"] = frozen.token or None
            return out
        self._scale_refresh_windows()
        self.directory = Path(tempfile.mkdtemp(prefix="phoenix-aws-"))  # 0700
        self.document = self.directory / "credentials.json"
        self._write()
        cat = shutil.which("cat") or "/bin/cat"
        config = self.directory / "config"
        config.write_text(
            f"[profile {PROFILE}]\n"
            "# the current credentials, kept fresh by the Airflow task that runs this CLI (phoenix_fleet.aws_credentials)\n"
            f"credential_process = {shlex.quote(cat)} {shlex.quote(str(self.document))}\n"
        )
        empty = self.directory / "credentials"
        empty.write_text("")
        self._thread = threading.Thread(target=self._refresh_loop, name="aws-credentials-refresh", daemon=True)
        self._thread.start()
        self.log.info("AWS credentials for the CLI: profile %s, renewed before they expire (%s)", PROFILE,
                      self.credentials.method)
        env: dict[str, str | None] = dict.fromkeys(KEY_VARIABLES)
        env.update({
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_PROFILE": PROFILE,
            "AWS_SDK_LOAD_CONFIG": "1",  # aws-sdk-go v1 (Packer's plugin) reads AWS_CONFIG_FILE only with it
        })
        return env

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> CliCredentials:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ refreshing

    def _scale_refresh_windows(self) -> None:
        """botocore renews credentials 15 minutes before they expire and calls renewed ones that still expire
        within 10 minutes a failure: right for hour-long credentials, wrong for short ones (STS allows 15 minutes;
        the sandbox compresses time). Scale both windows to the credentials' lifetime: three quarters of it and
        half (hour-long credentials keep botocore's 15 and 10 minutes). The renewal then comes a quarter of the
        lifetime before the announced ``Expiration`` (half of it), when the SDK reads the document again: a
        refresher held up for less than that (a loaded worker) costs nothing."""
        expiry = self._expiry()
        if expiry is None:
            return
        lifetime = (expiry - dt.datetime.now(dt.UTC)).total_seconds()
        if lifetime <= 0:
            return
        creds = self.credentials
        creds._advisory_refresh_timeout = min(creds._advisory_refresh_timeout, lifetime * 3 / 4)
        creds._mandatory_refresh_timeout = min(creds._mandatory_refresh_timeout, lifetime / 2)

    def _expiry(self) -> dt.datetime | None:
        expiry = getattr(self.credentials, "_expiry_time", None)  # botocore keeps it here (pinned botocore)
        return _utc(expiry) if isinstance(expiry, dt.datetime) else None

    def _write(self) -> float:
        """Write the current credentials (botocore renews them when they near expiry); return the seconds until
        the announced expiration."""
        assert self.document is not None
        frozen = self.credentials.get_frozen_credentials()
        expiry = self._expiry()
        now = dt.datetime.now(dt.UTC)
        left = (expiry - now).total_seconds() if expiry else 3600.0
        announced = now + dt.timedelta(seconds=max(0.0, left - min(MAX_MARGIN_SECONDS, max(left, 0.0) / 2)))
        body = {"Version": 1, "AccessKeyId": frozen.access_key, "SecretAccessKey": frozen.secret_key,
                "SessionToken": frozen.token, "Expiration": announced.isoformat().replace("+00:00", "Z")}
        fd, tmp = tempfile.mkstemp(dir=self.document.parent, prefix=".credentials-")  # 0600
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, self.document)
        if not self._access_keys or self._access_keys[-1] != frozen.access_key:
            self._access_keys.append(frozen.access_key)
            if len(self._access_keys) > 1:
                self.log.info("AWS credentials renewed for the CLI (now %s, valid until %s)",
                              frozen.access_key[:8] + "...", announced.isoformat(timespec="seconds"))
        self.written += 1
        return (announced - now).total_seconds()

    def _refresh_loop(self) -> None:
        left = self.poll_seconds
        while not self._stop.wait(min(self.poll_seconds, max(0.2, left / 4))):
            try:
                left = self._write()
            except Exception as exc:  # noqa: BLE001 - keep trying: the CLI holds the last credentials meanwhile
                self.log.warning("renewing the CLI's AWS credentials failed (will retry): %s", exc)
                left = 2.0


def apply_env(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """``env`` with ``changes`` applied: a None value removes the variable."""
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


__all__ = ["KEY_VARIABLES", "PROFILE", "CliCredentials", "apply_env"]
