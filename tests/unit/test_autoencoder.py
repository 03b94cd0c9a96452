"""Both autoencoder kinds: shapes, manifests, and the contract checks through training."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly.model import ArchitectureConfig, ModelStore, default_latent, sliding_windows
from anomaly.model.artifact import MANIFEST
from devtools import simulator
from tests.support.models import settings_for, write_csv
from training.autoencoder import ConvAutoencoder, DenseAutoencoder, build_autoencoder
from training.job import train


@pytest.mark.parametrize("window", [1, 2, 5, 8, 30, 60, 61])
@pytest.mark.parametrize("hidden", [(32, 16), (16,), ()])
def test_conv_reconstructs_windows_of_any_length(window: int, hidden: tuple[int, ...]) -> None:
    config = ArchitectureConfig(kind="conv", n_features=8, window=window, hidden=hidden,
                                latent=4, kernel=5)  # fmt: skip
    network = build_autoencoder(config)
    assert isinstance(network, ConvAutoencoder)
    windows = torch.randn(3, window, 8)
    assert network(windows).shape == windows.shape


def test_conv_weights_do_not_grow_with_the_window() -> None:
    def size(kind: str, window: int) -> int:
        config = ArchitectureConfig.model_validate(
            {"kind": kind, "n_features": 8, "window": window, "latent": 4}
        )
        return sum(p.numel() for p in build_autoencoder(config).parameters())

    assert size("conv", 30) == size("conv", 60)
    assert size("dense", 60) > size("dense", 30)


def test_default_bottlenecks_compress() -> None:
    assert default_latent(8 * 60) == 32  # dense: a quarter of the inputs, at most 32
    assert default_latent(8) == 2
    assert default_latent(8 * 60, "conv", 8) == 4  # 4 channels x 15 steps = 60 of 480 inputs


def test_a_dense_manifest_is_written_as_before_and_a_conv_one_names_its_kernel() -> None:
    dense = ArchitectureConfig(n_features=3, window=2, latent=2)
    assert "kernel" not in dense.model_dump()
    assert ArchitectureConfig.model_validate_json(dense.model_dump_json()) == dense
    assert isinstance(build_autoencoder(dense), DenseAutoencoder)
    conv = ArchitectureConfig(kind="conv", n_features=3, window=2, latent=2, kernel=3)
    assert json.loads(conv.model_dump_json())["kernel"] == 3
    assert ArchitectureConfig.model_validate_json(conv.model_dump_json()) == conv


def test_a_conv_model_trains_round_trips_and_sees_a_drift(tmp_path: Path) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(3000, seed=11))
    outcome = train(settings_for(data, tmp_path / "store", kind="conv", window=16, epochs=30))
    manifest = json.loads((Path(outcome.location) / MANIFEST).read_text())
    assert manifest["architecture"]["kind"] == "conv"
    assert manifest["architecture"]["kernel"] == 7

    model = ModelStore(tmp_path / "store").load_current()
    held_out = simulator.clean_rows(3000, seed=11)[2400:]  # the latest 20%, as training split
    scores = model.detector.score(sliding_windows(held_out, 16)).score
    assert float(scores.max()) == model.manifest.validation.holdout_score_max

    clean = simulator.clean_rows(400, seed=12)
    clean_rate = model.threshold.exceeds(model.detector.score(sliding_windows(clean, 16)).score)
    drifted = model.detector.score(sliding_windows(simulator.drift(clean, 2), 16))
    flagged = model.threshold.exceeds(drifted.score[200:])
    assert flagged.mean() >= 0.5
    assert flagged.mean() >= 10 * max(clean_rate.mean(), 0.01)
    assert np.isin(drifted.shares[200:][flagged].argmax(axis=1), [2]).mean() >= 0.9


def test_the_gate_compares_errors_only_between_models_of_one_shape(tmp_path: Path) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(1500, seed=13))
    train(settings_for(data, tmp_path / "store", epochs=3))  # window 1: the service model
    same = train(settings_for(data, tmp_path / "store", epochs=3, seed=1))
    assert "service_error" in same.decision.figures
    other = train(settings_for(data, tmp_path / "store", epochs=3, kind="conv", window=4))
    assert "service_error" not in other.decision.figures
    assert other.decision.figures["error_check"] == (
        "skipped: the service model is a dense model of window 1, the candidate a conv model "
        "of window 4; their errors do not compare"
    )
