"""Loading refuses every kind of broken artifact with a message that says what is wrong."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anomaly.model import (
    ArtifactError,
    ModelStore,
    load_artifact,
    read_manifest,
    sliding_windows,
    write_artifact,
)
from anomaly.model.artifact import GRAPH, MANIFEST, WEIGHTS
from devtools import simulator
from tests.support.graphs import scaled
from tests.support.models import Trained, edit_manifest, replace_graph, replace_weights
from training.graph import load_network, rebuild


@pytest.fixture
def artifact_dir(trained: Trained, tmp_path: Path) -> Path:
    """A private copy of the trained version to break."""
    copy = tmp_path / "version"
    shutil.copytree(Path(trained.outcome.location), copy)
    return copy


def test_round_trip_gives_identical_scores(
    tmp_path: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    store = ModelStore(tmp_path)
    publish_random(store, "v1")
    source = store.load("v1")  # window 2: exercises windows, not just single records
    # Save what is in memory (graph, scaler, threshold) again, then load it back.
    weights = (Path(store.location) / "versions" / "v1" / WEIGHTS).read_bytes()
    with store.staging() as staging:
        manifest = source.manifest.model_copy(update={"model_version": "v2"})
        write_artifact(staging, manifest, weights, source.detector.graph.data)
        store.publish(staging)
    loaded = store.load("v2")
    windows = sliding_windows(simulator.drift(simulator.clean_rows(500, seed=8), 1), 2)
    before, after = source.detector.score(windows), loaded.detector.score(windows)
    np.testing.assert_array_equal(before.score, after.score)
    np.testing.assert_array_equal(before.shares, after.shares)
    assert loaded.threshold == source.threshold
    assert loaded.manifest.scaler == source.manifest.scaler


def test_loaded_model_reproduces_the_scores_training_computed(trained: Trained) -> None:
    loaded = load_artifact(Path(trained.outcome.location))
    held_out = simulator.clean_rows(10_000, seed=1)[8000:]  # the latest 20%, as training split
    scores = loaded.detector.score(sliding_windows(held_out, 1)).score
    figures = loaded.manifest.validation
    assert float(scores.max()) == figures.holdout_score_max
    assert float(np.quantile(scores, 0.5)) == figures.holdout_score_p50
    assert float(loaded.threshold.exceeds(scores).mean()) == figures.holdout_fpr


def test_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nope")


def test_refuses_a_missing_manifest(artifact_dir: Path) -> None:
    (artifact_dir / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match=r"has no manifest\.json"):
        load_artifact(artifact_dir)


def test_refuses_a_truncated_manifest(artifact_dir: Path) -> None:
    text = (artifact_dir / MANIFEST).read_bytes()
    (artifact_dir / MANIFEST).write_bytes(text[: len(text) // 2])
    with pytest.raises(ArtifactError, match="not readable JSON"):
        load_artifact(artifact_dir)


def test_refuses_another_format_version(artifact_dir: Path) -> None:
    edit_manifest(artifact_dir, lambda m: m.update(format_version=9))
    with pytest.raises(
        ArtifactError, match="format version 9; this code reads versions 1, 2, 3, 4, 5, 6, 7, 8"
    ):
        load_artifact(artifact_dir)


def without_graph(manifest: dict[str, Any]) -> None:
    """A manifest edit: format 6, the last without a graph."""
    manifest.update(format_version=6)
    del manifest["graph_sha256"]


def test_a_version_without_a_graph_is_refused_naming_the_command_and_served_once_exported(
    artifact_dir: Path,
) -> None:
    """Format 6 and before: the worker refuses it and says how to export its graph; with the
    training job's `rebuild` (torch) the graph exported from its weights scores as the one
    training wrote."""
    written = load_artifact(artifact_dir)
    edit_manifest(artifact_dir, without_graph)
    (artifact_dir / GRAPH).unlink()
    with pytest.raises(ArtifactError, match=r"has no model\.onnx.*anomaly-train export-graph"):
        load_artifact(artifact_dir)
    exported = load_artifact(artifact_dir, rebuild)
    windows = sliding_windows(simulator.clean_rows(300, seed=8), 1)
    np.testing.assert_allclose(
        exported.detector.score(windows).score, written.detector.score(windows).score, rtol=1e-6
    )
    edit_manifest(artifact_dir, lambda m: m.update(graph_sha256="0" * 64))
    with pytest.raises(ArtifactError, match="format version 6 has no graph"):
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(format_version=7, graph_sha256=None))
    with pytest.raises(ArtifactError, match="graph_sha256 is required from format version 7"):
        read_manifest(artifact_dir)


def test_a_format_4_artifact_serves_without_the_hold_and_judged_score_it_never_had(
    artifact_dir: Path,
) -> None:
    edit_manifest(artifact_dir, lambda m: m["rules"].update(resolve_after_s=600.0))
    assert read_manifest(artifact_dir).rules.resolve_after_s == 600.0
    edit_manifest(artifact_dir, without_graph)
    edit_manifest(artifact_dir, lambda m: m.update(format_version=4))
    with pytest.raises(ArtifactError, match="format version 4 has no hold"):
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m["rules"].pop("resolve_after_s"))
    with pytest.raises(ArtifactError, match="format version 4 has no hold"):  # score_rate
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m["rules"].pop("score_rate"))
    rules = read_manifest(artifact_dir).rules
    assert (rules.resolve_after_s, rules.score_rate) == (0.0, 1.0)
    assert rules.onset_step > 0  # format 4 keeps its onset rule


def as_format(version: int) -> Callable[[dict[str, Any]], None]:
    """A manifest edit: the format `version`, without what it did not have (version 3 or 4;
    5 added the hold and the judged score, 6 the drift)."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest.update(format_version=version)
        manifest.pop("drift", None)
        manifest.pop("graph_sha256", None)
        for key in ("resolve_after_s", "score_rate"):
            manifest["rules"].pop(key)

    return edit


