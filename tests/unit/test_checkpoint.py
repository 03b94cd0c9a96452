"""Alert state saved with the offsets and restored with the partition (worker/checkpoint.py)."""

import base64
import hashlib
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
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
    return RuleState(above_run=2, run_start=(T0 + timedelta(seconds=i),
                     SourceRef("in", 2, 500 + i)), run_peak=1.25)  # fmt: skip


def raised(i: int) -> RuleState:
    """After an episode ended by the drop rule: a raised threshold of its own."""
    return RuleState(below_run=i % 3, floor=0.1 + i / 7, level=2.5)


def quiet_episode(i: int) -> RuleState:
    """An episode that went quiet, resumed once and went quiet again, waiting its hold."""
    state = open_episode(i)
    assert state.episode is not None
    state.episode.resumed = (T0 + timedelta(seconds=30), SourceRef("in", 2, 1030 + i))
    state.quiet, state.above_run, state.judged = True, 1, -0.25
    return state


def in_incident(i: int, held: str | None = None) -> RuleState:
    """An open episode paging in an incident (anomaly/incidents.py), or held back too."""
    state = open_episode(i)
    assert state.episode is not None
    state.episode.incident, state.episode.held = "in/1/77", held
    return state


def test_rule_states_come_back_exactly() -> None:
    states = {"pump-1": open_episode(1), "pump-2": a_run(2), "pump-3": open_episode(3),
              "pump-4": raised(4), "pump-5": quiet_episode(5), "pump-6": in_incident(6),
              "pump-7": in_incident(7, "shelved")}  # fmt: skip
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


def inner_json(text: str) -> bytes:
    """The JSON inside a checkpoint's text ("v1:" + base64(zlib(JSON)))."""
    assert text.startswith("v1:")
    return zlib.decompress(base64.b64decode(text[3:]))


def test_the_text_is_compact_json_of_one_row_per_asset_in_the_v1_layout() -> None:
    """[asset id, above_run, below_run, run (start µs since the epoch, topic, partition,
    offset) or null, run_peak, episode or null, level, drop_run, floor, quiet (0 or 1), the
    judged average or null, the drift's average (one value per feature) or null]: no spaces; a
    run that has ended (above_run 0) is not saved even where its start is still held. Rows of
    0.4 (the first 9 fields) and of 0.5 (11) still read."""
    ended = RuleState(below_run=1, run_start=(T0, SourceRef("in", 2, 7)), run_peak=3.0,
                      level=0.5, floor=1.5, judged=-1.5, drift=np.array([0.25, -0.1]))  # fmt: skip
    text, unsaved = encode([("p", ended)], 4096)
    assert unsaved == 0
    assert inner_json(text) == b'[["p",0,1,null,3.0,null,0.5,0,1.5,0,-1.5,[0.25,-0.1]]]'
    # T0 is 2026-11-21 10:00:00.123456 UTC: 1,795,255,200.123456 s after the epoch
    running = RuleState(above_run=2, run_start=(T0, SourceRef("in", 2, 7)), run_peak=3.0)
    text, _ = encode([("q", running)], 4096)
    assert inner_json(text) == (
        b'[["q",2,0,[1795255200123456,"in",2,7],3.0,null,0.0,0,0.0,0,null,null]]'
    )
    assert decode(text)["q"] == running
    restored = decode(encode([("p", ended)], 4096)[0])["p"]
    assert (restored.run_start, restored.floor, restored.below_run) == (None, 1.5, 1)
    assert restored.judged == -1.5
    assert restored.drift is not None
    assert restored.drift.tolist() == [0.25, -0.1]
    row = [["q", 2, 0, [1795255200123456, "in", 2, 7], 3.0, None, 0.0, 0, 0.0]]
    for fields in ([], [0, None]):  # 0.4's rows, 0.5's
        packed = zlib.compress(json.dumps([row[0] + fields]).encode())
        assert decode("v1:" + base64.b64encode(packed).decode())["q"] == running


