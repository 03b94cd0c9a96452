"""Each asset's sensors out of order now (anomaly/instruments.py), as the worker said them:
what an asset's eviction resolves, and what a partition's move forgets."""

from __future__ import annotations

import math
from datetime import datetime

from anomaly.events import SensorFaultEvent
from anomaly.rules import SourceRef


class OpenFaults:
    """Asset id -> its sensors out of order: feature -> fault."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        """Sensors out of order, all assets together."""
        return sum(len(faults) for faults in self._open.values())

    def note(self, event: SensorFaultEvent) -> None:
        faults = self._open.setdefault(event.asset_id, {})
        if event.kind == "sensor_fault":
            faults[event.feature] = event.fault
            return
        faults.pop(event.feature, None)
        if not faults:
            del self._open[event.asset_id]

    def take(self, asset_id: str) -> list[tuple[str, str]]:
        """The asset's open faults (feature, fault), forgotten here."""
        return list(self._open.pop(asset_id, {}).items())

    def evicted(
        self, asset_id: str, model: str, at: datetime, topic: str
    ) -> list[SensorFaultEvent]:
        """The asset's open faults, resolved (it was evicted), and forgotten here."""
        return [
            SensorFaultEvent("sensor_fault_resolve", asset_id, model, feature, fault, at,
                             SourceRef(topic, -1, -1), math.nan, reason="evicted")
            for feature, fault in self.take(asset_id)
        ]  # fmt: skip
