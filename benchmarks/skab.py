"""Detection quality on SKAB-format data, measured through the streaming pipeline.

    python -m benchmarks.skab DATA_DIR [--train-rows 400] [--clean-rows 700] [--only GLOB]
                                       [--replay stream|offline] [--out DIR] [--name skab]
                                       [--pca-components 9] [--targets skab|tep]
                                       [--undetectable FILE,...]

For every CSV under DATA_DIR that has an `anomaly` column (SKAB's format: `;`-separated, a
`datetime` column, sensor columns, then the `anomaly` and `changepoint` labels), one after
the other, on one embedded broker:

1. the training job (`training.job.train`, the product's defaults; TRAINING_* variables
   apply) fits a model on the file's first --train-rows rows, written without the label
   columns to a CSV of their own, into a model store of the file's own;
2. the rows after those are produced to an input topic of the file's own as input records
   of one asset, preceded by the last training rows as warm-up: as many as a worker in
   service holds of an asset (window - 1, or the onset rule's history - 1 when longer), so
   that the first row after training is judged with a full window and a full history;
   warm-up rows are not counted (their decisions are on training rows);
3. a real worker (`worker.runner.Worker`, its Kafka consumer group, the product's alert
   rules; WORKER_* variables apply) scores them and publishes alert episodes, and is stopped
   once it has committed every record;
4. the alert events are read back from the alerts topic and turned into per-row decisions
   (`benchmarks.quality`: a row is flagged when it lies inside an episode);
5. only then are the file's labels read, to count the decisions against them
   (`benchmarks.scorecard`): per row (F1, FAR, MAR, the detection rate, the rows flagged
   before the anomaly) and per episode, as an operator meets them
   (`benchmarks.quality.Encounter`: the episodes on the anomaly, the false pages, the delay
   from the anomaly's first row to the first episode on it).

Beside the product, PCA T^2|Q (`benchmarks.pca`, the Tennessee Eastman anchor) is fitted on
the same training rows and decides on the same scored rows, row by row; its figures stand
beside the product's. `--targets tep` checks the Tennessee Eastman targets instead of SKAB's
(the faults named by `--undetectable` left out of those that must be detected).

CSV files with a `datetime` column but no `anomaly` column (SKAB's anomaly-free recording)
are cut into segments of --train-rows + --clean-rows rows, each run the same way: every row
there is normal, so the share flagged is the false-alarm rate of a normal day.

The same model also replays the rows offline (`anomaly.scoring`, `anomaly.replay.changes`,
`AlertEvent`: the worker's code without Kafka); the results say whether the streamed
decisions equal the replayed ones.
`--replay offline` skips the broker and reports the replay, for exploring settings quickly;
figures quoted in the docs come from the streaming run. Writes `<out>/<name>.json` and
`<out>/<name>.md` and prints the markdown: the figures and tables of `benchmarks.scorecard`
(per file, pooled, against the targets, beside PCA), which this module only feeds and writes.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import logging
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from anomaly.events import AlertEvent, EventContext
from anomaly.model import Artifact, ModelStore
from anomaly.records import parse_ts
from anomaly.replay import changes
from anomaly.rules import SourceRef
from anomaly.scoring import score_series
from anomaly.settings import KafkaSettings, TopicSettings
from benchmarks.common import REPO, machine, produce, wait_until
from benchmarks.pca import COMPONENTS, QUANTILE, Pca
from benchmarks.quality import BoolArray, Confusion, episode_rows, episodes_from_events, row_flags
from benchmarks.scorecard import (
    FileResult,
    event_summary,
    markdown,
    markdown_normal,
    markdown_pca,
    markdown_summary,
    normal_summary,
    side_by_side,
    summary,
    tep_targets,
)
from devtools import local_broker
from devtools.topics import committed_total, create_topics
from training.job import train
from training.kafka_range import plan_range, read_planned
from training.settings import TrainingSettings
from worker.runner import Worker
from worker.settings import AlertSettings, WorkerSettings

TIMESTAMP = "datetime"
LABEL = "anomaly"
LABELS = ("anomaly", "changepoint")
TRAIN_ROWS = 400
# Rows scored per segment of an anomaly-free recording: about what an experiment scores.
CLEAN_ROWS = 700

log = logging.getLogger("benchmarks.skab")


@dataclass(frozen=True)
class Experiment:
    """One file's timestamps and sensor values; its label columns are never read here."""

    name: str
    asset_id: str
    path: Path
    ts: tuple[datetime, ...]
    features: tuple[str, ...]
    values: npt.NDArray[np.float64]

    @property
    def epoch(self) -> npt.NDArray[np.float64]:
        return np.array([t.timestamp() for t in self.ts])


