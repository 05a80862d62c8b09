"""IAM access control in the sandbox: every request authorized against the caller's IAM policies, and an audit.

moto can authorize requests against the caller's IAM identity policies (``moto/iam/access_control.py``). Its
switch is process-wide: ``INITIAL_NO_AUTH_ACTION_COUNT`` (``moto.settings``; ``moto-api/reset-auth`` over HTTP)
says after how many requests enforcement starts, for every moto in the process. The sandbox drives the same
machinery from its realism config instead (``iam_access_control``, default off), so it can be switched per
sandbox at run time (``POST /phoenix-sandbox/config {"iam_access_control": true}``) without touching moto's
process-wide counter, which in-process ``mock_aws`` tests share.

With ``iam_access_control`` on, a request served by the sandbox is

* signed with the account's **root** access key (:data:`ROOT_ACCESS_KEY_ID`, ``testing``, which every fixture,
  the seed and the harness use): allowed, as AWS allows its account root user everything;
* signed with an IAM user's access key (or an assumed role's session credentials): moto checks the signature and
  then the action against the user's inline, attached and group policies (or the role's); anything not allowed
  fails with ``AccessDenied`` (EC2: ``UnauthorizedOperation``, as AWS answers), naming the principal and action;
* signed with any other key, or not signed: refused (``InvalidClientTokenId`` / ``AuthFailure`` / ``AccessDenied``).

What moto evaluates, and what it does not (include/iam/README.md holds the reviewed table):

* **actions**: yes, with ``*`` wildcards, ``Allow`` and ``Deny``;
* **resources**: only where moto knows the request's resource: S3 (``arn:aws:s3:::bucket/key``; DeleteObjects is
  authorized per key, as AWS does, and refused whole when one key is not allowed, where AWS refuses that key alone), SQS queues,
  IAM roles and ``sts:AssumeRole``'s role. For EC2, AutoScaling, ELBv2, SSM, SNS and CloudWatch moto passes
  ``*``; moto alone would then match only statements whose ``Resource`` is ``*``, so a policy scoped to
  ``arn:aws:ec2:*:*:instance/*`` would be refused every call. The sandbox treats an unknown resource as
  matching any ``Resource`` of a statement (``_wrap_statement``): the action decides;
* **conditions**: no (moto evaluates only ``StringEquals`` on ``sts:ExternalId`` in trust policies);
* ``NotAction``: yes; ``NotResource``: no (do not rely on it here).

Every decision is counted per principal and action (:class:`IamAudit`, ``GET /phoenix-sandbox/iam``): the
IAM-enforced tests fail on any denial, naming the action and the principal, even where our code caught the error.
A reset forgets the audit with the rest of the state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .realism import current

#: The access key id of the sandbox account's root user: any secret, any session token, always allowed.
ROOT_ACCESS_KEY_ID = "testing"
#: Signing names whose IAM action prefix differs (CloudWatch signs as ``monitoring``).
IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
#: Request actions whose IAM action has another name (S3's HeadBucket is authorized as ``s3:ListBucket``).
IAM_ACTION = {"s3:HeadBucket": "s3:ListBucket"}
#: How many denials the audit keeps in detail (counts are kept for all).
MAX_DENIALS = 500


@dataclass
class IamAudit:
    """Per (principal, action): how many requests were allowed and denied; the first denials in detail."""

    calls: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    denials: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, principal: str, action: str, allowed: bool, *, resource: str = "*", reason: str = "") -> None:
        with self._lock:
            counts = self.calls.setdefault((principal, action), [0, 0])
            counts[0 if allowed else 1] += 1
            if not allowed and len(self.denials) < MAX_DENIALS:
                self.denials.append({"principal": principal, "action": action, "resource": resource, "reason": reason})

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.denials.clear()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": [
                    {"principal": p, "action": a, "allowed": c[0], "denied": c[1]}
                    for (p, a), c in sorted(self.calls.items())
                ],
                "denied": [dict(d) for d in self.denials],
            }


def describe_denials(audit: dict[str, Any]) -> list[str]:
    """One line per denied (principal, action) of an audit dict: ``<principal> may not <action> (N calls: reason)``."""
    reasons: dict[tuple[str, str], str] = {}
    for d in audit.get("denied", []):
        reasons.setdefault((d["principal"], d["action"]), d.get("reason", ""))
    return [
        f"{c['principal']} may not {c['action']} ({c['denied']} call(s): {reasons.get((c['principal'], c['action']), '')})"
        for c in audit.get("calls", [])
        if c["denied"]
    ]


def _ec2_denied(principal: str, action: str) -> Exception:
    from moto.core.exceptions import _RESTError

    class Ec2UnauthorizedOperation(_RESTError):
        code = 403

    return Ec2UnauthorizedOperation(
        "UnauthorizedOperation",
        f"You are not authorized to perform this operation. User: {principal} is not authorized to perform: "
        f"{action} because no identity-based policy allows the {action} action",
    )


def _between(text: str, first: str, second: str) -> str:
    return text.partition(first)[2].partition(second)[0]


def _root_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:root"


def _check(response: Any, audit: IamAudit, iam_request_cls: type, resource: str) -> None:
    """moto's ``ActionAuthenticatorMixin._authenticate_and_authorize_action`` body (core/authorization.py), with
    the root key, IAM prefixes, the audit and EC2's error code added."""
    from moto.core.authorization import ActionAuthenticatorMixin

    headers = response.headers
    if headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    action = response._get_action()
    action = action[0] if isinstance(action, list) else action
    authorization = headers.get("Authorization") or ""
    scope = _between(authorization, "Credential=", ",").split("/")
    service = scope[3] if len(scope) > 3 else getattr(response, "service_name", "?")
    prefix = IAM_PREFIX.get(service, service)
    iam_action = IAM_ACTION.get(f"{prefix}:{action}", f"{prefix}:{action}")
    account = response.current_account
    if not authorization:
        audit.record("anonymous", iam_action, False, resource=resource, reason="request not signed")
        from moto.core.exceptions import AccessDeniedError

        raise AccessDeniedError(user_arn="anonymous", action=iam_action)
    key = scope[0]
    if key == ROOT_ACCESS_KEY_ID:
        audit.record(_root_arn(account), iam_action, True, resource=resource)
        return
    from urllib.parse import urlparse

    path = response.raw_path
    query = urlparse(response.uri).query
    if query:
        path += "?" + query
    try:
        request = iam_request_cls(
            account_id=account, method=response.method, path=path, data=response.data, body=response.raw_body,
            headers=headers, action=action,
        )
    except Exception as exc:  # unknown key or token
        audit.record(f"unknown access key {key}", iam_action, False, resource=resource, reason=_code(exc))
        raise
    principal = request._access_key.arn
    request._action = iam_action
    resources = _delete_objects_keys(response, iam_action, resource) or [resource]
    for one in resources:
        try:
            request.check_signature()
            request.check_action_permitted(one)
        except Exception as exc:
            audit.record(principal, iam_action, False, resource=one, reason=_code(exc))
            if prefix == "ec2" and _code(exc) == "AccessDenied":
                raise _ec2_denied(principal, iam_action) from None
            raise
        audit.record(principal, iam_action, True, resource=one)