def test_asset_thresholds_apply_to_their_assets_and_need_format_4(artifact_dir: Path) -> None:
    own = {"value": 9.5, "method": "quantile", "target_fpr": 0.01, "n_samples": 1500}
    edit_manifest(artifact_dir, lambda m: m.update(asset_thresholds={"pump-07": own}))
    manifest = load_artifact(artifact_dir).manifest
    assert manifest.threshold_for("pump-07").value == 9.5
    assert manifest.threshold_for("pump-08") == manifest.threshold
    edit_manifest(artifact_dir, as_format(3))
    with pytest.raises(ArtifactError, match="format version 3 has no asset thresholds"):
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(asset_thresholds={}))
    assert read_manifest(artifact_dir).asset_thresholds == {}


def test_a_format_1_artifact_loads_with_the_rules_its_workers_applied(artifact_dir: Path) -> None:
    """0.1.x manifests record no rules: they serve with 0.1.x's defaults (k 3, m 5, drop 2)."""

    def as_format_1(manifest: dict[str, Any]) -> None:
        manifest.update(format_version=1)
        del manifest["rules"], manifest["graph_sha256"]
        del manifest["scaler"]["noise"], manifest["scaler"]["flat"]

    edit_manifest(artifact_dir, as_format_1)
    rules = load_artifact(artifact_dir, rebuild).manifest.rules
    assert (rules.open_after, rules.resolve_after, rules.end_drop) == (3, 5, 2.0)
    assert rules.onset_step == 0.0  # the onset rule came in format 3
    edit_manifest(artifact_dir, lambda m: m.update(rules={"open_after": 2}))
    with pytest.raises(ArtifactError, match="format version 1 has no rules"):
        read_manifest(artifact_dir)


@pytest.mark.parametrize("name", [WEIGHTS, GRAPH])
def test_refuses_a_missing_file(artifact_dir: Path, name: str) -> None:
    (artifact_dir / name).unlink()
    with pytest.raises(ArtifactError, match=f"has no {name}"):
        load_artifact(artifact_dir)


