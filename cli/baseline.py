"""``flowhawk baseline``: learn what normal looks like on chosen lake batches (the label-free novelty model).

Labels are never read for training. The model is saved in the novelty registry (``<models>/novelty``) and made
current unless ``--no-promote``; ``flowhawk evaluate --novelty`` measures it against labels when there are any.
"""

from __future__ import annotations

import argparse
import sys

from flowhawk.cli.paths import add_path_options, resolve_path
from flowhawk.model.novelty_config import OBJECTIVES, NoveltyConfig
from flowhawk.model.novelty_guard import GuardConfig


def register(sub: argparse._SubParsersAction) -> None:
    d, g = NoveltyConfig(), GuardConfig()
    p = sub.add_parser("baseline", help="train the label-free novelty model on lake batches (a clean period)",
                       description="Train the self-supervised novelty model on the flows of lake batches taken "
                       "from a period you trust (labels are ignored), with the poisoning guard, calibrate its "
                       "alert threshold to the false-alert budget and make it current in <models>/novelty.")
    add_path_options(p, "lake", "models")
    p.add_argument("--batches", type=lambda s: [b for b in s.split(",") if b], metavar="B1,B2",
                   help="baseline batches (default: every lake batch)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--budget", type=float, default=d.budget,
                   help=f"expected false alerts per benign-like flow (default {d.budget}: 1 per 1,000)")
    p.add_argument("--objective", choices=OBJECTIVES, default=d.objective, help=f"default {d.objective}")
    p.add_argument("--guard-z", type=float, default=g.z, help=f"poisoning guard strictness (default {g.z})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--no-promote", action="store_true", help="save as a candidate only")
    p.add_argument("--refresh", action="store_true",
                   help="refresh the current novelty model on new batches (--batches, default: those it has not "
                        "seen) plus a bounded replay of its baseline; flows it flags are left out; promoted only "
                        "if it raises no more false alerts on held-out old baseline flows")
    p.add_argument("--replay-rows", type=int, default=20_000, help="old baseline flows replayed (refresh)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowhawk.lake.store import Lake
    from flowhawk.model.novelty_lifecycle import novelty_registry, refresh_baseline, train_baseline
    from flowhawk.model.registry import RegistryError

    try:
        config = NoveltyConfig(epochs=args.epochs, budget=args.budget, objective=args.objective, seed=args.seed)
        lake, registry = Lake(resolve_path(args, "lake")), novelty_registry(resolve_path(args, "models"))
        if args.refresh:
            result = refresh_baseline(lake, registry, config, args.batches, args.replay_rows, seed=args.seed)
            state = "now current" if result.promoted else f"kept as candidate; current is still {result.parent}"
            print(f"refresh of {result.parent} on {', '.join(result.new_batches)}: {result.sizes}")
            print(f"{result.version}: {result.reason} ({state})")
            return 0
        outcome = train_baseline(lake, registry, config, GuardConfig(z=args.guard_z), args.batches,
                                 promote=not args.no_promote)
    except (ValueError, KeyError, RegistryError) as exc:
        print(f"flowhawk baseline: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    left_out = outcome.guard.get("rows", 0) - outcome.guard.get("kept", 0)
    print(f"novelty model {outcome.version} on {outcome.flows:,} flows of {len(outcome.batches)} batch(es); "
          f"guard left out {left_out:,} flows; threshold {outcome.trained.threshold:.4g} "
          f"(budget {config.budget:g} false alerts per flow)" + ("" if args.no_promote else "; now current"))
    return 0
