"""Building frozen config dataclasses from mappings (JSON, flow parameters): one rule for unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def config_from_mapping(cls: type[T], values: Mapping[str, object]) -> T:
    """Build the frozen config dataclass ``cls`` from a mapping, rejecting unknown keys (named, with the valid ones)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


# Where data lives when nothing says otherwise (relative to the working directory), and the environment
# variables that say otherwise. Read only by the CLI (cli/paths.py) and the flows' parameter defaults.
DATA_ROOT = Path("flowhawk-data")
ENV_PATHS = {"inbox": "FLOWHAWK_INBOX", "lake": "FLOWHAWK_LAKE", "models": "FLOWHAWK_MODELS"}
# Working copies of object-store lakes and registries (``--lake s3://...``): FLOWHAWK_STORE_CACHE, else the
# folder "stores" of the cache root (FLOWHAWK_CACHE, else $XDG_CACHE_HOME/flowhawk, else ~/.cache/flowhawk:
# model.kernels.cache_root_from_env), beside the compiled kernels.
ENV_STORES = "FLOWHAWK_STORE_CACHE"
STORES_DIR = "stores"


def stores_root(env: Mapping[str, str], cache_root: Path) -> Path:
    """Where working copies of object-store locations live (read by the CLI and the flows only)."""
    return Path(env[ENV_STORES]).expanduser() if env.get(ENV_STORES) else cache_root / STORES_DIR