def priority_states() -> list[tuple[str, RuleState]]:
    """Open episodes first, the latest ended first; then runs, the latest started first; then
    the rest (a raised threshold), in a scrambled order."""

    def episode(seconds: int) -> RuleState:
        state = open_episode(0)
        assert state.episode is not None
        state.episode.ended_at = T0 + timedelta(seconds=seconds)
        return state

    return [("c-raised", raised(1)), ("r-old", a_run(0)), ("e-old", episode(10)),
            ("r-new", a_run(60)), ("e-new", episode(20))]  # fmt: skip


@pytest.mark.parametrize(
    ("guess", "kept"),
    [(0, ["e-new"]), (1, ["e-new", "e-old"]), (2, ["e-new", "e-old", "r-new"]),
     (3, ["e-new", "e-old", "r-new", "r-old"])],
)  # fmt: skip
def test_with_a_guess_one_more_than_fitted_last_time_is_kept_by_priority(
    guess: int, kept: list[str]
) -> None:
    """Under 10 fitted last time: one more this time (room for all: 4096 bytes)."""
    text, unsaved = encode(priority_states(), 4096, guess=guess)
    assert list(decode(text)) == kept
    assert unsaved == 5 - len(kept)


@pytest.mark.parametrize(("guess", "kept"), [(9, 10), (10, 11), (20, 22), (29, 30), (30, 30)])
def test_with_a_guess_a_tenth_more_than_fitted_last_time_and_never_more_than_there_are(
    guess: int, kept: int
) -> None:
    """30 small states, room for all: a guess g keeps g + max(1, g // 10) of them: 9 -> 10,
    10 -> 11, 20 -> 22; 29 -> 31 is more than there are: all 30, none unsaved (not -1)."""
    states = [(f"a{i:02d}", raised(i)) for i in range(30)]
    text, unsaved = encode(states, 4096, guess=guess)
    assert (len(decode(text)), unsaved) == (kept, 30 - kept)
    assert encode(states, 4096) == encode(states, 4096, guess=30)


def test_a_text_exactly_max_bytes_long_is_within_the_limit() -> None:
    states = priority_states()
    full, _ = encode(states, 1 << 20)
    assert encode(states, len(full)) == (full, 0)


def test_when_only_the_first_fits_it_alone_is_saved() -> None:
    states = [("a-first", open_episode(1)), ("b-second", a_run(1))]
    first, _ = encode(states[:1], 1 << 20)
    text, unsaved = encode(states, len(first))
    assert (list(decode(text)), unsaved) == (["a-first"], 1)


