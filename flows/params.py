"""Typed flow parameters (pydantic), so the Prefect UI renders them as forms and validates runs.

Defaults match ``prefect.yaml``: data under ``./flowhawk-data`` (inbox, lake, models). Only flows and the CLI
read these; library code receives the frozen dataclasses built from them (``to_train_config`` ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DATA_ROOT = Path("flowhawk-data")
DEFAULT_INBOX = DATA_ROOT / "inbox"
DEFAULT_LAKE = DATA_ROOT / "lake"
DEFAULT_MODELS = DATA_ROOT / "models"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainOptions(_Frozen):
    """Training knobs (a subset of ``model.train.TrainConfig``; the rest keep their defaults)."""

    task: Literal["binary", "multiclass"] = Field("multiclass", description="binary: attack or not; "
                                                  "multiclass: also which attack (the labels' Attack names)")
    arch: Literal["cnn_bilstm", "multiscale"] = Field("cnn_bilstm", description="network architecture")
    epochs: int = Field(8, ge=1, le=1000, description="maximum epochs (early stopping on validation loss)")
    batch_size: int = Field(256, ge=8, le=65536)
    window: int = Field(16, ge=1, le=512, description="flows per window (the last T flows of a source)")
    lr: float = Field(1e-3, gt=0, le=1)
    patience: int = Field(3, ge=1, le=100)
    split: Literal["auto", "time", "stratified"] = Field(
        "auto", description="train/validation/test split: by time (auto, when flows have timestamps) or "
                            "stratified by class (better when each attack sits in its own time window)")
    max_train_rows: int | None = Field(200_000, ge=10, description="cap on training rows (seeded subsample)")
    seed: int = Field(0, ge=0)

    def to_train_config(self) -> Any:
        from flowhawk.model.train import TrainConfig

        return TrainConfig.from_dict(self.model_dump())


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

    def to_refresh_config(self) -> Any:
        from flowhawk.model.refresh import RefreshConfig

        return RefreshConfig.from_dict(self.model_dump(exclude={"after_labelled_batches"}))


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


def paths_dict(inbox: Path | None = None, lake: Path | None = None, models: Path | None = None) -> dict[str, str]:
    """Path parameters as JSON-friendly strings (deployment parameters)."""
    out = {"inbox": inbox, "lake": lake, "models": models}
    return {k: str(v) for k, v in out.items() if v is not None}


# Frozen defaults for flow signatures (the UI shows their values as the form defaults).
DEFAULT_TRAIN = TrainOptions()
DEFAULT_REFRESH = RefreshOptions()
DEFAULT_INBOX_OPTIONS = InboxOptions()
