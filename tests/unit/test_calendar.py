"""Maintenance windows and shelves (anomaly/calendar.py) against a plain reading of the rules:
every occurrence listed from the first, in wall-clock time of the window's zone; the entries
in force are the last message per key, whatever came before (a restart reads them again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.calendar import (
    MAX_SHELF_S,
    Calendar,
    CalendarError,
    MaintenanceWindow,
    Shelf,
    describe,
    parse_duration,
    shelf_message,
    tombstone,
    window_message,
)

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")


def plainly_covers(window: MaintenanceWindow, t: float) -> bool:
    """Every occurrence from the first, until one starts after `t` (or after `until`)."""
    zone = ZoneInfo(window.timezone)
    step = {"once": None, "daily": timedelta(days=1), "weekly": timedelta(days=7)}[window.every]
    begin, end = window.start, window.end
    while True:
        if window.until is not None and begin > window.until:
            return False
        b = begin.replace(tzinfo=zone).timestamp()
        if b > t + 86400 * 2:  # wall clock and UTC differ by less than a day
            return False
        if b <= t < end.replace(tzinfo=zone).timestamp():
            return True
        if step is None:
            return False
        begin, end = begin + step, end + step


@st.composite
def windows(draw: st.DrawFn, window_id: str = "w") -> MaintenanceWindow:
    every = draw(st.sampled_from(["once", "daily", "weekly"]))
    start = draw(st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31)))
    longest = {"once": 20 * 86400, "daily": 86400, "weekly": 7 * 86400}[every]
    length = draw(st.integers(60, longest))
    until = draw(st.none() | st.integers(0, 90 * 86400).map(lambda s: start + timedelta(seconds=s)))
    return MaintenanceWindow(
        id=window_id, assets=draw(st.sampled_from(["*", "pump-*", "pump-01", "fan-?"])),
        start=start, end=start + timedelta(seconds=length), timezone=draw(st.sampled_from(ZONES)),
        every=every, until=until, suppress_alerts=draw(st.booleans()),
        exclude_training=draw(st.booleans()),
    )  # fmt: skip


def around(window: MaintenanceWindow, offset_s: float) -> float:
    return window.start.replace(tzinfo=UTC).timestamp() + offset_s


@settings(max_examples=400, deadline=None)
@given(windows(), st.floats(-3 * 86400, 120 * 86400))
def test_a_window_covers_exactly_the_times_of_its_occurrences(
    window: MaintenanceWindow, offset_s: float
) -> None:
    t = around(window, offset_s)
    assert window.covers(t) == plainly_covers(window, t)


@settings(max_examples=200, deadline=None)
@given(windows(), st.integers(0, 60))
def test_each_occurrence_covers_its_own_first_second_and_not_its_end(
    window: MaintenanceWindow, k: int
) -> None:
    if window.every == "once":
        k = 0
    begin, end = window.occurrence(k)
    if window.until is not None and begin > window.until:
        return
    zone = ZoneInfo(window.timezone)
    b, e = begin.replace(tzinfo=zone).timestamp(), end.replace(tzinfo=zone).timestamp()
    if e <= b:  # a span that a change of summer time folds away
        return
    assert window.covers(b)
    assert window.covers(e - 0.001)
    assert window.covers(e) == plainly_covers(window, e)


def test_a_nightly_window_keeps_its_wall_clock_hours_across_a_change_of_summer_time() -> None:
    window = MaintenanceWindow(
        id="night", assets="pump-*", start=datetime(2026, 3, 27, 22), end=datetime(2026, 3, 28, 6),
        timezone="Europe/Paris", every="daily",
    )  # fmt: skip
    paris = ZoneInfo("Europe/Paris")
    for day in (27, 28, 29, 30):  # summer time starts on the night of the 28th to the 29th
        assert window.covers(datetime(2026, 3, day, 22, 0, tzinfo=paris).timestamp())
        assert window.covers(datetime(2026, 3, day + 1, 5, 59, tzinfo=paris).timestamp())
        assert not window.covers(datetime(2026, 3, day + 1, 6, 0, tzinfo=paris).timestamp())
        assert not window.covers(datetime(2026, 3, day, 21, 59, tzinfo=paris).timestamp())
    assert not window.covers(datetime(2026, 3, 27, 5, 0, tzinfo=paris).timestamp())  # before it
    assert window.matches("pump-03")
    assert not window.matches("fan-03")


def test_a_weekly_window_recurs_on_its_weekday_only_until_its_last_occurrence() -> None:
    window = MaintenanceWindow(
        id="monday", assets="*", start=datetime(2026, 12, 7, 8), end=datetime(2026, 12, 7, 12),
        every="weekly", until=datetime(2026, 12, 21, 8),
    )  # fmt: skip
    days = (7, 8, 14, 21, 28)
    covered = [window.covers(datetime(2026, 12, d, 9, tzinfo=UTC).timestamp()) for d in days]
    assert covered == [True, False, True, True, False]


Message = tuple[bytes, bytes | None]


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    """Windows and shelves set, replaced and removed, in some order."""
    messages: list[Message] = []
    for _ in range(draw(st.integers(0, 12))):
        action = draw(st.sampled_from(["window", "shelf", "remove window", "remove shelf"]))
        if action == "window":
            messages.append(window_message(draw(windows(draw(st.sampled_from(["a", "b", "c"]))))))
        elif action == "shelf":
            since = draw(
                st.datetimes(datetime(2026, 1, 1), datetime(2026, 2, 1), timezones=st.just(UTC))
            )
            length = draw(st.integers(1, int(MAX_SHELF_S)))
            asset = draw(st.sampled_from(["pump-01", "pump-02"]))
            messages.append(shelf_message(Shelf(
                asset_id=asset, since=since, until=since + timedelta(seconds=length), by="ana",
                reason="valve work",
            )))  # fmt: skip
        elif action == "remove window":
            messages.append((tombstone("window", draw(st.sampled_from(["a", "b", "c"]))), None))
        else:
            messages.append(
                (tombstone("shelf", draw(st.sampled_from(["pump-01", "pump-02"]))), None)
            )
    return messages


def plainly_held(messages: list[Message], asset_id: str, t: float) -> str | None:
    """The last message per key; then the suppressing windows by id, then the shelf."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in messages:
        latest[key] = value
    holds = []
    for key in sorted(latest):
        value = latest[key]
        if value is None:
            continue
        if key.startswith(b"window/"):
            window = MaintenanceWindow.model_validate_json(value)
            if window.suppress_alerts and window.matches(asset_id) and plainly_covers(window, t):
                holds.append(f"maintenance:{window.id}")
        elif key == f"shelf/{asset_id}".encode():
            shelf = Shelf.model_validate_json(value)
            if shelf.since.timestamp() <= t < shelf.until.timestamp():
                holds.append("shelved")
    windows_first = [h for h in holds if h != "shelved"] + [h for h in holds if h == "shelved"]
    return windows_first[0] if windows_first else None


