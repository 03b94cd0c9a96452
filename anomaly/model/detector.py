"""Scoring: the reconstruction error of each window, each feature's share of it, and the
signed residual of the window's last record (the drift's input: anomaly/model/drift.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anomaly.model.drift import Drift
from anomaly.model.features import FloatArray, RobustScaler
from anomaly.model.graph import Graph

# Windows scored per forward pass; bounds the memory of scoring a long history at once.
SCORE_CHUNK = 8192
# Passes of the network that fill a sensor out of order in from the others (`Detector.without`).
IMPUTE_PASSES = 1


@dataclass(frozen=True)
class Scores:
    """Scores of a batch of windows.

    score[i] is the mean squared reconstruction error over window i (in scaled units); it is
    the score of the window's last record. shares[i, f] is feature f's share of that error;
    each row sums to 1. residual[i, f] is the reconstruction of feature f minus its value at
    the window's last record, in scaled units. rebuilt (when asked for) is the network's
    reconstruction of each window, in scaled units (float32, as computed):
    `Detector.expected` turns windows of it into the sensors' units.
    """

    score: npt.NDArray[np.float64]
    shares: npt.NDArray[np.float64]
    residual: npt.NDArray[np.float64]
    rebuilt: npt.NDArray[np.float32] | None = None


class Detector:
    """A fitted scaler and autoencoder (its exported graph: anomaly/model/graph.py) that
    score windows of raw sensor values, and the calibration of their residuals' drift (None:
    the model has none).

    Scoring is deterministic and runs in one pass of the graph per SCORE_CHUNK windows.
    """

    def __init__(self, scaler: RobustScaler, graph: Graph, drift: Drift | None = None) -> None:
        self.scaler = scaler
        self.graph = graph
        self.drift = drift

    def score(self, windows: FloatArray, reconstruct: bool = False) -> Scores:
        """Score raw windows of shape (batch, window, n_features); `reconstruct`: keep each
        window's reconstruction (`Scores.expected`)."""
        if windows.ndim != 3 or windows.shape[2] != self.scaler.n_features:
            raise ValueError(
                f"expected windows of shape (batch, window, {self.scaler.n_features}), "
                f"got {windows.shape}"
            )
        n = windows.shape[0]
        per_feature = np.empty((n, windows.shape[2]), dtype=np.float64)
        residual = np.empty((n, windows.shape[2]), dtype=np.float64)
        rebuilt: list[npt.NDArray[np.float32]] = []
        for start in range(0, n, SCORE_CHUNK):
            chunk = self.scaler.transform(windows[start : start + SCORE_CHUNK])
            output = self.graph(chunk)
            per_feature[start : start + SCORE_CHUNK], residual[start : start + SCORE_CHUNK] = (
                errors(output, chunk)
            )
            if reconstruct:
                rebuilt.append(output)
        total = per_feature.sum(axis=1)
        score = total / (windows.shape[1] * windows.shape[2])
        safe_total = np.where(total > 0, total, 1.0)[:, None]
        shares = np.where(total[:, None] > 0, per_feature / safe_total, 1.0 / windows.shape[2])
        kept = (rebuilt[0] if len(rebuilt) == 1 else np.concatenate(rebuilt)) if rebuilt else None
        return Scores(score=score, shares=shares, residual=residual, rebuilt=kept)

    def without(
        self,
        windows: FloatArray,
        missing: npt.NDArray[np.bool_],
        rebuilt: npt.NDArray[np.float32] | None = None,
    ) -> FloatArray:
        """The scores of raw windows (batch, window, features) with the sensors `missing`
        (batch, features) left out: their values imputed from the others (IMPUTE_PASSES
        passes of the network, each putting its reconstruction of them in their place; the
        first is `rebuilt`, the windows' own reconstruction, when the caller has it), and
        the error of the others alone, on the same scale (the mean over the sensors counted).
        What a record with a sensor out of order is judged by (anomaly/instruments.py)."""
        hidden = np.broadcast_to(missing[:, None, :], windows.shape)
        first = self.reconstruct(windows) if rebuilt is None else self.expected(rebuilt)
        out = np.where(hidden, first, windows)
        for _ in range(IMPUTE_PASSES - 1):
            out = np.where(hidden, self.reconstruct(out), out)
        again = self.score(out)
        counted = ~missing
        share = (again.shares * counted).sum(axis=1)
        kept = np.maximum(counted.sum(axis=1), 1)
        scores: FloatArray = again.score * share * counted.shape[1] / kept
        return scores

    def reconstruct(self, windows: FloatArray) -> FloatArray:
        """The network's reconstruction of raw windows, in raw units (same shape)."""
        out = np.empty(windows.shape, dtype=np.float64)
        for start in range(0, len(windows), SCORE_CHUNK):
            chunk = self.scaler.transform(windows[start : start + SCORE_CHUNK])
            out[start : start + SCORE_CHUNK] = self.expected(self.graph(chunk))
        return out

    def expected(self, rebuilt: npt.NDArray[np.float32]) -> FloatArray:
        """A reconstruction (`Scores.rebuilt`, or part of it) in the sensors' own units."""
        raw: FloatArray = rebuilt.astype(np.float64) * self.scaler.scale + self.scaler.center
        return raw


def errors(
    rebuilt: npt.NDArray[np.float32], scaled: npt.NDArray[np.float32]
) -> tuple[FloatArray, FloatArray]:
    """The squared reconstruction error summed over each window's rows, and the residual of
    its last row: (B, W, F) -> (B, F), (B, F), computed in float32 like the network."""
    residual = rebuilt - scaled
    return np.square(residual).sum(axis=1).astype(np.float64), residual[:, -1].astype(np.float64)
