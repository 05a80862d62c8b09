"""Serve moto with the realism extensions: in a thread of the current process (tests) or in the foreground
(what the ``python -m sandbox start`` daemon runs).

The WSGI app is moto's own ``DomainDispatcherApplication`` behind :class:`SandboxApp`, which

* answers the control endpoints under ``/phoenix-sandbox/`` (info, config, reset, settle), and
* runs every other request inside a realism request scope, so the patches act on it.

In-process API (tests)::

    handle = start_in_thread(realism=RealismConfig.profile("tests"))
    boto3.client("ec2", endpoint_url=handle.endpoint_url, ...)
    handle.update_config({"instance_boot": {"describes": 5}})
    handle.reset()
    handle.stop()
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .call_log import CallLog, client_of, credential_scope, request_identity
from .realism import MOTO_VERSION, Realism, RealismConfig, install, request_scope

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_PORT = 5055
SERVICE = "phoenix-sandbox"
CONTROL_PREFIX = "/phoenix-sandbox"
PID_FILE = "sandbox.pid"
LOG_FILE = "sandbox.log"
DEFAULT_REGION = "us-east-1"


def sandbox_port() -> int:
    """``PHOENIX_SANDBOX_PORT`` or 5055."""
    raw = os.environ.get("PHOENIX_SANDBOX_PORT", "").strip()
    return int(raw) if raw else DEFAULT_PORT


def sandbox_dir() -> Path:
    """``PHOENIX_SANDBOX_DIR`` or ``<repo>/.sandbox`` (gitignored): pid file and log."""
    raw = os.environ.get("PHOENIX_SANDBOX_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else ROOT / ".sandbox"


def endpoint_for(port: int) -> str:
    return f"http://{HOST}:{port}"


# --------------------------------------------------------------------------------------------- WSGI app


def _is_autoscaling_write(environ: dict[str, Any]) -> bool:
    """An Auto Scaling call that is not a Describe (the body, read only for Auto Scaling, is put back)."""
    if credential_scope(environ)[1] != "autoscaling":
        return False
    action = request_identity(environ)[2] or ""
    return not action.startswith("Describe")


class SandboxApp:
    """moto's WSGI app plus the ``/phoenix-sandbox/*`` control endpoints.

    =======================  ====  ===========================================================================
    ``/phoenix-sandbox/info``     GET   ``{"service": "phoenix-sandbox", "pid", "port", "endpoint_url",
                                        "state_dir", "started_at", "moto_version", "config"}``
    ``/phoenix-sandbox/config``   GET   the realism config (JSON, see ``RealismConfig.to_dict``)
    ``/phoenix-sandbox/config``   POST  partial update (same JSON shape; ``"profile"`` starts from a profile);
                                        returns the new config. 400 with ``{"error"}`` on a bad field.
    ``/phoenix-sandbox/config``   PUT   replace: fields not given fall back to plain moto (or ``"profile"``)
    ``/phoenix-sandbox/reset``    POST  forget all AWS state; ``{"config": true}`` also restores the start config
    ``/phoenix-sandbox/settle``   POST  finish every transition in flight now
    ``/phoenix-sandbox/age``      POST  ``{"region", "instance_ids": [..], "asg", "days"}``: move launch times
                                        ``days`` into the past (try max-age enforcement); returns ``{"aged"}``
    ``/phoenix-sandbox/iam``      GET   the IAM audit while ``iam_access_control`` is on: ``{"calls": [{"principal",
                                        "action", "allowed", "denied"}], "denied": [{"principal", "action",
                                        "resource", "reason"}]}`` (``sandbox/iam_access.py``)
    ``/phoenix-sandbox/iam``      DELETE  forget the audit (a reset does too)
    ``/phoenix-sandbox/calls``    POST  ``{"enabled": true}``: record every AWS call answered from now on
                                        (``sandbox/call_log.py``); ``{"enabled": false}`` stops and forgets
    ``/phoenix-sandbox/calls``    GET   ``{"enabled", "calls": [[t, region, service, action, status, client], ...]}``
                                        (``?since=<t>``: only calls after t)
    ``/phoenix-sandbox/calls``    DELETE  stop recording and forget the calls
    =======================  ====  ===========================================================================
    """

    def __init__(self, realism: Realism, info: Mapping[str, Any] | None = None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.realism = realism
        self.info: dict[str, Any] = {
            "service": SERVICE,
            "pid": os.getpid(),
            "port": None,
            "endpoint_url": None,
            "state_dir": None,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "moto_version": MOTO_VERSION,
        }
        self.info.update(info or {})
        self.call_log = CallLog()
        #: Auto Scaling changes are applied one at a time, as AWS orders the changes of a group: moto's are
        #: read-modify-write (DetachInstances reads desired and the member list, then writes both back), so two
        #: concurrent terminations in one group lose one decrement
        self._autoscaling_writes = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self._control(environ, start_response)
        if self.call_log.enabled:
            return self._logged(environ, start_response)
        return self._serve(environ, start_response)

    def _logged(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve the call and note it in the call log (when it arrived, who, what, the answer's status)."""
        t = time.time()
        region, service, action, _params = request_identity(environ)
        client = client_of(environ.get("HTTP_USER_AGENT") or "")

        def noting(status: str, headers: Any, *rest: Any) -> Any:
            try:
                code = int(status.split()[0])
            except (ValueError, IndexError):
                code = 0
            self.call_log.add(t, region, service, action, code, client)
            return start_response(status, headers, *rest)

        return self._serve(environ, noting)

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        expired = _expired_credentials(environ)
        if expired is not None:
            return expired_token_response(environ, start_response, *expired)
        if self.realism.config.api_faults:
            answer = injected_fault(self.realism, environ)
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
        if _is_autoscaling_write(environ):
            with self._autoscaling_writes, request_scope(self.realism):
                return self.moto(environ, start_response)
        with request_scope(self.realism):
            return self.moto(environ, start_response)

    def describe(self) -> dict[str, Any]:
        return {**self.info, "config": self.realism.config.to_dict()}

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        name = environ["PATH_INFO"][len(CONTROL_PREFIX) :].strip("/")
        status, payload = "200 OK", None
        try:
            body = _read_json(environ) if method in ("POST", "PUT") else {}
            if name in ("", "info") and method == "GET":
                payload = self.describe()
            elif name == "config" and method == "GET":
                payload = self.realism.config.to_dict()
            elif name == "config" and method == "POST":
                payload = self.realism.update_config(body).to_dict()
            elif name == "config" and method == "PUT":
                payload = self.realism.set_config(RealismConfig.from_dict(body)).to_dict()
            elif name == "reset" and method == "POST":
                self.realism.reset(state=True, config=bool(body.get("config")))
                payload = {"status": "ok", "config": self.realism.config.to_dict()}
            elif name == "settle" and method == "POST":
                payload = {"status": "ok", "settled": self.realism.settle()}
            elif name == "age" and method == "POST":
                payload = {"status": "ok", "aged": age_instances(**body)}
            elif name == "iam" and method == "GET":
                payload = self.realism.iam_audit.to_dict()
            elif name == "calls" and method == "GET":
                from urllib.parse import parse_qs

                since = parse_qs(environ.get("QUERY_STRING") or "").get("since")
                payload = self.call_log.to_dict(float(since[0]) if since else None)
            elif name == "calls" and method == "POST":
                if body.get("enabled") is True:
                    self.call_log.start()
                elif body.get("enabled") is False:
                    self.call_log.stop()
                else:
                    raise ValueError('calls: give {"enabled": true} (record from now on) or {"enabled": false}')
                payload = {"status": "ok", "enabled": self.call_log.enabled}
            elif name == "calls" and method == "DELETE":
                self.call_log.stop()
                payload = {"status": "ok", "enabled": False}
            elif name == "iam" and method == "DELETE":
                self.realism.iam_audit.clear()
                payload = {"status": "ok"}
            else:
                status, payload = "404 Not Found", {"error": f"no {method} /phoenix-sandbox/{name}"}
        except ValueError as exc:  # bad JSON or a bad config field
            status, payload = "400 Bad Request", {"error": str(exc)}
        data = json.dumps(payload, indent=1, default=str).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def injected_fault(realism: Realism, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """The error reply of the first matching ``api_faults`` rule (realism config), or None: serve the call.

    Reads the request the way the SDKs send it: region and service from the SigV4 credential scope, the action
    from ``X-Amz-Target`` (JSON protocol) or the ``Action`` form field (query protocol), the parameters from the
    JSON body or the form. The body is read once and put back for moto.
    """
    region, service, action, params = request_identity(environ)
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    fault = realism.take_fault(service, action, region, params)
    if fault is None:
        return None
    status = f"{fault.status} {'Service Unavailable' if fault.status == 503 else 'Error'}"
    request_id = "phoenix-sandbox-fault"
    if target:
        payload = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", fault.code),
                   ("x-amzn-RequestId", request_id)]
    elif service == "ec2":
        payload = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{escape(fault.code)}</Code>"
            f"<Message>{escape(fault.message)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        payload = (
            f"<ErrorResponse><Error><Type>{'Sender' if fault.status < 500 else 'Receiver'}</Type>"
            f"<Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    return status, [*headers, ("Content-Length", str(len(payload)))], payload


