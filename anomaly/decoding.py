"""The one record decoder: a message's bytes to the model it goes to and what it carries.

The worker, the training job and the episode report read the input topic through it, so a
record means the same to all three: its size checked (where a limit is set), its JSON parsed,
its model found (anomaly/routing.py), then either a whole record of that model's features
(`Record`) or, where producers send one sensor's value per message (`InputSettings.shape`
`value`), that value (`Reading`), which anomaly/assembly.py turns into records. A label the
records carry (`labels`: a dotted path, e.g. an asset's area for incidents) is kept per
asset. A message that breaks the contract raises RecordError (anomaly/records.py) carrying its
reason and, once known, the model it was routed to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from anomaly.records import (
    Reading,
    Record,
    RecordError,
    field_at,
    from_object,
    parse_record,
    reading_from,
)
from anomaly.routing import no_model_reason, route
from anomaly.settings import InputSettings, RouteSettings

# A message read: the model it goes to, and its record or its one sensor's reading (a plain
# pair: one is made per message, on the worker's hottest path).
Decoded = tuple[str, Record | Reading]


class Decoder:
    """Decodes messages for the models in `features` (each model's feature names, in order;
    None: learned from the model's first whole record, all its values but `exclude`, sorted).

    `partial`: a whole record may lack some features (the worker fills them); `max_bytes`: a
    longer message is refused (`too_large`)."""

    def __init__(
        self,
        layout: InputSettings,
        routes: RouteSettings,
        features: Mapping[str, tuple[str, ...] | None],
        partial: bool = False,
        max_bytes: int | None = None,
        exclude: Collection[str] = (),
        labels: tuple[str, dict[str, str]] | None = None,
    ) -> None:
        self.layout, self.routes = layout, routes
        self.features = dict(features)
        self.partial, self.max_bytes, self.exclude = partial, max_bytes, frozenset(exclude)
        # a label the records carry (the field's dotted path), kept per asset as last read
        self.labels = labels
        # where the asset id is, for routing, when not where the contract puts it
        self._asset_field = None if layout.plain else layout.asset_field
        # the model every message goes to, when that is so (no routing to do)
        self._only = (
            next(iter(self.features)) if len(self.features) == 1 and not routes.configured else None
        )

    def decode(self, value: bytes | None) -> Decoded:
        """The message's model and record or reading; RecordError when it breaks the
        contract (with `model` set once the model is known)."""
        if value is None:
            raise RecordError("empty", "record has no value (a tombstone)")
        if self.max_bytes is not None and len(value) > self.max_bytes:
            raise RecordError(
                "too_large", f"record is {len(value)} bytes, over the limit of {self.max_bytes}"
            )
        obj = parse_record(value)
        if self.labels is not None:
            self._label(obj)
        layout = self.layout
        if layout.shape == "value":
            reading = reading_from(obj, layout)
            name = self._only or self._model(obj, reading.asset_id)
            features = self.features[name]
            if features is not None and reading.sensor not in features:
                error = RecordError(
                    "unknown_sensor",
                    f"sensor {reading.sensor!r} is not a feature of model {name} "
                    f"({', '.join(features)})",
                )
                error.model = name
                raise error
            return name, reading
        field = self._asset_field
        name = self._only or self._model(obj, None if field is None else field_at(obj, field))
        try:
            features = self.features[name] or self._learn(name, obj)
            return name, from_object(obj, features, self.partial, layout)
        except RecordError as exc:
            exc.model = name
            raise

    def _label(self, obj: Any) -> None:
        """The record's label, where it carries one, kept for its asset."""
        assert self.labels is not None
        path, kept = self.labels
        label = field_at(obj, path)
        asset_id = field_at(obj, self.layout.asset_field)
        if isinstance(label, str) and label and isinstance(asset_id, str):
            kept[asset_id] = label

    def _model(self, obj: Any, asset_id: str | None) -> str:
        name = route(obj, self.routes, self.features, asset_id)
        if name is None:
            raise RecordError("no_model", no_model_reason(obj, self.routes, self.features))
        return name

    def _learn(self, name: str, obj: Any) -> tuple[str, ...]:
        values = field_at(obj, self.layout.values_field)
        names = (
            tuple(sorted(str(k) for k in values if k not in self.exclude))
            if isinstance(values, dict)
            else ()
        )
        if not names:
            raise RecordError("bad_values", f"record has no {self.layout.values_field} object")
        self.features[name] = names
        return names
