"""Loading refuses every kind of broken artifact with a message that says what is wrong."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anomaly.model import ArtifactError, ModelStore, load_artifact, sliding_windows, write_artifact
from anomaly.model.artifact import MANIFEST, WEIGHTS
from devtools import simulator
from tests.support.models import Trained, edit_manifest, replace_weights


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
    # Save what is in memory (network, scaler, threshold) again, then load it back.
    with store.staging() as staging:
        manifest = source.manifest.model_copy(update={"model_version": "v2"})
        write_artifact(staging, manifest, source.detector.network.state_dict())
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
    edit_manifest(artifact_dir, lambda m: m.update(format_version=7))
    with pytest.raises(
        ArtifactError, match="format version 7; this code reads versions 1, 2, 3, 4, 5, 6"
    ):
        load_artifact(artifact_dir)


def test_a_format_4_artifact_serves_without_the_hold_and_judged_score_it_never_had(
    artifact_dir: Path,
) -> None:
    edit_manifest(artifact_dir, lambda m: m["rules"].update(resolve_after_s=600.0))
    assert load_artifact(artifact_dir).manifest.rules.resolve_after_s == 600.0
    edit_manifest(artifact_dir, lambda m: m.update(format_version=4))
    with pytest.raises(ArtifactError, match="format version 4 has no hold"):
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m["rules"].pop("resolve_after_s"))
    with pytest.raises(ArtifactError, match="format version 4 has no hold"):  # score_rate
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m["rules"].pop("score_rate"))
    rules = load_artifact(artifact_dir).manifest.rules
    assert (rules.resolve_after_s, rules.score_rate) == (0.0, 1.0)
    assert rules.onset_step > 0  # format 4 keeps its onset rule


def as_format(version: int) -> Callable[[dict[str, Any]], None]:
    """A manifest edit: the format `version`, without what it did not have (version 3 or 4;
    5 added the hold and the judged score, 6 the drift)."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest.update(format_version=version)
        manifest.pop("drift", None)
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
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(asset_thresholds={}))
    assert load_artifact(artifact_dir).manifest.asset_thresholds == {}


def test_a_format_1_artifact_loads_with_the_rules_its_workers_applied(artifact_dir: Path) -> None:
    """0.1.x manifests record no rules: they serve with 0.1.x's defaults (k 3, m 5, drop 2)."""

    def as_format_1(manifest: dict[str, Any]) -> None:
        manifest.update(format_version=1)
        del manifest["rules"]
        del manifest["scaler"]["noise"], manifest["scaler"]["flat"]

    edit_manifest(artifact_dir, as_format_1)
    rules = load_artifact(artifact_dir).manifest.rules
    assert (rules.open_after, rules.resolve_after, rules.end_drop) == (3, 5, 2.0)
    assert rules.onset_step == 0.0  # the onset rule came in format 3
    edit_manifest(artifact_dir, lambda m: m.update(rules={"open_after": 2}))
    with pytest.raises(ArtifactError, match="format version 1 has no rules"):
        load_artifact(artifact_dir)


def test_refuses_missing_weights(artifact_dir: Path) -> None:
    (artifact_dir / WEIGHTS).unlink()
    with pytest.raises(ArtifactError, match=r"has no weights\.pt"):
        load_artifact(artifact_dir)


def test_refuses_truncated_weights(artifact_dir: Path) -> None:
    size = (artifact_dir / WEIGHTS).stat().st_size
    os.truncate(artifact_dir / WEIGHTS, size // 2)
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
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
    edit_manifest(artifact_dir, lambda m: m["architecture"].update(hidden=[64, 16]))
    with pytest.raises(ArtifactError, match="does not match the manifest's architecture"):
        load_artifact(artifact_dir)


def test_refuses_a_pickle_payload_disguised_as_weights(artifact_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    replace_weights(artifact_dir, {"encoder.0.weight": Payload()})
    with pytest.raises(ArtifactError, match="refused: not a plain tensor state dict"):
        load_artifact(artifact_dir)
    assert not marker.exists()


def test_refuses_weights_that_produce_non_finite_scores(artifact_dir: Path) -> None:
    state = torch.load(artifact_dir / WEIGHTS, weights_only=True)
    state["decoder.0.bias"] = torch.full_like(state["decoder.0.bias"], float("nan"))
    replace_weights(artifact_dir, state)
    with pytest.raises(ArtifactError, match="non-finite scores"):
        load_artifact(artifact_dir)


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
    edit_manifest(artifact_dir, lambda m: m.update(format_version=5))
    with pytest.raises(ArtifactError, match="format version 5 has no drift"):
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(format_version=6, drift=DRIFT | {
        "center": [0.1] * (N - 1), "spread": [0.2] * (N - 1)}))  # fmt: skip
    with pytest.raises(ArtifactError, match=f"drift has {N - 1} values for {N} features"):
        load_artifact(artifact_dir)
    edit_manifest(artifact_dir, lambda m: m.update(drift=DRIFT | {"spread": [0.0] * N}))
    with pytest.raises(ArtifactError, match="spread values must be finite and above 0"):
        load_artifact(artifact_dir)
