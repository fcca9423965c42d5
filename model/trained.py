"""A trained detector: the network plus everything needed to score new flows with it.

``TrainedModel.save(dir)`` writes three files, each to a temporary name first and then ``os.replace``d:

- ``weights.ckpt``  the network parameters (``mindspore.save_checkpoint``),
- ``features.json`` the fitted ``FeaturePipeline`` (``to_json``),
- ``model.json``    ModelConfig, TrainConfig, threshold, class names, metrics, history.

``TrainedModel.load(dir)`` rebuilds the network from its ModelConfig and loads the weights. No pickle.
The registry wraps these primitives with versioned, atomically renamed directories.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn

from flowhawk.common.files import atomic_path, atomic_write_text
from flowhawk.model.config import ModelConfig, TrainConfig
from flowhawk.model.features import FeaturePipeline
from flowhawk.model.network import build_network

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.ckpt"
FEATURES_FILE = "features.json"
META_FILE = "model.json"


@dataclass
class TrainedModel:
    """Everything one scoring run needs.

    ``network`` is a MindSpore ``Cell`` mapping x (B, T, F) float32 and mask (B, T) to logits
    (B, len(class_names)). ``class_names[0]`` is always the benign class; the attack score of a flow is
    ``1 - p(class_names[0])`` and a flow is anomalous when that score is >= ``threshold``.
    """

    network: nn.Cell
    model_config: ModelConfig
    train_config: TrainConfig
    pipeline: FeaturePipeline
    threshold: float
    class_names: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= float(self.threshold) <= 1.0):
            raise ValueError(f"TrainedModel.threshold: must be in [0, 1], got {self.threshold!r}")
        if len(self.class_names) < 2:
            raise ValueError(f"TrainedModel.class_names: need >= 2 classes, got {self.class_names!r}")
        self.threshold = float(self.threshold)
        self.class_names = [str(c) for c in self.class_names]

    @property
    def task(self) -> str:
        return self.train_config.task

    def meta(self) -> dict[str, Any]:
        """The JSON-serialisable part (everything but weights and pipeline)."""
        return {
            "format_version": FORMAT_VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "threshold": self.threshold,
            "class_names": list(self.class_names),
            "metrics": _jsonable(self.metrics),
            "history": _jsonable(self.history),
        }

    def save(self, directory: Path | str) -> Path:
        """Write weights, pipeline and metadata into ``directory`` (created if needed); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE, suffix=".ckpt") as tmp_ckpt:
            ms.save_checkpoint(self.network, str(tmp_ckpt))
        atomic_write_text(directory / FEATURES_FILE, self.pipeline.to_json())
        atomic_write_text(directory / META_FILE, json.dumps(self.meta(), indent=2, sort_keys=True, allow_nan=False))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> TrainedModel:
        """Inverse of ``save``. Raises ``ValueError`` naming the file when something is missing or wrong."""
        directory = Path(directory)
        for name in (WEIGHTS_FILE, FEATURES_FILE, META_FILE):
            if not (directory / name).is_file():
                raise ValueError(f"{directory / name}: missing (not a saved TrainedModel directory)")
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{directory / META_FILE}: not valid JSON: {exc}") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / META_FILE}: format_version {meta.get('format_version')!r}, "
                             f"expected {FORMAT_VERSION}")
        model_config = ModelConfig.from_dict(meta["model_config"])
        network = build_network(model_config)
        params = ms.load_checkpoint(str(directory / WEIGHTS_FILE))
        not_loaded, _ = ms.load_param_into_net(network, params, strict_load=True)
        if not_loaded:
            raise ValueError(f"{directory / WEIGHTS_FILE}: parameters missing from checkpoint: {not_loaded}")
        network.set_train(False)
        return cls(
            network=network,
            model_config=model_config,
            train_config=TrainConfig.from_dict(meta["train_config"]),
            pipeline=FeaturePipeline.from_json((directory / FEATURES_FILE).read_text()),
            threshold=meta["threshold"],
            class_names=meta["class_names"],
            metrics=meta.get("metrics", {}),
            history=meta.get("history", []),
        )


def _jsonable(value: Any) -> Any:
    """Metrics/history -> plain JSON (numpy scalars and arrays to Python; NaN/inf to None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
