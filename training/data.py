"""Training data from files: CSV or JSON Lines of input records, grouped by asset.

Every value is checked: a missing column, a non-numeric or non-finite value, or an empty file
raises DataError naming the file, line and column, so nothing half-read is ever trained on.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from anomaly.model.features import FloatArray
from anomaly.records import RecordError, decode_record, parse_ts
from training.settings import DataSettings


class DataError(Exception):
    """The training data cannot be used; the message names the file, line and column."""


@dataclass(frozen=True)
class AssetSeries:
    """One asset's rows in time order. `ts` is epoch seconds (row numbers without timestamps)."""

    asset_id: str
    ts: FloatArray
    values: FloatArray
    labels: FloatArray | None = None  # only when read with a label column (validation files)


@dataclass(frozen=True)
class SensorHistory:
    """Rows of one or more assets with the same ordered features."""

    source: str
    features: tuple[str, ...]
    series: tuple[AssetSeries, ...]
    has_timestamps: bool

    @property
    def rows(self) -> int:
        return sum(len(s.ts) for s in self.series)

    def time_range(self) -> tuple[datetime | None, datetime | None]:
        if not self.has_timestamps or self.rows == 0:
            return None, None
        first = min(float(s.ts[0]) for s in self.series if len(s.ts))
        last = max(float(s.ts[-1]) for s in self.series if len(s.ts))
        return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)

    @property
    def assets(self) -> int:
        return len({s.asset_id for s in self.series})

    def cutoff(self, latest_fraction: float) -> float:
        """The time that leaves the latest `latest_fraction` of the rows at or after it."""
        all_ts = np.sort(np.concatenate([s.ts for s in self.series]))
        return float(all_ts[min(len(all_ts) - 1, math.ceil(len(all_ts) * (1 - latest_fraction)))])

    def split_by_time(self, holdout_fraction: float) -> tuple[SensorHistory, SensorHistory]:
        """The earliest rows for fitting and the latest `holdout_fraction` held out.

        One cut-off time for all assets, so no held-out row is older than a fitting row.
        """
        cut = self.cutoff(holdout_fraction)
        return self.between(-math.inf, cut), self.between(cut, math.inf)

    def between(self, lo: float, hi: float, drop: Masks | None = None) -> SensorHistory:
        """Rows with lo <= ts < hi, less those `drop` marks (per series, aligned with it).

        Dropping rows splits a series into its contiguous runs, so that no window built on
        the result spans a gap.
        """
        segments = []
        for i, s in enumerate(self.series):
            keep = (s.ts >= lo) & (s.ts < hi)
            if drop is not None and i in drop:
                keep &= ~drop[i]
            edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
            for begin, end in zip(edges[::2], edges[1::2], strict=True):
                labels = None if s.labels is None else s.labels[begin:end]
                segments.append(
                    AssetSeries(s.asset_id, s.ts[begin:end], s.values[begin:end], labels)
                )
        return SensorHistory(self.source, self.features, tuple(segments), self.has_timestamps)


# Per-row marks of a SensorHistory: series index -> bool array aligned with that series.
Masks = dict[int, npt.NDArray[np.bool_]]


def read_history(settings: DataSettings) -> SensorHistory:
    """Read the file that `settings.path` names, as `settings` describe it."""
    if settings.path is None:
        raise DataError("no training data: set --data or TRAINING_DATA__PATH")
    path = settings.path
    if not path.is_file():
        raise DataError(f"training data {path} does not exist or is not a file")
    fmt = _format_from_suffix(path) if settings.format == "auto" else settings.format
    if settings.label_column and fmt != "csv":
        raise DataError(f"{path}: a label column needs a CSV file")
    history = _read_csv(path, settings) if fmt == "csv" else _read_jsonl(path, settings)
    if history.rows == 0:
        raise DataError(f"{path} holds no data rows")
    if settings.label_column:  # read as the last value column: split it off
        series = tuple(
            AssetSeries(s.asset_id, s.ts, s.values[:, :-1], s.values[:, -1]) for s in history.series
        )
        history = SensorHistory(
            history.source, history.features[:-1], series, history.has_timestamps
        )
    return history


def _format_from_suffix(path: Path) -> Literal["csv", "jsonl"]:
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv", ".txt"}:
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise DataError(f"cannot tell the format of {path} from its suffix; set --format csv|jsonl")


