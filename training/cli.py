"""`anomaly-train` (also `python -m training`): train a model and manage the model store.

    anomaly-train fit --data FILE [flags]       train, publish, make current
    anomaly-train versions                      list the store's versions
    anomaly-train rollback VERSION              point the store at an earlier version
    anomaly-train prune --keep N                delete old versions (never the current)
    anomaly-train export-graph [VERSION]        publish a version trained before 0.5 again
                                                with the graph the worker runs
    anomaly-train report EPISODE_ID [--out DIR] an episode's records against the model's
                                                expectation: a PNG and a JSON
    anomaly-train verdict EPISODE_ID false_alarm|confirmed [--note TEXT] [--by NAME]
                                                an engineer's verdict, for the next training
    anomaly-train window set ID --assets PATTERN --start T --end T [--every daily|weekly]
                                                a maintenance window: alerts held back,
                                                records kept out of training
    anomaly-train window list | window remove ID
    anomaly-train shelve ASSET --for 8h --by NAME --reason TEXT | unshelve ASSET
                                                hold one asset's alarm back for a while

Every flag has an environment variable (shown in --help); a flag wins over its variable.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from anomaly.calendar import (
    MaintenanceWindow,
    Shelf,
    describe,
    parse_duration,
    shelf_message,
    tombstone,
    window_message,
)
from anomaly.model import ArtifactError, CalibrationError, ModelStore, model_store
from anomaly.settings import shown_input
from training.settings import TrainingSettings, env_name

T = TypeVar("T")

log = logging.getLogger("training")


class ExitCode(IntEnum):
    """Process exit codes; each names the class of failure."""

    OK = 0
    BAD_SETTINGS = 2
    BAD_DATA = 3
    STORE_ERROR = 4
    KAFKA_ERROR = 5


# Flags that set a settings field: (flag, settings path, help, argparse extras).
_FIELD_FLAGS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("--source", "data.source", "where the training rows come from (default file)",
     {"choices": ["file", "kafka"]}),
    ("--data", "data.path", "CSV or JSON Lines file to train on", {}),
    ("--format", "data.format", "file format (default: from the suffix)",
     {"choices": ["auto", "csv", "jsonl"]}),
    ("--delimiter", "data.delimiter", "CSV delimiter (default ',')", {}),
    ("--timestamp-column", "data.timestamp_column",
     "CSV column with ISO 8601 or epoch-second timestamps (default: row order)", {}),
    ("--asset-column", "data.asset_column", "CSV column naming the asset (default: one asset)", {}),
    ("--features", "data.features",
     "comma-separated feature columns in order (default: all the others)", {}),
    ("--exclude", "data.exclude", "comma-separated columns that are not features", {}),
    ("--since", "data.since", "kafka: how far back to read, e.g. 24h, 90m, 7d (default 24h)", {}),
    ("--start", "data.start", "kafka: range start, ISO 8601 (default: end - since)", {}),
    ("--end", "data.end", "kafka: range end, ISO 8601 (default: now)", {}),
    ("--max-rows", "data.max_rows", "most records read; the latest are kept (default 1e6)", {}),
    ("--holdout-fraction", "data.holdout_fraction",
     "latest fraction of rows held out for early stopping and calibration (default 0.2)", {}),
    ("--kind", "model.kind", "autoencoder kind: dense or conv (default dense)",
     {"choices": ["dense", "conv"]}),
    ("--kernel", "model.kernel", "conv: kernel length over time (default 7)", {}),
    ("--window", "model.window", "records per window; 1 scores single records (default 10)", {}),
    ("--hidden", "model.hidden", "comma-separated hidden layer sizes (default 32,16)", {}),
    ("--latent", "model.latent", "bottleneck size (default: inputs/4, between 2 and 32)", {}),
    ("--epochs", "model.epochs", "maximum epochs (default 200)", {}),
    ("--batch-size", "model.batch_size", "windows per step (default 256)", {}),
    ("--learning-rate", "model.learning_rate", "Adam learning rate (default 1e-3)", {}),
    ("--patience", "model.patience",
     "stop after this many epochs without a better held-out loss (default 15)", {}),
    ("--seed", "model.seed", "random seed (default 0)", {}),
    ("--target-fpr", "calibration.target_fpr",
     "false-positive rate the threshold targets on clean data (default 0.01)", {}),
    ("--calibration", "calibration.method", "threshold method (default auto)",
     {"choices": ["auto", "quantile", "pot", "exp"]}),
    ("--margin", "calibration.margin",
     "multiply the calibrated threshold by this, at least 1 (default 1)", {}),
    ("--clean", "clean.enabled",
     "drop records the service model flags and recorded episodes (default true)",
     {"choices": ["true", "false"]}),
    ("--stopped-when", "states.stopped_when",
     "when an asset is not running, e.g. 'speed < 100' (its records are neither scored nor "
     "learnt; default: always running)", {}),
    ("--grace-s", "states.grace_s",
     "seconds after a restart not scored (default: measured from the data's restarts)", {}),
    ("--validation", "gate.validation_path",
     "labelled CSV for the gate's F1 check (label column: TRAINING_GATE__VALIDATION_LABEL)", {}),
    ("--keep", "store.keep", "versions kept in the store after publishing (default 10)", {}),
    ("--pushgateway", "pushgateway.url", "Pushgateway address for the job's metrics", {}),
]  # fmt: skip
_STORE_FLAG: tuple[str, str, str, dict[str, Any]] = (
    "--store",
    "store.path",
    "model store: a directory or s3://bucket/prefix (default ./model-store)",
    {},
)
_MODEL_FLAG: tuple[str, str, str, dict[str, Any]] = (
    "--model",
    "store.model",
    "the named model to train or manage (default: default, the store's own)",
    {},
)
# What only a fit reads of the data settings (a replay takes the model's features).
_FITTING = ("data.features", "data.holdout_fraction")
_FLAG_BY_PATH = {path: flag for flag, path, _, _ in [*_FIELD_FLAGS, _STORE_FLAG, _MODEL_FLAG]}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = TrainingSettings(**_overrides(args))
    except ValidationError as exc:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        for line in _describe(exc):
            log.error("bad setting: %s", line)
        return ExitCode.BAD_SETTINGS
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python narrates each connection at INFO (about 97 lines per verdict): its
    # warnings and errors only, unless TRAINING_LOG_LEVEL=DEBUG asks for everything
    kafka_level = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    logging.getLogger("kafka").setLevel(max(kafka_level, logging.getLogger().level))
    command: str = args.command
    try:
        if command == "fit":
            return _fit(settings)
        if command == "report":
            return _report(settings, args.episode_id, args.out, args.margin_s)
        if command == "verdict":
            return _verdict(settings, args.episode_id, args.verdict, args.note, args.by)
        if command == "budget":
            return _budget(settings, args.version)
        if command in ("window", "shelve", "unshelve"):
            done = _episode_command(
                "the calendar was not changed", lambda: _calendar(settings, args)
            )
            return done if isinstance(done, ExitCode) else ExitCode.OK
        store = model_store(settings.store.path, settings.store.model)
        if command == "versions":
            return _versions(store)
        if command == "rollback":
            artifact = store.set_current(args.version)
            log.info("current model of %s is now %s", store.location, artifact.version)
            return ExitCode.OK
        if command == "export-graph":
            return _export_graph(store, args.version)
        deleted = store.prune(args.keep, settings.store.protect_s)
        log.info("pruned %d versions from %s: %s", len(deleted), store.location, deleted or "none")
        return ExitCode.OK
    except ArtifactError as exc:
        log.error("%s", exc)
        return ExitCode.STORE_ERROR


def _fit(settings: TrainingSettings) -> int:
    from anomaly.kafka import CodecUnavailableError, UnreadableBatchError, check_codecs
    from training.data import DataError
    from training.job import train
    from training.kafka_range import KafkaUnavailableError
    from training.progress import EpochProgress

    log.info("training with %s", settings.model_dump_json())
    try:
        if settings.data.source == "kafka":
            check_codecs()  # before the first batch, not at the first compressed one
        outcome = train(settings, EpochProgress(settings.model.epochs))
    except (DataError, CalibrationError) as exc:
        log.error("no model published: %s", exc)
        return ExitCode.BAD_DATA
    except (KafkaUnavailableError, CodecUnavailableError, UnreadableBatchError) as exc:
        log.error("no model published: %s", exc)
        return ExitCode.KAFKA_ERROR
    threshold = outcome.manifest.threshold
    verdict = (
        "promoted and made current"
        if outcome.decision.promoted
        else "REJECTED by the gate (" + "; ".join(outcome.decision.reasons) + ")"
    )
    print(
        f"model {outcome.version}: threshold {threshold.value:.6g} ({threshold.method}, "
        f"target FPR {threshold.target_fpr:g}); {verdict}; artifact and report in "
        f"{outcome.location}"
    )
    return ExitCode.OK


def _budget(settings: TrainingSettings, version: str | None) -> int:
    from training.budget import per_asset_week, replay
    from training.data import DataError
    from training.kafka_range import KafkaUnavailableError

    try:
        found = replay(settings, version, datetime.now(UTC))
    except DataError as exc:
        log.error("no budget: %s", exc)
        return ExitCode.BAD_DATA
    except KafkaUnavailableError as exc:
        log.error("no budget: %s", exc)
        return ExitCode.KAFKA_ERROR
    print(f"{'asset':<24} {'episodes':>8} {'hours':>9} {'per week':>9}")
    for b in sorted(found, key=lambda b: -b.per_week):
        print(f"{b.asset_id:<24} {b.episodes:>8} {b.span_s / 3600:>9.1f} {b.per_week:>9.2f}")
    total = sum(b.episodes for b in found)
    print(f"{len(found)} assets, {total} episodes: {per_asset_week(found):.2f} per asset per "
          f"week, {per_asset_week(found) * len(found):.1f} a week for the fleet")  # fmt: skip
    return ExitCode.OK


def _export_graph(store: ModelStore, version: str | None) -> int:
    from training.graph import export_version

    published = export_version(store, version)
    made = "current" if store.current_version() == published else "not current"
    print(f"version {published} published with its graph ({made}) in {store.location}")
    return ExitCode.OK


def _report(settings: TrainingSettings, episode_id: str, out: Path, margin_s: float) -> int:
    from training.episode import report_episode

    done = _episode_command("no report", lambda: report_episode(settings, episode_id, out,
                                                                margin_s))  # fmt: skip
    if isinstance(done, ExitCode):
        return done
    print(f"episode {episode_id} of {done.report['asset_id']}: {done.png_path} {done.json_path}")
    return ExitCode.OK


def _verdict(
    settings: TrainingSettings, episode_id: str, verdict: str, note: str | None, by: str | None
) -> int:
    from training.judgement import record_verdict

    given = _episode_command(
        "no verdict recorded", lambda: record_verdict(settings, episode_id, verdict, note, by)
    )
    if isinstance(given, ExitCode):
        return given
    print(f"episode {episode_id} of {given['asset_id']}: {verdict} "
          f"(on {settings.topics.feedback}; the next training run takes it)")  # fmt: skip
    return ExitCode.OK


def _calendar(settings: TrainingSettings, args: argparse.Namespace) -> None:
    """`window set|list|remove`, `shelve`, `unshelve` (anomaly/calendar.py); DataError for an
    entry that makes no sense, KafkaUnavailableError when the topic cannot be written or read."""
    from training.calendar import read_calendar, write_entry
    from training.data import DataError

    topic = settings.topics.calendar
    action = "shelve" if args.command == "shelve" else getattr(args, "action", "remove")
    if args.command == "window" and action == "list":
        calendar = read_calendar(settings, missing_ok=False)
        entries: list[MaintenanceWindow | Shelf] = [*calendar.windows.values()]
        entries += calendar.shelves.values()
        for entry in entries:
            print(describe(entry))
        print(f"{len(calendar.windows)} windows, {len(calendar.shelves)} shelves on {topic}")
        return
    try:
        if args.command == "window" and action == "set":
            window = MaintenanceWindow(
                id=args.id, assets=args.assets, start=args.start, end=args.end,
                timezone=args.timezone, every=args.every, until=args.until,
                suppress_alerts=args.alerts == "suppress",
                exclude_training=args.training == "exclude", note=args.note, created_by=args.by,
            )  # fmt: skip
            write_entry(settings, *window_message(window))
            print(f"set on {topic}: {describe(window)}")
        elif args.command == "shelve":
            since = datetime.now(UTC).replace(microsecond=0)
            shelf = Shelf(asset_id=args.asset, since=since,
                          until=since + timedelta(seconds=parse_duration(args.duration)),
                          by=args.by, reason=args.reason)  # fmt: skip
            write_entry(settings, *shelf_message(shelf))
            print(f"set on {topic}: {describe(shelf)}")
        else:
            kind: Literal["window", "shelf"] = "window" if args.command == "window" else "shelf"
            entry = args.id if kind == "window" else args.asset
            write_entry(settings, tombstone(kind, entry), None)
            print(f"removed from {topic}: {kind} {entry}")
    except ValidationError as exc:
        raise DataError(f"{args.command}: {'; '.join(_describe_entry(exc))}") from None
    except ValueError as exc:  # a duration that is not one
        raise DataError(f"{args.command}: {exc}") from None


def _describe_entry(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
    ]


def _episode_command(failed: str, run: Callable[[], T]) -> T | ExitCode:
    """`run()`, or the exit code of what stopped it (an episode or data it cannot use, Kafka
    it cannot reach), logged after `failed`."""
    from training.data import DataError
    from training.kafka_range import KafkaUnavailableError

    try:
        return run()
    except DataError as exc:
        log.error("%s: %s", failed, exc)
        return ExitCode.BAD_DATA
    except KafkaUnavailableError as exc:
        log.error("%s: %s", failed, exc)
        return ExitCode.KAFKA_ERROR


def _versions(store: ModelStore) -> int:
    infos = store.list_versions()
    if not infos:
        print(f"no versions in {store.location}")
        return ExitCode.OK
    print(
        f"{'':2}{'version':<26}{'features':>9}{'window':>7}{'threshold':>12}"
        f"{'held-out loss':>15}  status"
    )
    for info in infos:
        mark = "* " if info.is_current else "  "
        m = info.manifest
        if m is None:
            print(f"{mark}{info.name:<26}  unreadable: {info.problem}")
            continue
        print(
            f"{mark}{info.name:<26}{len(m.features):>9}{m.window:>7}"
            f"{m.threshold.value:>12.5g}{m.validation.holdout_loss:>15.5g}  {info.status or ''}"
        )
    return ExitCode.OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="train on a file, publish and make current")
    for flag, path, text, extra in [*_FIELD_FLAGS, _STORE_FLAG, _MODEL_FLAG]:
        fit.add_argument(flag, dest=path, help=f"{text} [{env_name(tuple(path.split('.')))}]",
                         **extra)  # fmt: skip
    listing = commands.add_parser("versions", help="list versions; * marks the current one")
    rollback = commands.add_parser("rollback", help="make an existing version current")
    rollback.add_argument("version")
    prune = commands.add_parser("prune", help="delete old versions, never the current one")
    prune.add_argument("--keep", type=_at_least_one, required=True, help="newest versions to keep")
    report = commands.add_parser(
        "report", help="an episode's records against the model's expectation (PNG and JSON)"
    )
    report.add_argument(
        "episode_id", help="the events' episode_id: <input topic>/<partition>/<offset>"
    )
    report.add_argument("--out", type=Path, default=Path(), help="directory to write into")
    report.add_argument(
        "--margin-s", type=float, default=600.0,
        help="seconds of the asset's records shown before and after the episode",
    )  # fmt: skip
    budget = commands.add_parser(
        "budget", help="the episodes per asset per week a stored model gives over a range of "
        "records (--source kafka --since 7d: the input topic; or a file)",
    )  # fmt: skip
    budget.add_argument("--version", help="the version to replay (default: the current one)")
    reading = [f for f in _FIELD_FLAGS if f[1].startswith("data.") and f[1] not in _FITTING]
    for flag, path, text, extra in [*reading, _STORE_FLAG, _MODEL_FLAG]:
        budget.add_argument(flag, dest=path, help=text, **extra)
    verdict = commands.add_parser(
        "verdict", help="an engineer's verdict on an episode, for the next training run"
    )
    verdict.add_argument("episode_id", help="the events' episode_id")
    verdict.add_argument("verdict", help="false_alarm (normal after all) or confirmed")
    verdict.add_argument("--note", help="why, for whoever reads the feedback topic")
    verdict.add_argument("--by", default=_login(), help="who gives it (default: your login)")
    _calendar_commands(commands)
    export = commands.add_parser(
        "export-graph",
        help="publish a version trained before 0.5 (no model.onnx) again with its ONNX graph",
    )
    export.add_argument("version", nargs="?", help="the version (default: the current one)")
    for sub in (listing, rollback, prune, report, export):
        for flag, path, text, _ in (_STORE_FLAG, _MODEL_FLAG):
            sub.add_argument(flag, dest=path, help=f"{text} [{env_name(tuple(path.split('.')))}]")
    return parser


def _calendar_commands(commands: Any) -> None:
    window = commands.add_parser(
        "window", help="maintenance windows: alerts held back, records kept out of training"
    )
    actions = window.add_subparsers(dest="action", required=True)
    setting = actions.add_parser("set", help="set (or replace) a window")
    setting.add_argument("id", help="the window's name: letters, digits, . _ : -")
    setting.add_argument(
        "--assets", required=True, help="the asset ids it covers: a name or a pattern (pump-*, *)"
    )
    setting.add_argument(
        "--start", required=True, help="wall-clock start in --timezone, e.g. 2026-12-07T06:00"
    )
    setting.add_argument("--end", required=True, help="wall-clock end, e.g. 2026-12-07T14:00")
    setting.add_argument("--timezone", default="UTC", help="e.g. Europe/Paris (default UTC)")
    setting.add_argument(
        "--every",
        choices=["once", "daily", "weekly"],
        default="once",
        help="repeat the span (default once)",
    )
    setting.add_argument("--until", help="the last occurrence starts no later (wall clock)")
    setting.add_argument(
        "--alerts",
        choices=["suppress", "page"],
        default="suppress",
        help="hold the assets' alerts back (default) or page as usual",
    )
    setting.add_argument(
        "--training",
        choices=["exclude", "keep"],
        default="exclude",
        help="keep the records out of training (default) or learn them",
    )
    setting.add_argument("--note", help="why, for whoever lists the windows")
    setting.add_argument("--by", help="who set it")
    actions.add_parser("list", help="the windows and shelves on the calendar topic")
    removing = actions.add_parser("remove", help="remove a window")
    removing.add_argument("id")
    shelve = commands.add_parser("shelve", help="hold one asset's alarm back for a while")
    shelve.add_argument("asset", help="the asset id")
    shelve.add_argument(
        "--for", dest="duration", required=True, help="how long, e.g. 90m, 8h (at most 7 days)"
    )
    shelve.add_argument("--by", required=True, help="who shelves it")
    shelve.add_argument("--reason", required=True, help="why")
    unshelve = commands.add_parser("unshelve", help="page on the asset again now")
    unshelve.add_argument("asset")


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        return None


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Nested settings from the flags given, e.g. {'model': {'window': '60'}}."""
    nested: dict[str, Any] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, field = key.split(".", 1)
            nested.setdefault(section, {})[field] = value
    return nested


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        flag = _FLAG_BY_PATH.get(".".join(str(p) for p in loc if isinstance(p, str)))
        name = env_name(loc) + (f" ({flag})" if flag else "")
        lines.append(f"{name}: {err['msg']} (got {shown_input(loc, err.get('input'))!r})")
    return lines


if __name__ == "__main__":
    sys.exit(main())
