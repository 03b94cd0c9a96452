"""The autoencoders themselves (torch): the network an `ArchitectureConfig` describes.

`build_autoencoder` turns the manifest's architecture back into the same module, into which
a saved state dict loads strictly; training/graph.py exports it as the ONNX graph the
worker runs.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from anomaly.model.architecture import DEFAULT_KERNEL, ArchitectureConfig


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


class ConvAutoencoder(nn.Module):
    """1-D convolutions over time, features as channels: (B, W, F) -> (B, W, F).

    Each encoder layer (kernel `kernel`, stride 2, ReLU) halves the length, rounding up; the
    decoder's transposed convolutions double it back, a last convolution maps the channels
    to the features (linear output), and the result is cut to the window's length.
    """

    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.config = config
        kernel = config.kernel or DEFAULT_KERNEL
        pad = kernel // 2
        channels = [config.n_features, *config.hidden, config.latent]
        down: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
            down.append(nn.Conv1d(c_in, c_out, kernel, stride=2, padding=pad))
            if i < len(channels) - 2:
                down.append(nn.ReLU())
        up: list[nn.Module] = []
        # As many doublings as halvings: back up the channels, then once more at the widest.
        for c_in, c_out in [*itertools.pairwise(channels[:0:-1]), (channels[1], channels[1])]:
            up += [nn.ConvTranspose1d(c_in, c_out, kernel, 2, pad, output_padding=1), nn.ReLU()]
        up.append(nn.Conv1d(channels[1], config.n_features, kernel, padding=pad))
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.Sequential(*up)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(windows.transpose(1, 2)))
        return out[:, :, : windows.shape[1]].transpose(1, 2)


Autoencoder = DenseAutoencoder | ConvAutoencoder


def build_autoencoder(config: ArchitectureConfig) -> Autoencoder:
    """A freshly initialised network for `config` (seed torch first for reproducibility)."""
    if config.kind == "conv":
        return ConvAutoencoder(config)
    return DenseAutoencoder(config)
