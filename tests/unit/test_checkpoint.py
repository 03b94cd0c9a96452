"""Alert state saved with the offsets and restored with the partition (worker/checkpoint.py)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from anomaly.model import Artifact
from anomaly.rules import Episode, RuleState, SourceRef
from anomaly.settings import TopicSettings
from devtools.simulator import Fleet
from tests.support.fakes import FakeRecord, as_records
from tests.support.models import Trained
from worker.checkpoint import CheckpointError, Handover, decode, encode
from worker.pipeline import BatchProcessor, BatchResult
from worker.settings import AlertSettings, BatchSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")
T0 = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)


def open_episode(i: int) -> RuleState:
    start = SourceRef("in", 2, 1000 + i)
    episode = Episode(f"in/2/{1000 + i}", start, T0, T0 + timedelta(seconds=i), 4 + i, 3.5, 9)
    return RuleState(above_run=0, below_run=2, run_start=(T0, start), run_peak=3.5,
                     episode=episode, level=1.0 + i / 3, drop_run=1)  # fmt: skip


def a_run(i: int) -> RuleState:
    return RuleState(above_run=2, run_start=(T0 + timedelta(seconds=i), SourceRef("in", 2, i)),
                     run_peak=1.25)  # fmt: skip


def raised(i: int) -> RuleState:
    """After an episode ended by the drop rule: a raised threshold of its own."""
    return RuleState(below_run=i % 3, floor=0.1 + i / 7, level=2.5)


def test_rule_states_come_back_exactly() -> None:
    states = {"pump-1": open_episode(1), "pump-2": a_run(2), "pump-3": open_episode(3),
              "pump-4": raised(4)}  # fmt: skip
    text, unsaved = encode(states.items(), max_bytes=4096)
    assert unsaved == 0
    assert text.startswith("v1:")
    assert len(text) <= 4096
    restored = decode(text)
    assert restored.keys() == states.keys()
    for asset_id, rules in states.items():
        if rules.above_run == 0:
            rules.run_start = restored[asset_id].run_start  # not saved without a run: no use
        assert restored[asset_id] == rules


def test_nothing_saved_reads_as_no_state_and_garbage_is_refused() -> None:
    assert decode(None) == {}
    assert decode("") == {}
    assert encode([], 4096) == (encode([], 4096)[0], 0)
    assert decode(encode([], 4096)[0]) == {}
    for bad in ("not ours", "v1:!!!", "v1:" + "QUJD"):
        with pytest.raises(CheckpointError):
            decode(bad)


def test_over_the_limit_open_episodes_are_kept_first_and_the_rest_counted() -> None:
    states = [(f"run-{i:04d}", a_run(i)) for i in range(300)]
    states += [(f"open-{i:04d}-{'x' * 40}", open_episode(i)) for i in range(60)]
    text, unsaved = encode(states, max_bytes=1024)
    kept = decode(text)
    assert len(text) <= 1024
    assert unsaved == len(states) - len(kept) > 0
    assert all(name.startswith("open-") for name in kept)  # every run left out before these
    assert len(kept) >= 5
    assert encode(states, max_bytes=0) == ("", len(states))


def processor(artifact: Artifact) -> BatchProcessor:
    # without the onset rule: its history, like a window, is not saved (refilled after a move)
    settings = AlertSettings(open_after=3, resolve_after=5, onset_step=0)
    p = BatchProcessor(TOPICS, BatchSettings(), settings)
    p.set_model(artifact)
    return p


def alerts(results: list[BatchResult]) -> list[tuple[str, str, int]]:
    out = []
    for result in results:
        for m in result.messages:
            event = json.loads(m.value)
            out.append((event["type"], event["episode_id"], event["source"]["offset"]))
    return out


@pytest.fixture(scope="module")
def stream() -> list[FakeRecord]:
    fleet = Fleet(n_assets=6, seed=3)
    return as_records(fleet.records(400, fleet.faults(400, first=60, length=120)))


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def batches(records: list[FakeRecord], size: int) -> list[list[FakeRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


@pytest.mark.parametrize("crash_after", [6, 8, 11, 14])
def test_a_worker_restarted_from_the_commit_publishes_what_an_uninterrupted_one_does(
    model: Artifact, stream: list[FakeRecord], crash_after: int
) -> None:
    """A window-1 model: the alert state is all there is, so a restart is exact."""
    chunks = batches(stream, 97)
    uninterrupted = processor(model)
    expected = [uninterrupted.process(chunk) for chunk in chunks]
    assert {kind for kind, _, _ in alerts(expected)} == {"open", "resolve"}

    first, committed = processor(model), {}
    for chunk in chunks[:crash_after]:
        result = first.process(chunk)
        texts, unsaved = first.checkpoints(result.offsets, 4096)
        assert unsaved == 0
        committed.update(texts)
    # the worker dies; the next one gets every partition with what was committed and reads
    # on from the committed offsets
    second = processor(model)
    results = [second.process(chunks[crash_after], Handover(frozenset(), dict(committed)))]
    results += [second.process(chunk) for chunk in chunks[crash_after + 1 :]]
    assert first.open_episodes > 0  # the crash comes in the middle of episodes
    assert results[0].stats.restored >= first.open_episodes
    assert alerts(results) == alerts(expected[crash_after:])
    assert second.open_episodes == uninterrupted.open_episodes


def test_without_the_saved_state_a_restart_loses_the_open_episodes_resolve(
    model: Artifact, stream: list[FakeRecord]
) -> None:
    """What the checkpoint is for: the same restart with nothing restored differs."""
    chunks = batches(stream, 97)
    uninterrupted = processor(model)
    expected = alerts([uninterrupted.process(chunk) for chunk in chunks][7:])
    second = processor(model)
    assert alerts([second.process(chunk) for chunk in chunks[7:]]) != expected


def test_a_lost_partition_is_forgotten_and_the_gaining_worker_resolves_its_open_episodes(
    model: Artifact, stream: list[FakeRecord]
) -> None:
    chunks = batches(stream, 97)
    worker_a, committed = processor(model), {}
    for chunk in chunks[:6]:
        result = worker_a.process(chunk)
        committed.update(worker_a.checkpoints(result.offsets, 4096)[0])
    holding = {a: s.rules.episode.episode_id for a, s in worker_a.assets if s.rules.episode}
    assert holding
    assert worker_a.open_episodes == len(holding)
    tracked = len(worker_a.assets)

    released = worker_a.process([], Handover(frozenset(committed), {}))
    assert released.stats.released == tracked
    assert len(worker_a.assets) == 0
    assert worker_a.open_episodes == 0
    assert worker_a.checkpoints(committed, 4096)[0] == dict.fromkeys(committed, encode([], 4096)[0])

    worker_b = processor(model)
    results = [worker_b.process(chunks[6], Handover(frozenset(), dict(committed)))]
    results += [worker_b.process(chunk) for chunk in chunks[7:]]
    events = [json.loads(m.value) for r in results for m in r.messages]
    for asset_id, episode_id in holding.items():
        mine = [e for e in events if e["asset_id"] == asset_id]
        assert mine[0]["type"] == "resolve"
        assert mine[0]["episode_id"] == episode_id


def test_in_an_alert_storm_what_fits_is_written_at_most_once_a_second(
    model: Artifact,
) -> None:
    fleet = Fleet(n_assets=6, seed=3)
    records = as_records(fleet.records(400, fleet.faults(400, first=60, length=300)), partitions=1)
    now = [0.0]
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings(), clock=lambda: now[0])
    p.set_model(model)
    chunks = batches(records, 97)
    for chunk in chunks[:12]:
        p.process(chunk)
    assert p.open_episodes >= 3
    part = [("in", 0)]
    first, unsaved = p.checkpoints(part, max_bytes=200)  # room for one or two
    assert unsaved > 0
    assert 0 < len(decode(first[("in", 0)])) < p.open_episodes
    p.process(chunks[12])  # the episodes go on: their state changes
    again, _ = p.checkpoints(part, max_bytes=200)
    assert again == first  # within the second: the partial text is not written anew
    now[0] += 1.5
    later, _ = p.checkpoints(part, max_bytes=200)
    assert later != first
    assert decode(later[("in", 0)]).keys() <= {a for a, s in p.assets if s.rules.episode}
