"""Where the inbox, lake and models are: the command-line option, then FLOWHAWK_INBOX / FLOWHAWK_LAKE /
FLOWHAWK_MODELS, then ./flowhawk-data/<name>. Every command resolves its folders here."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flowhawk.common.config import DATA_ROOT, ENV_PATHS

HELP = {"inbox": "inbox folder", "lake": "lake root", "models": "model registry root"}


def add_path_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--inbox`` / ``--lake`` / ``--models`` options (default: environment, then ./flowhawk-data/<name>)."""
    for name in names:
        parser.add_argument(f"--{name}", type=Path, default=None,
                            help=f"{HELP[name]} (env {ENV_PATHS[name]}; default ./{DATA_ROOT}/{name})")


def resolve_path(args: argparse.Namespace, name: str) -> Path:
    """Option, then environment variable, then ./flowhawk-data/<name>; made absolute."""
    value = getattr(args, name, None) or os.environ.get(ENV_PATHS[name]) or DATA_ROOT / name
    return Path(value).expanduser().resolve()


def resolve_paths(args: argparse.Namespace,
                  names: tuple[str, ...] = ("inbox", "lake", "models")) -> dict[str, Path]:
    return {name: resolve_path(args, name) for name in names}
