"""The graph the worker runs is the network the training job fitted: parity on random and
real windows, both kinds; and the worker's code runs without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from anomaly.model import (
    ArchitectureConfig,
    ArtifactError,
    Graph,
    RobustScaler,
    load_artifact,
    sliding_windows,
)
from anomaly.model.artifact import WEIGHTS
from anomaly.model.graph import set_threads
from devtools import simulator
from tests.support.models import REPO, SKAB, Trained
from training.autoencoder import build_autoencoder
from training.graph import load_network, to_graph

KINDS = [("dense", 1), ("dense", 16), ("conv", 16), ("conv", 61)]


def skab_rows() -> np.ndarray:
    """A real recording: SKAB's anomaly-free run of the water-circulation rig (8 sensors)."""
    path = SKAB / "anomaly-free" / "anomaly-free.csv"
    if not path.is_file():
        pytest.skip(f"SKAB is not at {SKAB} (README: the data beside the repository)")
    return np.loadtxt(path, delimiter=";", skiprows=1, usecols=range(1, 9))[:3000]


def rebuilt_by_both(architecture: ArchitectureConfig, scaled: np.ndarray) -> tuple[np.ndarray, ...]:
    torch.manual_seed(architecture.window)
    network = build_autoencoder(architecture).eval()
    with torch.inference_mode():
        expected = network(torch.from_numpy(scaled)).numpy()
    return to_graph(network)(scaled), expected


@pytest.mark.parametrize(("kind", "window"), KINDS)
def test_the_graph_reconstructs_random_windows_as_the_network_does(kind: str, window: int) -> None:
    architecture = ArchitectureConfig(kind=kind, n_features=8, window=window, hidden=(16, 8),
                                      latent=4)  # fmt: skip
    scaled = np.random.default_rng(window).normal(size=(700, window, 8)).astype(np.float32)
    graph, network = rebuilt_by_both(architecture, scaled)
    assert graph.shape == network.shape
    np.testing.assert_allclose(graph, network, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kind", "window"), KINDS)
def test_the_graph_reconstructs_real_windows_as_the_network_does(kind: str, window: int) -> None:
    rows = skab_rows()
    scaled = RobustScaler.fit(rows).transform(sliding_windows(rows, window))
    architecture = ArchitectureConfig(kind=kind, n_features=8, window=window, hidden=(16, 8),
                                      latent=4)  # fmt: skip
    graph, network = rebuilt_by_both(architecture, scaled)
    np.testing.assert_allclose(graph, network, rtol=1e-5, atol=1e-6)


def test_a_trained_versions_graph_is_its_weights_network(trained: Trained) -> None:
    """The artifact's two files agree: the graph written beside the weights reconstructs what
    the network those weights rebuild does."""
    directory = Path(trained.outcome.location)
    artifact = load_artifact(directory)
    network = load_network(artifact.manifest, directory / WEIGHTS)
    windows = sliding_windows(simulator.clean_rows(500, seed=5), artifact.manifest.window)
    scaled = artifact.detector.scaler.transform(windows)
    with torch.inference_mode():
        expected = network(torch.from_numpy(scaled)).numpy()
    np.testing.assert_allclose(artifact.detector.graph(scaled), expected, rtol=1e-5, atol=1e-6)


def test_the_worker_and_the_core_load_no_torch(trained: Trained) -> None:
    """What the worker imports, end to end (the CLI, the loop, Kafka, the model store), and a
    version it loads and scores with, bring in neither torch nor the training job: its
    install need not carry them (the import contracts say the same of the source)."""
    probe = (
        "import sys, pathlib, numpy, worker.cli, worker.runner, worker.kafka_io, "
        "worker.kafka_sink, anomaly.model; "
        "a = anomaly.model.load_artifact(pathlib.Path(sys.argv[1])); "
        "a.detector.score(numpy.zeros((3, a.manifest.window, len(a.manifest.features)))); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'training', 'matplotlib', 'onnx', 'onnxscript'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe, trained.outcome.location], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_a_graph_of_other_names_or_shapes_is_refused() -> None:
    """The graph must read `windows` and write `rebuilt`, windows of the manifest's shape
    (a dimension left free takes any size)."""

    def graph(inputs: str, outputs: str, shape: list[str | int]) -> bytes:
        node = helper.make_node("Identity", [inputs], [outputs])
        made = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info(inputs, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(outputs, TensorProto.FLOAT, shape)],
        )  # fmt: skip
        data: bytes = helper.make_model(
            made, opset_imports=[helper.make_opsetid("", 17)]
        ).SerializeToString()
        return data

    data = graph("windows", "rebuilt", ["b", 3, 2])
    assert Graph(data, 3, 2).data == data  # what write_artifact writes
    with pytest.raises(ArtifactError, match="not a loadable ONNX graph"):
        Graph(data[: len(data) // 2], 3, 2)
    assert Graph(graph("windows", "rebuilt", ["b", "w", 2]), 7, 2)  # any window
    with pytest.raises(ArtifactError, match=r"reads \['x'\] and writes \['rebuilt'\]"):
        Graph(graph("x", "rebuilt", ["b", 3, 2]), 3, 2)
    with pytest.raises(ArtifactError, match=r"reads \['windows'\] and writes \['y'\]"):
        Graph(graph("windows", "y", ["b", 3, 2]), 3, 2)
    with pytest.raises(ArtifactError, match=r"windows of shape \['b', 3, 2\], not \(batch, 3, 5\)"):
        Graph(graph("windows", "rebuilt", ["b", 3, 2]), 3, 5)
    with pytest.raises(ArtifactError, match=r"windows of shape \['b', 6\]"):
        Graph(graph("windows", "rebuilt", ["b", 6]), 3, 2)


def test_graphs_compute_on_the_threads_set_one_operator_at_a_time() -> None:
    scaled_graph = to_graph(build_autoencoder(ArchitectureConfig(n_features=2, window=1,
                                                                   latent=2)))  # fmt: skip
    try:
        set_threads(3)
        graph = Graph(scaled_graph.data, 1, 2)
        assert graph.threads == 3
        assert graph._session.get_session_options().inter_op_num_threads == 1
    finally:
        set_threads(1)
    assert Graph(scaled_graph.data, 1, 2).threads == 1
