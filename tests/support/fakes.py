"""In-memory stand-ins for Kafka, for unit tests of the pure core and the runner."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from worker.checkpoint import Handover
from worker.errors import CommitError, PublishError
from worker.outbound import Outbound


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def as_records(
    messages: Iterable[tuple[bytes | None, bytes | None]], topic: str = "in", partitions: int = 3
) -> list[FakeRecord]:
    """Records as a broker would hold them: partition by key, offsets counting per partition."""
    next_offset = [0] * partitions
    out = []
    for key, value in messages:
        p = zlib.crc32(key or b"") % partitions
        out.append(FakeRecord(topic, p, next_offset[p], key, value))
        next_offset[p] += 1
    return out


@dataclass
class FakeSource:
    """Serves records in batches; records what was committed."""

    records: list[FakeRecord]
    fail_commit: bool = False
    settle_failures: int = 0  # commits not answered, each tried again
    reachable: bool = True
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    states: dict[tuple[str, int], str] = field(default_factory=dict)
    handovers: list[Handover] = field(default_factory=list)  # one given out per poll
    # the calendar topic's messages, each given out once (anomaly/calendar.py)
    calendar_messages: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    closed: bool = False
    kept_alive: int = 0  # keep-alive polls while a publish or commit was tried again
    _position: int = 0
    _sent: tuple[dict[tuple[str, int], int], dict[tuple[str, int], str]] | None = None

    def poll(self, timeout_ms: int, max_records: int) -> Sequence[FakeRecord]:
        batch = self.records[self._position : self._position + max_records]
        self._position += len(batch)
        return batch

    def handover(self) -> Handover | None:
        return self.handovers.pop(0) if self.handovers else None

    def calendar(self) -> list[tuple[bytes | None, bytes | None]]:
        given, self.calendar_messages = self.calendar_messages, []
        return given

    def commit(
        self, offsets: Mapping[tuple[str, int], int], states: Mapping[tuple[str, int], str]
    ) -> None:
        assert self._sent is None, "a commit sent before the previous one was settled"
        self._sent = (dict(offsets), dict(states))

    def settle(self) -> None:
        if self._sent is None:
            return
        if self.fail_commit or self.settle_failures > 0:
            self.settle_failures -= 1
            raise CommitError("the group coordinator is gone")
        offsets, states = self._sent
        self.committed.update(offsets)
        self.states.update(states)
        self._sent = None

    def assigned(self) -> bool:
        return True

    def keeps_state(self) -> bool:
        return True

    def connected(self) -> bool:
        return self.reachable

    def lag(self) -> dict[tuple[str, int], int]:
        return {("in", 0): len(self.records) - self._position}

    def keep_alive(self) -> None:
        self.kept_alive += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeSink:
    """Collects published messages; can be told to fail (always, or the next `failures`
    times, acknowledging the first half of the messages each time)."""

    fail: bool = False
    failures: int = 0
    messages: list[Outbound] = field(default_factory=list)
    closed: bool = False
    missing: set[str] = field(default_factory=set)  # topics that do not exist

    def partitions(self, topic: str, timeout_s: float) -> int | None:
        return None if topic in self.missing else 3

    def publish(self, messages: Sequence[Outbound]) -> None:
        if self.fail:
            raise PublishError("the alerts topic is unwritable", messages)
        if self.failures > 0:
            self.failures -= 1
            half = len(messages) // 2
            self.messages.extend(messages[:half])
            raise PublishError("no ack in time", messages[half:])
        self.messages.extend(messages)

    def close(self) -> None:
        self.closed = True
