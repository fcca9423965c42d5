"""``flowhawk serve``, ``flowhawk process-inbox`` and ``flowhawk demo``: the Prefect side of the CLI.

All three run against the Prefect API in PREFECT_API_URL (or the active Prefect profile). With none configured,
Prefect starts an embedded temporary server (SQLite) for the duration of the command.
Paths: a command-line option wins, then FLOWHAWK_INBOX / FLOWHAWK_LAKE / FLOWHAWK_MODELS, then the defaults
under ./flowhawk-data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from flowhawk.cli.paths import add_path_options, resolve_paths
from flowhawk.cli.scaleout import dask_api, dask_option, with_runner

log = logging.getLogger(__name__)
DEMO_MARKER = ".flowhawk-demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the Prefect deployments of prefect.yaml (process-inbox every 5 min)",
                       description="Register every deployment of prefect.yaml with the Prefect API and run their "
                       "flow runs (scheduled and manual) from this process until interrupted. Start a server "
                       "first (`prefect server start`, UI on http://127.0.0.1:4200) and set "
                       "PREFECT_API_URL=http://127.0.0.1:4200/api; without it an embedded temporary server is used.")
    p.add_argument("--config", type=Path, default=Path("prefect.yaml"),
                   help="deployments file (default ./prefect.yaml)")
    add_path_options(p, "inbox", "lake", "models")
    p.add_argument("--only", action="append", metavar="FLOW/DEPLOYMENT", help="serve only these (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    p.set_defaults(func=run_serve)

    p = sub.add_parser("process-inbox", help="run process_inbox once: claim, ingest, train if needed, score, report",
                       description="One run of the scheduled flow: claim new files in the inbox, ingest them, train a "
                       "first model if there is none (labels needed), score and report each batch, move files to "
                       "done/ or quarantine/. Exit code: 0 ok, 1 some files quarantined, 3 the flow failed.")
    add_path_options(p, "inbox", "lake", "models")
    p.add_argument("--settle-seconds", type=float, default=5.0, help="leave files modified more recently (default 5)")
    p.add_argument("--max-files", type=int, default=100, help="captures per batch (default 100)")
    p.add_argument("--epochs", type=int, default=None, help="epochs when a first model is trained")
    p.add_argument("--refresh-after", type=int, default=3, metavar="N",
                   help="refresh the model once N new labelled batches arrived (0: never; default 3)")
    p.add_argument("--novelty-refresh-after", type=int, default=10, metavar="N",
                   help="refresh the novelty model once N batches are new to it, sooner when one drifted (0: never; "
                        "default 10)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    dask_option(p)
    p.set_defaults(func=run_process_inbox)

    p = sub.add_parser("demo", help="synthesise a labelled capture and run the whole pipeline on it",
                       description="Synthesise a labelled capture, drop it into a fresh inbox under WORKDIR, run "
                       "process_inbox through Prefect (training the first model) and print the summary and the "
                       "report paths.")
    p.add_argument("--workdir", type=Path, default=Path("flowhawk-data/demo"),
                   help="demo folder (default ./flowhawk-data/demo; its inbox, lake and models are recreated)")
    p.add_argument("--packets", type=int, default=8000, help="approximate packets to synthesise (default 8000)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    p.add_argument("--seed", type=int, default=7, help="synthesis seed")
    p.set_defaults(func=run_demo)


def prefect_env() -> bool:
    """Environment defaults for Prefect (before it is imported); True when an API URL is configured."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "flowhawk")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url is not None
    if not configured:
        log.info("no PREFECT_API_URL configured: using an embedded temporary Prefect server (runs are not kept; "
                 "start `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api to keep them)")
    return configured


# --- serve --------------------------------------------------------------------------------------------
def load_deployments(config: Path, paths: dict[str, Path], only: list[str] | None = None) -> list[Any]:
    """RunnerDeployments for the deployments of ``config`` (a prefect.yaml), path parameters overridden."""
    import importlib

    import yaml
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    spec = yaml.safe_load(Path(config).read_text()) or {}
    out = []
    for dep in spec.get("deployments") or []:
        module, _, attr = dep["entrypoint"].rpartition(".")  # module path entrypoints: flowhawk.flows.x.flow
        flow_obj = getattr(importlib.import_module(module), attr)
        if only and f"{flow_obj.name}/{dep['name']}" not in only:
            continue
        params = dict(dep.get("parameters") or {})
        params.update({k: str(v) for k, v in paths.items() if k in params})
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True)) if "cron" in s
                     else Interval(s["interval"], active=s.get("active", True)) for s in dep.get("schedules") or []]
        out.append(flow_obj.to_deployment(
            name=dep["name"], parameters=params, description=dep.get("description"), tags=dep.get("tags"),
            schedules=schedules or None, concurrency_limit=dep.get("concurrency_limit"),
            entrypoint_type=EntrypointType.MODULE_PATH))
    if not out:
        raise ValueError(f"{config}: no deployments" + (f" named {only}" if only else ""))
    return out


def run_serve(args: argparse.Namespace) -> int:
    if not args.config.is_file():
        print(f"flowhawk serve: {args.config}: no such file (run from the repository root or pass --config)",
              file=sys.stderr)
        return 2
    paths = resolve_paths(args)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    prefect_env()
    from prefect import serve

    try:
        deployments = load_deployments(args.config, paths, args.only)
    except (ValueError, KeyError, ImportError, AttributeError) as exc:
        print(f"flowhawk serve: {args.config}: {exc}", file=sys.stderr)
        return 2
    log.info("serving %d deployment(s); inbox %s, lake %s, models %s", len(deployments), paths["inbox"],
             paths["lake"], paths["models"])
    serve(*deployments, limit=args.limit)
    return 0


