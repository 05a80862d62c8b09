"""Imported once by the process Airflow forks task processes from, so each task start does not pay for it again.

Every Airflow 3 task start is a process forked from a long-lived one (the LocalExecutor's worker, a Celery pool
worker) that then imports what its task needs and builds it: its DAG file again (the SDK, the standard provider's
decorators, our DAG builders), boto3/botocore and the Amazon provider's hooks, our hooks and operators, the
object-storage XCom backend with s3fs, and botocore's service models (megabytes of JSON: ec2's alone is ~0.1 s to
parse). Measured by ``bench/fleet_rollout --profile`` (docs/scale.md): most of a recycle start's CPU. Imported
here, before the fork, all of it is shared copy-on-write by every task process.

What it does, and only this:

* imports :data:`PRELOAD` (a module that fails to import is skipped with a warning: the task imports it itself
  and reports the error there);
* parses the service models of :data:`SERVICES` into one botocore loader and makes it the loader every session of
  our hooks shares (``image_hook._share_model_loader``): read-only API models; then makes (and drops) one client
  per service with placeholder keys, which fills botocore's process-wide caches: no credentials are looked up,
  no request is sent, no connection is opened;
* discovers Airflow's plugins and builds the listener manager (the SDK caches both in the process), as a
  worker forked from the scheduler would have inherited them: every task start asks for them;
* reads the fleet config once (``config.cached_fleet_config``, keyed by the file's mtime: a changed file is read
  again by the task) when ``PHOENIX_FLEET_CONFIG`` (or the default path) is readable;
* ``gc.freeze()`` at the end, as Airflow does before it forks the LocalExecutor's workers from the scheduler.

Wire it (docs/scale.md, "What a deployment sets (workers)"):

* LocalExecutor: ``[scheduler] mp_start_method = forkserver`` and ``[core] mp_forkserver_preload =
  phoenix_fleet.worker_preload``: the executor's workers come from a fork server that imported this module;
* Celery, on the workers only: ``[celery] celery_config_options = phoenix_fleet.celery_worker_config.CELERY_CONFIG``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import time

log = logging.getLogger(__name__)

#: what a phoenix task imports when it runs, beyond what the worker process already has
PRELOAD: tuple[str, ...] = (
    # the task runner itself and what it imports (the LocalExecutor's worker does not import it before the fork)
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.xcom",
    # AWS
    "boto3",
    "botocore.session",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.amazon.aws.hooks.ec2",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.hooks.ssm",
    # the object-storage XCom backend: every xcom_pull builds its base path, which registers fsspec's filesystems
    "airflow.providers.common.io.xcom.backend",
    "airflow.sdk.io.path",
    "airflow.providers.amazon.aws.fs.s3",
    "s3fs",
    # ours: run-time modules of the hooks and operators
    "phoenix_fleet.config",
    "phoenix_fleet.hooks.asg_hook",
    "phoenix_fleet.hooks.image_hook",
    "phoenix_fleet.hooks.packer_hook",
    "phoenix_fleet.hooks.terraform_hook",
    "phoenix_fleet.rollout",
    "phoenix_fleet.operators.recycle_operators",
    "phoenix_fleet.sensors.asg_sensors",
    "phoenix_fleet.triggers.rollout_triggers",
    "phoenix_fleet.release.publish_rules",
    "phoenix_fleet.release.release_log",
    "phoenix_fleet.release.release_notes",
    "phoenix_fleet.inventory.collect",
    "phoenix_fleet.inventory.report",
    # what the DAG files import: each task parses its DAG file again, then only the file itself runs
    "airflow.providers.standard.decorators.branch_python",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.decorators.short_circuit",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.hitl",
    "airflow.sdk.bases.sensor",
    "airflow.sdk.definitions.decorators",
    "phoenix_fleet.dag_facts",
    "phoenix_fleet.pipelines.release_dag",
    "phoenix_fleet.pipelines.rollout_dag",
    # every task start loads the Airflow plugins (the SDK's listener manager): ours imports FastAPI for its page
    "phoenix_fleet.airflow_plugin",
)

#: the AWS services our tasks call (their models are parsed here once)
SERVICES: tuple[str, ...] = ("autoscaling", "ec2", "elbv2", "cloudwatch", "ssm", "s3", "sts")
_MODELS = ("service-2", "endpoint-rule-set-1", "paginators-1")
_DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")

#: what :func:`preload` did (for tests and the log): modules imported, skipped (name -> error), models loaded
report: dict[str, object] = {}


def warm_models(services: tuple[str, ...] = SERVICES) -> list[str]:
    """Parse ``services``' models into the botocore loader our hooks' sessions share; returns what was loaded."""
    import boto3

    from phoenix_fleet.hooks import image_hook

    if image_hook._shared_loader is None:
        # a session only for its loader (botocore's data path plus boto3's): no credentials are resolved
        image_hook._share_model_loader(boto3.session.Session())
    loader = image_hook._shared_loader
    if loader is None:  # pragma: no cover - a botocore without components
        return []
    loaded = []
    for name in _DATA:
        try:
            loader.load_data(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a model botocore does not ship: the client loads what it needs
            pass
    for service in services:
        for model in _MODELS:
            try:
                loader.load_service_model(service, model)
                loaded.append(f"{service}/{model}")
            except Exception:  # noqa: BLE001 - e.g. no paginators for a service
                pass
    # one throwaway client per service (placeholder keys, never used: no request is made, no connection opened)
    # fills botocore's process-wide caches a client's creation fills (operation names, endpoint rules)
    session = boto3.session.Session(aws_access_key_id="preload", aws_secret_access_key="preload",  # noqa: S106
                                    region_name="us-east-1")
    image_hook._share_model_loader(session)
    for service in services:
        try:
            session.client(service)
        except Exception:  # noqa: BLE001 - the task's own client creation reports it
            pass
    return loaded


def preload() -> dict[str, object]:
    started = time.process_time()
    imported, skipped = [], {}
    for name in PRELOAD:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as e:  # noqa: BLE001 - the task imports it itself and fails there, with its traceback
            skipped[name] = f"{type(e).__name__}: {e}"
            log.warning("phoenix worker preload: %s not imported: %s", name, e)
    models: list[str] = []
    try:
        models = warm_models()
    except Exception as e:  # noqa: BLE001 - each task loads its models itself then
        log.warning("phoenix worker preload: service models not loaded: %s", e)
    plugins = None
    try:  # what a worker forked from the scheduler inherits: Airflow's plugins discovered (entry points, folder)
        from airflow.sdk.listener import get_listener_manager
        from airflow.sdk.plugins_manager import _get_plugins

        plugins = [p.name for p in _get_plugins()[0]]
        get_listener_manager()
    except Exception as e:  # noqa: BLE001 - each task discovers them itself then
        log.warning("phoenix worker preload: Airflow plugins not discovered: %s", e)
    config = None
    try:
        from phoenix_fleet.config import cached_fleet_config, default_config_path

        if default_config_path().exists():  # PHOENIX_FLEET_CONFIG, else include/fleet.yaml
            cached_fleet_config()
            config = "read"
    except Exception as e:  # noqa: BLE001 - a bad config fails in the task, naming the field
        config = f"not read: {e}"
    report.update(imported=imported, skipped=skipped, models=models, plugins=plugins, config=config,
                  cpu_seconds=round(time.process_time() - started, 3))
    return report


preload()
# what Airflow's LocalExecutor does before it forks its workers from the scheduler: move everything imported so far
# to the permanent generation, so the garbage collector of each process forked from here never walks it again
# (and copy-on-write pages stay shared); without it a task's startup (parsing its DAG file) pays for full
# collections over every preloaded object
gc.freeze()