def _delete_objects_keys(response: Any, iam_action: str, resource: str) -> list[str]:
    """S3's DeleteObjects (``POST /<bucket>?delete``): AWS authorizes ``s3:DeleteObject`` on each key's object ARN;
    moto passes the bucket's ARN, against which a statement scoped to a prefix (``bucket/xcom/*``) never matches.
    The ARN of every key in the request body instead ([] for any other request)."""
    if iam_action != "s3:DeleteObject" or not resource.startswith("arn:aws:s3:::") or "/" in resource[13:]:
        return []
    is_delete_keys = getattr(response, "is_delete_keys", None)
    if is_delete_keys is None or not is_delete_keys():
        return []
    import xmltodict

    body = response.body if isinstance(response.body, (str, bytes)) else response.raw_body
    objects = (xmltodict.parse(body).get("Delete") or {}).get("Object") or []
    if not isinstance(objects, list):
        objects = [objects]
    return [f"{resource}/{o['Key']}" for o in objects if isinstance(o, dict) and o.get("Key")]


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "error_type", None) or getattr(exc, "code", None) or type(exc).__name__)


def _wrap_authorize(original: Callable[..., Any]) -> Callable[..., Any]:
    def _authenticate_and_authorize_action(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        req = current()
        if req is None:  # not a sandbox request (mock_aws): moto's own switch
            return original(self, iam_request_cls, resource)
        if not req.config.iam_access_control:
            return None
        return _check(self, req.realism.iam_audit, iam_request_cls, resource)

    return _authenticate_and_authorize_action


def _wrap_statement(original: Callable[..., Any]) -> Callable[..., Any]:
    from moto.iam.access_control import IAMPolicyStatement

    def is_action_permitted(self: Any, action: str, resource: str = "*", *args: Any, **kwargs: Any) -> Any:
        stmt = self._statement
        if current() is not None and resource == "*" and stmt.get("Resource") not in (None, "*"):
            # moto does not know this request's resource: the statement's resources cannot be judged
            return original(IAMPolicyStatement({**stmt, "Resource": "*"}), action, resource, *args, **kwargs)
        return original(self, action, resource, *args, **kwargs)

    return is_action_permitted


def apply() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMPolicyStatement

    ActionAuthenticatorMixin._authenticate_and_authorize_action = _wrap_authorize(  # type: ignore[method-assign]
        ActionAuthenticatorMixin._authenticate_and_authorize_action
    )
    IAMPolicyStatement.is_action_permitted = _wrap_statement(  # type: ignore[method-assign]
        IAMPolicyStatement.is_action_permitted
    )
