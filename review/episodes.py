"""The episodes the page shows: the alerts topic's events and the feedback topic's verdicts,
folded into one entry per episode. Pure: the follower (review/follow.py) feeds it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from anomaly.settings import DEFAULT_MODEL

STATES = ("open", "quiet", "resolved")
JUDGED = ("none", "false_alarm", "confirmed")
EVENTS_KEPT = 100  # an episode's events kept for its page (its open and resolve always)


@dataclass
class Entry:
    """One episode as its events tell it (record times as ISO text, as in the events)."""

    episode_id: str
    asset_id: str
    model: str
    model_version: str
    started_at: str
    threshold: float
    peak_score: float
    opened: dict[str, Any]
    state: str = "open"
    ended_at: str | None = None
    records: int | None = None
    incident: str | None = None
    suppressed: bool = False
    resolved: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None

    @property
    def judged(self) -> str:
        return str(self.verdict["verdict"]) if self.verdict else "none"

    def known(self) -> dict[str, Any]:
        """Its events by type, as training.episode.find_episode takes them."""
        return {"open": self.opened, **({"resolve": self.resolved} if self.resolved else {})}


@dataclass(frozen=True)
class Query:
    """What the list shows: every field empty shows all."""

    asset: str = ""
    model: str = ""
    state: str = ""
    verdict: str = ""
    limit: int = 200

    def matches(self, entry: Entry) -> bool:
        return (
            (not self.asset or self.asset.lower() in entry.asset_id.lower())
            and (not self.model or self.model == entry.model)
            and (not self.state or self.state == entry.state)
            and (not self.verdict or self.verdict == entry.judged)
        )


class EpisodeIndex:
    """The latest `keep` episodes by their open; thread-safe (the follower writes, the pages
    read). A verdict on an episode not (yet) seen is kept until its open comes."""

    def __init__(self, keep: int = 50_000) -> None:
        self._keep = keep
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._waiting: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # incident id -> its members
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def event(self, event: dict[str, Any]) -> None:
        """One event of the alerts topic: an episode's, or an incident's (its size kept);
        anything else is left alone."""
        kind, episode_id = event.get("type"), event.get("episode_id")
        incident, size = event.get("incident_id"), event.get("size")
        if isinstance(incident, str) and isinstance(size, int):
            with self._lock:
                self._sizes[incident] = size
                self._sizes.move_to_end(incident)
                while len(self._sizes) > self._keep:
                    self._sizes.popitem(last=False)
            return
        if not isinstance(episode_id, str):
            return
        with self._lock:
            if kind == "open":
                self._open(episode_id, event)
                return
            entry = self._entries.get(episode_id)
            if entry is None:
                return  # opened before the history read: not shown
            _note(entry, event)
            _apply(entry, str(kind), event)

    def verdict(self, message: dict[str, Any]) -> None:
        """One message of the feedback topic: the latest verdict on an episode wins."""
        episode_id = message.get("episode_id")
        if not isinstance(episode_id, str) or message.get("verdict") not in JUDGED[1:]:
            return
        with self._lock:
            entry = self._entries.get(episode_id)
            if entry is not None:
                entry.verdict = message
                return
            self._waiting[episode_id] = message
            self._waiting.move_to_end(episode_id)
            while len(self._waiting) > self._keep:
                self._waiting.popitem(last=False)

    def get(self, episode_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(episode_id)

    def latest(self, asset_id: str) -> Entry | None:
        """The asset's open episode, or else its latest."""
        with self._lock:
            last = None
            for entry in reversed(self._entries.values()):
                if entry.asset_id != asset_id:
                    continue
                if entry.state != "resolved":
                    return entry
                last = last or entry
            return last

    def select(self, query: Query) -> list[Entry]:
        """The episodes `query` asks for: those still open first, then the latest opened."""
        with self._lock:
            found = [e for e in reversed(self._entries.values()) if query.matches(e)]
        found.sort(key=lambda e: e.state == "resolved")  # stable: latest first within each
        return found[: query.limit]

    def incident_size(self, incident_id: str | None) -> int:
        """How many episodes the incident has had (1: an episode alone, or not known)."""
        with self._lock:
            return self._sizes.get(incident_id or "", 1)

    def models(self) -> list[str]:
        with self._lock:
            return sorted({e.model for e in self._entries.values()})

    def _open(self, episode_id: str, event: dict[str, Any]) -> None:
        if episode_id in self._entries:
            return  # published twice (at-least-once): the first stands
        entry = Entry(
            episode_id=episode_id,
            asset_id=str(event.get("asset_id", "")),
            model=str(event.get("model") or DEFAULT_MODEL),
            model_version=str(event.get("model_version", "")),
            started_at=str(event.get("started_at", event.get("ts", ""))),
            threshold=_number(event.get("threshold"), float("nan")),
            peak_score=_number(event.get("score")),
            opened=event,
            incident=_text(event.get("incident")),
            suppressed=bool(event.get("suppressed")),
            events=[event],
            verdict=self._waiting.pop(episode_id, None),
        )
        self._entries[episode_id] = entry
        while len(self._entries) > self._keep:
            self._entries.popitem(last=False)


def _apply(entry: Entry, kind: str, event: dict[str, Any]) -> None:
    entry.peak_score = max(entry.peak_score, _number(event.get("score")))
    if "incident" in event:
        entry.incident = _text(event.get("incident")) or entry.incident
    if kind == "quiet":
        entry.state = "quiet"
    elif kind == "resume":
        entry.state = "open"
    elif kind == "resolve":
        entry.state, entry.resolved = "resolved", event
        entry.ended_at = _text(event.get("ended_at"))
        entry.records = event.get("records") if isinstance(event.get("records"), int) else None
        entry.peak_score = max(entry.peak_score, _number(event.get("peak_score")))
    elif kind == "suppress":
        entry.suppressed = True
    elif kind == "unsuppress":
        entry.suppressed = False


def _note(entry: Entry, event: dict[str, Any]) -> None:
    if len(entry.events) < EVENTS_KEPT or event.get("type") == "resolve":
        entry.events.append(event)


def _number(value: object, missing: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) else missing


def _text(value: object) -> str | None:
    return str(value) if value else None
