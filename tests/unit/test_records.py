import json
import math
from datetime import UTC, datetime

import pytest

from anomaly.records import RecordError, decode_record, from_object, reading_from
from anomaly.settings import InputSettings

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
