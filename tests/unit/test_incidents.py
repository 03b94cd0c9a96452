"""Incidents (anomaly/incidents.py): the episodes of one upset, paged once. The core on its own
(who joins whom: model, area, span, shape), then the worker's pipeline on a simulated plant
upset beside independent faults, and an incident restored with its partition."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from anomaly.incidents import IncidentChange, IncidentRules, Incidents
from anomaly.model import Artifact
from devtools.simulator import Fault, Fleet, Upset, timestamp
from tests.support.fakes import as_records
from tests.support.models import Trained
from tests.unit.test_pipeline import TOPICS
from worker.checkpoint import Handover
from worker.pipeline import BatchProcessor, BatchResult
from worker.settings import AlertSettings, BatchSettings, IncidentSettings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SAG = np.array([-0.1, -0.3, -0.6, 0.0])  # an upset's residual over four features
ALIKE = np.array([-0.12, -0.28, -0.61, 0.01])
OTHER = np.array([0.0, 0.0, -0.1, 0.9])


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def kinds(changes: list[IncidentChange | None]) -> list[str | None]:
    return [None if c is None else c.kind for c in changes]


def test_alike_episodes_within_the_span_are_one_incident_opened_by_the_second() -> None:
    incidents = Incidents(IncidentRules())
    first, alone = incidents.paged("e1", "pump-01", "default", at(0), SAG)
    assert (first, alone) == ("e1", None)  # an incident of its own says nothing
    second, opened = incidents.paged("e2", "pump-02", "default", at(30), ALIKE)
    third, updated = incidents.paged("e3", "pump-03", "default", at(60), SAG * 3)  # scale: same
    assert second == third == "e1"
    assert kinds([opened, updated]) == ["incident_open", "incident_update"]
    assert opened is not None
    assert updated is not None
    assert [m.episode_id for m in opened.members] == ["e1", "e2"]  # as of the change
    assert (opened.size, opened.open_members, opened.started_at) == (2, 2, at(0))
    assert updated.members == ()  # an update names its member alone
    assert (updated.member.episode_id, updated.member.asset_id) == ("e3", "pump-03")
    assert (updated.ts, updated.size, updated.open_members, updated.started_at) == (
        at(60), 3, 3, at(0))  # fmt: skip
    assert incidents.announced == len(incidents) == 1
    assert incidents.incident_of("e3") == "e1"


def test_an_incident_resolves_when_its_last_member_does() -> None:
    incidents = Incidents(IncidentRules())
    for i, t in enumerate((0, 10, 20)):
        incidents.paged(f"e{i}", f"pump-{i}", "default", at(t), SAG)
    ended = [incidents.ended(e, at(600 + i)) for i, e in enumerate(("e1", "e0", "e2"))]
    assert kinds(ended) == ["incident_update", "incident_update", "incident_resolve"]
    last = ended[-1]
    assert last is not None
    assert (last.incident_id, last.member.episode_id, last.open_members) == ("e0", "e2", 0)
    assert [m.open for m in last.members] == [False, False, False]
    assert last.size == 3
    assert ended[0] is not None
    assert (ended[0].member.open, ended[0].open_members, ended[0].size) == (False, 2, 3)
    assert len(incidents) == incidents.announced == 0
    assert incidents.incident_of("e0") is None
    assert incidents.ended("e0", at(700)) is None  # ended once


def test_an_episode_alone_opens_and_resolves_nothing() -> None:
    incidents = Incidents(IncidentRules())
    assert incidents.paged("e1", "pump-01", "default", at(0), SAG) == ("e1", None)
    assert len(incidents) == 1
    assert incidents.announced == 0
    assert incidents.ended("e1", at(100)) is None
    assert len(incidents) == 0
    assert incidents.ended("never paged", at(100)) is None


def test_paging_again_changes_nothing() -> None:
    incidents = Incidents(IncidentRules())
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    incidents.paged("e2", "pump-02", "default", at(5), SAG)
    assert incidents.paged("e2", "pump-02", "default", at(9), OTHER) == ("e1", None)


@pytest.mark.parametrize(
    ("direction", "joins"),
    [(ALIKE, True), (OTHER, False), (-SAG, False), (np.zeros(4), False),
     (np.full(4, np.nan), False), (None, False)],
)  # fmt: skip
def test_only_a_departure_the_same_way_joins(direction: np.ndarray | None, joins: bool) -> None:
    incidents = Incidents(IncidentRules())
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    incident, change = incidents.paged("e2", "pump-02", "default", at(1), direction)
    assert (incident == "e1", change is not None) == (joins, joins)


def test_the_similarity_is_a_least_cosine() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.6, 0.8])  # cosine 0.6
    for similarity, joins in ((0.6, True), (0.61, False)):
        incidents = Incidents(IncidentRules(similarity=similarity))
        incidents.paged("e1", "pump-01", "default", at(0), a)
        assert (incidents.paged("e2", "pump-02", "default", at(1), b)[0] == "e1") is joins


def test_the_span_runs_from_the_latest_members_page() -> None:
    incidents = Incidents(IncidentRules(span_s=60))
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    assert incidents.paged("e2", "pump-02", "default", at(60), SAG)[0] == "e1"  # at the span
    assert incidents.paged("e3", "pump-03", "default", at(120), SAG)[0] == "e1"  # from e2's
    assert incidents.paged("e4", "pump-04", "default", at(180.5), SAG)[0] == "e4"  # past it
    # the span counts members that resolved too: the incident is open while one is
    incidents.ended("e3", at(121))
    assert incidents.paged("e5", "pump-05", "default", at(181), SAG)[0] == "e4"  # the closer


def test_areas_and_models_keep_incidents_apart() -> None:
    rules = IncidentRules(areas={"north-*": "north", "south-*": "south"})
    assert [rules.area(a) for a in ("north-1", "south-2", "west-3")] == ["north", "south", ""]
    incidents = Incidents(rules)
    incidents.paged("e1", "north-1", "default", at(0), SAG)
    assert incidents.paged("e2", "south-1", "default", at(1), SAG)[0] == "e2"
    assert incidents.paged("e3", "north-2", "compressors", at(2), SAG)[0] == "e3"
    assert incidents.paged("e4", "north-3", "default", at(3), SAG)[0] == "e1"
    assert incidents.paged("e5", "south-2", "default", at(4), SAG)[0] == "e2"
    assert incidents.announced == 2
    assert len(incidents) == 3


def test_the_first_pattern_that_matches_names_the_area() -> None:
    rules = IncidentRules(areas={"pump-0*": "a", "pump-*": "b"})
    assert (rules.area("pump-01"), rules.area("pump-11")) == ("a", "b")


def test_an_episode_joins_the_incident_its_shape_is_closest_to() -> None:
    incidents = Incidents(IncidentRules(similarity=0.5))
    incidents.paged("e1", "pump-01", "default", at(0), np.array([1.0, 0.0, 0.0]))
    incidents.paged("e2", "pump-02", "default", at(1), np.array([0.0, 1.0, 0.0]))
    # closer to e2's (cosine 0.83) than to e1's (0.55): both above the similarity
    assert incidents.paged("e3", "pump-03", "default", at(2), np.array([0.6, 0.9, 0.0]))[0] == "e2"


def test_disabled_every_episode_is_its_own() -> None:
    incidents = Incidents(IncidentRules(enabled=False))
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    assert incidents.paged("e2", "pump-02", "default", at(1), SAG) == ("e2", None)


def test_a_restored_incident_takes_no_new_members_and_resolves_where_it_had_some() -> None:
    incidents = Incidents(IncidentRules())
    incidents.restore("e2", "e1", "pump-02", "default", at(0))  # a member that joined e1
    incidents.restore("e3", "e1", "pump-03", "default", at(5))
    incidents.restore("e3", "e1", "pump-03", "default", at(5))  # once
    incidents.restore("e9", "e9", "pump-09", "default", at(0))  # alone, as far as it shows
    assert incidents.announced == 1
    assert len(incidents) == 2
    assert incidents.paged("e4", "pump-04", "default", at(6), SAG)[0] == "e4"  # shape unknown
    assert kinds([incidents.ended("e2", at(50)), incidents.ended("e3", at(60))]) == [
        "incident_update", "incident_resolve"
    ]  # fmt: skip
    assert incidents.ended("e9", at(60)) is None


def test_a_member_whose_page_was_taken_back_rejoins_its_incident_while_it_is_open() -> None:
    incidents = Incidents(IncidentRules())
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    incidents.paged("e2", "pump-02", "default", at(10), SAG)
    left = incidents.ended("e1", at(20))  # a shelf takes the first member's page back
    assert left is not None
    assert (left.kind, left.open_members) == ("incident_update", 1)
    back, change = incidents.paged("e1", "pump-01", "default", at(900), -SAG)  # released
    assert back == "e1"  # its own incident still, not a second one of the same id
    assert change is not None
    assert (change.kind, change.member.episode_id, change.member.open) == (
        "incident_update", "e1", True)  # fmt: skip
    assert (change.size, change.open_members) == (2, 2)
    assert len(incidents) == 1
    incidents.ended("e2", at(950))
    done = incidents.ended("e1", at(960))
    assert done is not None
    assert done.kind == "incident_resolve"
    assert len(incidents) == 0
    # once its incident is over, a member paging again is an incident of its own
    assert incidents.paged("e1", "pump-01", "default", at(990), SAG) == ("e1", None)


def test_a_member_whose_partition_moved_is_forgotten_without_an_event() -> None:
    incidents = Incidents(IncidentRules())
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    incidents.paged("e2", "pump-02", "default", at(1), SAG)
    incidents.forget("e1")
    assert incidents.incident_of("e1") is None
    assert len(incidents) == 1
    change = incidents.ended("e2", at(9))
    assert change is not None
    assert change.kind == "incident_resolve"
    assert [m.episode_id for m in change.members] == ["e2"]
    incidents.forget("e2")  # nothing
    incidents.paged("e3", "pump-03", "default", at(20), SAG)
    incidents.forget("e3")
    assert len(incidents) == 0


# The worker: a supply sag moves four pumps together while three others fail on their own.
UPSET = Upset(("pump-00", "pump-01", "pump-02", "pump-03"), 300, 400)
ALONE = [
    Fault("pump-04", "drift", "temperature", 300, 420, timestamp(300), timestamp(419)),
    Fault("pump-05", "spike", "vibration", 330, 336, timestamp(330), timestamp(335)),
    Fault("pump-06", "broken_correlation", "flow", 310, 420, timestamp(310), timestamp(419)),
]
Events = list[dict[str, Any]]


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def processor(model: Artifact, area_field: str | None = None, **rules: object) -> BatchProcessor:
    alerts = AlertSettings(resolve_after_s=60.0)
    p = BatchProcessor(TOPICS, BatchSettings(), alerts, incidents=IncidentRules(**rules),  # type: ignore[arg-type]
                       area_field=area_field)  # fmt: skip
    p.set_model(model)
    return p


def events(results: list[BatchResult]) -> Events:
    out = []
    for result in results:
        for m in result.messages:
            if m.topic == TOPICS.alerts:
                out.append(json.loads(m.value))
    return out


def test_an_upset_is_one_incident_while_independent_faults_page_on_their_own(
    model: Artifact,
) -> None:
    fleet = Fleet(n_assets=8, seed=3, upsets=(UPSET,))
    records = as_records(fleet.records(700, ALONE), partitions=2)
    p = processor(model)
    seen = events([p.process(records[i : i + 250]) for i in range(0, len(records), 250)])
    opens = {e["asset_id"]: e for e in seen if e["type"] == "open"}
    upset = [opens[a] for a in UPSET.assets]
    incident = upset[0]["incident"]
    assert {e["incident"] for e in upset} == {incident}
    assert incident == upset[0]["episode_id"]  # the first member's, from its first page
    for fault in ALONE:  # each pages as an incident of its own
        assert opens[fault.asset_id]["incident"] == opens[fault.asset_id]["episode_id"]
    told = [e for e in seen if e["type"].startswith("incident_")]
    assert [e["type"] for e in told] == ["incident_open"] + ["incident_update"] * 5 + [
        "incident_resolve"
    ]  # fmt: skip: three more join, then three of four resolve, then the last
    assert {e["incident_id"] for e in told} == {incident}
    assert [told[0]["member_asset_id"]] + [t["member_asset_id"] for t in told[1:3]] == [
        e["asset_id"] for e in upset[1:]
    ]  # fmt: skip: each join names its member
    assert [t["member_open"] for t in told[:3]] == [True] * 3
    assert [t["size"] for t in told[:3]] == [2, 3, 4]
    assert "members" not in told[2]  # an update names its member alone
    assert told[-1]["open_members"] == 0
    assert [m["asset_id"] for m in told[-1]["members"]] == [e["asset_id"] for e in upset]
    resolves = {e["episode_id"]: e["incident"] for e in seen if e["type"] == "resolve"}
    assert resolves[upset[1]["episode_id"]] == incident  # the resolve names it too
    assert p.incidents.announced == 0


def test_a_restart_in_an_incident_still_resolves_it(model: Artifact) -> None:
    fleet = Fleet(n_assets=4, seed=3, upsets=(UPSET,))
    records = as_records(fleet.records(700, ()), partitions=2)
    chunks = [records[i : i + 250] for i in range(0, len(records), 250)]
    first = processor(model)
    committed: dict[tuple[str, int], str] = {}
    for chunk in chunks[:7]:  # past the upset's start: the incident open
        texts, _ = first.checkpoints(first.process(chunk).offsets, 4096)
        committed.update(texts)
    assert first.incidents.announced == 1
    second = processor(model)
    gained = [second.process(chunks[7], Handover(frozenset(), dict(committed)))]
    after = events(gained + [second.process(chunk) for chunk in chunks[8:]])
    told = [e["type"] for e in after if e["type"].startswith("incident_")]
    assert told[-1] == "incident_resolve"
    assert second.incidents.announced == 0


def test_the_workers_settings_are_the_rules_it_groups_by() -> None:
    settings = IncidentSettings(enabled=False, span_s=60, similarity=0.5, areas={"n-*": "n"})
    assert settings.rules() == IncidentRules(False, 60.0, 0.5, {"n-*": "n"})
    assert IncidentSettings().rules() == IncidentRules()


def test_the_area_a_record_says_wins_over_the_patterns() -> None:
    incidents = Incidents(IncidentRules(areas={"pump-*": "plant"}))
    incidents.labels["pump-02"] = "south"
    assert [incidents.area(a) for a in ("pump-01", "pump-02", "fan-1")] == ["plant", "south", ""]
    incidents.paged("e1", "pump-01", "default", at(0), SAG)
    assert incidents.paged("e2", "pump-02", "default", at(1), SAG)[0] == "e2"


def test_pumps_whose_records_say_two_areas_make_two_incidents(model: Artifact) -> None:
    """The same upset on four pumps whose records say their area (`labels.area`): the two
    of the north and the two of the south are two incidents."""
    fleet = Fleet(n_assets=4, seed=3, upsets=(UPSET,))
    area = {b"pump-00": "north", b"pump-01": "north", b"pump-02": "south", b"pump-03": "south"}
    labelled = []
    for key, value in fleet.records(700):
        record = json.loads(value)
        record["labels"] = {"area": area[key]}
        labelled.append((key, json.dumps(record).encode()))
    records = as_records(labelled, partitions=2)
    p = processor(model, area_field="labels.area")
    seen = events([p.process(records[i : i + 250]) for i in range(0, len(records), 250)])
    opened = [e for e in seen if e["type"] == "incident_open"]
    assert sorted((e["area"], sorted(m["asset_id"] for m in e["members"])) for e in opened) == [
        ("north", ["pump-00", "pump-01"]), ("south", ["pump-02", "pump-03"])
    ]  # fmt: skip
    assert p.incidents.labels == {a.decode(): v for a, v in area.items()}
