"""``flowhawk verdict``: an analyst marks incidents, hosts and flows, and keeps the allowlist.

    flowhawk verdict mark incident inc-0123abcd false_positive --note "backup job"
    flowhawk verdict mark host 10.200.0.103 confirmed --class synflood
    flowhawk verdict mark flow lab:1234 confirmed
    flowhawk verdict allow subnet 10.9.0.0/16 --note "vulnerability scanner"
    flowhawk verdict revoke <entry id>
    flowhawk verdict list [--json]
    flowhawk verdict refresh [--model supervised|novelty|both]

``refresh`` teaches the current models the verdicts: the supervised model trains on them as labels (false
positive -> benign, confirmed -> the class), the label-free model keeps the flows marked false positive in its
baseline (the poisoning guard would leave them out) and trains the confirmed ones to stay above the alert level;
each under its promotion guard. ``both`` (the default) refreshes every kind that has a current model.

Entries go to ``<lake>/verdicts/`` (append-only, one file each; see ``reports/verdicts.py``), attributed to
``--analyst`` (else FLOWHAWK_ANALYST, else the login name). The lake: ``--lake``, else FLOWHAWK_LAKE, else
./flowhawk-data/lake. Errors are one line on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from flowhawk.cli.paths import add_path_options, resolve_path

# Kept in step with reports.verdicts (importing it here would load pandas just to build the parser).
TARGET_KINDS = ("incident", "host", "flow")
VERDICTS = ("false_positive", "confirmed")
ALLOW_KINDS = ("address", "subnet", "port", "signature")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verdict", help="mark incidents, hosts or flows (false positive / confirmed); allowlist",
                       description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    mark = verbs.add_parser("mark", help="record a verdict on an incident, host or flow")
    mark.add_argument("kind", choices=TARGET_KINDS)
    mark.add_argument("target", help="incident id, host address, or <report batch>:<row> of a flow")
    mark.add_argument("verdict", choices=VERDICTS)
    mark.add_argument("--class", dest="attack_class", help="attack class (for confirmed)")
    allow = verbs.add_parser("allow", help="add an allowlist entry (suppresses alerts, never hides flows)")
    allow.add_argument("kind", choices=ALLOW_KINDS)
    allow.add_argument("value", help="address, CIDR subnet, destination port, or <source>|<behaviour>")
    revoke = verbs.add_parser("revoke", help="withdraw an allowlist entry")
    revoke.add_argument("entry_id")
    refresh = verbs.add_parser("refresh", help="refresh the current model with verdicts as labels (false positive "
                               "-> benign, confirmed -> the class); promoted only if not worse")
    refresh.add_argument("--batches", type=lambda s: [b for b in s.split(",") if b], metavar="B1,B2",
                         help="new batches (default: the lake batches holding flows a verdict labels)")
    refresh.add_argument("--epochs", type=int, default=5, help="supervised fine-tuning epochs (default 5)")
    refresh.add_argument("--model", choices=("supervised", "novelty", "both"), default="both",
                         help="which current model to refresh (default both: each kind that has one)")
    listing = verbs.add_parser("list", help="print every entry, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for q in (mark, allow, revoke, refresh, listing):
        add_path_options(q, "lake")
    add_path_options(refresh, "models")
    for q in (mark, allow, revoke):
        q.add_argument("--note", default="", help="free text kept with the entry")
        q.add_argument("--analyst", help="who (env FLOWHAWK_ANALYST; default the login name)")
    p.set_defaults(func=run, parser=p)


def _analyst(args: argparse.Namespace) -> str:
    return args.analyst or os.environ.get("FLOWHAWK_ANALYST") or getpass.getuser()


def run(args: argparse.Namespace) -> int:
    from flowhawk.reports.verdict_lake import check_target
    from flowhawk.reports.verdicts import VerdictStore

    if not getattr(args, "verb", None):
        args.parser.print_help()
        return 2
    lake = resolve_path(args, "lake")
    store = VerdictStore(lake)
    try:
        if args.verb == "mark":
            check_target(lake, args.kind, args.target)
            entry = store.add_verdict(args.kind, args.target, args.verdict, _analyst(args), args.attack_class,
                                      args.note)
        elif args.verb == "allow":
            entry = store.allow(args.kind, args.value, _analyst(args), args.note)
        elif args.verb == "revoke":
            entry = store.revoke(args.entry_id, _analyst(args), args.note)
        elif args.verb == "refresh":
            return _refresh(lake, args)
        else:
            return _list(store.entries(), args.json)
    except (ValueError, KeyError, RuntimeError) as exc:
        print(f"flowhawk verdict {args.verb}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"recorded {entry['kind']} {entry['id']} by {entry['analyst']} at {entry['created']}")
    return 0


def _refresh(lake: Path, args: argparse.Namespace) -> int:
    from flowhawk.model.novelty_lifecycle import novelty_registry, refresh_baseline
    from flowhawk.model.refresh import RefreshConfig, refresh_model
    from flowhawk.model.registry import Registry
    from flowhawk.reports.verdict_lake import VerdictLabelledLake

    view = VerdictLabelledLake(lake)
    batches = args.batches or view.verdict_batches()
    if not batches:
        raise ValueError(f"{lake}: no verdict labels any flow; mark incidents, hosts or flows first")
    models = resolve_path(args, "models")
    supervised, novelty = Registry(models), novelty_registry(models)
    kinds = [k for k, r in (("supervised", supervised), ("novelty", novelty))
             if args.model in (k, "both") and r.current() is not None]
    if not kinds:
        what = "" if args.model == "both" else f"{args.model} "
        raise ValueError(f"{models}: no current {what}model to refresh (flowhawk train, or flowhawk baseline)")
    for kind in kinds:
        if kind == "supervised":
            result = refresh_model(supervised, view, batches, RefreshConfig(epochs=args.epochs))
        else:
            result = refresh_baseline(view, novelty, novelty.load(novelty.require_current()).config, batches)
        print(f"{kind} refresh on verdict labels of {', '.join(batches)}: {result.version} "
              f"({'promoted' if result.promoted else 'kept as candidate'}): {result.reason}")
    return 0


def _list(entries: list[dict], as_json: bool) -> int:
    for e in entries:
        if as_json:
            print(json.dumps(e, sort_keys=True))
        elif e["kind"] == "verdict":
            print(f"{e['created']} {e['id']} verdict {e['target_kind']} {e['target']} {e['verdict']}"
                  f"{' (' + e['attack_class'] + ')' if e.get('attack_class') else ''} by {e['analyst']}"
                  f"{': ' + e['note'] if e.get('note') else ''}")
        elif e["kind"] == "allow":
            print(f"{e['created']} {e['id']} allow {e['allow_kind']} {e['value']} by {e['analyst']}"
                  f"{': ' + e['note'] if e.get('note') else ''}")
        else:
            print(f"{e['created']} {e['id']} revoke {e['target']} by {e['analyst']}")
    return 0