def find_files(
    data_dir: Path, delimiter: str, only: str | None = None
) -> tuple[list[Path], list[Path]]:
    """CSV files under data_dir with a `datetime` column, by relative path: those with an
    `anomaly` column (the experiments) and those without (anomaly-free recordings)."""
    labelled: list[Path] = []
    clean: list[Path] = []
    for path in sorted(data_dir.rglob("*.csv"), key=lambda p: p.relative_to(data_dir).as_posix()):
        with path.open(newline="", encoding="utf-8") as f:
            header = [name.strip() for name in next(csv.reader(f, delimiter=delimiter), [])]
        if TIMESTAMP not in header:
            continue
        if only and not fnmatch.fnmatch(_name(path, data_dir), only):
            continue
        (labelled if LABEL in header else clean).append(path)
    return labelled, clean


def segments(exp: Experiment, length: int) -> list[Experiment]:
    """Consecutive pieces of `length` rows of an anomaly-free recording, each one experiment."""
    return [
        Experiment(
            name=f"{exp.name}#{k}", asset_id=f"{exp.asset_id}.{k}", path=exp.path,
            ts=exp.ts[start : start + length], features=exp.features,
            values=exp.values[start : start + length],
        )
        for k, start in enumerate(range(0, len(exp.ts) - length + 1, length))
    ]  # fmt: skip


def read_experiment(path: Path, data_dir: Path, delimiter: str) -> Experiment:
    """Timestamps and feature values (every column but `datetime` and the labels)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [name.strip() for name in next(reader)]
        ts_col = header.index(TIMESTAMP)
        columns = [i for i, name in enumerate(header) if i != ts_col and name not in LABELS]
        ts, values = [], []
        for row in reader:
            if row:
                ts.append(parse_ts(row[ts_col].strip().replace(" ", "T")))
                values.append([float(row[i]) for i in columns])
    name = _name(path, data_dir)
    return Experiment(
        name=name,
        asset_id=re.sub(r"[^A-Za-z0-9._-]", "-", name.replace("/", "-")),
        path=path,
        ts=tuple(ts),
        features=tuple(header[i] for i in columns),
        values=np.array(values, dtype=np.float64),
    )


def read_labels(path: Path, delimiter: str) -> BoolArray:
    """The `anomaly` column: read only to score decisions already made."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        column = [name.strip() for name in next(reader)].index(LABEL)
        return np.array([float(row[column]) > 0.5 for row in reader if row], dtype=bool)


def train_model(exp: Experiment, rows: int, workdir: Path) -> tuple[Artifact, float]:
    """Run the training job on the first `rows` rows (no labels); the model it publishes."""
    data = workdir / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([TIMESTAMP, *exp.features])
        for ts, values in zip(exp.ts[:rows], exp.values[:rows], strict=True):
            out.writerow([_iso(ts), *map(repr, values.tolist())])
    started = time.perf_counter()
    settings = TrainingSettings(
        data={"path": data, "timestamp_column": TIMESTAMP},
        store={"path": workdir / "model-store"},
        log_level="WARNING",
    )  # fmt: skip
    outcome = train(settings)
    store = ModelStore(workdir / "model-store")
    if not outcome.decision.promoted:  # a first model has nothing to lose to; serve it anyway
        log.warning("%s: the gate rejected the model (%s); serving it anyway", exp.name,
                    "; ".join(outcome.decision.reasons))  # fmt: skip
        store.set_current(outcome.version)
    return store.load_current(), time.perf_counter() - started


