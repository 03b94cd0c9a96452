"""Decoded messages as training rows: whole records as they are; one sensor's value per
message (`TRAINING_INPUT__SHAPE=value`) assembled per asset into records on the grid the
workers use (anomaly/assembly.py), of which only the complete ones are kept (a model is
fitted on what every sensor said)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from anomaly.assembly import Assembly, assemble
from anomaly.decoding import Decoded
from anomaly.records import Reading

# One row: the offset of the message that gave it, its asset, its time (epoch seconds) and its
# values, in feature order.
Row = tuple[int, str, float, list[float]]


def training_rows(
    decoded: Sequence[tuple[int, Decoded]],
    features: tuple[str, ...] | None,
    exclude: Collection[str],
    cadence_s: float | None,
    stale_after_s: float,
) -> tuple[tuple[str, ...] | None, list[Row]]:
    """The features (for one-value messages, when not given: every sensor met but `exclude`,
    sorted) and the rows of the messages (offset, decoded), each asset's in their order."""
    readings = [(offset, item) for offset, (_, item) in decoded if isinstance(item, Reading)]
    rows: list[Row] = [
        (offset, item.asset_id, item.ts.timestamp(), list(item.values))
        for offset, (_, item) in decoded
        if not isinstance(item, Reading)
    ]
    if not readings:
        return features, rows
    if features is None:
        features = tuple(sorted({r.sensor for _, r in readings} - set(exclude))) or None
        if features is None:
            return None, rows
    if cadence_s is None:
        raise ValueError("one value per message needs a cadence (TRAINING_INPUT__CADENCE_S)")
    index = {name: i for i, name in enumerate(features)}
    assemblies: dict[str, Assembly] = {}
    for offset, reading in readings:
        feature = index.get(reading.sensor)
        if feature is None:
            continue  # a sensor the model does not read
        t = reading.ts.timestamp()
        assembly = assemblies.get(reading.asset_id)
        if assembly is None:
            assembly = assemblies[reading.asset_id] = Assembly.begin(len(features), t)
        for tick, values, missing in assemble(
            assembly, t, feature, reading.value, cadence_s, stale_after_s
        ):
            if not missing:
                rows.append((offset, reading.asset_id, tick, list(values)))
    return features, rows
