"""Where the inbox, lake and models are: the command-line option, then FLOWHAWK_INBOX / FLOWHAWK_LAKE /
FLOWHAWK_MODELS, then ./flowhawk-data/<name>. Every command resolves its folders here."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flowhawk.common.config import DATA_ROOT, ENV_PATHS, stores_root
from flowhawk.common.objectstore import resolve_location
from flowhawk.model.kernels.build import cache_root_from_env

HELP = {"inbox": "inbox folder", "lake": "lake root: a folder or s3://bucket/prefix",
        "models": "model registry root: a folder or s3://bucket/prefix"}


def add_path_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--inbox`` / ``--lake`` / ``--models`` options (default: environment, then ./flowhawk-data/<name>)."""
    for name in names:
        parser.add_argument(f"--{name}", type=str, default=None,
                            help=f"{HELP[name]} (env {ENV_PATHS[name]}; default ./{DATA_ROOT}/{name})")


def resolve_path(args: argparse.Namespace, name: str) -> Path:
    """Option, then environment variable, then ./flowhawk-data/<name>; made absolute. An ``s3://`` lake or
    registry resolves to its local working copy (under FLOWHAWK_STORE_CACHE, else <cache root>/stores beside
    the kernels: FLOWHAWK_CACHE, else ~/.cache/flowhawk)."""
    value = getattr(args, name, None) or os.environ.get(ENV_PATHS[name]) or DATA_ROOT / name
    if name == "inbox" and "://" in str(value):
        raise SystemExit(f"--inbox {value}: the inbox is a local folder (captures arrive on this machine)")
    try:
        return resolve_location(value, stores_root(os.environ, cache_root_from_env(os.environ)))
    except (OSError, ValueError) as exc:  # an unreachable store, refused credentials, a bad URL: one line
        raise SystemExit(f"flowhawk: --{name} {value}: {' '.join(str(exc).split())}") from None


def resolve_paths(args: argparse.Namespace,
                  names: tuple[str, ...] = ("inbox", "lake", "models")) -> dict[str, Path]:
    return {name: resolve_path(args, name) for name in names}