@pytest.mark.parametrize("name", [WEIGHTS, GRAPH])
def test_refuses_a_truncated_file(artifact_dir: Path, name: str) -> None:
    size = (artifact_dir / name).stat().st_size
    os.truncate(artifact_dir / name, size // 2)
    with pytest.raises(ArtifactError, match=f"{name} is corrupt or truncated"):
        load_artifact(artifact_dir)


def test_refuses_a_manifest_that_lies_about_its_features(artifact_dir: Path) -> None:
    edit_manifest(artifact_dir, lambda m: m.update(features=["extra", *m["features"]]))
    lie = "scaler has 8/8/8 centre/scale/noise values for 9 features"
    with pytest.raises(ArtifactError, match=lie):
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(features=["a"] * 8))
    with pytest.raises(ArtifactError, match="duplicate names"):
        load_artifact(artifact_dir)


def test_refuses_a_manifest_that_lies_about_shapes(artifact_dir: Path) -> None:
    edit_manifest(artifact_dir, lambda m: m["architecture"].update(window=3))
    with pytest.raises(ArtifactError, match=r"reads windows of shape \['batch', 1, 8\]"):
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m["architecture"].update(window=1, hidden=[64, 16]))
    with pytest.raises(ArtifactError, match="does not match the manifest's architecture"):
        load_network(read_manifest(artifact_dir), artifact_dir / WEIGHTS)


def test_refuses_bytes_that_are_no_graph(artifact_dir: Path) -> None:
    replace_graph(artifact_dir, b"\x08\x07garbage")
    with pytest.raises(ArtifactError, match=r"model\.onnx was refused: not a loadable ONNX graph"):
        load_artifact(artifact_dir)


def test_the_training_job_refuses_a_pickle_payload_disguised_as_weights(
    artifact_dir: Path, tmp_path: Path
) -> None:
    """The worker never reads the weights; the training job reads them only to export the
    graph of a version without one, and never executes what they hold."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    replace_weights(artifact_dir, {"encoder.0.weight": Payload()})
    with pytest.raises(ArtifactError, match="refused: not a plain tensor state dict"):
        load_network(read_manifest(artifact_dir), artifact_dir / WEIGHTS)
    assert not marker.exists()


def test_refuses_a_graph_that_produces_non_finite_scores(artifact_dir: Path) -> None:
    manifest = read_manifest(artifact_dir)
    replace_graph(artifact_dir, scaled(float("nan"), len(manifest.features), 1).data)
    with pytest.raises(ArtifactError, match="non-finite scores"):
        load_artifact(artifact_dir)
    state = torch.load(artifact_dir / WEIGHTS, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values())


N = simulator.N_FEATURES
DRIFT = {
    "rate": 0.05,
    "center": [0.1] * N,
    "spread": [0.2] * N,
    "threshold": {"value": 3.5, "method": "quantile", "target_fpr": 0.01, "n_samples": 2000},
}


def test_the_drift_loads_into_the_detector_and_needs_format_6_and_one_value_per_feature(
    artifact_dir: Path,
) -> None:
    assert load_artifact(artifact_dir).detector.drift is None  # trained without one
    edit_manifest(artifact_dir, lambda m: m.update(drift=DRIFT))
    drift = load_artifact(artifact_dir).detector.drift
    assert drift is not None
    assert (drift.rate, drift.center, drift.threshold.value) == (0.05, (0.1,) * N, 3.5)
    edit_manifest(artifact_dir, without_graph)
    edit_manifest(artifact_dir, lambda m: m.update(format_version=5))
    with pytest.raises(ArtifactError, match="format version 5 has no drift"):
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(format_version=6, drift=DRIFT | {
        "center": [0.1] * (N - 1), "spread": [0.2] * (N - 1)}))  # fmt: skip
    with pytest.raises(ArtifactError, match=f"drift has {N - 1} values for {N} features"):
        read_manifest(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(drift=DRIFT | {"spread": [0.0] * N}))
    with pytest.raises(ArtifactError, match="spread values must be finite and above 0"):
        read_manifest(artifact_dir)