def age_instances(region: Any = None, *, instance_ids: Sequence[str] = (), asg: str | None = None,
                  days: Any = None, **unknown: Any) -> list[str]:
    """Backdate launch times (validated here: the control endpoint passes its JSON body straight in)."""
    from .moto_patches import age_instances as backdate

    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; use region, instance_ids, asg, days")
    if not isinstance(region, str) or not region:
        raise ValueError("region: required, e.g. us-east-1")
    if isinstance(days, bool) or not isinstance(days, int | float):
        raise ValueError(f"days: a number of days is required (got {days!r})")
    if isinstance(instance_ids, str) or not all(isinstance(i, str) for i in instance_ids):
        raise ValueError("instance_ids: a list of instance ids")
    return backdate(region, instance_ids=list(instance_ids), asg=asg, days=float(days))


_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/[^/]*/[^/]*/([a-z0-9-]+)/")
EXPIRED_MESSAGE = "The security token included in the request is expired"


def _expired_credentials(environ: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(access key, service, when it expired) if the request is signed (SigV4 header or presigned query) with
    temporary credentials the sandbox's STS issued and that have expired; else None."""
    from urllib.parse import parse_qs

    from .moto_patches import expired_access_key

    found = _CREDENTIAL_RE.search(str(environ.get("HTTP_AUTHORIZATION") or ""))
    if found:
        key, service = found.group(1), found.group(2)
    else:
        credential = (parse_qs(str(environ.get("QUERY_STRING") or "")).get("X-Amz-Credential") or [""])[0]
        parts = credential.split("/")
        if len(parts) < 4:
            return None
        key, service = parts[0], parts[3]
    when = expired_access_key(key)
    return None if when is None else (key, service, when.isoformat(timespec="seconds") + "Z")


def expired_token_response(
    environ: Mapping[str, Any], start_response: Callable[..., Any], key: str, service: str, when: str
) -> Iterable[bytes]:
    """What AWS answers a request signed with expired temporary credentials, in the service's protocol:
    ``ExpiredToken`` (JSON protocols: ``ExpiredTokenException``). SDKs treat it as "refresh and retry"."""
    request_id = os.urandom(16).hex()
    if environ.get("HTTP_X_AMZ_TARGET"):  # JSON protocol (SSM, ...)
        body = json.dumps({"__type": "ExpiredTokenException", "message": EXPIRED_MESSAGE}).encode()
        status, ctype = "400 Bad Request", "application/x-amz-json-1.1"
    elif service == "s3":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ExpiredToken</Code><Message>The provided "
                f"token has expired.</Message><RequestId>{request_id}</RequestId></Error>").encode()
        status, ctype = "400 Bad Request", "application/xml"
    elif service == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>ExpiredToken</Code>"
                f"<Message>{EXPIRED_MESSAGE}</Message></Error></Errors><RequestID>{request_id}</RequestID>"
                "</Response>").encode()
        status, ctype = "400 Bad Request", "text/xml"
    else:  # query protocol (STS, IAM, AutoScaling, ELBv2, SNS, ...)
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>{EXPIRED_MESSAGE}"
                f"</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        status, ctype = "403 Forbidden", "text/xml"
    print(f"phoenix-sandbox: refused {service} request signed with {key[:8]}..., expired at {when}: ExpiredToken",
          file=sys.stderr, flush=True)
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                            ("x-amzn-RequestId", request_id)])
    return [body]


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _request_handler(quiet: bool) -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    if not quiet:
        return MotoRequestHandler

    class QuietRequestHandler(MotoRequestHandler):  # type: ignore[misc, valid-type]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return QuietRequestHandler