@settings(max_examples=300, deadline=None)
@given(
    histories(),
    st.sampled_from(["pump-01", "pump-02", "fan-1"]),
    st.datetimes(datetime(2026, 1, 1), datetime(2026, 2, 10), timezones=st.just(UTC))
    | st.datetimes(datetime(2025, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
)
def test_what_holds_an_asset_back_is_the_last_word_of_each_entry_read_again_after_a_restart(
    messages: list[Message], asset_id: str, when: datetime
) -> None:
    t = when.timestamp()
    running = Calendar()
    for key, value in messages:
        running.apply(key, value)
    # a restart reads the compacted topic: the last message per key, in any order
    compacted = dict(messages)
    restarted = Calendar()
    for key, value in reversed(list(compacted.items())):
        restarted.apply(key, value)
    expected = plainly_held(messages, asset_id, t)
    assert running.hold(asset_id, t) == expected
    assert restarted.hold(asset_id, t) == expected
    excluded = any(
        value is not None and key.startswith(b"window/")
        and (w := MaintenanceWindow.model_validate_json(value)).exclude_training
        and w.matches(asset_id) and plainly_covers(w, t)
        for key, value in compacted.items()
    )  # fmt: skip
    assert running.excluded(asset_id, t) == excluded


def test_a_shelf_expires_by_itself_and_is_listed_only_while_in_force() -> None:
    since = datetime(2026, 12, 6, 8, tzinfo=UTC)
    shelf = Shelf(asset_id="pump-01", since=since, until=since + timedelta(hours=8), by="ana",
                  reason="transmitter on order")  # fmt: skip
    calendar = Calendar()
    calendar.apply(*shelf_message(shelf))
    t0 = since.timestamp()
    assert calendar.hold("pump-01", t0) == "shelved"
    assert calendar.hold("pump-01", t0 + 8 * 3600 - 1) == "shelved"
    assert calendar.hold("pump-01", t0 + 8 * 3600) is None
    assert calendar.hold("pump-02", t0) is None
    assert calendar.shelved(t0 + 60) == [shelf]
    assert calendar.shelved(t0 + 8 * 3600) == []
    calendar.apply(tombstone("shelf", "pump-01"), None)
    assert calendar.hold("pump-01", t0) is None


def test_a_window_that_only_excludes_training_holds_no_alarm_back() -> None:
    window = MaintenanceWindow(id="x", assets="*", start=datetime(2026, 1, 1),
                               end=datetime(2026, 1, 2), suppress_alerts=False)  # fmt: skip
    calendar = Calendar()
    calendar.apply(*window_message(window))
    t = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    assert calendar.hold("pump-01", t) is None
    assert calendar.excluded("pump-01", t)
    assert not calendar.excluded("pump-01", t + 86400)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"timezone": "Mars/Olympus"}, "is not a time zone"),
        ({"end": datetime(2026, 1, 1)}, "end must be after start"),
        ({"start": datetime(2026, 1, 1, tzinfo=UTC)}, "without an offset"),
        ({"every": "daily", "end": datetime(2026, 1, 3)}, "longer than its period"),
        ({"until": datetime(2025, 1, 1)}, "until must not be before start"),
        ({"id": "a b"}, "id"),
    ],
)
def test_a_window_that_makes_no_sense_is_refused_saying_why(
    fields: dict[str, object], says: str
) -> None:
    base: dict[str, object] = {"id": "w", "assets": "*", "start": datetime(2026, 1, 1),
                               "end": datetime(2026, 1, 2)}  # fmt: skip
    with pytest.raises(ValueError, match=says):
        MaintenanceWindow.model_validate(base | fields)


