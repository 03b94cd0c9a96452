import json
import math
from datetime import UTC, datetime

import pytest

from anomaly.records import (
    Reading,
    RecordError,
    decode_record,
    from_object,
    parse_ts,
    reading_from,
)
from anomaly.settings import InputSettings, TimeUnit

FEATURES = ("pressure", "current")


def good(**changes: object) -> bytes:
    record: dict[str, object] = {
        "asset_id": "pump-17",
        "ts": "2026-11-21T10:00:00.123Z",
        "values": {"pressure": 1.5, "current": 3, "extra": "ignored"},
    }
    record.update(changes)
    return json.dumps(record).encode()


def test_decodes_features_in_the_models_order() -> None:
    record = decode_record(good(), ("current", "pressure"))
    assert record.asset_id == "pump-17"
    assert record.ts == datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=UTC)
    assert record.values == (3.0, 1.5)


def test_naive_timestamps_are_utc() -> None:
    assert decode_record(good(ts="2026-11-21 10:00:00"), FEATURES).ts.tzinfo == UTC


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (good(asset_id=""), "bad_asset_id"),
        (good(asset_id=17), "bad_asset_id"),
        (good(ts="yesterday"), "bad_ts"),
        (good(ts=True), "bad_ts"),
        (good(ts=[1700000000]), "bad_ts"),
        (good(ts=1e300), "bad_ts"),
        (good(values=[1, 2]), "bad_values"),
        (good(values={"pressure": 1.0}), "missing_feature"),
        (good(values={"pressure": "1.0", "current": 1}), "non_numeric"),
        (good(values={"pressure": True, "current": 1}), "non_numeric"),
        (good(values={"pressure": 10**400, "current": 1}), "non_finite"),
        (good(values={"pressure": 1e39, "current": 1}), "out_of_range"),
        (good(values={"pressure": 1.0, "current": -(10**39)}), "out_of_range"),
        (b'{"asset_id": "a", "ts": "2026-11-21T10:00:00Z", "values": {"pressure": NaN}}',
         "non_finite"),
        (b"[" * 100_000, "not_json"),
    ],
)  # fmt: skip
def test_refuses_what_breaks_the_contract(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        decode_record(raw, FEATURES)
    assert caught.value.reason == reason


def test_partial_records_name_what_they_lack_absent_or_null() -> None:
    absent = decode_record(good(values={"current": 2}), FEATURES, partial=True)
    null = decode_record(good(values={"pressure": None, "current": 2}), FEATURES, partial=True)
    for record in (absent, null):
        assert record.missing == (0,)
        assert math.isnan(record.values[0])
        assert record.values[1] == 2.0
    assert decode_record(good(), FEATURES, partial=True).missing == ()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"extra": 1}, "missing_feature"),  # none of the model's features
        ({"pressure": None, "current": None}, "missing_feature"),
        ({"pressure": "1.0"}, "non_numeric"),  # a string is malformed, not a dropout
        ({"pressure": 1e39}, "out_of_range"),
    ],
)
def test_partial_records_still_refuse_what_breaks_the_contract(
    values: dict[str, object], reason: str
) -> None:
    with pytest.raises(RecordError) as caught:
        decode_record(good(values=values), FEATURES, partial=True)
    assert caught.value.reason == reason


def test_a_null_value_is_still_refused_where_records_must_be_complete() -> None:
    with pytest.raises(RecordError) as caught:
        decode_record(good(values={"pressure": None, "current": 2}), FEATURES)
    assert caught.value.reason == "non_numeric"


@pytest.mark.parametrize(
    ("stamp", "unit"),
    [(1700000000, "auto"), (1700000000.5, "s"), (1700000000500, "auto"), (1700000000500, "ms"),
     (1700000000500000, "auto"), (1700000000500000000, "auto"), (1700000000500000000, "ns")],
)  # fmt: skip
def test_epoch_times_in_their_unit_or_told_apart_by_magnitude(stamp: float, unit: str) -> None:
    layout = InputSettings(time_unit=unit)
    ts = decode_record(good(ts=stamp), FEATURES).ts if unit == "auto" else None
    record = from_object(json.loads(good(ts=stamp)), FEATURES, layout=layout)
    assert record.ts.timestamp() == pytest.approx(
        1700000000.5 if stamp != 1700000000 else 1e9 * 1.7
    )
    assert ts is None or ts == record.ts


def test_an_epoch_number_is_refused_where_times_must_be_iso() -> None:
    with pytest.raises(RecordError) as caught:
        from_object(
            json.loads(good(ts=1700000000)), FEATURES, layout=InputSettings(time_unit="iso")
        )
    assert caught.value.reason == "bad_ts"


def test_fields_found_where_the_producer_puts_them() -> None:
    """Telegraf's JSON output: the asset in a tag, epoch seconds, the values in `fields`."""
    telegraf = {"name": "pump", "tags": {"host": "pump-17"}, "timestamp": 1700000000,
                "fields": {"pressure": 1.5, "current": 3}}  # fmt: skip
    layout = InputSettings(asset_field="tags.host", time_field="timestamp", values_field="fields")
    record = from_object(telegraf, FEATURES, layout=layout)
    assert (record.asset_id, record.values) == ("pump-17", (1.5, 3.0))
    assert record.ts == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    with pytest.raises(RecordError) as caught:
        from_object({**telegraf, "tags": {}}, FEATURES, layout=layout)
    assert caught.value.reason == "bad_asset_id"


def test_one_value_messages_are_read_with_a_reason_for_each_refusal() -> None:
    layout = InputSettings(shape="value", asset_field="node", sensor_field="tag")
    reading = reading_from({"node": "p-1", "ts": 1700000000, "tag": "flow", "value": 2}, layout)
    assert (reading.asset_id, reading.sensor, reading.value) == ("p-1", "flow", 2.0)
    assert (
        reading_from({"node": "p-1", "ts": 1, "tag": "flow", "value": None}, layout).value is None
    )
    for message, reason in [
        ([], "not_object"),
        ({"ts": 1, "tag": "flow", "value": 1}, "bad_asset_id"),
        ({"node": "p", "ts": "noon", "tag": "flow", "value": 1}, "bad_ts"),
        ({"node": "p", "ts": 1, "value": 1}, "bad_sensor"),
        ({"node": "p", "ts": 1, "tag": "flow", "value": "1"}, "non_numeric"),
        ({"node": "p", "ts": 1, "tag": "flow", "value": 1e39}, "out_of_range"),
    ]:
        with pytest.raises(RecordError) as caught:
            reading_from(message, layout)
        assert caught.value.reason == reason, message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "record is not a JSON object"),
        (good(asset_id=""), "record has no asset_id string"),
        (good(values=[1, 2]), "record has no values object"),
        (good(values={"pressure": 1.0}), "values lacks feature 'current'"),
        (good(values={"pressure": "1.0", "current": 1}),
         "feature 'pressure' is not a number: '1.0'"),
        (good(values={"pressure": 1.0, "current": 1e39}),
         "feature 'current' is beyond +-3.4e+38 (float32): 1e+39"),
        (b'{"asset_id": "a", "values": {"pressure": 1, "current": 1, "x": -Infinity}}',
         "record holds the non-standard JSON constant -Infinity"),
    ],
)  # fmt: skip
def test_a_refusal_says_what_is_wrong_in_words(raw: bytes, message: str) -> None:
    """The dead-letter envelope's `error` (str of the RecordError) names the field, feature
    and value at fault."""
    with pytest.raises(RecordError) as caught:
        decode_record(raw, FEATURES)
    assert str(caught.value) == message


def test_a_partial_record_with_none_of_the_features_says_so() -> None:
    with pytest.raises(RecordError) as caught:
        decode_record(good(values={"extra": 1}), FEATURES, partial=True)
    assert str(caught.value) == "values holds none of the model's features"


def test_a_refusal_of_bytes_that_are_not_json_names_the_parsers_complaint() -> None:
    with pytest.raises(RecordError) as caught:
        decode_record(b"\xff\xfe", FEATURES)
    assert str(caught.value).startswith("record is not UTF-8: 'utf-8' codec can't decode")
    with pytest.raises(RecordError) as caught:
        decode_record(b"{not json", FEATURES)
    assert str(caught.value).startswith("record is not JSON: Expecting property name")
    with pytest.raises(RecordError) as caught:
        decode_record(good(values={"pressure": 10**400, "current": 1}), FEATURES)
    assert str(caught.value).startswith("feature 'pressure' is not finite: 1000")


def test_a_non_standard_constant_is_refused_even_in_a_field_the_model_ignores() -> None:
    """NaN is not JSON: the record is refused as a whole, not read around."""
    raw = b'{"asset_id": "a", "ts": 1, "values": {"pressure": 1, "current": 2, "x": NaN}}'
    with pytest.raises(RecordError) as caught:
        decode_record(raw, FEATURES)
    assert caught.value.reason == "non_finite"


def test_a_value_at_float32s_largest_is_in_range() -> None:
    """3.4028234663852886e38 (float32's max) is accepted, on the fast path and the checked one
    (a partial record), and as a one-value message."""
    largest = 3.4028234663852886e38
    assert decode_record(good(values={"pressure": largest, "current": -largest}),
                         FEATURES).values == (largest, -largest)  # fmt: skip
    partial = decode_record(good(values={"pressure": largest}), FEATURES, partial=True)
    assert partial.values[0] == largest
    layout = InputSettings(shape="value", asset_field="node", sensor_field="tag")
    message = {"node": "p-1", "ts": 1, "tag": "flow", "value": largest}
    assert reading_from(message, layout).value == largest


