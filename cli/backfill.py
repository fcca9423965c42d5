"""``flowhawk backfill``: many captures, one batch each, through Prefect (optionally on a Dask cluster).

Also the ``--dask`` option shared with ``flowhawk process-inbox``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowhawk.cli.paths import add_path_options


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
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="ingest, score and report many captures, one batch each",
                       description="Ingest each capture into its own lake batch and write one report per new batch "
                       "with the current model (train one first). Runs through Prefect (PREFECT_API_URL, or an "
                       "embedded temporary server). Exit code: 0 ok, 1 some files quarantined, 2 bad arguments, "
                       "3 the flow failed.")
    p.add_argument("paths", nargs="+", type=Path, metavar="CAPTURE", help="captures (pcap, Zeek conn.log, NF CSV)")
    add_path_options(p, "lake", "models")
    dask_option(p)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    from flowhawk.cli.orchestrate import prefect_env
    from flowhawk.cli.paths import resolve_paths

    missing = [str(p) for p in args.paths if not p.is_file()]
    if missing:
        print(f"flowhawk backfill: {missing[0]}: no such file" + (f" (and {len(missing) - 1} more)"
              if len(missing) > 1 else ""), file=sys.stderr)
        return 2
    paths = resolve_paths(args, ("lake", "models"))
    configured = prefect_env()
    from flowhawk.flows.backfill_flow import backfill

    try:
        flow_obj = with_runner(backfill, args.dask)
    except ValueError as exc:
        print(f"flowhawk backfill: {exc}", file=sys.stderr)
        return 2
    with dask_api(args.dask, configured):
        state = flow_obj([p.resolve() for p in args.paths], paths["lake"], paths["models"], return_state=True)
    if not state.is_completed():
        print(f"flowhawk backfill: the flow run failed: {state.message}", file=sys.stderr)
        return 3
    rows = state.result()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['file']}: {r['status']}, {r['flows'] or 0:,} flows"
                  + (f", {r['anomalies']:,} anomalies, report {r['report']}" if r["report"] else "")
                  + (f" ({r['reason']})" if r.get("reason") else ""))
    return 1 if any(r["status"] == "quarantined" for r in rows) else 0
