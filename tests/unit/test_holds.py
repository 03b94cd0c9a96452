"""Pages held back (worker/decide.py): an episode inside a maintenance window or a shelf opens
`suppressed` and pages (`unsuppress`) once its asset is out of the hold while still active;
a shelf put on an asset in alarm withdraws its page (`suppress`); a quiet episode is not paged
when its hold ends. The hold travels with the offsets, and the metrics page only what is not
held."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from anomaly.calendar import MaintenanceWindow, Shelf, shelf_message, window_message
from anomaly.model import Artifact
from anomaly.rules import Episode, RuleState, SourceRef
from devtools.simulator import Fleet
from tests.support.fakes import as_records
from tests.support.models import Trained
from tests.unit.test_pipeline import TOPICS
from worker.checkpoint import decode, encode
from worker.metrics import Metrics
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

FLEET = Fleet(n_assets=4, seed=5)
FAULTS = FLEET.faults(400)
ASSET = next(f.asset_id for f in FAULTS if f.kind == "drift")
Events = list[dict[str, object]]


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def run(model: Artifact, calendar: Sequence[tuple[bytes, bytes]] = ()) -> Events:
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings(resolve_after_s=3600.0))
    p.set_model(model)
    for key, value in calendar:
        p.calendar.apply(key, value)
    records = as_records(FLEET.records(400, FAULTS))
    out: Events = []
    for i in range(0, len(records), 100):
        result = p.process(records[i : i + 100])
        for message in result.messages:
            if message.topic == TOPICS.alerts:
                event = json.loads(message.value)
                del event["detected_at"]  # the clock's
                out.append(event)
    return out


def at(ts: object) -> datetime:
    return datetime.fromisoformat(str(ts))


def mine(events: Events, asset_id: str = ASSET) -> list[tuple[object, object, object]]:
    return [(e["type"], e["ts"], e["suppressed"]) for e in events if e["asset_id"] == asset_id]


@pytest.fixture(scope="module")
def baseline(model: Artifact) -> Events:
    events = run(model)
    kinds = [kind for kind, _, _ in mine(events)]
    assert kinds[:2] == ["open", "quiet"], "the drift fault must open, then go quiet"
    return events


def wall(ts: datetime) -> datetime:
    return ts.replace(tzinfo=None)


def test_an_episode_inside_a_window_opens_suppressed_and_pages_once_the_window_ends(
    model: Artifact, baseline: Events
) -> None:
    (_, opened, _), (_, quiet, _) = mine(baseline)[:2]
    end = at(opened) + (at(quiet) - at(opened)) / 2  # still active then
    end = end.replace(microsecond=0)
    window = MaintenanceWindow(
        id="valves", assets=ASSET, start=wall(at(opened)) - timedelta(minutes=5), end=wall(end)
    )
    events = run(model, [window_message(window)])
    held = mine(events)
    assert held[0] == ("open", opened, "maintenance:valves")
    assert held[1][:2] == ("unsuppress", end.isoformat().replace("+00:00", "Z"))
    assert held[1][2] is None
    release = next(e for e in events if e["type"] == "unsuppress")
    assert release["released"] == "maintenance:valves"
    assert release["episode_id"] == next(e for e in events if e["type"] == "open"
                                         and e["asset_id"] == ASSET)["episode_id"]  # fmt: skip
    assert [k for k, _, s in held[2:] if s is not None] == []  # paged from then on
    # the other assets page as before
    others = [e for e in baseline if e["asset_id"] != ASSET]
    assert [e for e in events if e["asset_id"] != ASSET] == others


def test_a_window_that_ends_while_the_episode_is_quiet_never_pages_it(
    model: Artifact, baseline: Events
) -> None:
    (_, opened, _), (_, quiet, _) = mine(baseline)[:2]
    window = MaintenanceWindow(
        id="w", assets="pump-*", start=wall(at(opened)) - timedelta(minutes=5),
        end=wall(at(quiet)) + timedelta(seconds=1), suppress_alerts=True,
    )  # fmt: skip
    held = mine(run(model, [window_message(window)]))
    assert [kind for kind, _, _ in held] == [kind for kind, _, _ in mine(baseline)]
    assert all(s == "maintenance:w" for _, _, s in held[:2])


def test_shelving_an_asset_in_alarm_withdraws_its_page_until_the_shelf_expires(
    model: Artifact, baseline: Events
) -> None:
    (_, opened, _), (_, quiet, _) = mine(baseline)[:2]
    since = at(opened) + timedelta(seconds=2)
    until = since + (at(quiet) - since) / 2
    until = until.replace(microsecond=0)
    shelf = Shelf(asset_id=ASSET, since=since, until=until, by="ana", reason="known leak")
    held = mine(run(model, [shelf_message(shelf)]))
    kinds = [(kind, s) for kind, _, s in held]
    assert kinds[:3] == [("open", None), ("suppress", "shelved"), ("unsuppress", None)]
    assert at(held[1][1]) == since
    assert at(held[2][1]) == until


def test_a_window_that_does_not_suppress_alerts_holds_nothing_back(
    model: Artifact, baseline: Events
) -> None:
    window = MaintenanceWindow(id="w", assets="*", start=datetime(2000, 1, 1),
                               end=datetime(2100, 1, 1), suppress_alerts=False)  # fmt: skip
    assert run(model, [window_message(window)]) == baseline


def test_the_hold_travels_with_the_offsets() -> None:
    ref = SourceRef("in", 0, 7)
    ts = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    for held in ("maintenance:w", None):
        for resumed in ((ts, ref), None):
            rules = RuleState(episode=Episode("in/0/7", ref, ts, ts, 3, 2.0, 3, resumed, held))
            text, _ = encode([("pump-01", rules)], 4096)
            restored = decode(text)["pump-01"].episode
            assert restored is not None
            assert (restored.held, restored.resumed) == (held, resumed)


def test_a_held_episode_shows_as_suppressed_and_pages_once_released() -> None:
    m = Metrics(CollectorRegistry())

    def series(name: str) -> list[dict[str, str]]:
        return [s.labels for f in m.registry.collect() for s in f.samples if s.name == name]

    m.episode("open", "pump-01", "flow", "default", "v1", "shelved")
    assert series("anomaly_episode_open") == []
    assert series("anomaly_episode_suppressed") == [
        {"asset_id": "pump-01", "held_by": "shelved", "model": "default"}
    ]
    m.episode("unsuppress", "pump-01", "flow", "default", "v1", None)
    assert series("anomaly_episode_suppressed") == []
    assert [s["asset_id"] for s in series("anomaly_episode_open")] == ["pump-01"]
    m.episode("suppress", "pump-01", "flow", "default", "v1", "maintenance:w")
    assert series("anomaly_episode_open") == []
    assert len(series("anomaly_episode_suppressed")) == 1
    m.episode("resolve", "pump-01", None, "default", "v1", "maintenance:w")
    assert series("anomaly_episode_open") == series("anomaly_episode_suppressed") == []
    m.show_calendar(2, [("pump-02", "ana", "leak", 1.0e9)])
    assert series("anomaly_asset_shelved_until_seconds") == [
        {"asset_id": "pump-02", "shelved_by": "ana", "reason": "leak"}
    ]
    m.show_calendar(2, [])
    assert series("anomaly_asset_shelved_until_seconds") == []


def test_an_episode_quiet_when_its_window_ended_pages_when_it_resumes(
    model: Artifact, baseline: Events
) -> None:
    asset = next(e["asset_id"] for e in baseline if e["type"] == "resume")
    kinds = mine(baseline, str(asset))
    (_, opened, _), (_, quiet, _), (_, resumed, _) = kinds[:3]
    assert at(quiet) + timedelta(seconds=1) < at(resumed)
    window = MaintenanceWindow(
        id="w", assets=str(asset), start=wall(at(opened)) - timedelta(minutes=5),
        end=wall(at(quiet)) + timedelta(seconds=1),
    )  # fmt: skip
    held = mine(run(model, [window_message(window)]), str(asset))
    assert held[:4] == [
        ("open", opened, "maintenance:w"), ("quiet", quiet, "maintenance:w"),
        ("resume", resumed, "maintenance:w"), ("unsuppress", resumed, None),
    ]  # fmt: skip


def test_a_hold_that_passes_from_a_window_to_a_shelf_pages_once_at_the_end_of_both(
    model: Artifact, baseline: Events
) -> None:
    (_, opened, _), (_, quiet, _) = mine(baseline)[:2]
    handover = (at(opened) + (at(quiet) - at(opened)) / 3).replace(microsecond=0)
    until = (at(opened) + 2 * (at(quiet) - at(opened)) / 3).replace(microsecond=0)
    window = MaintenanceWindow(
        id="w", assets=ASSET, start=wall(at(opened)) - timedelta(minutes=5), end=wall(handover)
    )
    shelf = Shelf(asset_id=ASSET, since=handover - timedelta(seconds=1), until=until, by="ana",
                  reason="after the valve work")  # fmt: skip
    events = run(model, [window_message(window), shelf_message(shelf)])
    held = mine(events)
    assert [(kind, s) for kind, _, s in held[:2]] == [
        ("open", "maintenance:w"),
        ("unsuppress", None),
    ]
    assert at(held[1][1]) == until
    assert next(e for e in events if e["type"] == "unsuppress")["released"] == "shelved"
