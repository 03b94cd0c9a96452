import json
import math
from datetime import UTC, datetime

import pytest

from anomaly.records import RecordError, decode_record

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
        (good(ts=1700000000), "bad_ts"),
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
