"""A trained novelty model and its files: the same layout and guarantees as ``TrainedModel`` (model/trained.py).

``save(dir)`` writes, each to a temporary name then renamed: ``weights.ckpt`` (MindSpore checkpoint),
``features.json`` (the fitted ``FeaturePipeline``, host features included) and ``model.json`` (``kind:
"novelty"``, NoveltyConfig, network shape, calibration, the inbound-flood and volume rules, metrics, history; a
model saved before a rule existed loads without it). ``load(dir)`` rebuilds the network and
checks every part; ``check_meta`` validates a ``model.json`` without MindSpore (used by the registry).
The registry stores it like a supervised model (``Registry.save`` / ``load`` dispatch on ``kind``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mindspore as ms

from flowhawk.extractors.schema import COLUMN_NAMES
from flowhawk.model.calibration import TailCalibration
from flowhawk.model.features import FeaturePipeline
from flowhawk.model.host_features import HOST_FEATURES
from flowhawk.model.network import make_predict
from flowhawk.model.novelty_config import NoveltyConfig
from flowhawk.model.novelty_inbound import InboundRule
from flowhawk.model.novelty_net import ARCH, NoveltyNet, NoveltyShape
from flowhawk.model.novelty_volume import VolumeRule
from flowhawk.model.trained import TrainedModel, _jsonable

KIND = "novelty"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.ckpt"
FEATURES_FILE = "features.json"
META_FILE = "model.json"


@dataclass
class TrainedNovelty:
    """Network + config + fitted features + calibration. ``calibration`` is None only during training."""

    network: Any  # NoveltyNet (mindspore Cell)
    config: NoveltyConfig
    pipeline: FeaturePipeline
    calibration: TailCalibration | None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    inbound: InboundRule | None = None  # the baseline's inbound-flood rule (model.novelty_inbound)
    volume: VolumeRule | None = None  # the baseline's per-protocol volume rule (model.novelty_volume)
    _predict: Callable | None = field(default=None, repr=False)

    kind = KIND
    task = KIND
    class_names = ("baseline", "novel")

    @property
    def model_config(self) -> NoveltyShape:
        return NoveltyShape(window=self.config.window, n_features=self.pipeline.n_features + 1)

    @property
    def threshold(self) -> float:
        """Alert threshold on ``novelty_error`` (from the calibration and its budget)."""
        return self._calibration().threshold

    def _calibration(self) -> TailCalibration:
        if self.calibration is None:
            raise RuntimeError("TrainedNovelty: not calibrated")
        return self.calibration

    def predictor(self) -> Callable:
        """The compiled predict function of the network (built once)."""
        if self._predict is None:
            self._predict = make_predict(self.network)
        return self._predict

    def meta(self) -> dict[str, Any]:
        shape = self.model_config
        return {"format_version": FORMAT_VERSION, "kind": KIND, "novelty_config": self.config.to_dict(),
                "network": {"arch": shape.arch, "window": shape.window, "n_features": shape.n_features},
                "calibration": self._calibration().to_dict(),
                "inbound": self.inbound.to_dict() if self.inbound else None,
                "volume": self.volume.to_dict() if self.volume else None, "metrics": _jsonable(self.metrics),
                "history": _jsonable(self.history)}

    def save(self, directory: Path | str) -> Path:
        """The same three files as ``TrainedModel.save`` (weights, features.json, model.json with this ``meta``),
        each written to a temporary name and renamed."""
        return TrainedModel.save(self, directory)  # type: ignore[arg-type]  # uses network, pipeline, meta()

    @classmethod
    def load(cls, directory: Path | str) -> TrainedNovelty:
        """Inverse of ``save``; ValueError naming the file when something is missing or wrong."""
        directory = Path(directory)
        for name in (WEIGHTS_FILE, FEATURES_FILE, META_FILE):
            if not (directory / name).is_file():
                raise ValueError(f"{directory / name}: missing (not a saved novelty model directory)")
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{directory / META_FILE}: not valid JSON: {exc}") from None
        pipeline = FeaturePipeline.from_json((directory / FEATURES_FILE).read_text())
        config, calibration, inbound, volume = check_meta(meta, pipeline, directory / META_FILE)
        network = NoveltyNet(pipeline.n_features, config)
        not_loaded, _ = ms.load_param_into_net(network, ms.load_checkpoint(str(directory / WEIGHTS_FILE)),
                                               strict_load=True)
        if not_loaded:
            raise ValueError(f"{directory / WEIGHTS_FILE}: parameters missing from checkpoint: {not_loaded}")
        network.set_train(False)
        return cls(network=network, config=config, pipeline=pipeline, calibration=calibration,
                   metrics=meta.get("metrics", {}), history=meta.get("history", []), inbound=inbound,
                   volume=volume)


def check_meta(meta: dict[str, Any], pipeline: FeaturePipeline, where: Path
               ) -> tuple[NoveltyConfig, TailCalibration, InboundRule | None, VolumeRule | None]:
    """Validate a novelty ``model.json`` against its pipeline; ValueError naming ``where`` and the reason."""
    if not isinstance(meta, dict) or meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: not a novelty model v{FORMAT_VERSION} (kind {meta.get('kind')!r})")
    try:
        config = NoveltyConfig.from_dict(meta["novelty_config"])
        calibration = TailCalibration.from_dict(meta["calibration"])
        inbound = InboundRule.from_dict(meta["inbound"]) if meta.get("inbound") is not None else None
        volume = VolumeRule.from_dict(meta["volume"]) if meta.get("volume") is not None else None
        network = meta["network"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    unknown = sorted({s["name"] for s in pipeline.specs} - set(COLUMN_NAMES) - set(HOST_FEATURES))
    if unknown:
        raise ValueError(f"{where}: features use column(s) not in the flow schema: {unknown}")
    if network.get("arch") != ARCH or network.get("window") != config.window \
            or network.get("n_features") != pipeline.n_features + 1:
        raise ValueError(f"{where}: network {network} does not match the config (window {config.window}) and "
                         f"features.json ({pipeline.n_features} features + 1 hide channel)")
    return config, calibration, inbound, volume
