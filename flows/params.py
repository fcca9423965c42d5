"""Typed flow parameters (pydantic), so the Prefect UI renders them as forms and validates runs.

Defaults match ``prefect.yaml``: data under ``./flowhawk-data`` (inbox, lake, models). Only flows and the CLI
read these; library code receives the frozen dataclasses built from them (``to_train_config`` ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flowhawk.common.config import DATA_ROOT, stores_root
from flowhawk.common.objectstore import resolve_location
from flowhawk.model.baselines import BaselineConfig
from flowhawk.model.config import BASELINES as BASELINE_NAMES
from flowhawk.model.config import TrainConfig
from flowhawk.model.kernels import use_kernel_cache
from flowhawk.model.kernels.build import KernelCache, cache_root_from_env
from flowhawk.model.network import set_threads
from flowhawk.model.novelty_config import NoveltyConfig
from flowhawk.model.novelty_guard import GuardConfig
from flowhawk.model.novelty_lifecycle import DEFAULT_BASELINE_FLOWS
from flowhawk.model.refresh import RefreshConfig

DEFAULT_INBOX = DATA_ROOT / "inbox"
DEFAULT_LAKE = DATA_ROOT / "lake"
DEFAULT_MODELS = DATA_ROOT / "models"
KERNEL_THREADS_ENV = "FLOWHAWK_KERNEL_THREADS"
Location = str | Path  # a lake or registry: a folder, or s3://bucket/prefix (str first: pydantic keeps URLs whole)


def local_root(location: Location) -> Path:
    """The folder a flow works in for ``location``: the local working copy of an ``s3://`` URL (under
    FLOWHAWK_STORE_CACHE, else <cache root>/stores), or the folder made absolute."""
    return resolve_location(location, stores_root(os.environ, cache_root_from_env(os.environ)))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_TRAIN = TrainConfig()  # the one set of training defaults (documented in model/config.py)


class TrainOptions(_Frozen):
    """Training knobs (a subset of ``TrainConfig``, with its defaults; the rest keep theirs too)."""

    task: Literal["binary", "multiclass"] = Field(_TRAIN.task, description="binary: attack or not; "
                                                  "multiclass: also which attack (the labels' Attack names)")
    arch: Literal["cnn_bilstm", "multiscale"] = Field(_TRAIN.arch, description="network architecture")
    epochs: int = Field(_TRAIN.epochs, ge=1, le=1000, description="maximum epochs (early stopping)")
    batch_size: int = Field(_TRAIN.batch_size, ge=8, le=65536)
    window: int = Field(_TRAIN.window, ge=1, le=512, description="flows per window (the last T flows of a source)")
    lr: float = Field(_TRAIN.lr, gt=0, le=1)
    patience: int = Field(_TRAIN.patience, ge=1, le=100)
    split: Literal["auto", "time", "stratified"] = Field(
        _TRAIN.split, description="train/validation/test split: by time (auto, when flows have timestamps) or "
                                  "stratified by class (better when each attack sits in its own time window)")
    max_train_rows: int | None = Field(_TRAIN.max_train_rows, ge=10,
                                       description="cap on training rows (seeded subsample)")
    seed: int = Field(_TRAIN.seed, ge=0)
    host_features: bool = Field(_TRAIN.host_features, description="add each flow's host-window statistics "
                                "(fan-out, RST share, rate, ...) to its features")
    baselines: list[Literal[BASELINE_NAMES]] = Field(  # type: ignore[valid-type]
        list(BASELINE_NAMES), description="per-flow baselines compared on the same split (empty: none)")

    def to_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.model_dump(exclude={"baselines"}))

    def to_baseline_config(self) -> BaselineConfig:
        return BaselineConfig(names=tuple(self.baselines), seed=self.seed)


class RefreshOptions(_Frozen):
    """When ``process_inbox`` refreshes the current model, and how (``model.refresh.RefreshConfig``)."""

    after_labelled_batches: int = Field(
        3, ge=0, le=10_000,
        description="process_inbox refreshes once this many labelled lake batches arrived since the current "
                    "model was trained (0: never automatically)")
    epochs: int = Field(3, ge=1, le=1000, description="fine-tuning epochs")
    replay_rows: int = Field(20_000, ge=0, description="old training flows replayed beside the new ones")
    f1_tolerance: float = Field(0.002, ge=0, le=1, description="promote only if held-out F1 is at least the "
                                "current model's minus this")
    old_drop_tolerance: float = Field(0.01, ge=0, le=1, description="and F1 on old held-out flows drops by at "
                                      "most this")
    seed: int = Field(0, ge=0)

    def to_refresh_config(self) -> RefreshConfig:
        return RefreshConfig.from_dict(self.model_dump(exclude={"after_labelled_batches"}))


_NOVELTY, _GUARD = NoveltyConfig(), GuardConfig()


class NoveltyOptions(_Frozen):
    """The label-free baseline: when it is complete and how the novelty model learns it (``NoveltyConfig``)."""

    baseline_flows: int = Field(DEFAULT_BASELINE_FLOWS, ge=1, le=10**9,
                                description="with no model and no labels, batches build the baseline until the lake "
                                            "holds this many flows; then the novelty model is trained")
    budget: float = Field(_NOVELTY.budget, gt=0, le=0.5,
                          description="expected false alerts per benign-like flow (0.001 = 1 per 1,000)")
    epochs: int = Field(_NOVELTY.epochs, ge=1, le=1000)
    objective: Literal["reconstruct", "predict"] = Field(_NOVELTY.objective)
    guard_z: float = Field(_GUARD.z, ge=1, le=100, description="poisoning guard: baseline flows this many robust "
                           "standard deviations above the median error are left out before the final training")
    seed: int = Field(_NOVELTY.seed, ge=0)
    refresh_after_batches: int = Field(10, ge=0, le=100_000,
                                       description="refresh the novelty model once this many batches are new to it "
                                                   "(poisoning guard and promotion guard apply; 0 = never by itself)")
    refresh_on_drift: bool = Field(True, description="refresh sooner when a scored batch's drift recommends it")

    def to_novelty_config(self) -> NoveltyConfig:
        return NoveltyConfig(budget=self.budget, epochs=self.epochs, objective=self.objective, seed=self.seed)

    def to_guard_config(self) -> GuardConfig:
        return GuardConfig(z=self.guard_z)


class InboxOptions(_Frozen):
    """How ``process_inbox`` claims files and when it trains."""

    settle_seconds: float = Field(5.0, ge=0, le=86_400,
                                  description="files modified more recently wait for the next run")
    max_files: int = Field(100, ge=1, le=100_000, description="captures per batch")
    max_batches: int = Field(20, ge=1, le=10_000, description="batches per run (the rest wait for the next run)")
    source: Literal["auto", "pcap", "zeek", "nf-csv"] = Field("auto", description="input kind (auto: sniffed)")
    train_if_missing: bool = Field(True, description="train a first model when none exists and labels are in "
                                   "the lake")
    top_n: int = Field(25, ge=1, le=1000, description="rows of the top-anomalies table")
    train: TrainOptions = TrainOptions()
    refresh: RefreshOptions = RefreshOptions()
    novelty: NoveltyOptions = NoveltyOptions()
    notify_block: str | None = Field(None, description="Prefect notification block (e.g. 'custom-webhook/soc') "
                                     "told of every batch with alerts; off by default")
    explain_reference: Literal["mean", "sampled"] = Field(
        "mean", description="occlusion reference of the supervised explanations: the benign mean, or real benign "
                            "flows' values (sampled: ~3x the cost; benchmarks/results/analyst.md)")


def use_kernel_settings_from_env() -> None:
    """The fused kernels' settings from the environment: the cache at FLOWHAWK_CACHE (then
    XDG_CACHE_HOME/flowhawk, ~/.cache/flowhawk), and FLOWHAWK_KERNEL_THREADS threads when set (a Dask worker
    gets its own thread count, ``runners.task_runner``, not the machine's cores). Flow runs started by
    ``flowhawk serve`` and Dask workers are processes of their own and would not see the CLI's settings."""
    use_kernel_cache(KernelCache(cache_root_from_env(os.environ)))
    threads = os.environ.get(KERNEL_THREADS_ENV)
    if threads:
        if not threads.isdigit() or not 1 <= int(threads) <= 256:
            raise ValueError(f"{KERNEL_THREADS_ENV}={threads!r}: must be an integer in [1, 256]")
        set_threads(int(threads))


def paths_dict(inbox: Path | None = None, lake: Path | None = None, models: Path | None = None) -> dict[str, str]:
    """Path parameters as JSON-friendly strings (deployment parameters)."""
    out = {"inbox": inbox, "lake": lake, "models": models}
    return {k: str(v) for k, v in out.items() if v is not None}


# Frozen defaults for flow signatures (the UI shows their values as the form defaults).
DEFAULT_TRAIN = TrainOptions()
DEFAULT_REFRESH = RefreshOptions()
DEFAULT_INBOX_OPTIONS = InboxOptions()
