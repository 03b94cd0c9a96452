"""What the worker publishes: a message for a topic, built by the pipeline (worker/emit.py),
sent by the Kafka I/O (worker/kafka_io.py), which knows nothing else of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outbound:
    """A message to publish: an alert event or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes
