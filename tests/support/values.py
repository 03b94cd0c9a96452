"""Whole records as a bridge would send them: one sensor's value per message, only when it
changes (report by exception), values rounded to a sensor's resolution."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

STEP = 0.5  # the sensors' resolution: a reading repeats often, and is then not sent


def quantised(records: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The records with every value rounded to STEP."""
    out = []
    for key, value in records:
        record = json.loads(value)
        record["values"] = {k: round(v / STEP) * STEP for k, v in record["values"].items()}
        out.append((key, json.dumps(record).encode()))
    return out


def by_exception(records: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """One message per sensor value that changed (all of them at an asset's first record),
    `{"node": asset, "time": epoch ms, "tag": sensor, "value": v}`; then, a second after each
    asset's last record, one message repeating a value, which closes that record."""
    last: dict[tuple[str, str], float] = {}
    latest: dict[str, tuple[datetime, str, float]] = {}
    out = []
    for key, value in records:
        record = json.loads(value)
        asset, ts = record["asset_id"], datetime.fromisoformat(record["ts"])
        for sensor, reading in record["values"].items():
            latest[asset] = (ts, sensor, reading)
            if last.get((asset, sensor)) == reading:
                continue
            last[asset, sensor] = reading
            out.append((key, _message(asset, ts, sensor, reading)))
    for asset, (ts, sensor, reading) in latest.items():
        out.append((asset.encode(), _message(asset, ts + timedelta(seconds=1), sensor, reading)))
    return out


def _message(asset: str, ts: datetime, sensor: str, value: float) -> bytes:
    stamp = round(ts.timestamp() * 1000)
    return json.dumps({"node": asset, "time": stamp, "tag": sensor, "value": value}).encode()