def _read_csv(path: Path, settings: DataSettings) -> SensorHistory:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=settings.delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty: expected a header line")
        header = [name.strip() for name in header]
        features = _choose_features(path, header, settings)
        if settings.label_column:
            features = (*features, settings.label_column)
        columns = {name: i for i, name in enumerate(header)}
        feature_idx = [columns[name] for name in features]
        ts_idx = columns[settings.timestamp_column] if settings.timestamp_column else None
        asset_idx = columns[settings.asset_column] if settings.asset_column else None
        default_asset = path.stem

        def rows() -> Iterator[tuple[str, float, list[float]]]:
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{line_no}: {len(row)} fields, the header has {len(header)} "
                        f"(is the delimiter {settings.delimiter!r} right?)"
                    )
                where = f"{path}:{line_no}"
                ts = _csv_ts(row[ts_idx], where) if ts_idx is not None else float(line_no)
                asset = row[asset_idx] if asset_idx is not None else default_asset
                values = [_number(row[i], where, header[i]) for i in feature_idx]
                yield asset, ts, values

        return group_rows(
            str(path.resolve()), features, rows(), settings.timestamp_column is not None
        )


def _read_jsonl(path: Path, settings: DataSettings) -> SensorHistory:
    with path.open("rb") as f:
        lines = ((n, line) for n, line in enumerate(f, start=1) if line.strip())
        first = next(lines, None)
        if first is None:
            raise DataError(f"{path} holds no records")
        features = settings.features or _jsonl_features(path, first, settings)

        def rows() -> Iterator[tuple[str, float, list[float]]]:
            for line_no, raw in itertools.chain([first], lines):
                try:
                    record = decode_record(raw.rstrip(b"\r\n"), features)
                except RecordError as exc:
                    raise DataError(f"{path}:{line_no}: {exc}") from exc
                yield record.asset_id, record.ts.timestamp(), list(record.values)

        return group_rows(str(path.resolve()), features, rows(), has_timestamps=True)


def _jsonl_features(
    path: Path, first: tuple[int, bytes], settings: DataSettings
) -> tuple[str, ...]:
    """Without --features, the first record's value names (sorted) less the excluded ones."""
    try:
        values = json.loads(first[1])["values"]
        names = sorted(str(name) for name in values)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}:{first[0]}: not an input record with a values object") from exc
    features = tuple(n for n in names if n not in settings.exclude)
    if not features:
        raise DataError(f"{path}:{first[0]}: no features left after excluding {settings.exclude}")
    return features


def _choose_features(path: Path, header: list[str], settings: DataSettings) -> tuple[str, ...]:
    named = [
        settings.timestamp_column,
        settings.asset_column,
        settings.label_column,
        *settings.features,
    ]
    missing = [name for name in named if name and name not in header]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are {header}"
        )
    if settings.features:
        return settings.features
    skip = {
        settings.timestamp_column,
        settings.asset_column,
        settings.label_column,
        *settings.exclude,
    }
    features = tuple(name for name in header if name not in skip)
    if not features:
        raise DataError(f"{path}: no feature columns left after excluding {sorted(map(str, skip))}")
    if len(set(features)) != len(features):
        raise DataError(f"{path}: duplicate column names in {header}")
    return features


def group_rows(
    source: str,
    features: tuple[str, ...],
    rows: Iterable[tuple[str, float, list[float]]],
    has_timestamps: bool,
) -> SensorHistory:
    ts_by_asset: dict[str, list[float]] = defaultdict(list)
    values_by_asset: dict[str, list[list[float]]] = defaultdict(list)
    for asset, ts, values in rows:
        ts_by_asset[asset].append(ts)
        values_by_asset[asset].append(values)
    series = []
    for asset in sorted(ts_by_asset):
        times = np.array(ts_by_asset[asset], dtype=np.float64)
        rows_ = np.array(values_by_asset[asset], dtype=np.float64).reshape(len(times), -1)
        order = np.argsort(times, kind="stable")
        series.append(AssetSeries(asset, times[order], rows_[order]))
    return SensorHistory(source, features, tuple(series), has_timestamps)


def _csv_ts(text: str, where: str) -> float:
    try:
        return parse_ts(text.strip()).timestamp()
    except RecordError:
        pass
    try:
        seconds = float(text)
    except ValueError:
        raise DataError(
            f"{where}: timestamp {text!r} is neither ISO 8601 nor epoch seconds"
        ) from None
    if not math.isfinite(seconds):
        raise DataError(f"{where}: timestamp {text!r} is not finite")
    return seconds


def _number(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{where}: column {column!r} holds {text!r}, not a number (a timestamp or label "
            "column? name it with --timestamp-column or leave it out with --exclude)"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{where}: column {column!r} holds {text!r}, not a finite number")
    return value
