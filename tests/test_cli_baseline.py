"""``flowhawk baseline`` and ``flowhawk evaluate --novelty`` through the console entry point, on a synthesised
quiet period (labels ignored) and a batch with a port scan (labels used to evaluate only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowhawk.cli.main import main
from flowhawk.extractors.synth import SynthConfig, synthesize
from flowhawk.model.novelty_lifecycle import novelty_registry
from flowhawk.model.registry import Registry

pytestmark = pytest.mark.slow


def _ingest(tmp_path: Path, name: str, seed: int, attacks: tuple[str, ...], packets: int) -> None:
    synthesize(SynthConfig(seed=seed, packets=packets, duration_s=120.0, attacks=attacks),
               tmp_path / f"{name}.pcap", tmp_path / f"{name}.csv")
    code = main(["ingest", str(tmp_path / f"{name}.pcap"), "--labels", str(tmp_path / f"{name}.csv"),
                 "--lake", str(tmp_path / "lake"), "--batch", name, "--no-progress"])
    assert code == 0


def test_baseline_then_evaluate_novelty(tmp_path, capsys):
    _ingest(tmp_path, "quiet", 1, (), 16_000)
    _ingest(tmp_path, "scan", 2, ("portscan",), 6000)
    paths = ["--lake", str(tmp_path / "lake"), "--models", str(tmp_path / "models")]
    # 15 epochs, not 3: a 3-epoch network has not learnt short windows, and only their large held-out errors (when
    # the holdout was scored as a fresh batch) lifted its threshold 9x above what full windows give
    assert main(["baseline", *paths, "--batches", "quiet", "--epochs", "15"]) == 0
    assert "now current" in capsys.readouterr().out
    registry = novelty_registry(tmp_path / "models")
    assert registry.current() == "v0001" and Registry(tmp_path / "models").current() is None
    assert main(["evaluate", "--novelty", *paths, "--batches", "scan", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]["all"]
    assert metrics["recall"] > 0.5 and metrics["fpr"] < 0.1, metrics
    assert main(["baseline", *paths, "--batches", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    # refresh on the scan batch: the scanner's flows are left out by the poisoning guard
    _ingest(tmp_path, "quiet2", 3, (), 8000)
    assert main(["baseline", *paths, "--refresh", "--batches", "quiet2,scan", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "new_left_out" in out and "held-out old baseline flows" in out
    refreshed = registry.list()[-1]
    assert refreshed["version"] == "v0002" and refreshed["parent"] == "v0001", refreshed
    data = registry.show("v0002")["data"]
    assert data["refresh"]["new_left_out"] > 0 and data["refresh"]["held_out"] > 0
