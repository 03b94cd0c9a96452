"""Hostile input, generated: the decoder and the batch processor never crash, refuse every bad
record with a known reason, and hand good records through unharmed."""

import base64
import json
import random
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.records import LIMIT, REASONS, RecordError, decode_record
from anomaly.settings import TopicSettings
from devtools import simulator
from devtools.local_broker import LocalBroker
from devtools.topics import committed_total
from tests.support.fakes import FakeRecord
from tests.support.kafka import Running, processed, produce, read, settings_on
from tests.support.models import Trained
from tests.support.waiting import wait_until
from worker.errors import ExitCode
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

FEATURES = ("pressure", "current", "vibration")

finite = st.floats(allow_nan=False, allow_infinity=False)
in_range = st.floats(min_value=-LIMIT, max_value=LIMIT)  # what the model can score
json_scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def _record(asset_id: object, ts: object, values: object) -> bytes:
    return json.dumps({"asset_id": asset_id, "ts": ts, "values": values}).encode()


def _decode(raw: bytes) -> object:
    """The record, or the reason it was refused; anything else raised fails the test."""
    try:
        return decode_record(raw, FEATURES)
    except RecordError as exc:
        refused = exc
    assert refused.reason in REASONS, refused.reason
    assert str(refused)  # a message for people
    return refused.reason


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_decoded_or_refused_with_a_reason(raw: bytes) -> None:
    _decode(raw)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_arbitrary_json_is_decoded_or_refused_with_a_reason(value: object) -> None:
    _decode(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(
    asset_id=st.text(min_size=1, max_size=40),
    ts=timestamps,
    values=st.fixed_dictionaries({f: in_range | st.integers(-(2**63), 2**63) for f in FEATURES}),
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_good_records_come_through_unharmed(
    asset_id: str, ts: datetime, values: dict[str, float], extra: dict[str, object]
) -> None:
    raw = _record(asset_id, ts.isoformat(), {**extra, **values})
    record = decode_record(raw, FEATURES)
    assert record.asset_id == asset_id
    assert record.ts == ts
    assert record.values == tuple(float(values[f]) for f in FEATURES)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(FEATURES),
    bad=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", '"1.5"', "true", "null", "[1]",
                         "{}"]),
)  # fmt: skip
def test_non_numbers_and_non_finite_literals_are_refused(field: str, bad: str) -> None:
    values = ", ".join(f'"{f}": {bad if f == field else "1.0"}' for f in FEATURES)
    raw = f'{{"asset_id": "a", "ts": "2026-11-21T10:00:00Z", "values": {{{values}}}}}'.encode()
    assert _decode(raw) in {"non_finite", "non_numeric"}


def test_deeply_nested_and_huge_json_is_refused_not_crashed() -> None:
    assert _decode(b"[" * 200_000) == "not_json"
    assert _decode(b'{"a":' * 100_000) == "not_json"
    assert _decode(json.dumps({"asset_id": "a", "ts": "x" * 1_000_000}).encode()) == "bad_ts"
    nested: object = 1.0
    for _ in range(900):
        nested = [nested]
    assert _decode(_record("a", "2026-11-21T10:00:00Z", dict.fromkeys(FEATURES, nested))) == (
        "non_numeric"
    )