def records(exp: Experiment, first: int) -> list[tuple[bytes, bytes]]:
    """Input records (key = asset id) of rows first.. in order."""
    key = exp.asset_id.encode()
    return [
        (key, json.dumps({
            "asset_id": exp.asset_id, "ts": _iso(exp.ts[i]) + "Z",
            "values": dict(zip(exp.features, exp.values[i].tolist(), strict=True)),
        }).encode())
        for i in range(first, len(exp.ts))
    ]  # fmt: skip


def stream(
    exp: Experiment, first: int, bootstrap: str, store: Path, timeout_s: float = 300
) -> list[dict[str, Any]]:
    """Produce rows first.., let a real worker score them, read its alert events back."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    base = f"skab.{exp.asset_id}"
    topics = TopicSettings(
        input=base, alerts=f"{base}.alerts", dead_letters=f"{base}.dlq", group=f"{base}.worker"
    )
    create_topics(kafka, {topics.input: 1, topics.alerts: 1, topics.dead_letters: 1})
    sent = produce(kafka, topics.input, records(exp, first))
    settings = WorkerSettings(
        kafka=kafka.model_dump(), topics=topics.model_dump(),
        batch={"max_wait_ms": 50}, store={"path": store, "reload_interval_s": 3600},
        http={"port": 0}, log_level="WARNING",
    )  # fmt: skip
    worker = Worker(settings, serve_http=False)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: not thread.is_alive()
            or committed_total(kafka, topics.group, topics.input) >= sent,
            timeout_s, f"the worker to commit {sent} records of {exp.name}",
        )  # fmt: skip
    finally:
        worker.stop()
        thread.join(60)
    if codes != [0]:
        raise RuntimeError(f"{exp.name}: the worker exited with {codes or 'no code'}")
    planned = plan_range(kafka, topics.alerts, 0, None, 10**9)
    return [json.loads(record.value or b"{}") for record in read_planned(kafka, planned)]


def replay(
    artifact: Artifact, exp: Experiment, first: int, alerts: AlertSettings
) -> list[dict[str, Any]]:
    """The events the worker's code publishes for rows first.., computed without Kafka: the
    scoring step and the rules' state machine (`anomaly.scoring`, `anomaly.replay.changes`)
    with the model's rules and the worker's overrides (WORKER_ALERTS__*), as the worker."""
    manifest = artifact.manifest
    window = manifest.window
    rules = alerts.serving(manifest.rules)
    values = exp.values[first:]
    scored = score_series(
        artifact.detector, artifact.threshold, values, window, rules, manifest.instruments
    )
    context = EventContext(
        manifest.model_version, manifest.threshold.value, manifest.features,
        alerts.top_features, datetime.now(UTC),
    )  # fmt: skip
    times = exp.ts[first + window - 1 :]
    events = []
    for j, kind, episode in changes(
        scored.score, scored.above, rules, times, scored.onset, scored.residual, scored.drift
    ):
        ref = SourceRef("replay", 0, window - 1 + j)
        score = float(scored.score[j])
        event = AlertEvent(kind, episode, exp.asset_id, times[j], ref, score, scored.shares[j])
        events.append(json.loads(event.json(context)))
    return events


def run_file(
    exp: Experiment,
    train_rows: int,
    bootstrap: str | None,
    workdir: Path,
    pca_components: int = COMPONENTS,
) -> FileResult:
    """Train, stream (or only replay), and turn the episodes into decisions on the scored rows;
    PCA T^2|Q decides on the same rows from the same training rows."""
    alerts = WorkerSettings().alerts
    if len(exp.ts) <= train_rows:
        raise ValueError(f"{exp.name} has {len(exp.ts)} rows: nothing after {train_rows} to score")
    artifact, train_s = train_model(exp, train_rows, workdir)
    # at most one fewer than the variables, so that Q has a residual (SKAB has 8 sensors)
    components = min(pca_components, len(exp.features) - 1)
    pca_flags = Pca.fit(exp.values[:train_rows], components).flags(exp.values[train_rows:])
    window = artifact.manifest.window
    # warm-up: the records a worker in service holds of the asset (its window, or the onset
    # rule's history when longer) when the scored part begins
    held = max(window, alerts.serving(artifact.manifest.rules).history)
    first = max(0, train_rows - (held - 1))
    scored_ts = exp.epoch[train_rows:]
    replayed_events = replay(artifact, exp, first, alerts)
    replayed = row_flags(episodes_from_events(replayed_events), exp.asset_id, scored_ts)
    started = time.perf_counter()
    agrees: bool | None = None
    if bootstrap is None:
        flags, events = replayed, replayed_events
    else:
        events = stream(exp, first, bootstrap, workdir / "model-store")
        flags = row_flags(episodes_from_events(events), exp.asset_id, scored_ts)
        agrees = bool(np.array_equal(flags, replayed))
    episodes = episodes_from_events(events)
    top = {
        str(e["episode_id"]): str(e["top_features"][0]["feature"]) if e["top_features"] else ""
        for e in events
        if e["type"] == "open"
    }
    spans = [
        (first_row, last_row, top.get(episode_id, ""))
        for episode_id, first_row, last_row in episode_rows(episodes, exp.asset_id, scored_ts)
    ]
    return FileResult(
        name=exp.name, rows=len(scored_ts), window=window,
        threshold=artifact.threshold.value, method=artifact.threshold.method,
        version=artifact.version, episodes=len(episodes), flags=flags, agrees=agrees,
        train_s=train_s, stream_s=time.perf_counter() - started, spans=spans, ts=scored_ts,
        pca_flags=pca_flags, pca_components=components,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.skab", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add = parser.add_argument
    add("data", type=Path, help="a directory of SKAB-format CSV files")
    add(
        "--train-rows",
        type=int,
        default=TRAIN_ROWS,
        help="rows per file the model is trained on (default 400)",
    )
    add(
        "--clean-rows",
        type=int,
        default=CLEAN_ROWS,
        help="rows scored per segment of an anomaly-free file (default 700; 0: skip them)",
    )
    add("--delimiter", default=";", help="CSV delimiter (default ';')")
    add("--only", help="only files whose relative path matches, e.g. 'valve1/*'")
    add(
        "--replay",
        choices=["stream", "offline"],
        default="stream",
        help="stream through broker and worker (default) or replay offline",
    )
    add("--out", type=Path, default=REPO / "benchmarks" / "results")
    add("--name", default="skab", help="results file name (default skab)")
    add(
        "--pca-components",
        type=int,
        default=COMPONENTS,
        help=f"principal components PCA T^2|Q keeps (default {COMPONENTS}; at most one fewer "
        "than a file's sensors)",
    )
    add(
        "--targets",
        choices=["skab", "tep"],
        default="skab",
        help="which issue targets the summary checks (default skab)",
    )
    add(
        "--undetectable",
        default="",
        help="comma-separated files (as in the table, e.g. tep-03,tep-09) whose anomaly no "
        "published method separates from normal: left out of the tep targets' faults (names "
        "of no file here are noted and ignored)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its event-loop timing notes

    labelled, clean = find_files(args.data, args.delimiter, args.only)
    if not labelled:
        print(f"no SKAB-format CSV files (with '{TIMESTAMP}' and '{LABEL}' columns) under "
              f"{args.data}", file=sys.stderr)  # fmt: skip
        return 2
    undetectable = {name.strip() for name in args.undetectable.split(",") if name.strip()}
    unknown = undetectable - {_name(path, args.data) for path in labelled}
    if unknown:  # the same command runs on both halves of a dataset: each has its own faults
        print(f"--undetectable: no labelled file {', '.join(sorted(unknown))} here (ignored)",
              file=sys.stderr)  # fmt: skip
    if args.pca_components < 1:
        print(f"--pca-components must be at least 1, not {args.pca_components}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    experiments = [read_experiment(path, args.data, args.delimiter) for path in labelled]
    free: list[Experiment] = []
    if args.clean_rows:
        for path in clean:
            whole = read_experiment(path, args.data, args.delimiter)
            free += segments(whole, args.train_rows + args.clean_rows)
    results: list[FileResult] = []
    with tempfile.TemporaryDirectory(prefix="skab-") as tmp:
        broker = (
            local_broker.start(log=Path(tmp) / "broker.log") if args.replay == "stream" else None
        )
        try:
            for exp in [*experiments, *free]:
                workdir = Path(tmp) / exp.asset_id
                workdir.mkdir()
                bootstrap = broker.bootstrap if broker is not None else None
                result = run_file(exp, args.train_rows, bootstrap, workdir, args.pca_components)
                results.append(result)
                print(f"skab: {exp.name}: {len(result.flags)} rows scored, {result.episodes} "
                      f"episodes ({result.train_s:.1f} s training, {result.stream_s:.1f} s "
                      f"{args.replay})", flush=True)  # fmt: skip
        finally:
            if broker is not None:
                broker.stop()
    # The decisions are all made: only now are the labels read.
    pooled, pooled_free = Confusion(), Confusion()
    truths = [read_labels(path, args.delimiter)[args.train_rows :] for path in labelled]
    for result, truth in zip(results, truths, strict=False):
        result.score(truth)
        pooled = pooled + result.confusion
    for result in results[len(labelled) :]:  # anomaly-free: every row is normal
        result.score(np.zeros(result.rows, dtype=bool))
        pooled_free = pooled_free + result.confusion
    elapsed = time.perf_counter() - started
    table = markdown(
        results[: len(labelled)], pooled,
        f"{args.name.upper()} ({len(labelled)} files under {args.data}, {args.replay}; "
        f"trained on the first {args.train_rows} rows of each; {elapsed:.0f} s)",
    )  # fmt: skip
    if free:
        table += "\n\n" + markdown_normal(
            results[len(labelled) :], pooled_free,
            f"Anomaly-free recordings in segments of {args.train_rows} training rows and "
            f"{args.clean_rows} scored rows (every scored row is normal: FAR is the share flagged)",
        )  # fmt: skip
    rows = [r.row() for r in results[: len(labelled)]]
    free_rows = [r.row() for r in results[len(labelled) :]]
    figures = summary(results[: len(labelled)], truths, pooled, pooled_free if free else None)
    figures["normal_day_events"] = normal_summary(free_rows)
    figures["events"] = event_summary(rows)
    figures["side_by_side"] = {
        "pca_components": sorted({r.pca_components for r in results}),
        "pca_quantile": QUANTILE, **side_by_side(rows),
    }  # fmt: skip
    if args.targets == "tep":
        figures["targets"] = tep_targets(rows, undetectable)
    table += "\n\n" + markdown_pca(rows, figures["side_by_side"])
    table += "\n\n" + markdown_summary(figures)
    training = TrainingSettings(data={"path": "train.csv", "timestamp_column": TIMESTAMP})
    report = {
        "benchmark": "skab",
        "data": str(args.data),
        "mode": args.replay,
        "train_rows": args.train_rows,
        "pooled": pooled.figures(),
        "summary": figures,
        "files": rows,
        "anomaly_free": {
            "scored_rows_per_segment": args.clean_rows,
            "pooled": pooled_free.figures(),
            "events": figures["normal_day_events"],
            "segments": free_rows,
        },
        "stream_equals_replay": all(r.agrees for r in results) if args.replay == "stream" else None,
        "settings": {
            "training": training.model_dump(
                mode="json", include={"model", "calibration", "clean", "gate", "data", "rules"}
            ),
            "alerts": WorkerSettings().alerts.model_dump(mode="json"),
        },
        "seconds": round(elapsed, 1),
        "machine": machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    agreement = report["stream_equals_replay"]
    if agreement is not None:
        print(f"\nstreamed decisions equal the offline replay's: {'yes' if agreement else 'NO'}")
    print(f"written: {args.out / (args.name + '.json')}, {args.out / (args.name + '.md')}")
    return 0


def _name(path: Path, data_dir: Path) -> str:
    return path.relative_to(data_dir).with_suffix("").as_posix()


def _iso(ts: datetime) -> str:
    """Naive ISO 8601 in UTC (the training CSV's and the records' form)."""
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat()


if __name__ == "__main__":
    sys.exit(main())
