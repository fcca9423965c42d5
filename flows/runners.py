"""Where a flow's tasks run: threads of the flow's process (the default) or a Dask cluster (prefect-dask).

``--dask local[:N]`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes for the
flow run; ``--dask tcp://host:8786`` sends the tasks to an existing scheduler (its workers need flowhawk
installed, the same lake and registry paths, and the Prefect API in PREFECT_API_URL). The ingest tasks
(nfstream meters) and the per-batch scoring (MindSpore) then run inside the workers; each worker process
keeps the model it loaded (``tasks.load_model``'s cache), so a model is loaded once per worker, not per task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flowhawk.flows.params import KERNEL_THREADS_ENV

LOCAL_THREADS = 2  # nfstream runs its own meter process per capture: two files at a time keep both cores busy
_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class DaskSpec:
    """``local`` with ``workers`` processes, or the ``address`` of an existing scheduler."""

    workers: int = 0
    address: str = ""

    def __post_init__(self) -> None:
        if bool(self.workers) == bool(self.address):
            raise ValueError("DaskSpec: give either workers (local cluster) or address (existing scheduler)")
        if self.workers and not 1 <= self.workers <= 256:
            raise ValueError(f"DaskSpec.workers must be in [1, 256], got {self.workers}")
        if self.address and not _ADDRESS.match(self.address):
            raise ValueError(f"DaskSpec.address must look like tcp://host:8786, got {self.address!r}")

    @classmethod
    def parse(cls, text: str) -> DaskSpec:
        """``local`` (2 workers), ``local:N`` or ``tcp://host:port``."""
        match = _LOCAL.match(text.strip())
        if match:
            return cls(workers=int(match.group(1) or 2))
        if _ADDRESS.match(text.strip()):
            return cls(address=text.strip())
        raise ValueError(f"--dask {text!r}: expected local, local:N or tcp://host:port")


def task_runner(spec: DaskSpec | None) -> TaskRunner:
    """The task runner for ``spec``: None keeps the local thread pool."""
    if spec is None:
        return ThreadPoolTaskRunner(max_workers=LOCAL_THREADS)
    import dask
    from prefect_dask import DaskTaskRunner

    # nfstream starts a meter process per capture: a daemonic worker process may not have children
    # (remote workers: start them with DASK_DISTRIBUTED__WORKER__DAEMON=False)
    dask.config.set({"distributed.worker.daemon": False})
    if spec.address:
        return DaskTaskRunner(address=spec.address)
    # one thread per worker process: nfstream and MindSpore each use the worker's core; processes, not
    # threads, so that MindSpore graphs and nfstream meters never share an interpreter
    # the fused kernels sized to the worker (one thread), not to the machine (params.use_kernel_settings_from_env)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": spec.workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None, "env": {KERNEL_THREADS_ENV: "1"}})
