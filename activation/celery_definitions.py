"""The same code location, its steps run by Celery workers (dagster-celery, docs/deploy.md).

Every asset, check, job, schedule and sensor is the one `activation.definitions` builds; only
where a step runs changes. The executor sends each step to the broker; any worker that listens
there runs it, loading this module. Steps hand their outputs to each other through the IO
manager, so it must be one every worker reaches: the local filesystem here (one machine, or
a shared volume), an object store in production. The run and event storage must be one
database all of them write to (dagster-postgres, in the instance's dagster.yaml).

Install with the `celery` extra: `uv sync --extra celery`.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_celery import celery_executor

from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.settings import Settings

BROKER_ENV = "ACTIVATION_CELERY_BROKER"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
IO_DIR_ENV = "ACTIVATION_IO_DIR"  # where steps leave their outputs for the next (default: DAGSTER_HOME/storage)


QUEUE_ENV = "ACTIVATION_CELERY_QUEUE"  # the queue steps are sent to (default: dagster); workers listen with -q


def executor() -> dg.ExecutorDefinition:
    """Celery on the broker in $ACTIVATION_CELERY_BROKER; results come back over the broker (rpc)."""
    # Acknowledged when done: a worker busy with a step (a sync waiting for its destination) takes
    # no other, which stays on the queue for a free worker.
    source: dict = {"task_acks_late": True}
    if os.environ.get(QUEUE_ENV):
        source["task_default_queue"] = os.environ[QUEUE_ENV]
    config = {"broker": os.environ.get(BROKER_ENV, DEFAULT_BROKER), "backend": "rpc://", "config_source": source}
    return celery_executor.configured(config, name="celery")


def build_celery_definitions(settings: Settings) -> dg.Definitions:
    io_dir = os.environ.get(IO_DIR_ENV)
    return dg.Definitions.merge(
        build_definitions(settings),
        dg.Definitions(
            executor=executor(),
            resources={"io_manager": dg.FilesystemIOManager(base_dir=io_dir) if io_dir else dg.FilesystemIOManager()},
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_celery_definitions(Settings.from_env())


def activate_job() -> dg.JobDefinition:
    """The `activate` job on Celery, importable by name: `dg.execute_job(dg.reconstructable(activate_job))`
    sends its steps to the workers, which rebuild it from this pointer."""
    return build_celery_definitions(Settings.from_env()).resolve_job_def(ACTIVATE_JOB)
