"""Maintenance windows and shelved alarms: when an asset's alarms are held back, and when its
records are kept out of training.

Both are entries of one compacted Kafka topic (`TopicSettings.calendar`), keyed `window/<id>`
or `shelf/<asset id>`, the value the entry's JSON (a tombstone removes it), which the worker
follows and the training job reads whole; `anomaly-train window` and `anomaly-train shelve`
write them (training/calendar_cli.py).

- A **maintenance window** covers the assets its pattern matches (`fnmatch`: `pump-07`,
  `pump-*`, `*`) from `start` to `end`, once or again every day or week (`every`, up to
  `until`), in wall-clock time of its time zone: a window "every night 22:00 to 06:00, Paris
  time" starts at 22:00 in Paris before and after a change of summer time. It says separately
  whether to hold back the assets' alerts (`suppress_alerts`) and whether to keep their
  records out of training (`exclude_training`).
- A **shelf** holds back one asset's alarms from `since` to `until` (at most `MAX_SHELF_S`,
  ISA-18.2's bounded shelving), with who shelved it and why; it unshelves by itself at
  `until`.

Time is the records' own, as everywhere in the decisions: a record is covered when its
timestamp lies in [start, end) of an occurrence. Pure: no I/O (the topic is read by
anomaly/kafka.py's callers).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_SHELF_S = 7 * 86400.0  # the longest an alarm stays shelved
WINDOW_KEY, SHELF_KEY = "window/", "shelf/"
EntryId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Every = Literal["once", "daily", "weekly"]
_PERIOD_DAYS = {"daily": 1, "weekly": 7}


class CalendarError(ValueError):
    """An entry that is not a window or a shelf this version can read."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_E = TypeVar("_E", bound=_Entry)