def test_a_partial_record_keeps_its_asset_and_its_time_in_the_unit_set() -> None:
    """A partial record (checked field by field) in epoch milliseconds: 1,700,000,000 ms is
    1,700,000 s = 19 days 16:13:20 after the epoch (by magnitude it would read as seconds,
    2023-11-14)."""
    layout = InputSettings(time_unit="ms")
    obj = json.loads(good(ts=1700000000, values={"current": 2}))
    record = from_object(obj, FEATURES, partial=True, layout=layout)
    assert record.asset_id == "pump-17"
    assert record.ts == datetime(1970, 1, 20, 16, 13, 20, tzinfo=UTC)
    assert record.missing == (0,)


def test_one_value_messages_keep_their_fields_and_their_time_in_the_unit_set() -> None:
    layout = InputSettings(shape="value", asset_field="node", sensor_field="tag", time_unit="ms")
    ts = datetime(1970, 1, 20, 16, 13, 20, tzinfo=UTC)  # 1,700,000,000 ms, as above
    no_value = {"node": "p-1", "ts": 1700000000, "tag": "flow", "value": None}
    assert reading_from(no_value, layout) == Reading("p-1", ts, "flow", None)
    valued = {**no_value, "value": 2}
    assert reading_from(valued, layout) == Reading("p-1", ts, "flow", 2.0)


@pytest.mark.parametrize(
    ("message", "reason", "words"),
    [
        ([], "not_object", "message is not a JSON object"),
        ({"node": "", "ts": 1, "tag": "flow", "value": 1}, "bad_asset_id",
         "message has no node string"),
        ({"node": "p", "ts": 1, "tag": "", "value": 1}, "bad_sensor", "message has no tag string"),
        ({"node": "p", "ts": 1, "tag": "flow", "value": "1"}, "non_numeric",
         "feature 'flow' is not a number: '1'"),
        ({"node": "p", "ts": 1, "tag": "flow", "value": 1e39}, "out_of_range",
         "feature 'flow' is beyond +-3.4e+38 (float32): 1e+39"),
    ],
)  # fmt: skip
def test_one_value_messages_refused_say_why_in_words(
    message: object, reason: str, words: str
) -> None:
    layout = InputSettings(shape="value", asset_field="node", sensor_field="tag")
    with pytest.raises(RecordError) as caught:
        reading_from(message, layout)
    assert (caught.value.reason, str(caught.value)) == (reason, words)


def test_from_object_takes_complete_records_unless_told_partial() -> None:
    """The training job reads records with `from_object` as is: a record lacking a feature is
    refused there, not filled with NaN."""
    obj = json.loads(good(values={"current": 2}))
    with pytest.raises(RecordError) as caught:
        from_object(obj, FEATURES)
    assert caught.value.reason == "missing_feature"


def test_a_partial_record_with_a_null_value_keeps_its_time_in_the_unit_set() -> None:
    """A null value takes the checked path after the fast one: its time is still read in the
    layout's unit (1,700,000,000 ms: 1970-01-20 16:13:20)."""
    obj = json.loads(good(ts=1700000000, values={"pressure": None, "current": 2}))
    record = from_object(obj, FEATURES, partial=True, layout=InputSettings(time_unit="ms"))
    assert record.ts == datetime(1970, 1, 20, 16, 13, 20, tzinfo=UTC)
    assert record.missing == (0,)


@pytest.mark.parametrize("stamp", [1e11, 1e14, 1e17])
def test_epoch_magnitudes_switch_unit_at_1e11_1e14_and_1e17(stamp: float) -> None:
    """1e11 is read as milliseconds, 1e14 as microseconds, 1e17 as nanoseconds: each is 1e8 s
    after the epoch, 1157 days 9:46:40 (1970, 1971: 365 days, 1972: 366; then 61 days into
    1973): 1973-03-03 09:46:40 UTC. As seconds 1e11 would be the year 5138."""
    assert parse_ts(stamp) == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)


def test_an_iso_time_keeps_its_offset() -> None:
    assert parse_ts("2026-11-21T12:00:00+02:00") == datetime(2026, 11, 21, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        ("yesterday", "auto", "ts is not ISO 8601: 'yesterday'"),
        (True, "auto", "ts is not an ISO 8601 string: True"),
        (1700000000, "iso", "ts is not an ISO 8601 string: 1700000000"),
        (1e300, "auto", "ts 1e+300 is not a time in ns"),
        (1e300, "s", "ts 1e+300 is not a time in s"),
    ],
)
def test_a_bad_time_is_refused_saying_why(value: object, unit: TimeUnit, message: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_ts(value, unit)
    assert (caught.value.reason, str(caught.value)) == ("bad_ts", message)
