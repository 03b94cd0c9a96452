"""The SKAB benchmark: labels never reach training or the worker; a one-file smoke run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from anomaly.rules import Rules
from benchmarks.skab import (
    find_files,
    read_experiment,
    read_labels,
    records,
    segments,
    train_model,
)
from devtools import simulator
from tests.support.models import REPO

ANOMALY = (520, 640)


def write_skab(path: Path, rows: int = 720, seed: int = 1) -> None:
    """A file in SKAB's format: `;`, `datetime`, 8 sensors, then the two label columns."""
    values = simulator.clean_rows(rows, seed=seed)
    first, last = ANOMALY
    values[first:last, 2] += 8 * simulator.sensor_std(values)[2]  # a sustained shift
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f, delimiter=";")
        out.writerow(["datetime", *simulator.FEATURES, "anomaly", "changepoint"])
        for i, row in enumerate(values):
            ts = f"2020-03-09 {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
            label = 1.0 if first <= i < last else 0.0
            out.writerow([ts, *row.tolist(), label, float(i == first)])


def test_labels_stay_out_of_the_features_the_training_file_and_the_records(
    tmp_path: Path,
) -> None:
    write_skab(tmp_path / "data" / "valve9" / "1.csv")
    (tmp_path / "data" / "free.csv").write_text("datetime;a\n2020-03-09 10:00:00;1.0\n")
    files, clean = find_files(tmp_path / "data", ";")
    assert [p.name for p in files] == ["1.csv"]
    assert [p.name for p in clean] == ["free.csv"]  # no `anomaly` column: anomaly-free
    exp = read_experiment(files[0], tmp_path / "data", ";")
    pieces = segments(exp, 300)
    assert [(p.name, len(p.ts)) for p in pieces] == [("valve9/1#0", 300), ("valve9/1#1", 300)]
    assert pieces[1].ts[0] == exp.ts[300]
    assert exp.name == "valve9/1"
    assert exp.asset_id == "valve9-1"
    assert exp.features == simulator.FEATURES
    assert exp.values.shape == (720, len(simulator.FEATURES))
    record = json.loads(records(exp, 719)[0][1])
    assert record == {
        "asset_id": "valve9-1", "ts": "2020-03-09T10:11:59Z",
        "values": dict(zip(simulator.FEATURES, exp.values[719].tolist(), strict=True)),
    }  # fmt: skip
    labels = read_labels(files[0], ";")
    assert labels.sum() == ANOMALY[1] - ANOMALY[0]

    work = tmp_path / "work"
    work.mkdir()
    artifact, _ = train_model(exp, 400, work)
    header = (work / "train.csv").read_text().splitlines()[0]
    assert header == ",".join(["datetime", *simulator.FEATURES])
    assert len((work / "train.csv").read_text().splitlines()) == 401
    assert artifact.manifest.features == simulator.FEATURES
    assert artifact.manifest.training.rows <= 400


def test_the_benchmark_streams_one_file_and_writes_its_results(tmp_path: Path) -> None:
    write_skab(tmp_path / "data" / "valve9" / "1.csv")
    free = tmp_path / "data" / "anomaly-free" / "free.csv"
    write_skab(free, rows=550, seed=3)
    lines = free.read_text().splitlines()  # the same sensors, no label columns, no anomaly
    free.write_text("\n".join(";".join(line.split(";")[:-2]) for line in lines[:501]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.skab", str(tmp_path / "data"), "--clean-rows", "100",
         "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "skab.json").read_text())
    assert results["mode"] == "stream"
    assert results["stream_equals_replay"] is True
    (row,) = results["files"]
    assert row["file"] == "valve9/1"
    assert row["rows"] == 320
    assert row["anomalous"] == ANOMALY[1] - ANOMALY[0]
    assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == 320
    assert row["tp"] > 0  # an 8-sigma shift lasting 120 rows is found
    assert results["pooled"]["f1"] == row["f1"]
    (segment,) = results["anomaly_free"]["segments"]
    assert segment["file"] == "anomaly-free/free#0"
    assert segment["rows"] == 100
    assert segment["anomalous"] == segment["tp"] == segment["fn"] == 0
    assert results["anomaly_free"]["pooled"]["fp"] == segment["fp"]
    assert set(results["settings"]) == {"training", "alerts"}
    # the rules the models were trained, cleaned, gated and served with
    assert results["settings"]["training"]["rules"] == Rules().model_dump(mode="json")
    summary = results["summary"]
    assert summary["worst_file_f1"] == {"file": "valve9/1", "f1": row["f1"]}
    assert summary["highest_threshold"]["times_median"] == 1.0  # one file: its own median
    assert summary["normal_day_flagged"] == results["anomaly_free"]["pooled"]["far"]
    like = summary["like_for_like_conv_ae_edges"]
    assert like["tp"] + like["fp"] + like["fn"] + like["tn"] == 320
    assert like["fp"] + like["tp"] <= row["fp"] + row["tp"]  # blind edges only remove flags
    assert set(summary["targets"]["met"]) == {
        "f1", "far", "mar", "normal_day", "worst_mar", "threshold_ratio"
    }  # fmt: skip
    # events as an operator meets them, and PCA T^2|Q on the same rows
    assert row["episodes_on_anomaly"] >= 1
    assert row["episodes_on_anomaly"] + row["false_pages"] <= row["episodes"]
    assert row["delay_rows"] is not None
    assert row["detection"] == round(1 - row["mar"], 4)
    assert row["before_fault"]["rows"] == ANOMALY[0] - 400
    pca = row["pca"]
    assert pca["components"] == len(simulator.FEATURES) - 1  # Q needs a residual
    assert pca["tp"] + pca["fp"] + pca["fn"] + pca["tn"] == 320
    assert pca["detection"] > 0.5  # an 8-sigma shift is far outside its limits too
    assert results["anomaly_free"]["events"]["episodes"] == segment["false_pages"]
    assert summary["events"]["episodes_on_anomaly"] == row["episodes_on_anomaly"]
    assert "| **pooled** |" in done.stdout
    assert "- like for like with SKAB's Conv-AE" in done.stdout
    assert "Side by side with PCA T^2|Q (7 components" in done.stdout
    assert (tmp_path / "out" / "skab.md").read_text().startswith("SKAB (1 files")
    assert np.isfinite(row["threshold"])


def test_the_tep_targets_read_the_faults_left_after_the_undetectable_ones(tmp_path: Path) -> None:
    write_skab(tmp_path / "data" / "run-1.csv")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.skab", str(tmp_path / "data"), "--replay", "offline",
         "--targets", "tep", "--undetectable", "run-9", "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--undetectable: no labelled file run-9 here (ignored)" in done.stderr
    targets = json.loads((tmp_path / "out" / "skab.json").read_text())["summary"]["targets"]
    assert targets["set"] == "tep"
    assert targets["figures"]["detectable"] == ["run-1"]
    assert targets["figures"]["undetectable_absent"] == ["run-9"]
    assert targets["met"]["normal_episodes"] is None  # no file without an anomaly
    assert "- TEP targets met: detection_vs_pca " in done.stdout
