"""Fitting the autoencoder: minibatch Adam on windows, early stopping on the held-out loss.

Windows are never materialised: the scaled rows of all assets sit in one tensor and each
batch gathers its windows by index, so memory stays at one copy of the rows whatever the
window length.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from anomaly.model.architecture import ArchitectureConfig
from anomaly.model.features import FloatArray, RobustScaler
from training.autoencoder import Autoencoder, build_autoencoder
from training.settings import ModelSettings

# Windows per forward pass when computing the held-out loss.
_EVAL_CHUNK = 8192


@dataclass(frozen=True)
class Epoch:
    """Mean losses of one epoch (mean squared error in scaled units)."""

    epoch: int
    fit_loss: float
    holdout_loss: float


@dataclass(frozen=True)
class FitResult:
    """The network restored to its best epoch, and the loss of every epoch run."""

    network: Autoencoder
    history: tuple[Epoch, ...]
    best_epoch: int


class WindowIndex:
    """Windows of `window` consecutive rows within each asset's scaled rows, by start index."""

    def __init__(self, series: list[FloatArray], scaler: RobustScaler, window: int) -> None:
        self.rows = torch.from_numpy(
            np.concatenate([scaler.transform(values) for values in series])
            if series
            else np.empty((0, scaler.n_features), dtype=np.float32)
        )
        starts, offset = [], 0
        for values in series:
            n = len(values)
            if n >= window:
                starts.append(np.arange(offset, offset + n - window + 1))
            offset += n
        self.starts = torch.from_numpy(
            np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)
        )
        self._steps = torch.arange(window)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """Windows (len(positions), window, n_features) for positions in [0, len(self))."""
        index = self.starts[positions][:, None] + self._steps
        return self.rows[index]


def fit_autoencoder(
    fit: WindowIndex,
    holdout: WindowIndex,
    architecture: ArchitectureConfig,
    settings: ModelSettings,
    on_epoch: Callable[[Epoch, bool], None] = lambda epoch, improved: None,
) -> FitResult:
    """Fit from a fixed seed until the held-out loss stops improving for `patience` epochs.

    Deterministic for a given seed, data and torch build. Returns the best epoch's weights.
    """
    torch.manual_seed(settings.seed)
    network = build_autoencoder(architecture)
    optimiser = torch.optim.Adam(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    shuffle = torch.Generator().manual_seed(settings.seed)
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(network.state_dict())
    history: list[Epoch] = []
    for epoch in range(1, settings.epochs + 1):
        network.train()
        total, count = 0.0, 0
        for batch in torch.randperm(len(fit), generator=shuffle).split(settings.batch_size):
            windows = fit.gather(batch)
            loss = torch.mean((network(windows) - windows) ** 2)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            count += len(batch)
        result = Epoch(epoch, total / count, holdout_loss(network, holdout))
        history.append(result)
        improved = result.holdout_loss < best_loss
        if improved:
            best_loss, best_epoch = result.holdout_loss, epoch
            best_state = copy.deepcopy(network.state_dict())
        on_epoch(result, improved)
        if epoch - best_epoch >= settings.patience:
            break
    network.load_state_dict(best_state)
    return FitResult(network.eval(), tuple(history), best_epoch)


def holdout_loss(network: Autoencoder, windows: WindowIndex) -> float:
    """Mean squared reconstruction error over every window (the mean held-out score)."""
    network.eval()
    total = 0.0
    with torch.inference_mode():
        for chunk in torch.arange(len(windows)).split(_EVAL_CHUNK):
            batch = windows.gather(chunk)
            total += float(((network(batch) - batch) ** 2).mean(dim=(1, 2)).sum())
    return total / len(windows)