def test_a_shelf_is_bounded_and_its_times_carry_their_offset() -> None:
    since = datetime(2026, 12, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="at most 7 days"):
        Shelf(asset_id="p", since=since, until=since + timedelta(days=8), by="a", reason="r")
    with pytest.raises(ValueError, match="with its offset"):
        Shelf(asset_id="p", since=datetime(2026, 12, 6), until=since, by="a", reason="r")


def test_an_entry_this_version_cannot_read_is_refused_naming_its_key() -> None:
    calendar = Calendar()
    with pytest.raises(CalendarError, match="names neither"):
        calendar.apply(b"other/1", b"{}")
    with pytest.raises(CalendarError, match=r"window/w: .*end"):
        calendar.apply(b"window/w", b'{"id": "w", "assets": "*", "start": "2026-01-02T00:00:00",'
                                    b' "end": "2026-01-01T00:00:00"}')  # fmt: skip
    key, value = window_message(MaintenanceWindow(
        id="w", assets="*", start=datetime(2026, 1, 1), end=datetime(2026, 1, 2)))  # fmt: skip
    with pytest.raises(CalendarError, match="the entry is window 'w'"):
        calendar.apply(b"window/other", value)
    assert calendar.windows == {}
    since = datetime(2026, 1, 1, tzinfo=UTC)
    _, shelved = shelf_message(Shelf(asset_id="pump-01", since=since, by="a", reason="r",
                                     until=since + timedelta(hours=1)))  # fmt: skip
    with pytest.raises(CalendarError) as shelf_error:
        calendar.apply(b"shelf/pump-02", shelved)
    assert str(shelf_error.value) == "shelf/pump-02: the entry shelves 'pump-01'"
    with pytest.raises(CalendarError) as unreadable:  # a key that is not UTF-8, a bad field
        calendar.apply(b"shelf/\xff", b'{"asset_id": "\xef\xbf\xbd", "by": "a"}')
    assert str(unreadable.value).startswith("shelf/\ufffd: since: Field required")
    with pytest.raises(CalendarError) as not_json:
        calendar.apply(b"window/w", b"[")
    assert str(not_json.value).startswith("window/w: Invalid JSON")  # no field to name
    calendar.apply(key, value)
    assert list(calendar.windows) == ["w"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("8h", 28800), ("2d", 172800), ("3600", 3600), ("1.5h", 5400), ("45s", 45)],
)
def test_durations_read_in_the_units_an_operator_types(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_duration_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_overlapping_windows_hold_an_asset_back_in_the_name_of_the_first_by_id() -> None:
    calendar = Calendar()
    for window_id in ("b", "a"):
        calendar.apply(*window_message(MaintenanceWindow(
            id=window_id, assets="pump-*", start=datetime(2026, 1, 1), end=datetime(2026, 1, 3),
        )))  # fmt: skip
    t = datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    assert calendar.hold("pump-01", t) == "maintenance:a"
    calendar.apply(tombstone("window", "a"), None)
    assert calendar.hold("pump-01", t) == "maintenance:b"


def test_each_entry_is_listed_on_one_line_saying_what_it_does() -> None:
    weekly = MaintenanceWindow(
        id="valves", assets="pump-0*", start=datetime(2026, 3, 2, 6), end=datetime(2026, 3, 2, 8),
        timezone="Europe/Paris", every="weekly", until=datetime(2026, 6, 1),
        exclude_training=False, note="valve checks",
    )  # fmt: skip
    assert describe(weekly) == (
        "window  valves  pump-0*  2026-03-02T06:00:00 -> 2026-03-02T08:00:00 Europe/Paris "
        "weekly until 2026-06-01T00:00:00: suppress alerts (valve checks)"
    )
    plain = {"every": "once", "until": None, "note": None, "suppress_alerts": False,
             "exclude_training": True}  # fmt: skip
    once = weekly.model_copy(update=plain)
    assert describe(once) == (
        "window  valves  pump-0*  2026-03-02T06:00:00 -> 2026-03-02T08:00:00 Europe/Paris: "
        "exclude from training"
    )
    both = once.model_copy(update={"suppress_alerts": True})
    assert describe(both).endswith(": suppress alerts, exclude from training")
    idle = once.model_copy(update={"exclude_training": False})
    assert describe(idle).endswith(": nothing")
    since = datetime(2026, 3, 2, 6, tzinfo=UTC)
    shelf = Shelf(asset_id="pump-03", since=since, until=since + timedelta(hours=8), by="ana",
                  reason="transmitter on order")  # fmt: skip
    assert describe(shelf) == (
        "shelf   pump-03  2026-03-02T06:00:00Z -> 2026-03-02T14:00:00Z  by ana: transmitter on "
        "order"
    )


def test_only_windows_that_exclude_training_and_match_the_asset_keep_its_records_out() -> None:
    calendar = Calendar()
    base = MaintenanceWindow(id="a", assets="pump-*", start=datetime(2026, 1, 1),
                             end=datetime(2026, 1, 2))  # fmt: skip
    for window in (base, base.model_copy(update={"id": "b", "exclude_training": False}),
                   base.model_copy(update={"id": "c", "assets": "fan-*"})):  # fmt: skip
        calendar.apply(*window_message(window))
    assert [w.id for w in calendar.excluding("pump-01")] == ["a"]
    assert calendar.excluding("mixer-01") == []


def test_a_message_without_a_key_is_refused_as_such() -> None:
    with pytest.raises(CalendarError) as refused:
        Calendar().apply(None, b"{}")
    assert str(refused.value) == "key '' names neither a window/ nor a shelf/"


def test_a_one_off_windows_every_occurrence_is_its_own_span() -> None:
    once = MaintenanceWindow(id="o", assets="*", start=datetime(2026, 1, 1, 6),
                             end=datetime(2026, 1, 1, 8))  # fmt: skip
    assert once.occurrence(3) == once.occurrence(0) == (once.start, once.end)


def test_a_window_in_a_zone_behind_utc_covers_its_evening_on_its_own_date() -> None:
    """22:00 to 23:00 in Los Angeles, daily: at 22:30 there (06:30 UTC the next day) it holds,
    whatever zone the machine keeps."""
    window = MaintenanceWindow(id="e", assets="*", start=datetime(2026, 3, 2, 22),
                               end=datetime(2026, 3, 2, 23), timezone="America/Los_Angeles",
                               every="daily")  # fmt: skip
    evening = datetime(2026, 3, 10, 22, 30, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp()
    assert window.covers(evening)
    assert not window.covers(evening + 3600)


def test_the_calendar_reads_a_topic_whole_and_goes_on_past_an_entry_it_refuses() -> None:
    calendar = Calendar()
    good = window_message(MaintenanceWindow(id="w", assets="*", start=datetime(2026, 1, 1),
                                            end=datetime(2026, 1, 2)))  # fmt: skip
    refused = calendar.apply_all([(b"other/1", b"{}"), good, (b"window/x", None)])
    assert refused == ["key 'other/1' names neither a window/ nor a shelf/"]
    assert list(calendar.windows) == ["w"]
    assert calendar.apply_all([(b"window/w", None)]) == []
    assert calendar.windows == {}
