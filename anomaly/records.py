"""The input record contract: decode and validate one record's bytes.

    {"asset_id": "pump-17", "ts": "2026-11-21T10:00:00.123Z", "values": {"<feature>": <float>}}

A record is valid when it is a UTF-8 JSON object with a non-empty string `asset_id`, an ISO
8601 `ts` and a `values` object holding every expected feature as a finite number (not a
string, not a boolean) within float32's range, the precision the model computes in. Extra
features are ignored; of a duplicated key, the last value counts. Anything else raises
RecordError with a short machine-readable reason and a message for people.

Producers that name the fields otherwise (Telegraf: `tags.host`, `timestamp`, `fields`),
stamp epoch numbers, or send one sensor's value per message (OPC UA and MQTT bridges) are
read through `InputSettings` (`canonical`, `reading_from`); `ts` may be an ISO 8601 string or
an epoch number (`parse_ts`, the unit set or told apart by magnitude).

`partial=True` (the worker: sensors drop out) also accepts a record that lacks some of the
features or holds `null` for them: their values are NaN and their indexes are in `missing`
(worker/sensors.py fills them); a record with none of them is still refused
(`missing_feature`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson

from anomaly.settings import InputSettings, TimeUnit

# Every reason a record can be refused for: the dead-letter envelope's `reason`, the metric's
# label (`no_model`: the worker serves no model the record is routed to, anomaly/routing.py).
# `bad_sensor`, `unknown_sensor`: one-value-per-message input (`InputSettings.shape`) whose
# sensor field is missing, or names no feature of the record's model.
REASONS = (
    "empty", "too_large", "not_utf8", "not_json", "not_object", "bad_asset_id", "bad_ts",
    "bad_values", "missing_feature", "non_numeric", "non_finite", "out_of_range", "no_model",
    "bad_sensor", "unknown_sensor",
)  # fmt: skip
# The model computes in float32: a larger magnitude cannot be scored as what it is.
LIMIT = float(np.finfo(np.float32).max)


class SourceRecord(Protocol):
    """What the apps read of a Kafka record (kafka-python's ConsumerRecord fits): its place,
    its key and the bytes the contract above applies to."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RecordError(ValueError):
    """A record that breaks the input contract; `reason` is a stable short code; `model`:
    the model it was routed to, once known (anomaly/decoding.py)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.model: str | None = None


class Record(NamedTuple):
    """A valid input record; `values` follows the order of the features it was decoded for;
    `missing`: the indexes of those it lacks (NaN in `values`; only with `partial`)."""

    asset_id: str
    ts: datetime
    values: tuple[float, ...]
    missing: tuple[int, ...] = ()


_NUMBERS = frozenset((float, int))  # bool is neither: True is refused as a feature value


def decode_record(raw: bytes, features: Sequence[str], partial: bool = False) -> Record:
    """Decode raw bytes into a Record holding `features` in order, or raise RecordError.
    `partial`: a feature absent or null is missing (NaN), not an error, while one is there."""
    return from_object(parse_record(raw), features, partial)


def parse_record(raw: bytes) -> Any:
    """The JSON value of a record's bytes (anything JSON), or RecordError saying why not."""
    try:
        return orjson.loads(raw)  # fast, strict: valid records take this path only
    except orjson.JSONDecodeError:
        return _slow_loads(raw)  # says precisely why orjson refused it


def from_object(
    obj: Any, features: Sequence[str], partial: bool = False, layout: InputSettings | None = None
) -> Record:
    """A parsed record (`parse_record`) checked against the contract for `features`, its
    fields found where `layout` says (None: the contract's own names)."""
    if layout is not None and not layout.plain:
        obj = canonical(obj, layout)
    # The common case in a few C-level steps. orjson yields no NaN, no infinity and no integer
    # beyond a float's range, so a float or int here is a finite number. Anything unusual is
    # left to `_checked`, which names the reason.
    try:
        asset_id, values = obj["asset_id"], obj["values"]
        picked = tuple([values[name] for name in features])
    except (TypeError, KeyError):
        return _checked(obj, features, partial, _unit(layout))
    if (
        type(asset_id) is str
        and asset_id
        and type(values) is dict
        and _NUMBERS.issuperset(map(type, picked))
        and min(picked) >= -LIMIT
        and max(picked) <= LIMIT
    ):
        return Record(asset_id, parse_ts(obj.get("ts"), _unit(layout)), tuple(map(float, picked)))
    return _checked(obj, features, partial, _unit(layout))


def _unit(layout: InputSettings | None) -> TimeUnit:
    return "auto" if layout is None else layout.time_unit


def canonical(obj: Any, layout: InputSettings) -> Any:
    """A record whose fields `layout` names, as the contract's `asset_id`, `ts`, `values`."""
    if not isinstance(obj, dict):
        return obj
    return {
        "asset_id": field_at(obj, layout.asset_field),
        "ts": field_at(obj, layout.time_field),
        "values": field_at(obj, layout.values_field),
    }


def field_at(obj: Any, path: str) -> Any:
    """The value at a dotted path (`tags.host`), or None where there is none."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


class Reading(NamedTuple):
    """One sensor's value (one-value-per-message input); `value` None: no value reported."""

    asset_id: str
    ts: datetime
    sensor: str
    value: float | None


def reading_from(obj: Any, layout: InputSettings) -> Reading:
    """A parsed one-value message checked: its asset, time, sensor and a finite value."""
    if not isinstance(obj, dict):
        raise RecordError("not_object", "message is not a JSON object")
    asset_id = field_at(obj, layout.asset_field)
    if not isinstance(asset_id, str) or not asset_id:
        raise RecordError("bad_asset_id", f"message has no {layout.asset_field} string")
    ts = parse_ts(field_at(obj, layout.time_field), layout.time_unit)
    sensor = field_at(obj, layout.sensor_field)
    if not isinstance(sensor, str) or not sensor:
        raise RecordError("bad_sensor", f"message has no {layout.sensor_field} string")
    value = field_at(obj, layout.value_field)
    if value is None:
        return Reading(asset_id, ts, sensor, None)
    return Reading(asset_id, ts, sensor, _number(sensor, value))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("non_numeric", f"feature {name!r} is not a number: {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        number = math.inf
    if not math.isfinite(number):
        raise RecordError("non_finite", f"feature {name!r} is not finite: {value!r}")
    if abs(number) > LIMIT:
        raise RecordError(
            "out_of_range", f"feature {name!r} is beyond +-{LIMIT:.3g} (float32): {value!r}"
        )
    return number


def _checked(obj: Any, features: Sequence[str], partial: bool, unit: TimeUnit = "auto") -> Record:
    """Every rule of the contract, one at a time: the record, or the first rule it breaks."""
    if not isinstance(obj, dict):
        raise RecordError("not_object", "record is not a JSON object")
    asset_id = obj.get("asset_id")
    if not isinstance(asset_id, str) or not asset_id:
        raise RecordError("bad_asset_id", "record has no asset_id string")
    ts = parse_ts(obj.get("ts"), unit)
    values = obj.get("values")
    if not isinstance(values, dict):
        raise RecordError("bad_values", "record has no values object")
    out = []
    missing = []
    for index, name in enumerate(features):
        if partial and values.get(name) is None:
            missing.append(index)
            out.append(math.nan)
            continue
        if name not in values:
            raise RecordError("missing_feature", f"values lacks feature {name!r}")
        out.append(_number(name, values[name]))
    if len(missing) == len(features):
        raise RecordError("missing_feature", "values holds none of the model's features")
    return Record(asset_id, ts, tuple(out), tuple(missing))


def _slow_loads(raw: bytes) -> Any:
    """The standard library's reading, for the records orjson refuses: names the reason."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise RecordError("not_utf8", f"record is not UTF-8: {exc}") from exc
    except RecordError:
        raise
    except (ValueError, RecursionError) as exc:
        raise RecordError("not_json", f"record is not JSON: {exc}") from exc


# Epoch numbers told apart by magnitude (`auto`): below 1e11 seconds (until the year 5138),
# below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
_EPOCH_SCALES = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def parse_ts(value: object, unit: TimeUnit = "auto") -> datetime:
    """A timestamp as an aware datetime: an ISO 8601 string (naive ones are taken as UTC), or
    (unit other than `iso`) an epoch number in `unit`, told apart by magnitude with `auto`."""
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RecordError("bad_ts", f"ts is not ISO 8601: {value!r}") from exc
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if unit == "iso" or isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("bad_ts", f"ts is not an ISO 8601 string: {value!r}")
    if unit == "auto":
        size = abs(value)
        unit = "s" if size < 1e11 else "ms" if size < 1e14 else "us" if size < 1e17 else "ns"
    try:
        return datetime.fromtimestamp(value / _EPOCH_SCALES[unit], UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise RecordError("bad_ts", f"ts {value!r} is not a time in {unit}") from exc


def _reject_constant(name: str) -> float:
    raise RecordError("non_finite", f"record holds the non-standard JSON constant {name}")
