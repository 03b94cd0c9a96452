"""The autoencoder and the arguments that rebuild it exactly.

The architecture arguments are stored in the artifact's manifest; `build_autoencoder` turns
them back into the same module, into which the saved state dict loads strictly.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

PositiveInt = Annotated[int, Field(ge=1)]


class ArchitectureConfig(BaseModel):
    """Everything needed to rebuild the network: input shape and layer sizes.

    The network reads a window of `window` consecutive records of `n_features` values each
    (window 1 scores single records) and reconstructs the whole window.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["dense"] = "dense"
    n_features: PositiveInt
    window: PositiveInt
    hidden: tuple[PositiveInt, ...] = (32, 16)
    latent: PositiveInt

    @property
    def n_inputs(self) -> int:
        return self.n_features * self.window


def default_latent(n_inputs: int) -> int:
    """A bottleneck that compresses: a quarter of the inputs, at least 2 and at most 32."""
    return max(2, min(32, round(n_inputs / 4)))


class DenseAutoencoder(nn.Module):
    """A fully connected autoencoder over a flattened window: (B, W, F) -> (B, W, F)."""

    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.n_inputs, *config.hidden, config.latent]
        self.encoder = _mlp(sizes)
        self.decoder = _mlp(sizes[::-1])

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        flat = windows.reshape(windows.shape[0], -1)
        out: torch.Tensor = self.decoder(self.encoder(flat))
        return out.reshape(windows.shape)


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_autoencoder(config: ArchitectureConfig) -> DenseAutoencoder:
    """A freshly initialised network for `config` (seed torch first for reproducibility)."""
    return DenseAutoencoder(config)
