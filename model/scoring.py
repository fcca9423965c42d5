"""Score flows with a trained detector, streaming windows batch by batch.

``score_frame(trained, frame)`` returns one row per input flow, aligned to ``frame.index``: ``score`` (attack
probability, 1 - p(benign)), ``is_anomaly`` (score >= the model's threshold) and ``predicted_class`` (the
most probable attack class when anomalous, else the benign class). Memory: the (N, F) float32 feature matrix,
three int64 index arrays and one batch of windows; never an (N, T, F) array.

``context``: the hosts' earlier flows (e.g. of the previous batches, ``model.novelty_lifecycle.batch_context``);
a flow's window then reaches back into them as in one continuous capture, so each host's first flows of a batch
are not scored as a host with no history (``model.windows.with_history``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import numpy as np
import pandas as pd
from mindspore import Tensor

from flowhawk.model.decision import attack_scores, decide
from flowhawk.model.host_features import history_depth, window_inputs
from flowhawk.model.network import make_predict
from flowhawk.model.trained import TrainedModel
from flowhawk.model.windows import WindowIndex, with_history

log = logging.getLogger(__name__)
DEFAULT_BATCH = 1024
_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> compiled predict


def predictor(network: object) -> Callable:
    """The compiled predict function of ``network``, built once per network (compiling costs seconds)."""
    if network not in _PREDICTORS:
        _PREDICTORS[network] = make_predict(network)
    return _PREDICTORS[network]


def predict_proba(network: object, features: np.ndarray, index: WindowIndex, rows: np.ndarray,
                  batch_size: int = DEFAULT_BATCH, predict: Callable | None = None,
                  edit: Callable[[np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
    """Class probabilities (len(rows), C) float32 for ``rows`` (positions into ``features``).

    Every batch has exactly ``batch_size`` windows (the last is padded by repeating its first row, then
    trimmed) so the compiled graph is built once. ``edit(rows_batch, x)`` may change a batch's windows
    (B, T, F) in place before they are scored (occlusion of the scored flows only).
    """
    predict = predict or predictor(network)
    rows = np.asarray(rows, dtype=np.int64)
    out: np.ndarray | None = None
    for start, (chunk, x, mask) in zip(range(0, len(rows), batch_size),
                                       index.batches(features, rows, batch_size), strict=True):
        n = len(chunk)
        if edit is not None:
            edit(chunk, x)
        if n < batch_size:
            x = np.concatenate([x, np.repeat(x[:1], batch_size - n, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[:1], batch_size - n, axis=0)])
        logits = predict(Tensor(x), Tensor(mask)).asnumpy()[:n].astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        if out is None:
            out = np.empty((len(rows), probs.shape[1]), dtype=np.float32)
        out[start:start + n] = probs
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


def score_frame(trained: TrainedModel, frame: pd.DataFrame, batch_size: int = DEFAULT_BATCH,
                context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score every flow of ``frame`` (see module doc); the result has ``frame``'s index, in its order. Windows
    reach back into ``context`` (earlier flows, not scored or returned) when given."""
    if batch_size < 1:
        raise ValueError(f"score_frame: batch_size must be >= 1, got {batch_size}")
    result = pd.DataFrame(index=frame.index)
    if len(frame) == 0:
        result["score"] = pd.Series(dtype="float64")
        result["is_anomaly"] = pd.Series(dtype="bool")
        result["predicted_class"] = pd.Series(dtype="object")
        return result
    inputs, features, index, offset = model_inputs(trained, frame, context)
    del inputs  # the network reads the features only
    probs = predict_proba(trained.network, features, index, offset + np.arange(len(frame)), batch_size)
    del features
    scores = attack_scores(probs)
    predicted = decide(probs, trained.threshold)
    names = np.asarray(trained.class_names, dtype=object)
    result["score"] = scores.astype(np.float64)
    result["is_anomaly"] = scores >= trained.threshold
    result["predicted_class"] = names[predicted]
    log.info("scored %d flows: %d anomalous (threshold %.4f)", len(frame), int(result["is_anomaly"].sum()),
             trained.threshold)
    return result


def model_inputs(trained: TrainedModel, frame: pd.DataFrame, context: pd.DataFrame | None
                 ) -> tuple[pd.DataFrame, np.ndarray, WindowIndex, int]:
    """What the network reads for ``frame`` scored with ``context``: the flows (``history_frame``, with the
    HOST_FEATURES columns when the model has them), their (N, F) features, the window index and ``frame``'s
    offset in them."""
    config = trained.train_config
    whole, offset = history_frame(trained, frame, context)
    inputs, index = window_inputs(whole, config.window, config.group_by, config.host_features)
    return inputs, trained.pipeline.transform(inputs), index, offset


def history_frame(trained: TrainedModel, frame: pd.DataFrame, context: pd.DataFrame | None
                  ) -> tuple[pd.DataFrame, int]:
    """``with_history`` for this model's windows: the context flows its windows can reach (``history_depth`` per
    host: ``window - 1``, twice that with host features, so that those flows' own host statistics see full windows
    too; none when the windows are global, not per host) followed by ``frame``, and ``frame``'s offset."""
    config = trained.train_config
    if config.group_by != "source":
        return frame, 0
    return with_history(frame, context, history_depth(config.window, config.host_features))
