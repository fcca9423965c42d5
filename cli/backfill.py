"""``flowhawk backfill``: many captures, one batch each, through Prefect (optionally on a Dask cluster)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowhawk.cli.paths import add_path_options
from flowhawk.cli.scaleout import dask_api, dask_option, with_runner


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
