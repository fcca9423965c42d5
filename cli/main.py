"""``flowhawk`` command line: one module per command family, registered here.

Each command module exposes ``register(subparsers)``, which adds its parser(s) and sets ``func`` (taking the
parsed namespace, returning an exit code). Building the parser imports no heavy library: the handlers import
MindSpore, Prefect and pandas when they run, so ``flowhawk --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from flowhawk.cli import backfill, baseline, capture, ingest, kernels, model, orchestrate, synth, verdict
from flowhawk.model.kernels import use_kernel_cache

COMMAND_MODULES = (ingest, synth, model, baseline, orchestrate, kernels, verdict, backfill, capture)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowhawk",
        description="Packet captures and Zeek logs to NetFlow records, a MindSpore detector and anomaly reports.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    use_kernel_cache(kernels.cache_from_env(os.environ))  # where every command loads / builds the C++ kernels
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