def test_duplicate_keys_take_the_last_value_in_both_parsers() -> None:
    """Both the fast and the explaining parser read a duplicate key's last value, so the record
    scored is the one whose reason would be reported: no disagreement to exploit."""
    raw = (b'{"asset_id": "a", "asset_id": "b", "ts": "2026-11-21T10:00:00Z",'
           b' "values": {"pressure": 1, "pressure": 2, "current": 3, "vibration": 4}}')  # fmt: skip
    record = decode_record(raw, FEATURES)
    assert (record.asset_id, record.values) == ("b", (2.0, 3.0, 4.0))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.builds(
                _record,
                st.text(min_size=1, max_size=3),
                timestamps.map(lambda t: t.isoformat()),
                st.fixed_dictionaries(dict.fromkeys(simulator.FEATURES, finite)),
            ),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_a_batch_of_anything_dead_letters_the_bad_and_scores_the_good(
    trained: Trained, values: list[bytes]
) -> None:
    processor = BatchProcessor(TopicSettings(), BatchSettings(), AlertSettings(max_assets=8))
    processor.set_model(trained.store.load_current())
    records = [FakeRecord("in", 0, i, None, v) for i, v in enumerate(values)]
    result = processor.process(records)
    good = [v for v in values if _is_good(v)]
    assert result.stats.scored + result.stats.warming_up == len(good)
    assert sum(result.stats.dead_letters.values()) == len(values) - len(good)
    assert set(result.stats.dead_letters) <= set(REASONS)
    assert result.offsets == {("in", 0): len(values)}
    assert len(processor.assets) <= 8
    dead = [json.loads(m.value) for m in result.messages if m.topic == TopicSettings().dead_letters]
    assert len(dead) == len(values) - len(good)
    assert all(d["reason"] in REASONS and d["error"] for d in dead)
    assert np.isfinite(result.stats.scores).all()


def _is_good(raw: bytes) -> bool:
    try:
        decode_record(raw, simulator.FEATURES)
    except RecordError:
        return False
    return True


def test_a_million_distinct_assets_keep_memory_bounded_by_the_asset_limit(
    trained: Trained,
) -> None:
    processor = BatchProcessor(TopicSettings(), BatchSettings(), AlertSettings(max_assets=1000))
    processor.set_model(trained.store.load_current())
    values = ", ".join(f'"{f}": 1.0' for f in simulator.FEATURES)
    template = '{"asset_id": "a%d", "ts": "2026-11-21T10:00:00Z", "values": {%s}}'
    evicted = warming = 0
    for start in range(0, 1_000_000, 5000):
        batch = [FakeRecord("in", 0, i, None, (template % (i, values)).encode())
                 for i in range(start, start + 5000)]  # fmt: skip
        result = processor.process(batch)
        evicted, warming = (
            evicted + result.stats.evicted,
            warming + result.stats.warming_up + result.stats.scored,
        )
        assert len(processor.assets) <= 1000
    assert warming == 1_000_000  # every record was taken, none dead-lettered
    assert evicted == 1_000_000 - 1000


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(
    hostile=st.lists(
        st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
        min_size=300,
        max_size=300,
    )
)
def test_hostile_records_through_the_real_broker_and_worker(
    broker: LocalBroker, trained: Trained, tmp_path_factory: pytest.TempPathFactory,
    hostile: list[bytes],
) -> None:  # fmt: skip
    """Generated garbage mixed into a simulator stream, through Tansu and a real worker: every
    record is committed, every bad one is on the dead-letter topic with its reason, the good
    ones are scored."""
    settings = settings_on(broker, trained.root)
    fleet = simulator.Fleet(n_assets=20, seed=3)
    good = list(fleet.records(30))
    bad = [value for value in hostile if not _is_good(value)]
    messages = [*good, *((b"hostile", value) for value in bad)]
    random.Random(0).shuffle(messages)
    n = produce(settings, messages)
    running = Running(settings)
    try:
        wait_until(lambda: processed(running.metrics) >= n, what=f"{n} records processed")
    finally:
        assert running.stop() == ExitCode.OK
    assert committed_total(settings.kafka, settings.topics.group, settings.topics.input) == n
    dead = [json.loads(r.value or b"") for r in read(settings, settings.topics.dead_letters,
                                                     len(bad))]  # fmt: skip
    assert len(dead) == len(bad)
    assert all(d["reason"] in REASONS for d in dead)
    assert sorted(base64.b64decode(d["value"]) for d in dead) == sorted(bad)
    registry = running.metrics.registry
    taken = sum(registry.get_sample_value("anomaly_records_total", {"outcome": o}) or 0
                for o in ("scored", "warming_up"))  # fmt: skip
    assert taken == len(good)
