"""Scoring: the reconstruction error of each window and each feature's share of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from anomaly.model.features import FloatArray, RobustScaler

# Windows scored per forward pass; bounds the memory of scoring a long history at once.
SCORE_CHUNK = 8192


@dataclass(frozen=True)
class Scores:
    """Scores of a batch of windows.

    score[i] is the mean squared reconstruction error over window i (in scaled units); it is
    the score of the window's last record. shares[i, f] is feature f's share of that error;
    each row sums to 1.
    """

    score: npt.NDArray[np.float64]
    shares: npt.NDArray[np.float64]


class Detector:
    """A fitted scaler and autoencoder that score windows of raw sensor values.

    Scoring is deterministic (no dropout, inference mode) and runs in one forward pass per
    SCORE_CHUNK windows.
    """

    def __init__(self, scaler: RobustScaler, network: nn.Module) -> None:
        self.scaler = scaler
        self.network = network.eval()

    def score(self, windows: FloatArray) -> Scores:
        """Score raw windows of shape (batch, window, n_features)."""
        if windows.ndim != 3 or windows.shape[2] != self.scaler.n_features:
            raise ValueError(
                f"expected windows of shape (batch, window, {self.scaler.n_features}), "
                f"got {windows.shape}"
            )
        n = windows.shape[0]
        per_feature = np.empty((n, windows.shape[2]), dtype=np.float64)
        for start in range(0, n, SCORE_CHUNK):
            chunk = torch.from_numpy(self.scaler.transform(windows[start : start + SCORE_CHUNK]))
            per_feature[start : start + SCORE_CHUNK] = squared_error_by_feature(
                self.network, chunk
            ).numpy()
        total = per_feature.sum(axis=1)
        score = total / (windows.shape[1] * windows.shape[2])
        safe_total = np.where(total > 0, total, 1.0)[:, None]
        shares = np.where(total[:, None] > 0, per_feature / safe_total, 1.0 / windows.shape[2])
        return Scores(score=score, shares=shares)

    def reconstruct(self, windows: FloatArray) -> FloatArray:
        """The network's reconstruction of raw windows, in raw units (same shape)."""
        out = np.empty(windows.shape, dtype=np.float64)
        for start in range(0, len(windows), SCORE_CHUNK):
            chunk = torch.from_numpy(self.scaler.transform(windows[start : start + SCORE_CHUNK]))
            with torch.inference_mode():
                scaled = self.network(chunk).double().numpy()
            out[start : start + SCORE_CHUNK] = scaled * self.scaler.scale + self.scaler.center
        return out


def squared_error_by_feature(network: nn.Module, scaled: torch.Tensor) -> torch.Tensor:
    """Squared reconstruction error summed over each window's rows: (B, W, F) -> (B, F)."""
    with torch.inference_mode():
        reconstruction: torch.Tensor = network(scaled)
        return ((reconstruction - scaled) ** 2).sum(dim=1).double()
