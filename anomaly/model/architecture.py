"""The autoencoder's architecture: the arguments, stored in the manifest, that rebuild the
network exactly (training/autoencoder.py builds it; the worker runs its exported graph).

Two kinds, both mapping a window of records (B, W, F) to its reconstruction:
- `dense`: fully connected layers over the flattened window;
- `conv`: 1-D convolutions over time (each halving the length), mirrored by transposed
  convolutions; the features are the channels, so the weights do not grow with the window.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

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
