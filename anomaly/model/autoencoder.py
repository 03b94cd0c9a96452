"""The autoencoders and the arguments that rebuild them exactly.

Two kinds, both mapping a window of records (B, W, F) to its reconstruction:
- `dense`: fully connected layers over the flattened window;
- `conv`: 1-D convolutions over time (each halving the length), mirrored by transposed
  convolutions; the features are the channels, so the weights do not grow with the window.

The architecture arguments are stored in the artifact's manifest; `build_autoencoder` turns
them back into the same module, into which the saved state dict loads strictly.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from torch import nn

PositiveInt = Annotated[int, Field(ge=1)]
Kind = Literal["dense", "conv"]
# The conv kind's kernel length over time when the manifest does not name one.
DEFAULT_KERNEL = 7


class ArchitectureConfig(BaseModel):
    """Everything needed to rebuild the network: input shape and layer sizes.

    The network reads a window of `window` consecutive records of `n_features` values each
    (window 1 scores single records) and reconstructs the whole window. `hidden` holds the
    layer sizes (dense) or the channels of each halving convolution (conv); `latent` is the
    bottleneck's size (dense) or its channels (conv); `kernel` is the conv kind's kernel
    length (absent, and not written, for dense: manifests of dense models read as before).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "dense"
    n_features: PositiveInt
    window: PositiveInt
    hidden: tuple[PositiveInt, ...] = (32, 16)
    latent: PositiveInt
    kernel: PositiveInt | None = None

    @property
    def n_inputs(self) -> int:
        return self.n_features * self.window

    @model_serializer(mode="wrap")
    def _omit_unset_kernel(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("kernel") is None:
            data.pop("kernel", None)
        return data


def default_latent(n_inputs: int, kind: Kind = "dense", n_features: int = 1) -> int:
    """A bottleneck that compresses.

    dense: a quarter of the inputs, at least 2 and at most 32. conv: half the features as
    channels (at least 2) at a quarter of the window's length, an eighth of the inputs.
    """
    if kind == "conv":
        return max(2, round(n_features / 2))
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