# --- process-inbox ------------------------------------------------------------------------------------
def run_process_inbox(args: argparse.Namespace) -> int:
    paths = resolve_paths(args)
    if not paths["inbox"].is_dir():
        print(f"flowhawk process-inbox: {paths['inbox']}: no such folder", file=sys.stderr)
        return 2
    configured = prefect_env()
    from flowhawk.flows.inbox_flow import process_inbox
    from flowhawk.flows.params import InboxOptions, NoveltyOptions, RefreshOptions, TrainOptions

    try:
        train = TrainOptions(**{k: v for k, v in (("epochs", args.epochs), ("split", getattr(args, "split", None)))
                                if v is not None})
        refresh = RefreshOptions(after_labelled_batches=getattr(args, "refresh_after", 3))
        novelty = NoveltyOptions(refresh_after_batches=getattr(args, "novelty_refresh_after", 10))
        options = InboxOptions(settle_seconds=args.settle_seconds, max_files=getattr(args, "max_files", 100),
                               train=train, refresh=refresh, novelty=novelty)
        flow_obj = with_runner(process_inbox, getattr(args, "dask", None))
    except ValueError as exc:
        print(f"flowhawk process-inbox: {exc}", file=sys.stderr)
        return 2
    with dask_api(getattr(args, "dask", None), configured):
        state = flow_obj(paths["inbox"], paths["lake"], paths["models"], options, return_state=True)
    if not state.is_completed():
        print(f"flowhawk process-inbox: the flow run failed: {state.message}", file=sys.stderr)
        return 3
    result = state.result()
    print(json.dumps(result, indent=2, default=str) if args.json else format_result(result))
    quarantined = any(f["status"] == "quarantined" for b in result["batches"] for f in b["files"])
    return 1 if quarantined else 0


def format_result(result: dict[str, Any]) -> str:
    """Human summary of a process_inbox result: per batch its files, counts, classes and report paths."""
    if not result["batches"]:
        return "nothing to do: no new files in the inbox"
    lines: list[str] = []
    for batch in result["batches"]:
        lines.append(f"batch {batch['batch_id']}: {batch['status']}" + (" (resumed)" if batch["resumed"] else ""))
        for f in batch["files"]:
            extra = f" ({f['reason']})" if f.get("reason") else ""
            lines.append(f"  {f['file']}: {f['status']}, {f['flows'] or 0:,} flows{extra}")
        report = batch.get("report")
        if report:
            lines += _summary_lines(Path(report["summary"]))
    if result.get("refresh"):
        lines.append(f"refresh: {result['refresh']}")
    return "\n".join(lines)


def _summary_lines(path: Path) -> list[str]:
    s = json.loads(path.read_text())
    lines = [f"  {s['flows']:,} flows scored by model {s['model_version']} (threshold {s['threshold']:.4f}): "
             f"{s['anomalies']:,} anomalies ({100 * s['anomaly_rate']:.1f} %)", "  predicted class      flows"]
    lines += [f"    {k:<18} {v:>7,}" for k, v in s["predicted_classes"].items()]
    gt = s.get("ground_truth")
    if gt:
        lines.append(f"  ground truth ({gt['labelled_flows']:,} labelled flows): precision {gt['precision']:.3f}, "
                     f"recall {gt['recall']:.3f}, F1 {gt['f1']:.3f}, false-positive rate "
                     f"{gt['false_positive_rate']:.3f}")
    lines.append("  stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s["timings_s"].items()))
    lines += [f"  {name}: {p}" for name, p in s["paths"].items()]
    return lines


# --- demo ---------------------------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> int:
    from flowhawk.extractors.synth import SynthConfig, synthesize

    workdir = args.workdir.expanduser().resolve()
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / DEMO_MARKER).exists():
        print(f"flowhawk demo: {workdir} exists and is not a demo folder; choose another --workdir",
              file=sys.stderr)
        return 2
    for name in ("inbox", "lake", "models"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    (workdir / "inbox").mkdir(parents=True)
    (workdir / DEMO_MARKER).write_text("created by flowhawk demo; its inbox, lake and models are recreated\n")
    try:
        config = SynthConfig(seed=args.seed, packets=args.packets, duration_s=120.0)
    except ValueError as exc:
        print(f"flowhawk demo: {exc}", file=sys.stderr)
        return 2
    staging = workdir / "inbox" / ".synth"
    staging.mkdir()
    made = synthesize(config, staging / "demo.pcap", staging / "demo.labels.csv")
    for name in ("demo.labels.csv", "demo.pcap"):  # the capture last: the inbox never sees it without labels
        os.replace(staging / name, workdir / "inbox" / name)
    staging.rmdir()
    print(f"synthesised {made.packets:,} packets ({', '.join(f'{k} {v}' for k, v in made.flows_expected.items())} "
          f"expected flows) into {workdir / 'inbox'}")
    args.inbox, args.lake, args.models = workdir / "inbox", workdir / "lake", workdir / "models"
    # one capture whose attacks each sit in their own time window: a stratified split puts every class in
    # training, validation and test (a time split would hold the last attack out entirely)
    args.settle_seconds, args.json, args.split = 0.0, False, "stratified"
    code = run_process_inbox(args)
    if code == 0:
        print("note: the first model was trained on this same capture, so the ground-truth figures above are "
              "in-sample; its held-out test metrics are in models/v0001/model.json and the Prefect artifact "
              "model-metrics-v0001")
    return code