class MaintenanceWindow(_Entry):
    """A planned stop: `start` and `end` are wall-clock times in `timezone` (no offset);
    `every` repeats the span each day or week from `start` on, up to `until` (its last
    occurrence starts no later)."""

    id: EntryId
    assets: str = Field(min_length=1, description="fnmatch pattern over asset ids")
    start: datetime
    end: datetime
    timezone: str = "UTC"
    every: Every = "once"
    until: datetime | None = None
    suppress_alerts: bool = True
    exclude_training: bool = True
    note: str | None = None
    created_by: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (say e.g. UTC, Europe/Paris)") from None
        return value

    @field_validator("start", "end", "until")
    @classmethod
    def _wall_clock(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("give wall-clock times without an offset: the time zone says it")
        return value

    @model_validator(mode="after")
    def _spans(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        period = _PERIOD_DAYS.get(self.every)
        if period is not None and self.end - self.start > timedelta(days=period):
            raise ValueError(f"a window repeated {self.every} cannot last longer than its period")
        if self.until is not None and self.until < self.start:
            raise ValueError("until must not be before start")
        return self

    def matches(self, asset_id: str) -> bool:
        return fnmatch.fnmatchcase(asset_id, self.assets)

    def covers(self, t: float) -> bool:
        """Whether record time `t` (epoch seconds) lies inside one of its occurrences."""
        return any(begin <= t < end for begin, end in self.spans(t, t))

    def spans(self, lo: float, hi: float) -> list[tuple[float, float]]:
        """Its occurrences that may reach into [lo, hi] (epoch seconds), each [begin, end)."""
        zone = ZoneInfo(self.timezone)
        period = _PERIOD_DAYS.get(self.every)
        if period is None:
            return [(_utc(self.start, zone), _utc(self.end, zone))]
        first_day = datetime.fromtimestamp(lo, zone).date()
        last_day = datetime.fromtimestamp(hi, zone).date()
        span_days = (self.end.date() - self.start.date()).days
        # the occurrences that start between `span_days` days before lo's date and hi's date
        first = math.ceil(((first_day - self.start.date()).days - span_days) / period)
        last = (last_day - self.start.date()).days // period
        out = []
        for k in range(max(first, 0), last + 1):
            begin, end = self.occurrence(k)
            if self.until is not None and begin > self.until:
                break
            out.append((_utc(begin, zone), _utc(end, zone)))
        return out

    def occurrence(self, k: int) -> tuple[datetime, datetime]:
        """The k-th occurrence's wall-clock start and end (k = 0: the first)."""
        shift = timedelta(days=k * _PERIOD_DAYS.get(self.every, 0))
        return self.start + shift, self.end + shift


class Shelf(_Entry):
    """One asset's alarms shelved from `since` to `until` (UTC) by `by`, for `reason`."""

    asset_id: str = Field(min_length=1)
    since: datetime
    until: datetime
    by: str = Field(min_length=1)
    reason: str = Field(min_length=1)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with its offset (e.g. 2026-12-06T08:00:00Z)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _bounded(self) -> Shelf:
        length = (self.until - self.since).total_seconds()
        if not 0 < length <= MAX_SHELF_S:
            raise ValueError(
                f"a shelf lasts more than 0 s and at most {MAX_SHELF_S / 86400:g} days "
                f"(this one {length / 3600:g} h)"
            )
        return self

    def covers(self, t: float) -> bool:
        return self.since.timestamp() <= t < self.until.timestamp()


Hold = str  # why an asset's alarms are held back: "maintenance:<window id>" or "shelved"


@dataclass
class Calendar:
    """The windows and shelves in force, as read from the topic (`apply` per message)."""

    windows: dict[str, MaintenanceWindow] = field(default_factory=dict)
    shelves: dict[str, Shelf] = field(default_factory=dict)

    def apply_all(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> list[str]:
        """The topic's messages, in order, each `apply`ed: why each refused one was (the
        calendar goes on without it)."""
        refused = []
        for key, value in messages:
            try:
                self.apply(key, value)
            except CalendarError as exc:
                refused.append(str(exc))
        return refused

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One message of the topic: an entry set (its JSON) or removed (a tombstone).
        CalendarError for a key or value this version cannot read."""
        name = (key or b"").decode("utf-8", "replace")
        if name.startswith(WINDOW_KEY):
            window_id = name[len(WINDOW_KEY) :]
            if value is None:
                self.windows.pop(window_id, None)
                return
            window = _read(MaintenanceWindow, name, value)
            if window.id != window_id:
                raise CalendarError(f"{name}: the entry is window {window.id!r}")
            self.windows[window_id] = window
        elif name.startswith(SHELF_KEY):
            asset_id = name[len(SHELF_KEY) :]
            if value is None:
                self.shelves.pop(asset_id, None)
                return
            shelf = _read(Shelf, name, value)
            if shelf.asset_id != asset_id:
                raise CalendarError(f"{name}: the entry shelves {shelf.asset_id!r}")
            self.shelves[asset_id] = shelf
        else:
            raise CalendarError(f"key {name!r} names neither a window/ nor a shelf/")

    def hold(self, asset_id: str, t: float) -> Hold | None:
        """Why `asset_id`'s alarms are held back at record time `t` (None: they page):
        a maintenance window that suppresses alerts (the first by id), else a shelf."""
        for window_id in sorted(self.windows):
            window = self.windows[window_id]
            if window.suppress_alerts and window.matches(asset_id) and window.covers(t):
                return f"maintenance:{window_id}"
        shelf = self.shelves.get(asset_id)
        if shelf is not None and shelf.covers(t):
            return "shelved"
        return None

    def excluded(self, asset_id: str, t: float) -> bool:
        """Whether the asset's record at time `t` is kept out of training."""
        return any(
            w.exclude_training and w.matches(asset_id) and w.covers(t)
            for w in self.windows.values()
        )

    def excluding(self, asset_id: str) -> list[MaintenanceWindow]:
        """The windows that keep some of the asset's records out of training."""
        return [w for w in self.windows.values() if w.exclude_training and w.matches(asset_id)]

    def shelved(self, now: float) -> list[Shelf]:
        """The shelves in force at `now`, by asset."""
        return [self.shelves[a] for a in sorted(self.shelves) if self.shelves[a].covers(now)]


def window_message(window: MaintenanceWindow) -> tuple[bytes, bytes]:
    return f"{WINDOW_KEY}{window.id}".encode(), window.model_dump_json().encode()


def shelf_message(shelf: Shelf) -> tuple[bytes, bytes]:
    return f"{SHELF_KEY}{shelf.asset_id}".encode(), shelf.model_dump_json().encode()


def tombstone(kind: Literal["window", "shelf"], entry_id: str) -> bytes:
    """The key whose null value removes the entry."""
    return f"{WINDOW_KEY if kind == 'window' else SHELF_KEY}{entry_id}".encode()


def describe(entry: MaintenanceWindow | Shelf) -> str:
    """One line for `anomaly-train window list`."""
    if isinstance(entry, Shelf):
        return (
            f"shelf   {entry.asset_id}  {_iso(entry.since)} -> {_iso(entry.until)}  by "
            f"{entry.by}: {entry.reason}"
        )
    does = [w for w, on in (("suppress alerts", entry.suppress_alerts),
                            ("exclude from training", entry.exclude_training)) if on]  # fmt: skip
    repeat = "" if entry.every == "once" else f" {entry.every}"
    until = f" until {entry.until.isoformat()}" if entry.until else ""
    return (
        f"window  {entry.id}  {entry.assets}  {entry.start.isoformat()} -> "
        f"{entry.end.isoformat()} {entry.timezone}{repeat}{until}: {', '.join(does) or 'nothing'}"
        + (f" ({entry.note})" if entry.note else "")
    )


def parse_duration(text: str) -> float:
    """'90m', '8h', '2d', '3600s' or '3600' -> seconds; ValueError otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not found:
        raise ValueError(f"{text!r} is not a duration (say e.g. 90m, 8h, 2d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
    return float(found.group(1)) * unit


def _utc(wall: datetime, zone: ZoneInfo) -> float:
    """A wall-clock time in `zone` as epoch seconds (a time skipped by a change of summer
    time reads with the offset before it; a repeated one, its first pass)."""
    return wall.replace(tzinfo=zone).timestamp()


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _read(kind: type[_E], name: str, value: bytes) -> _E:
    try:
        return kind.model_validate_json(value)
    except ValidationError as exc:
        raise CalendarError(f"{name}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
