"""Train and register: the one path from labelled lake batches to a registry version (CLI and flows call it).

``train_and_register`` reads the batches, trains (``model.train``), optionally compares per-flow baselines on
the same split and features, saves a version and decides promotion:

- ``promote="auto"`` promotes only a first model: the decision is taken under an exclusive lock in the models
  folder (``FIRST_MODEL_LOCK``), so two runs on an empty registry never make two first models current;
- ``"always"`` / ``"never"`` do what they say;
- and never: a model whose validation figures are no better than the majority baseline
  (``model.evaluate.majority_check``, stored as ``metrics["majority_check"]``) is saved as a candidate with that
  reason, whatever ``promote`` says — a detector that flags everything is not made current.

``ensure_first_model`` is the inbox's rule: under the same lock, train only when no model is current yet
(a run that waited for the lock re-reads the registry and trains nothing).

The defaults of a training run are ``TrainConfig``'s, documented there once; the CLI and the flow
parameters take theirs from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flowhawk.common.files import exclusive_lock
from flowhawk.lake.store import Lake
from flowhawk.model.baselines import BaselineConfig, compare
from flowhawk.model.config import TrainConfig
from flowhawk.model.evaluate import results_table
from flowhawk.model.kernels import kernel_build
from flowhawk.model.registry import Registry, data_manifest
from flowhawk.model.train import prepare, train_prepared
from flowhawk.model.trained import TrainedModel

FIRST_MODEL_LOCK = ".train-first-model.lock"
PROMOTE = ("auto", "always", "never")


@dataclass
class TrainOutcome:
    """What one train-and-register run produced."""

    version: str
    promoted: bool
    trained: TrainedModel
    batches: list[str]
    flows: int
    table: pd.DataFrame                      # test metrics of ours beside the baselines (rows = models)
    test_rows: int
    notes: list[str] = field(default_factory=list)


def train_and_register(lake: Lake, registry: Registry, config: TrainConfig, batches: list[str] | None = None,
                       promote: str = "auto", baselines: BaselineConfig | None = None,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None,
                       on_start: Callable[[int, list[str]], None] | None = None) -> TrainOutcome:
    """Train on the labelled flows of ``batches`` (default: every labelled lake batch), save a new version and
    promote it per ``promote``. ``baselines`` (None: none) are compared on the same split and features and
    stored in the version's metrics. ``on_start(flows, batches)`` is called before training."""
    if promote not in PROMOTE:
        raise ValueError(f"promote: must be one of {PROMOTE}, got {promote!r}")
    outcome = _train(lake, config, batches, baselines, on_epoch, on_start)
    if promote == "auto":
        with exclusive_lock(registry.root / FIRST_MODEL_LOCK):
            return _register(registry, lake, outcome, promote=registry.current() is None)
    return _register(registry, lake, outcome, promote=promote == "always")


def ensure_first_model(lake: Lake, registry: Registry, config: TrainConfig,
                       baselines: BaselineConfig | None = None,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainOutcome | None:
    """Train and promote a first model unless one is current (checked again after waiting for the lock, so
    of two runs on an empty registry only one trains). When the newest version is a candidate trained on the
    same labelled batches (it failed the majority check), nothing is trained again until new labels arrive."""
    with exclusive_lock(registry.root / FIRST_MODEL_LOCK):
        if registry.current() is not None or _tried_already(registry, lake.labelled_batches()):
            return None
        return _register(registry, lake, _train(lake, config, None, baselines, on_epoch, None), promote=True)


def _tried_already(registry: Registry, batches: list[str]) -> bool:
    versions = registry.versions()
    if not versions or not batches:
        return False
    seen = [b["batch_id"] for b in registry.show(versions[-1])["data"].get("batches", [])]
    return sorted(seen) == sorted(batches)


def _train(lake: Lake, config: TrainConfig, batches: list[str] | None, baselines: BaselineConfig | None,
           on_epoch: Callable[[dict[str, Any]], None] | None,
           on_start: Callable[[int, list[str]], None] | None) -> TrainOutcome:
    """Read, train and compare; the outcome's version is not assigned yet."""
    batches = list(batches) if batches else lake.labelled_batches()
    if not batches:
        raise ValueError(f"{lake.location}: no labelled batches to train on (ingest captures with labels first)")
    frame = lake.read_flows(batches)
    if on_start is not None:
        on_start(len(frame), batches)
    prep = prepare(frame, config)
    trained = train_prepared(prep, config, on_epoch=on_epoch)
    if (build := kernel_build()) is not None:  # the fused kernels compiled (or found) for this run
        trained.metrics["kernel_build"] = {"seconds": round(build.seconds, 1), "compiled": build.compiled,
                                           "variant": build.variant}
    if baselines is not None and baselines.names:
        table, results = compare(prep, trained, baselines)
        trained.metrics["baselines"] = {k: v for k, v in results.items() if k != "flowhawk"}
    else:
        table = results_table({"flowhawk": trained.metrics["test"]})
    return TrainOutcome("", False, trained, batches, len(frame), table, len(prep.split.test))


def _register(registry: Registry, lake: Lake, outcome: TrainOutcome, promote: bool) -> TrainOutcome:
    """Save the trained model (status promoted / candidate) and make it current when ``promote`` (and it beats
    the majority baseline on validation)."""
    reason = f"trained on {len(outcome.batches)} batch(es), {outcome.flows} flows"
    check = outcome.trained.metrics.get("majority_check", {"ok": True})
    if promote and not check["ok"]:
        promote = False
        reason += f"; not promoted: {check['reason']}"
        outcome.notes.append(check["reason"])
    if note := outcome.trained.metrics.get("split", {}).get("note"):
        outcome.notes.append(note)
    status = "promoted" if promote else "candidate"
    outcome.version = registry.save(outcome.trained, data=data_manifest(lake, outcome.batches), status=status,
                                    reason=reason)
    if promote:
        first = registry.current() is None
        registry.promote(outcome.version, reason="first model" if first else "train (promote requested)")
    outcome.promoted = promote
    return outcome
