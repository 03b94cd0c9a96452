"""The fitted network exported as the ONNX graph the worker runs (anomaly/model/graph.py).

The export is torch's own (`torch.onnx.export`, the torch.export-based exporter) with the
batch left free; the graph computes in float32 like the network. Everything after the fit
scores through the exported graph, so what calibration and the gate judged is what the worker
serves. `rebuild` does the same for a version written before graphs were (formats 1 to 6),
from its weights.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import torch

from anomaly.model import (
    FORMAT_VERSION,
    ArtifactError,
    Graph,
    Manifest,
    ModelStore,
    write_artifact,
)
from anomaly.model.artifact import WEIGHTS
from anomaly.model.graph import INPUT, OUTPUT
from training.autoencoder import Autoencoder, build_autoencoder

# The exporter's own notices (which operator libraries it skips, its deprecations): nothing a
# user of the training job can act on.
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript")


def export_graph(network: Autoencoder) -> bytes:
    """The network's ONNX graph: scaled windows (batch, window, features) -> reconstruction."""
    example = torch.zeros((2, network.config.window, network.config.n_features))
    levels = {name: logging.getLogger(name).level for name in _EXPORTER_LOGGERS}
    try:
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                network.eval(), (example,), input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False,
            )  # fmt: skip
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert program is not None
    data: bytes = program.model_proto.SerializeToString()
    return data


def to_graph(network: Autoencoder) -> Graph:
    """The network exported and loaded, as the worker will run it."""
    return Graph(export_graph(network), network.config.window, network.config.n_features)


def saved_weights(network: Autoencoder) -> bytes:
    """The network's state dict as `weights.pt` holds it."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_network(manifest: Manifest, weights: Path) -> Autoencoder:
    """The network a version's weights hold (plain tensors only: a pickle never executes);
    ArtifactError when they are not that network's."""
    try:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here; all mean "not loadable weights".
        raise ArtifactError(
            f"{weights} was refused: not a plain tensor state dict ({exc})"
        ) from exc
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ArtifactError(f"{weights} was refused: not a dict of tensors")
    network = build_autoencoder(manifest.architecture)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{weights} does not match the manifest's architecture "
            f"{manifest.architecture.model_dump()}: {exc}"
        ) from exc
    return network.eval()


def rebuild(manifest: Manifest, weights: Path) -> bytes:
    """The graph of a version written without one, exported from its weights
    (`load_artifact(..., rebuild=rebuild)`)."""
    return export_graph(load_network(manifest, weights))


def export_version(store: ModelStore, version: str | None = None) -> str:
    """Publish a version written without a graph (formats 1 to 6; default: the current one)
    again with the graph exported from its weights, as the version `<version>-graph`, current
    if `version` was; returns its name. The rules are written as that version served them."""
    current = store.current_version()
    version = version or current
    if version is None:
        raise ArtifactError(f"model store {store.location} has no current model to export")
    artifact = store.load(version, rebuild=rebuild)
    if artifact.manifest.graph_sha256 is not None:
        raise ArtifactError(f"version {version!r} has its graph already: nothing to export")
    manifest = artifact.manifest.model_copy(
        update={"format_version": FORMAT_VERSION, "model_version": f"{version}-graph"}
    )
    with store.staging() as staging:
        write_artifact(staging, manifest, store.read_file(version, WEIGHTS),
                       artifact.detector.graph.data)  # fmt: skip
        return store.publish(staging, make_current=version == current, replaces=current)
