"""One value per message: assembled per asset into the model's records (anomaly/assembly.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from anomaly.assembly import Assembly, assemble
from anomaly.model import Artifact
from anomaly.settings import InputSettings, TopicSettings
from devtools.simulator import Fleet
from tests.support.fakes import as_records
from tests.support.models import Trained
from tests.support.values import by_exception, quantised
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings, SensorSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")
BRIDGE = InputSettings(shape="value", asset_field="node", time_field="time", sensor_field="tag")


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def test_a_record_per_tick_from_each_sensors_last_value_while_fresh() -> None:
    a = Assembly.begin(2, start=100.0)
    assert assemble(a, 100.0, 0, 1.0, cadence=1.0, stale_after_s=5.0) == []
    assert assemble(a, 100.0, 1, 2.0, 1.0, 5.0) == []
    assert assemble(a, 101.0, 0, 3.0, 1.0, 5.0) == [(100.0, (1.0, 2.0), ())]
    # sensor 1 says nothing more: carried forward for 5 s, then missing
    out = assemble(a, 108.5, 0, 4.0, 1.0, 5.0)
    assert [tick for tick, _, _ in out] == [101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
    assert out[0][1] == (3.0, 2.0)
    assert out[4][2] == ()  # 105: sensor 1's value of 100 is 5 s old, still fresh
    assert out[5][2] == (1,)  # 106: it is not
    assert math.isnan(out[5][1][1])
    assert out[6][2] == (0, 1)  # 107: neither is sensor 0's of 101; then nothing to say
    # a long gap: records while some sensor is fresh, then the grid jumps to the reading
    out = assemble(a, 1000.2, 1, 5.0, 1.0, 5.0)
    assert [tick for tick, _, _ in out] == [109.0, 110.0, 111.0, 112.0, 113.0, 114.0]
    tick, values, missing = assemble(a, 1001.5, 0, 6.0, 1.0, 5.0)[0]
    assert (tick, values[1], missing) == (1001.0, 5.0, (0,))


def test_by_exception_messages_score_like_the_whole_records(model: Artifact) -> None:
    """The same plant sent whole, and by a bridge that sends a sensor's value only when it
    changes: the same records, the same alerts."""
    fleet = Fleet(3, seed=12)
    whole = quantised(fleet.records(300, fleet.faults(300, first=120)))
    values = by_exception(whole)
    assert len(values) < 0.8 * len(whole) * 8  # report by exception left values out

    events = {}
    for name, messages, layout in (("whole", whole, InputSettings()), ("values", values, BRIDGE)):
        p = BatchProcessor(
            TOPICS, BatchSettings(), AlertSettings(), sensors=SensorSettings(stale_after_s=600),
            layout=layout,
        )  # fmt: skip
        p.set_model(model)
        records = as_records(messages, partitions=1)
        results = [p.process(records[i : i + 500]) for i in range(0, len(records), 500)]
        assert not any(r.stats.dead_letters for r in results)
        assert sum(r.stats.scored for r in results) == 3 * 300  # window 1: every reading
        scores = np.concatenate([r.stats.scores for r in results])
        events[name] = (
            [_essence(json.loads(m.value)) for r in results for m in r.messages],
            scores,
        )
    # each family in its order (within a batch the sensors' events come before the episodes',
    # and the two streams cut their batches at other records)
    for family in (lambda e: e[0] in EPISODE, lambda e: e[0] not in EPISODE):
        assert list(filter(family, events["values"][0])) == list(filter(family, events["whole"][0]))
    assert events["whole"][0], "the faults raised no alert"
    assert np.allclose(np.sort(events["values"][1]), np.sort(events["whole"][1]))


EPISODE = ("open", "quiet", "resume", "resolve", "suppress", "unsuppress")


def _essence(event: dict[str, object]) -> tuple[object, ...]:
    """An event without what depends on the message that carried it (offsets, episode ids)."""
    return tuple(event.get(k) for k in ("type", "asset_id", "ts", "started_at", "ended_at",
                                        "records"))  # fmt: skip
