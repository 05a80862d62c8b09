"""The Celery configuration of the distributed harness's workers (``[celery] celery_config_options``): Airflow's
default one, after importing what every phoenix task imports when it runs.

A Celery worker runs each task in a process forked from its pool (Airflow 3's ``supervise``), which then imports
what its DAG file imports, then boto3, the Amazon provider's hooks and our hooks' and operators' run-time modules
itself: ~2 s of CPU per task on a loaded 2-core machine, paid by every task of a run. Imported here, in the worker before its pool forks, they are
shared by every task process (copy-on-write). Only imports: no session, client or connection is made before a fork.
A module that fails to import is skipped (the task imports it itself and reports the error there).

A deployment can do the same with a module of its own (``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``); the harness
sets it on its workers only (``distributed_airflow.CeleryAirflow.worker_env``): the scheduler keeps the default.
"""

from __future__ import annotations

import importlib
import logging

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

log = logging.getLogger(__name__)

PRELOAD = (
    "boto3",
    "botocore.session",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.amazon.aws.hooks.ec2",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.hooks.ssm",
    "airflow.providers.common.io.xcom.backend",
    "phoenix_fleet.config",
    "phoenix_fleet.hooks.asg_hook",
    "phoenix_fleet.hooks.image_hook",
    "phoenix_fleet.hooks.packer_hook",
    "phoenix_fleet.hooks.terraform_hook",
    "phoenix_fleet.rollout",
    "phoenix_fleet.release.publish_rules",
    "phoenix_fleet.release.release_log",
    "phoenix_fleet.release.release_notes",
    "phoenix_fleet.inventory.collect",
    "phoenix_fleet.inventory.report",
    # what the DAG files import: each task parses its DAG file again, then only the file itself runs
    "airflow.providers.standard.decorators.branch_python",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.operators.empty",
    "phoenix_fleet.dag_facts",
    "phoenix_fleet.pipelines.release_dag",
    "phoenix_fleet.pipelines.rollout_dag",
)

for _name in PRELOAD:
    try:
        importlib.import_module(_name)
    except Exception as e:  # the task imports it itself and fails there, with its own traceback
        log.warning("celery preload: %s not imported: %s", _name, e)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG
