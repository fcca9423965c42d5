"""``flowhawk train | evaluate | refresh | models list|show|promote|rollback``: the model registry from the shell.

Paths: ``--lake`` / ``--models`` win, then FLOWHAWK_LAKE / FLOWHAWK_MODELS, then ./flowhawk-data/{lake,models}.
Errors (a damaged model version, a missing batch, a bad option value) are one line on stderr, exit code 1.
MindSpore, pandas and the model code are imported inside the handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flowhawk.cli.paths import add_path_options, resolve_path
from flowhawk.model.config import (
    ARCHS,
    BASELINES,
    FEATURE_SETS,
    LR_SCHEDULES,
    MONITORS,
    SPLITS,
    TASKS,
    THRESHOLD_METRICS,
    TrainConfig,
)


# --- parsers ---------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    _train_parser(sub)
    p = sub.add_parser("evaluate", help="evaluate a model version on lake batches",
                       description="Score the labelled flows of lake batches with a registry version (default: "
                       "the current one) and print its metrics: one row per batch and one for all of them, then "
                       "the confusion matrix and per-class report.")
    p.add_argument("version", nargs="?", help="registry version, e.g. v0003 (default: current)")
    p.add_argument("--novelty", action="store_true", help="evaluate the label-free novelty model (its registry "
                   "<models>/novelty) against the batches' labels instead of the supervised one")
    _paths(p, lake=True)
    _batches(p, "batches to evaluate on (default: every labelled batch)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("refresh", help="fine-tune the current model on new labelled batches (guarded)",
                       description="Fine-tune the current model on labelled lake batches it was not trained on, "
                       "mixed with a bounded replay sample of its earlier training data. The candidate is "
                       "saved either way; it becomes current only if its held-out F1 is within --f1-tolerance "
                       "of the current model's and it drops by at most --old-drop-tolerance on old data.")
    _paths(p, lake=True)
    _batches(p, "new batches (default: labelled batches not in the current model's training data)")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs (default 5)")
    p.add_argument("--replay-rows", type=int, default=20_000, help="old training flows replayed (default 20000)")
    p.add_argument("--lr-scale", type=float, default=0.5, help="learning rate x this (default 0.5)")
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="flows held out for the guard (0.2)")
    p.add_argument("--f1-tolerance", type=float, default=0.002, help="allowed held-out F1 drop (0.002)")
    p.add_argument("--old-drop-tolerance", type=float, default=0.01, help="allowed F1 drop on old data (0.01)")
    p.add_argument("--metric", choices=("auto", "f1", "macro_f1"), default="auto", help="guard metric (auto: "
                   "attack F1 for binary, macro-F1 for multiclass; macro_f1 also weighs the benign class)")
    p.add_argument("--seed", type=int, default=0, help="replay sampling seed")
    p.set_defaults(func=run_refresh)
    _models_parser(sub)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on labelled lake flows and register it",
                       description="Read the labelled flows of lake batches, train the MindSpore detector, "
                       "print its test metrics beside per-flow baselines (same split, same features), save it "
                       "as a new registry version and make it current when no model is current yet "
                       "(--promote always, --no-promote never).")
    _paths(p, lake=True)
    _batches(p, "batches to train on (default: every labelled batch)")
    d = TrainConfig()  # the one set of defaults (model/config.py)
    p.add_argument("--task", choices=TASKS, default=d.task, help=f"default {d.task}")
    p.add_argument("--arch", choices=ARCHS, default=d.arch, help=f"network (default {d.arch})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (early stopping; default {d.epochs})")
    p.add_argument("--patience", type=int, default=d.patience, help=f"early-stopping patience (default {d.patience})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--window", type=int, default=d.window, help=f"flows per window (default {d.window})")
    p.add_argument("--hidden", type=int, help="conv channels and LSTM hidden size (default: ModelConfig's)")
    p.add_argument("--split", choices=SPLITS, default=d.split, help=f"default {d.split}")
    p.add_argument("--feature-set", choices=FEATURE_SETS, default=d.feature_set, help=f"default {d.feature_set}")
    p.add_argument("--max-train-rows", type=int, default=d.max_train_rows,
                   help=f"cap on training flows (default {d.max_train_rows})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--threshold-metric", choices=THRESHOLD_METRICS, default=d.threshold_metric,
                   help=f"threshold tuned for (default {d.threshold_metric})")
    p.add_argument("--monitor", choices=MONITORS, default=d.monitor,
                   help=f"validation loss for early stopping (default {d.monitor})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule, help=f"default {d.lr_schedule}")
    p.add_argument("--host-features", action="store_true",
                   help="add each flow's host-window statistics (fan-out, RST share, rate, ...) to its features")
    p.add_argument("--flow-skip", type=int, default=0, help="per-flow branch width (default 0: the paper's net)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help=f"comma list or 'none' (default {','.join(BASELINES)})")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--promote", dest="promote", action="store_const", const="always",
                       help="promote even when a model is current (never one no better than the majority baseline)")
    group.add_argument("--no-promote", dest="promote", action="store_const", const="never", help="never promote")
    p.set_defaults(func=run_train, promote="auto")


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registry versions",
                       description="Inspect and switch the model registry's versions.")
    p.set_defaults(func=lambda args: _usage(p))
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    q = msub.add_parser("list", help="every version with status, metrics and reason",
                        description="One line per version: status (current / promoted / candidate / broken), "
                        "architecture, task, headline test metrics, training rows, parent, reason.")
    _paths(q)
    q.add_argument("--json", action="store_true", help="print as JSON")
    q.set_defaults(func=run_list)
    q = msub.add_parser("show", help="manifest, configs, metrics and training data of one version",
                        description="Details of one version (default: the current one).")
    q.add_argument("version", nargs="?", help="e.g. v0003 (default: current)")
    _paths(q)
    q.add_argument("--json", action="store_true", help="print everything as JSON")
    q.set_defaults(func=run_show)
    q = msub.add_parser("promote", help="make a version current", description="Check a version and make it "
                        "current (the previous one stays in the history for rollback).")
    q.add_argument("version", help="e.g. v0003")
    _paths(q)
    q.add_argument("--reason", default="manual promote", help="recorded in the history")
    q.set_defaults(func=run_promote)
    q = msub.add_parser("rollback", help="make the previously current version current again",
                        description="Walk back one step of the promotion history.")
    _paths(q)
    q.add_argument("--reason", default="manual rollback", help="recorded in the history")
    q.set_defaults(func=run_rollback)


def _paths(p: argparse.ArgumentParser, lake: bool = False) -> None:
    add_path_options(p, *(("lake", "models") if lake else ("models",)))


def _batches(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--batches", type=lambda s: [b for b in s.split(",") if b], metavar="B1,B2", help=text)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _fail(command: str, exc: BaseException) -> int:
    print(f"flowhawk {command}: {' '.join(str(exc).split())}", file=sys.stderr)
    return 1


def _errors() -> tuple[type[BaseException], ...]:
    from flowhawk.extractors.base import BadInputError
    from flowhawk.model.refresh import RefreshError
    from flowhawk.model.registry import RegistryError

    return RegistryError, RefreshError, BadInputError, ValueError, KeyError, FileNotFoundError


# --- handlers --------------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except _errors() as exc:
        return _fail("train", exc)


def _train(args: argparse.Namespace) -> int:
    from flowhawk.lake.store import Lake
    from flowhawk.model.baselines import BaselineConfig
    from flowhawk.model.evaluate import render_table
    from flowhawk.model.lifecycle import train_and_register
    from flowhawk.model.registry import Registry

    lake, registry = Lake(resolve_path(args, "lake")), Registry(resolve_path(args, "models"))
    config = TrainConfig(task=args.task, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, window=args.window, split=args.split, feature_set=args.feature_set,
                         max_train_rows=args.max_train_rows, seed=args.seed, patience=args.patience,
                         threshold_metric=args.threshold_metric, monitor=args.monitor, lr_schedule=args.lr_schedule,
                         host_features=args.host_features,
                         model=({"hidden": args.hidden, "conv_channels": args.hidden} if args.hidden else {})
                         | ({"flow_skip": args.flow_skip} if args.flow_skip else {}))
    names = () if args.baselines in ("", "none") else tuple(args.baselines.split(","))
    outcome = train_and_register(
        lake, registry, config, args.batches, args.promote, BaselineConfig(names=names, seed=args.seed),
        on_start=lambda flows, batches: print(f"training {config.task} {config.arch} on {flows:,} flows of "
                                              f"{len(batches)} batch(es)", flush=True))
    print(f"\ntest split ({outcome.test_rows:,} flows), threshold {outcome.trained.threshold:.4f}:")
    print(render_table(outcome.table))
    for note in outcome.notes:
        print(f"note: {note}")
    print(f"\nsaved {outcome.version} in {registry.location}" + (" (now current)" if outcome.promoted else
                                                          f" (candidate; current is {registry.current()})"))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    try:
        return _evaluate(args)
    except _errors() as exc:
        return _fail("evaluate", exc)


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from flowhawk.lake.store import Lake
    from flowhawk.model.evaluate import evaluate_batches, render_confusion, render_per_class, render_table
    from flowhawk.model.novelty_lifecycle import novelty_registry
    from flowhawk.model.registry import Registry

    models = resolve_path(args, "models")
    lake, registry = Lake(resolve_path(args, "lake")), novelty_registry(models) if args.novelty else Registry(models)
    version = args.version or registry.require_current()
    trained = registry.load(version)
    batches = args.batches or lake.labelled_batches()
    if not batches:
        raise ValueError(f"{lake.location}: no labelled batches to evaluate on")
    results = evaluate_batches(trained, lake, batches)
    if args.json:
        print(json.dumps({"version": version, "metrics": results}, indent=1, default=str))
        return 0
    print(f"{version} ({trained.task}, {trained.model_config.arch}, threshold {trained.threshold:.4g})")
    seen = {b["batch_id"] for b in registry.show(version)["data"].get("batches", [])} & set(batches)
    if seen:
        print(f"note: {sorted(seen)} are in {version}'s training data: these figures are optimistic")
    keys = ("n", "accuracy", "precision", "recall", "f1", "fpr", "macro_f1", "pr_auc")
    table = pd.DataFrame({name: {k: m[k] for k in keys} for name, m in results.items()}).T
    table["n"] = table["n"].astype(int)
    table.index.name = "batch"
    print(render_table(table))
    print("\nconfusion (all batches; rows = truth):\n" + render_confusion(results["all"]))
    print("\nper class (all batches):\n" + render_per_class(results["all"]))
    return 0


def run_refresh(args: argparse.Namespace) -> int:
    try:
        return _refresh(args)
    except _errors() as exc:
        return _fail("refresh", exc)


def _refresh(args: argparse.Namespace) -> int:
    import pandas as pd

    from flowhawk.lake.store import Lake
    from flowhawk.model.refresh import RefreshConfig, refresh_model
    from flowhawk.model.registry import Registry

    config = RefreshConfig(replay_rows=args.replay_rows, epochs=args.epochs, lr_scale=args.lr_scale,
                           holdout_fraction=args.holdout_fraction, f1_tolerance=args.f1_tolerance,
                           old_drop_tolerance=args.old_drop_tolerance, seed=args.seed, metric=args.metric)
    lake, registry = Lake(resolve_path(args, "lake")), Registry(resolve_path(args, "models"))
    result = refresh_model(registry, lake, args.batches, config)
    rows = {}
    for model in ("current", "candidate"):
        for part, m in result.comparison[model].items():
            rows[(model, part)] = {k: m[k] for k in ("n", "f1", "macro_f1", "precision", "recall", "fpr")}
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    table.index.names = ["model", "held-out"]
    print(f"refresh of {result.parent} on {', '.join(result.new_batches)}: " +
          ", ".join(f"{k} {v:,}" for k, v in result.sizes.items()))
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    state = "now current" if result.promoted else f"kept as candidate; current is still {result.parent}"
    print(f"{result.version}: {result.reason} ({state})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from flowhawk.model.registry import Registry, RegistryError

    try:
        rows = Registry(resolve_path(args, "models")).list()
    except RegistryError as exc:
        return _fail("models list", exc)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print(f"no model versions in {Registry(resolve_path(args, 'models')).location}")
        return 0
    columns = ["version", "status", "created", "arch", "task", "f1", "macro_f1", "rows", "parent", "reason"]
    for row in rows:
        row["rows"] = f"{row['rows']:,}" if isinstance(row.get("rows"), int) else ""
    table = pd.DataFrame(rows).reindex(columns=columns).fillna("")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", max_colwidth=70))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from flowhawk.model.registry import Registry, RegistryError

    try:
        info = Registry(resolve_path(args, "models")).show(args.version)
    except RegistryError as exc:
        return _fail("models show", exc)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print("\n".join(_show_lines(info)))
    return 0


def _show_lines(info: dict[str, Any]) -> list[str]:
    from flowhawk.model.evaluate import render_table, results_table

    man = info["manifest"]
    export = man["export"]
    lines = [f"{info['version']}{' (current)' if info['current'] else ''}: {man['status']} {man['created']}",
             f"  reason: {man['reason'] or '-'}", f"  parent: {man['parent'] or '-'}",
             f"  task {man['task']}, classes {man['class_names']}, threshold {man['threshold']:.4f}",
             "  MindIR: " + (f"{export['file']} inputs {export['input_shapes']}" if export["ok"]
                             else f"not exported ({export['error']})"),
             f"  model config: {json.dumps(info['model_config'], sort_keys=True)}",
             f"  train config: {json.dumps(info['train_config'], sort_keys=True)}"]
    data = info["data"]
    lines.append(f"  training data: {data.get('rows', 0) or 0:,} rows from {data.get('lake', '-')}")
    lines += [f"    batch {b['batch_id']}: {b['rows']:,} rows, " + ", ".join(
        f"{f['name']} ({f['sha256'][:12]})" for f in b["files"]) for b in data.get("batches", [])]
    metrics = info["metrics"]
    if "test" in metrics:
        table = results_table({"flowhawk": metrics["test"], **metrics.get("baselines", {})})
        lines += ["", "test metrics:", render_table(table)]
    if "refresh" in metrics:
        lines += ["", f"refresh: {metrics['refresh']['decision']}"]
    return lines


def run_promote(args: argparse.Namespace) -> int:
    from flowhawk.model.registry import Registry, RegistryError

    registry = Registry(resolve_path(args, "models"))
    try:
        previous = registry.current()
        registry.promote(args.version, reason=args.reason)
    except RegistryError as exc:
        return _fail("models promote", exc)
    print(f"{args.version} is current (was {previous or 'none'})")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from flowhawk.model.registry import Registry, RegistryError

    registry = Registry(resolve_path(args, "models"))
    try:
        previous = registry.current()
        version = registry.rollback(reason=args.reason)
    except RegistryError as exc:
        return _fail("models rollback", exc)
    print(f"{version} is current again (rolled back from {previous})")
    return 0