def test_when_nothing_fits_nothing_is_written_after_at_most_four_packings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first asset's name is long and random (it does not compress): no text holds it
    within one byte less than its own row needs, while 30 small ones behind it make every
    try look close. The cost stays bounded: at most 4 compressions, then nothing saved
    (not an empty checkpoint, which would read as "no state")."""
    name = base64.b64encode(bytes(range(7, 250, 3)) * 3).decode()
    states = [(name, open_episode(1))] + [(f"a{i:02d}", raised(i)) for i in range(30)]
    alone, _ = encode(states[:1], 1 << 20)
    packings = []
    compress: Callable[[bytes, int], bytes] = zlib.compress

    def counted(data: bytes, level: int = -1) -> bytes:
        packings.append(len(data))
        return compress(data, level)

    monkeypatch.setattr(zlib, "compress", counted)
    assert encode(states, len(alone) - 1) == ("", 31)
    assert 2 <= len(packings) <= 4
    packings.clear()
    assert encode(states[:1], len(alone) - 1) == ("", 1)


@pytest.mark.parametrize("share", [0.5, 0.25])
def test_a_text_far_over_the_limit_still_saves_nearly_all_that_fits(share: float) -> None:
    """200 runs under names that do not compress (hashes): with room for a half or a quarter
    of the text, what is saved is at least 85% of the longest run of them, by priority, whose
    text fits (the shrinking aims 5% under the limit, within 4 tries)."""
    states = [
        (base64.b32encode(hashlib.sha256(str(i).encode()).digest()[:15]).decode(), a_run(i))
        for i in range(200)
    ]
    by_priority = sorted(states, key=lambda s: s[1].run_start[0] if s[1].run_start else T0,
                         reverse=True)  # fmt: skip
    budget = int(len(encode(states, 1 << 20)[0]) * share)
    fitting = max(k for k in range(201) if len(encode(by_priority[:k], 1 << 20)[0]) <= budget)
    text, unsaved = encode(states, budget)
    assert len(text) <= budget
    assert list(decode(text)) == [name for name, _ in by_priority[: 200 - unsaved]]
    assert 200 - unsaved >= 0.85 * fitting


def test_a_text_that_is_not_a_checkpoint_is_refused_saying_why() -> None:
    with pytest.raises(CheckpointError) as caught:
        decode("garbage-text")
    assert str(caught.value) == "not a checkpoint: starts with 'garbage-'"
    good, _ = encode([("p", a_run(1))], 4096)
    with pytest.raises(CheckpointError) as caught:
        decode(good[:10] + "!" + good[10:])  # not base64: refused, not skipped
    assert str(caught.value).startswith("unreadable checkpoint: ")
    not_an_id = "v1:" + base64.b64encode(zlib.compress(b"[[5,0,0,null,0,null,0,0,0]]")).decode()
    with pytest.raises(CheckpointError) as caught:
        decode(not_an_id)
    assert str(caught.value) == "unreadable checkpoint: asset id 5"


def processor(artifact: Artifact) -> BatchProcessor:
    # without the onset rule: its history, like a window, is not saved (refilled after a move)
    # the onset rule's history and an idle asset's judged average are not saved, the alert
    # state is: without them a restart is exact
    settings = AlertSettings(open_after=3, resolve_after=5, onset_step=0, score_rate=1)
    p = BatchProcessor(TOPICS, BatchSettings(), settings)
    p.set_model(artifact)
    return p


def alerts(results: list[BatchResult]) -> list[tuple[str, str, int]]:
    """The episodes' events (a sensor's state is not saved with the offsets: after a restart a
    stuck sensor is found again, anomaly/instruments.py)."""
    out = []
    for result in results:
        for m in result.messages:
            event = json.loads(m.value)
            if "episode_id" in event:
                out.append((event["type"], event["episode_id"], event["source"]["offset"]))
    return out


@pytest.fixture(scope="module")
def stream() -> list[FakeRecord]:
    """Faults of the process only (spikes, drifts): a sensor's state (anomaly/instruments.py)
    is not saved with the offsets, so a restart while a sensor is stuck or noisy (a flow whose
    values are shuffled for 120 records reads as noise) finds it again, scoring a few records
    with it meanwhile (worker/checkpoint.py)."""
    fleet = Fleet(n_assets=6, seed=3)
    faults = [f for f in fleet.faults(400, first=60, length=120) if f.kind in ("spike", "drift")]
    return as_records(fleet.records(400, faults))


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
    assert p.open_episodes >= 2
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


def test_a_drift_saved_with_whole_numbers_comes_back_as_floats() -> None:
    """Another writer may write 1 for 1.0: the average is advanced in place, so it must come
    back as floats whatever the JSON says."""
    row = [["p", 1, 0, None, 3.0, None, 0.0, 0, 0.0, 0, None, [1, 0]]]
    packed = zlib.compress(json.dumps(row).encode())
    drift = decode("v1:" + base64.b64encode(packed).decode())["p"].drift
    assert drift is not None
    assert drift.dtype == np.float64
    drift += 0.5  # as Drift.advance does
    assert drift.tolist() == [1.5, 0.5]
