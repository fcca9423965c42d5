"""The crash campaign of benchmarks/crash_campaign.py, small: three SIGKILLs of process-inbox at random moments,
then the invariants (nothing lost, batches whole and listed once, reports match, the model loads, a rerun changes
nothing); and a disk that fills during a batch write."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import crash_campaign  # noqa: E402

pytestmark = pytest.mark.slow


def _env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def test_three_kills_lose_nothing_and_a_rerun_changes_nothing(prefect_harness, tmp_path):
    c = crash_campaign.setup(tmp_path / "c", _env(prefect_harness))
    result = crash_campaign.campaign(c, kills=3, rng=random.Random(5))
    assert result["kills"] == 3 and result["lost"] == 0 and result["problems"] == [], result
    assert result["rerun_identical"] and result["files"] == len(c.names) >= 2 + 8 + 3, result
    assert result["quarantined"] >= 2 and result["done"] + result["quarantined"] == result["files"], result


def test_disk_full_during_a_batch_write_fails_cleanly(tmp_path):
    result = crash_campaign.disk_full(tmp_path, _env(""))
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert result["exit_code"] == 3 and result["one_line"], result
    assert "No space left on device" in result["message"] and "nothing was added" in result["message"]
    assert result["input_untouched"]
    assert result["files_left_in_lake"] == [], result  # no part, no manifest, no temporary