def _warm(region: str = DEFAULT_REGION) -> None:
    """Create the EC2 backend once (moto loads its default AMIs: ~0.5-1.5 s) so the first call is quick."""
    try:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        ec2_backends[DEFAULT_ACCOUNT_ID][region]
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


# --------------------------------------------------------------------------------------------- in a thread


def _threaded_server_class() -> type:
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class SandboxThreadedServer(ThreadedMotoServer):
        """moto's ThreadedMotoServer serving :class:`SandboxApp` (its ``_server_entry`` builds a plain moto app)
        and reporting a failed bind instead of waiting forever."""

        def __init__(self, app: SandboxApp, port: int, quiet: bool) -> None:
            super().__init__(ip_address=HOST, port=port, verbose=False)
            self._app = app
            self._handler = _request_handler(quiet)
            self._error: BaseException | None = None

        def _server_entry(self) -> None:
            try:
                self._server = make_server(
                    self._ip_address, self._port, self._app, True, request_handler=self._handler
                )
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._error = exc
                self._server_ready_event.set()
                return
            self._server_ready_event.set()
            self._server.serve_forever()

        def start(self) -> None:
            super().start()
            if self._error is not None:
                raise self._error

    return SandboxThreadedServer


@dataclass
class SandboxHandle:
    """A sandbox server running in a thread of this process."""

    endpoint_url: str
    port: int
    realism: Realism
    app: SandboxApp
    _server: Any = field(repr=False)
    region_name: str = DEFAULT_REGION

    @property
    def config(self) -> RealismConfig:
        return self.realism.config

    def set_config(self, config: RealismConfig) -> RealismConfig:
        return self.realism.set_config(config)

    def update_config(self, changes: Mapping[str, Any] | None = None, **kwargs: Any) -> RealismConfig:
        """Partial update with JSON shapes: ``update_config(instance_boot={"describes": 5})``."""
        return self.realism.update_config({**(changes or {}), **kwargs})

    def reset(self, *, config: bool = True) -> None:
        """Forget all AWS state; by default also restore the config the server started with."""
        self.realism.reset(state=True, config=config)

    def settle(self) -> dict[str, int]:
        return self.realism.settle()

    def age_instances(self, region: str | None = None, *, instance_ids: Sequence[str] = (), asg: str | None = None,
                      days: float) -> list[str]:
        """Move instances' launch times ``days`` into the past (see ``moto_patches.age_instances``)."""
        return age_instances(region or self.region_name, instance_ids=instance_ids, asg=asg, days=days)

    def iam_audit(self) -> dict[str, Any]:
        """Who called what while ``iam_access_control`` was on: ``{"calls": [...], "denied": [...]}``
        (see ``sandbox/iam_access.py``)."""
        return self.realism.iam_audit.to_dict()

    def env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs (and subprocesses) at this sandbox with dummy credentials (the
        account's root key: allowed everything, also with ``iam_access_control`` on)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region_name,
            "AWS_REGION": self.region_name,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str, region_name: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client on this sandbox: dummy credentials (the root key, see :meth:`env`), and no retries (moto's
        500s fail fast)."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault("config", Config(retries={"max_attempts": 1}))
        return boto3.client(
            service,
            region_name=region_name or self.region_name,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **kwargs,
        )

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    realism: RealismConfig | Realism | None = None,
    *,
    port: int = 0,
    quiet: bool = True,
    warm: bool = True,
) -> SandboxHandle:
    """Serve the sandbox on ``127.0.0.1:port`` (0: a free port) in a daemon thread of this process.

    moto's backends are process-global: a mock_aws test in the same process shares (and resets) the state,
    but never the realism, which only applies to requests served here.
    """
    install()
    live = realism if isinstance(realism, Realism) else Realism(realism)
    app = SandboxApp(live)
    server = _threaded_server_class()(app, port, quiet)
    server.start()
    _, bound = server.get_host_and_port()
    endpoint = endpoint_for(bound)
    app.info.update(port=bound, endpoint_url=endpoint)
    if warm:
        threading.Thread(target=_warm, name="phoenix-sandbox-warm", daemon=True).start()
    return SandboxHandle(endpoint_url=endpoint, port=bound, realism=live, app=app, _server=server)


