"""AWS connections that must exist: an unknown one fails the task, naming the field and the connection id.

The Amazon provider's ``AwsBaseHook`` treats an unknown ``aws_conn_id`` as "no connection" (a warning, then boto3's
default credential chain: the worker's instance role, its environment). In a deployment that serves several
accounts that is the wrong account, silently. phoenix-fleet never does that:

* :func:`require_aws_connection` raises :class:`UnknownAwsConnection` (an ``AirflowFailException``: no retry)
  ``environments.prod.aws_conn_id: Airflow has no connection 'aws_prod'. Fix: ...``; the first task of every DAG
  checks the connections its run will use, naming the fleet-config field that chose each;
* :class:`StrictAwsConnMixin` makes a hook (our AWS hooks) refuse an unknown ``aws_conn_id`` the same way, for
  tasks that run on their own (a retry after someone removed the connection).

``aws_conn_id=None`` stays what it is in the provider: deliberately no connection (boto3's default chain).
Import-light: ``airflow.sdk.exceptions`` at module level, the rest inside the functions.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException


class UnknownAwsConnection(AirflowFailException):
    """An ``aws_conn_id`` names no Airflow connection."""


def _env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper().replace("-", "_").replace(".", "_")


def require_aws_connection(conn_id: str | None, field: str = "aws_conn_id") -> None:
    """Raise :class:`UnknownAwsConnection` naming ``field`` unless ``conn_id`` is None or an existing connection."""
    if not conn_id:
        return
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise UnknownAwsConnection(
            f"{field}: Airflow has no connection {conn_id!r}. Fix: create it (Admin > Connections, the "
            f"connections CLI, a secrets backend or {_env_var(conn_id)}), or name an existing one in {field}"
        ) from None


class StrictAwsConnMixin:
    """For ``AwsBaseHook`` subclasses: an unknown ``aws_conn_id`` raises instead of falling back to no connection."""

    aws_conn_id: str | None

    @cached_property
    def conn_config(self) -> Any:
        require_aws_connection(self.aws_conn_id, "aws_conn_id")
        return super().conn_config  # type: ignore[misc]


__all__ = ["StrictAwsConnMixin", "UnknownAwsConnection", "require_aws_connection"]
