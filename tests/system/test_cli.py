"""The commands as a user runs them: python -m training / python -m worker, in subprocesses."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly.model import ModelStore
from anomaly.model.artifact import GRAPH, WEIGHTS
from devtools import simulator
from tests.support.models import REPO, SKAB, edit_manifest, write_csv
from training.graph import load_network


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def skab_free() -> Path:
    path = SKAB / "anomaly-free" / "anomaly-free.csv"
    if not path.is_file():
        pytest.skip(f"SKAB data not found at {path} (see README: get SKAB yourself)")
    return path


def test_fit_on_skab_publishes_artifact_and_report(skab_free: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    fit = run(
        "training", "fit", "--data", str(skab_free), "--delimiter", ";",
        "--timestamp-column", "datetime", "--epochs", "3", "--store", str(store),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    version = ModelStore(store).current_version()
    assert version is not None
    assert f"model {version}" in fit.stdout
    assert "epoch 3/3" in fit.stderr  # progress, one line per epoch off a terminal
    directory = store / "versions" / version
    assert {p.name for p in directory.iterdir()} == {
        "manifest.json", "model.onnx", "weights.pt", "report.json", "report.png", "decision.json",
    }  # fmt: skip
    assert (directory / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check = run("worker", "check-model", env={"WORKER_STORE__PATH": str(store)})
    assert check.returncode == 0, check.stderr
    assert f"model default {version}" in check.stdout
    assert "8 features (Accelerometer1RMS, Accelerometer2RMS" in check.stdout


def test_versions_rollback_and_prune_commands(tmp_path: Path) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(2000, seed=0))
    env = {
        "TRAINING_STORE__PATH": str(tmp_path / "store"),
        "TRAINING_MODEL__EPOCHS": "2",
        "TRAINING_GATE__ERROR_MARGIN": "100",  # two-epoch models: promote whatever they are
        "TRAINING_STORE__PROTECT_S": "0",
    }
    for seed in ("1", "2", "3"):
        fit = run("training", "fit", "--data", str(data), "--timestamp-column", "timestamp",
                  "--seed", seed, env=env)  # fmt: skip
        assert fit.returncode == 0, fit.stderr
    store = ModelStore(tmp_path / "store")
    first, _, third = (v.name for v in store.list_versions())

    listing = run("training", "versions", env=env)
    assert listing.returncode == 0
    assert f"* {third}" in listing.stdout
    assert f"  {first}" in listing.stdout

    rollback = run("training", "rollback", first, env=env)
    assert rollback.returncode == 0, rollback.stderr
    assert store.current_version() == first
    missing = run("training", "rollback", "no-such-version", env=env)
    assert missing.returncode == 4
    assert "version 'no-such-version' does not exist" in missing.stderr

    prune = run("training", "prune", "--keep", "1", env=env)
    assert prune.returncode == 0, prune.stderr
    assert [v.name for v in store.list_versions()] == [first, third]


def test_a_version_trained_before_graphs_is_refused_until_export_graph_publishes_it_again(
    tmp_path: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    """A 0.4 store: its current version has weights and no graph. The worker refuses it and
    names the command; `export-graph` publishes it again with the graph, as the current
    version, which the worker then serves with the scores the weights give."""
    store = ModelStore(tmp_path / "store")
    publish_random(store, "v1-old")
    directory = tmp_path / "store" / "versions" / "v1-old"
    (directory / GRAPH).unlink()
    edit_manifest(directory, lambda m: m.update(format_version=6, graph_sha256=None))
    env = {"WORKER_STORE__PATH": str(store.location), "TRAINING_STORE__PATH": str(store.location)}

    refused = run("worker", "check-model", env=env)
    assert refused.returncode != 0
    assert "has no model.onnx" in refused.stderr
    assert "`anomaly-train export-graph --version v1-old`" in refused.stderr
    exported = run("training", "export-graph", env=env)
    assert exported.returncode == 0, exported.stderr
    assert "version v1-old-graph published with its graph (current)" in exported.stdout
    assert store.current_version() == "v1-old-graph"
    served = run("worker", "check-model", env=env)
    assert served.returncode == 0, served.stderr
    assert "model default v1-old-graph" in served.stdout
    windows = np.random.default_rng(1).normal(size=(50, 2, simulator.N_FEATURES))
    network = load_network(store.load("v1-old-graph").manifest, directory / WEIGHTS)
    with torch.inference_mode():
        expected = network(torch.from_numpy(windows.astype(np.float32))).numpy()
    graph = store.load("v1-old-graph").detector.graph
    np.testing.assert_allclose(graph(windows.astype(np.float32)), expected, rtol=1e-5, atol=1e-6)
    again = run("training", "export-graph", "v1-old-graph", env=env)
    assert again.returncode == 4
    assert "has its graph already" in again.stderr


def test_a_bad_setting_stops_with_the_variable_named(tmp_path: Path) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(100, seed=0))
    store = tmp_path / "store"
    bad = run("training", "fit", "--data", str(data), "--store", str(store),
              env={"TRAINING_MODEL__WINDOW": "0"})  # fmt: skip
    assert bad.returncode == 2
    assert "TRAINING_MODEL__WINDOW (--window): Input should be greater than or equal to 1" in (
        bad.stderr
    )
    flag = run("training", "fit", "--data", str(data), "--target-fpr", "2", "--store", str(store))
    assert flag.returncode == 2
    assert "TRAINING_CALIBRATION__TARGET_FPR (--target-fpr)" in flag.stderr
    assert not store.exists()


def test_unusable_data_exits_3_and_publishes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "labels.csv"
    data.write_text("a,b\n1,2\n3,x\n")
    store = tmp_path / "store"
    bad = run("training", "fit", "--data", str(data), "--store", str(store))
    assert bad.returncode == 3
    assert "no model published" in bad.stderr
    assert "labels.csv:3: column 'b' holds 'x', not a number" in bad.stderr
    assert ModelStore(store).current_version() is None


def test_worker_check_model_refuses_an_empty_store(tmp_path: Path) -> None:
    check = run("worker", "check-model", env={"WORKER_STORE__PATH": str(tmp_path)})
    assert check.returncode == 4
    assert "no current model; train one with `anomaly-train fit`" in check.stderr


def test_worker_check_model_refuses_a_store_it_cannot_read(tmp_path: Path) -> None:
    """A store whose listing fails (here a symlink loop where its models/ directory lies: a
    real ELOOP; ESTALE or EIO from NFS alike) is refused with exit 4 and the error, not a
    traceback."""
    (tmp_path / "models").symlink_to(tmp_path / "models")
    check = run("worker", "check-model", env={"WORKER_STORE__PATH": str(tmp_path)})
    assert check.returncode == 4, check.stderr
    assert "models not listed" in check.stderr
    assert "cannot be read" in check.stderr
    assert "Traceback" not in check.stderr