# --------------------------------------------------------------------------------------------- foreground


class _Stop(Exception):
    pass


def serve(config: RealismConfig, *, port: int, state_dir: Path | None, quiet: bool = False) -> int:
    """Serve in the foreground until SIGTERM/SIGINT. Writes ``<state_dir>/sandbox.pid`` (JSON: pid, port,
    endpoint_url, ...) once listening, and removes it on exit if it still names this process."""
    from werkzeug.serving import make_server

    install()
    realism = Realism(config)
    app = SandboxApp(realism, {"state_dir": str(state_dir) if state_dir else None})
    server = make_server(HOST, port, app, threaded=True, request_handler=_request_handler(quiet))
    bound = server.server_address[1]
    endpoint = endpoint_for(bound)
    app.info.update(port=bound, endpoint_url=endpoint)

    def stop(signum: int, frame: Any) -> None:
        raise _Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid_file = state_dir / PID_FILE if state_dir else None
    if pid_file is not None:
        write_pid_file(pid_file, app.info)
    print(f"phoenix-sandbox serving {endpoint} (pid {os.getpid()}, moto {MOTO_VERSION})", flush=True)
    print(f"realism: {json.dumps(config.to_dict(), sort_keys=True)}", flush=True)
    threading.Thread(target=_warm, name="phoenix-sandbox-warm", daemon=True).start()
    try:
        server.serve_forever()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        if pid_file is not None:
            remove_pid_file(pid_file, os.getpid())
        print("phoenix-sandbox stopped", flush=True)
    return 0


def write_pid_file(path: Path, info: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dict(info), indent=1) + "\n")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("pid"), int)
        or not isinstance(data.get("port"), int)
    ):
        return None
    return data


def remove_pid_file(path: Path, pid: int | None = None) -> None:
    """Remove the pid file; with ``pid``, only if it still names that process."""
    if pid is not None:
        data = read_pid_file(path)
        if data is not None and data.get("pid") != pid:
            return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


if __name__ == "__main__":  # pragma: no cover - use python -m sandbox serve
    sys.exit("use: python -m sandbox serve")
