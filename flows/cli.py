"""``flowhawk`` command line: one subcommand module per concern, registered here.

Each ``flows.cmd_*`` module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` (taking the parsed namespace, returning an exit code). Modules are imported only to build the
parser; heavy libraries (MindSpore, Prefect) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = ("flows.cmd_ingest", "flows.cmd_synth", "flows.cmd_model", "flows.cmd_orchestrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowhawk",
        description="Packet captures and Zeek logs to NetFlow records, a MindSpore detector and anomaly reports.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command family not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
