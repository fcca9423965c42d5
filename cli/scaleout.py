"""The ``--dask`` option of ``flowhawk backfill`` and ``flowhawk process-inbox``: which task runner, and the
Prefect API that the Dask workers (other processes) report to."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any


def dask_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dask", default=None, metavar="local[:N]|tcp://HOST:PORT",
                   help="run the ingest and scoring tasks on Dask: local[:N] starts a LocalCluster of N worker "
                   "processes (default 2) for this run, tcp://host:8786 uses a running scheduler (workers need "
                   "flowhawk, the same lake/models paths and PREFECT_API_URL). Default: threads of this process")


def with_runner(flow_obj: Any, dask: str | None) -> Any:
    """``flow_obj`` with the task runner of ``--dask`` (unchanged without it). Raises ValueError."""
    if not dask:
        return flow_obj
    from flowhawk.flows.runners import DaskSpec, task_runner

    return flow_obj.with_options(task_runner=task_runner(DaskSpec.parse(dask)))


@contextlib.contextmanager
def dask_api(dask: str | None, configured: bool) -> Iterator[None]:
    """Dask workers are other processes: they must report to the flow's Prefect API. With no PREFECT_API_URL
    configured, start the temporary server here (not per process) and hand its URL to the workers."""
    if not dask or configured:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the LocalCluster's worker processes
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # the run's last log lines, before their server goes away
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
