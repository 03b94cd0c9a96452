"""Incidents: the episodes of one upset, paged once.

One upstream trip (a header pressure drop, a power dip) disturbs many assets at once, and each
opens its own episode. Those whose pages start within a short span of each other (`span_s` of
record time from the latest member's), on assets of one area, served by one model, and whose
departures from normal point the same way share a cause: they are one incident. The direction
is the record's residual when it pages (each feature's reconstruction minus its value, in the
model's scaled units: what the model could not explain, with its sign); two are alike when the
cosine between them is at least `similarity`, with the incident's first member's. A shared
cause moves the same sensors the same way on each asset of one model, so their residuals are
near parallel (a simulated supply sag on four pumps: 0.98 to 1.00); an independent fault in the
same minutes moves others (a temperature drift, a vibration burst, a broken correlation beside
that sag: -0.77 to 0.35), and pages on its own. tests/unit/test_incidents.py.

An episode that pages is its own incident until another joins it (its id, the incident's: the
first member's episode id, is the `incident` label of its page from the start, so Alertmanager
grouping by it sends one notification for the incident, its members listed). Events:
`incident_open` when a second member joins, `incident_update` when another joins or a member
resolves, `incident_resolve` when the last one does; an incident of one member says nothing.
An incident accepts members while its latest member's page is less than `span_s` old.

Areas: an asset's area is the label its records carry (`Incidents.labels`, kept by the
decoder where the worker reads one: WORKER_INCIDENTS__AREA_FIELD), else the first of `areas`'
asset-id patterns (fnmatch) that matches it, else "" (all assets, when none is set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np
import numpy.typing as npt

IncidentType = Literal["incident_open", "incident_update", "incident_resolve"]


@dataclass(frozen=True)
class IncidentRules:
    """When episodes are one incident (the module's docstring); `enabled` False: never."""

    enabled: bool = True
    span_s: float = 300.0
    similarity: float = 0.8
    areas: Mapping[str, str] = field(default_factory=dict)

    def area(self, asset_id: str) -> str:
        """The asset's area: the first pattern of `areas` that matches it ("": none)."""
        for pattern, area in self.areas.items():
            if fnmatchcase(asset_id, pattern):
                return area
        return ""


@dataclass
class Member:
    """An episode of an incident: its asset, when it paged, and whether it is still open."""

    episode_id: str
    asset_id: str
    paged_at: datetime
    open: bool = True


EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class Incident:
    """Episodes of one cause: `incident_id` (its first member's episode id), the model and area
    of its assets, its first member's residual direction (unit length; None: not known, an
    incident restored after a restart, which takes no new members), its members in the order
    they joined."""

    incident_id: str
    model: str
    area: str
    signature: npt.NDArray[np.float64] | None
    members: list[Member]
    announced: bool = False  # its incident_open was published (it had a second member)
    last_paged: datetime = EARLIEST  # its latest member's page

    def __post_init__(self) -> None:
        self.last_paged = max([self.last_paged, *(m.paged_at for m in self.members)])

    def add(self, member: Member) -> None:
        self.members.append(member)
        self.last_paged = max(self.last_paged, member.paged_at)

    @property
    def open_members(self) -> int:
        return sum(m.open for m in self.members)


@dataclass(frozen=True)
class IncidentChange:
    """An incident event to publish: what happened (`kind`) at record time `ts`, to which
    incident (its id, model and area, when its first member paged), the member that caused
    it, how many members it has and how many are open; `members`, as of the change, listed
    on `incident_open` and `incident_resolve` only (an update names its member alone: an
    upset of hundreds of assets would otherwise repeat them all at each join)."""

    kind: IncidentType
    incident_id: str
    model: str
    area: str
    member: Member
    ts: datetime
    started_at: datetime
    size: int
    open_members: int
    members: tuple[Member, ...] = ()

    @classmethod
    def of(
        cls, kind: IncidentType, incident: Incident, member: Member, ts: datetime
    ) -> IncidentChange:
        listed = () if kind == "incident_update" else tuple(replace(m) for m in incident.members)
        return cls(kind, incident.incident_id, incident.model, incident.area, replace(member), ts,
                   incident.members[0].paged_at, len(incident.members), incident.open_members,
                   listed)  # fmt: skip


def _unit(direction: npt.ArrayLike) -> npt.NDArray[np.float64] | None:
    v = np.asarray(direction, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        return None
    return v / norm


class Incidents:
    """The incidents of the episodes a worker pages (pure: the worker calls it in record
    order and publishes what it returns)."""

    def __init__(self, rules: IncidentRules) -> None:
        self.rules = rules
        self.labels: dict[str, str] = {}  # asset id -> the area its records say
        self._of: dict[str, Incident] = {}  # episode id -> its incident (open members only)
        self._left: dict[str, Incident] = {}  # episode id -> the open incident it left
        self._open: dict[tuple[str, str], list[Incident]] = {}  # (model, area) -> incidents

    def __len__(self) -> int:
        """Incidents with an open member."""
        return sum(len(v) for v in self._open.values())

    def area(self, asset_id: str) -> str:
        """The asset's area: its records' label, else the first pattern that matches it."""
        return self.labels.get(asset_id) or self.rules.area(asset_id)

    @property
    def announced(self) -> int:
        """Incidents of more than one member (their incident_open published) still open."""
        return sum(i.announced for v in self._open.values() for i in v)

    def incident_of(self, episode_id: str) -> str | None:
        incident = self._of.get(episode_id)
        return None if incident is None else incident.incident_id

    def paged(
        self,
        episode_id: str,
        asset_id: str,
        model: str,
        at: datetime,
        direction: npt.ArrayLike | None,
    ) -> tuple[str, IncidentChange | None]:
        """An episode pages at record time `at` (it opened, or its hold was released), its
        record's residual `direction`: the incident it belongs to, and the event to publish
        (None: it is an incident of its own)."""
        if episode_id in self._of:  # already a member (paged before): no change
            return self._of[episode_id].incident_id, None
        area = self.area(asset_id)
        back = self._rejoined(episode_id, at)
        if back is not None:
            return back.incident_id, back
        signature = None if direction is None else _unit(direction)
        member = Member(episode_id, asset_id, at)
        joined = self._best(model, area, at, signature)
        if joined is None:
            incident = Incident(episode_id, model, area, signature, [member])
            self._open.setdefault((model, area), []).append(incident)
            self._of[episode_id] = incident
            return episode_id, None
        joined.add(member)
        self._of[episode_id] = joined
        kind: IncidentType = "incident_update" if joined.announced else "incident_open"
        joined.announced = True
        return joined.incident_id, IncidentChange.of(kind, joined, member, at)

    def _rejoined(self, episode_id: str, at: datetime) -> IncidentChange | None:
        """A member whose page was taken back (a hold) pages again while its incident is still
        open: it is a member again (None: it left no open incident)."""
        incident = self._left.pop(episode_id, None)
        if incident is None:
            return None
        member = next(m for m in incident.members if m.episode_id == episode_id)
        member.open = True
        self._of[episode_id] = incident
        return IncidentChange.of("incident_update", incident, member, at)

    def _best(
        self, model: str, area: str, at: datetime, signature: npt.NDArray[np.float64] | None
    ) -> Incident | None:
        """The incident an episode paging now joins: of its model and area, its latest page
        within the span, its direction the closest at or above the similarity (None: none)."""
        if not self.rules.enabled or signature is None:
            return None
        best, closest = None, self.rules.similarity
        for incident in self._open.get((model, area), ()):
            if incident.signature is None:
                continue
            if (at - incident.last_paged).total_seconds() > self.rules.span_s:
                continue
            similarity = float(incident.signature @ signature)
            if similarity >= closest:
                best, closest = incident, similarity
        return best

    def ended(self, episode_id: str, at: datetime) -> IncidentChange | None:
        """An episode stops paging at `at` (it resolved, or a hold took its page back): the
        event to publish (None: it was in no incident of more than itself)."""
        incident = self._of.pop(episode_id, None)
        if incident is None:
            return None
        member = next(m for m in incident.members if m.episode_id == episode_id)
        member.open = False
        if incident.open_members:
            self._left[episode_id] = incident
            return IncidentChange.of("incident_update", incident, member, at)
        self._drop(incident)
        if not incident.announced:
            return None
        return IncidentChange.of("incident_resolve", incident, member, at)

    def forget(self, episode_id: str) -> None:
        """An episode whose partition another worker took (it restores it there): left
        without an event."""
        incident = self._of.pop(episode_id, None)
        if incident is None:
            self._left.pop(episode_id, None)
            return
        incident.members = [m for m in incident.members if m.episode_id != episode_id]
        if not any(m.episode_id in self._of for m in incident.members):
            self._drop(incident)

    def _drop(self, incident: Incident) -> None:
        for member in incident.members:
            self._left.pop(member.episode_id, None)
        key = (incident.model, incident.area)
        self._open[key].remove(incident)
        if not self._open[key]:
            del self._open[key]

    def restore(self, episode_id: str, incident_id: str, asset_id: str, model: str,
                at: datetime) -> None:  # fmt: skip
        """An open episode restored with its partition (worker/checkpoint.py), a member of
        `incident_id`: the incident known again (its shape is not: it takes no new members),
        so that it resolves when its last member here does. One whose id is not the
        episode's own had members before: its events go on."""
        if episode_id in self._of:
            return
        area = self.area(asset_id)
        incidents = self._open.setdefault((model, area), [])
        incident = next((i for i in incidents if i.incident_id == incident_id), None)
        if incident is None:
            incident = Incident(incident_id, model, area, None, [])
            incidents.append(incident)
        incident.add(Member(episode_id, asset_id, at))
        incident.announced |= incident_id != episode_id
        self._of[episode_id] = incident
