"""The Celery configuration of phoenix-fleet's Celery workers (``[celery] celery_config_options =
phoenix_fleet.celery_worker_config.CELERY_CONFIG``): Airflow's default one, after importing
:mod:`phoenix_fleet.worker_preload` in the worker before its pool forks, so every task process starts with what a
phoenix task imports and parses (docs/scale.md, "What one task start costs").

Set it on the workers only (``docker-compose.yml``'s ``airflow-worker``): the scheduler imports the Celery app too,
and has no use for the preload.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

import phoenix_fleet.worker_preload  # noqa: F401  (its import is the preload)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG
