"""benchmarks/attack_fields.py (where an attack's features leave an attack-free batch) and the matching rules of
benchmarks/bench_explain.py, on synthesised frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import attack_fields  # noqa: E402
import bench_explain  # noqa: E402

from flowhawk.model.features import feature_columns  # noqa: E402
from flowhawk.model.host_features import HOST_FEATURES  # noqa: E402


def _frame(n: int, **columns: object) -> pd.DataFrame:
    base = {"IN_PKTS": np.arange(1, n + 1, dtype=float), "TCP_FLAGS": np.full(n, 27.0),
            "L4_SRC_PORT": np.linspace(40000, 60000, n), "L4_DST_PORT": np.full(n, 80.0)}
    base.update(columns)
    return pd.DataFrame(base)


def test_unseen_share_is_range_for_counters_and_set_for_flags_and_service_ports():
    quiet = _frame(100)
    attack = _frame(10, IN_PKTS=np.r_[np.full(5, 50.0), np.full(5, 5000.0)],  # half beyond the quiet max (100)
                    TCP_FLAGS=np.full(10, 22.0),                             # a flag set the quiet batch never had
                    L4_SRC_PORT=np.full(10, 45000.0),                        # a new ephemeral port: inside the range
                    L4_DST_PORT=np.r_[np.full(9, 80.0), 22.0])               # one new service port
    got = {name: (share, where) for name, share, where in attack_fields.deviations(attack, quiet)}
    assert got["TCP_FLAGS"] == (1.0, "")
    assert got["IN_PKTS"][0] == 0.5 and got["IN_PKTS"][1].startswith("2525 (p")
    assert got["L4_SRC_PORT"][0] == 0.0
    assert got["L4_DST_PORT"][0] == 0.1
    assert attack_fields.deviations(attack, quiet)[0][0] == "TCP_FLAGS"  # largest share first


def test_blind_table_matches_by_name_only_and_predeclared_through_host_feature_sources():
    assert bench_explain.feature_match("HOST_RST", ("TCP_FLAGS",)) == "yes (via TCP_FLAGS)"
    assert bench_explain.feature_match("HOST_RST", ("TCP_FLAGS",), via=False) is None
    assert bench_explain.feature_match("HOST_RST", ("HOST_RST",), via=False) == "yes"
    assert bench_explain.feature_match("PROTOCOL=17", ("PROTOCOL",), via=False) == "yes (PROTOCOL)"
    assert set(bench_explain.EXPECTED_BLIND) == set(bench_explain.EXPECTED)
    vocabulary = set(HOST_FEATURES) | set(feature_columns("nf-v1"))
    for table in bench_explain.TABLES.values():
        assert {name for names in table.values() for name in names} <= vocabulary
