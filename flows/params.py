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
    max_train_rows: int | None = Field(200_000, ge=10, description="cap on training rows (seeded subsample)")
    seed: int = Field(0, ge=0)

    def to_train_config(self) -> Any:
        from model.train import TrainConfig

        return TrainConfig.from_dict(self.model_dump())


class RefreshOptions(_Frozen):
    """When and how ``process_inbox`` refreshes the current model."""

    after_labelled_batches: int = Field(
        3, ge=0, le=10_000,
        description="refresh once this many labelled lake batches arrived since the current model was trained "
                    "(0: never refresh automatically)")
    epochs: int = Field(3, ge=1, le=1000, description="fine-tuning epochs")
    max_f1_drop: float = Field(0.02, ge=0, le=1, description="reject the refreshed model when its F1 on the "
                               "held-out data is lower than the current model's by more than this")


class InboxOptions(_Frozen):
    """How ``process_inbox`` claims files and when it trains."""

    settle_seconds: float = Field(5.0, ge=0, le=86_400,
                                  description="files modified more recently wait for the next run")
    max_files: int = Field(100, ge=1, le=100_000, description="captures per batch")
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
