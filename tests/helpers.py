"""Plain helpers the tests share (no fixtures here; those are in conftest.py): the real-data folder and
synthetic NF flows ingested through the real lake path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))
TINY = {"epochs": 2, "batch_size": 64, "window": 4, "lr": 5e-3, "model": {"hidden": 8, "conv_channels": 8}}


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set FLOWHAWK_SHARED_DATA or add ../shared/data)")
    return path


def make_flows(n: int, seed: int, t0: int = 1_700_000_000_000, attack_share: float = 0.4) -> pd.DataFrame:
    """Separable synthetic flows: scanners (1-packet SYNs to low ports) and benign web/DNS clients."""
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < attack_share
    benign_hosts = [f"10.0.0.{i}" for i in range(1, 7)]
    return pd.DataFrame({
        "IPV4_SRC_ADDR": np.where(attack, rng.choice(["10.9.0.1", "10.9.0.2"], n), rng.choice(benign_hosts, n)),
        "L4_SRC_PORT": rng.integers(30000, 60000, n),
        "IPV4_DST_ADDR": "10.0.0.100",
        "L4_DST_PORT": np.where(attack, rng.integers(1, 1024, n), rng.choice([80, 443, 53], n)),
        "PROTOCOL": np.where(attack, 6, rng.choice([6, 17], n)),
        "L7_PROTO": np.where(attack, 0.0, 7.0),
        "IN_BYTES": np.where(attack, 44, rng.integers(200, 5000, n)),
        "OUT_BYTES": np.where(attack, rng.choice([0, 40], n), rng.integers(500, 50000, n)),
        "IN_PKTS": np.where(attack, 1, rng.integers(3, 40, n)),
        "OUT_PKTS": np.where(attack, rng.choice([0, 1], n), rng.integers(3, 60, n)),
        "TCP_FLAGS": np.where(attack, 2, 27),
        "FLOW_DURATION_MILLISECONDS": np.where(attack, 0, rng.integers(5, 3000, n)),
        "FLOW_START_MILLISECONDS": t0 + np.sort(rng.integers(0, 600_000, n)),
        "Label": attack.astype(int),
        "Attack": np.where(attack, "scan", "Benign"),
    })


def ingest_frame(lake_root: Path, frame: pd.DataFrame, batch_id: str) -> None:
    """Write ``frame`` as an NF CSV and ingest it into ``lake_root`` as ``batch_id`` (the real ingest path)."""
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    csv = lake_root.parent / f"{batch_id}.csv"
    frame.to_csv(csv, index=False)
    summary = ingest_paths([csv], IngestConfig(lake=lake_root, batch_id=batch_id, source="nf-csv"))
    assert summary.count("ingested") == 1, summary.line()
