"""Which model a record goes to: named models, several asset types on one topic.

A record goes to the model its `route_field` names (e.g. `"asset_type": "pumps"`), else to
the model of the first of `routes` (asset-id glob patterns, in order) its asset id matches,
else, when exactly one model is served and no route is configured, to that one. Otherwise it
has no model: the worker dead-letters it (`no_model`), the training job skips it.
"""

from __future__ import annotations

from collections.abc import Collection
from fnmatch import fnmatchcase
from typing import Any

from anomaly.records import field_at
from anomaly.settings import RouteSettings


def route(
    obj: Any, settings: RouteSettings, served: Collection[str], asset_id: str | None = None
) -> str | None:
    """The name of the model (among `served`) for a parsed record, or None; `asset_id`: the
    record's, where its producer does not name it `asset_id`."""
    if isinstance(obj, dict):
        if settings.route_field is not None:
            named = field_at(obj, settings.route_field)
            if isinstance(named, str) and named in served:
                return named
        if asset_id is None:
            asset_id = obj.get("asset_id")
        if isinstance(asset_id, str):
            for pattern, model in settings.routes.items():
                if fnmatchcase(asset_id, pattern):
                    return model if model in served else None
    if not settings.configured and len(served) == 1:
        return next(iter(served))
    return None


def no_model_reason(obj: Any, settings: RouteSettings, served: Collection[str]) -> str:
    """Why `route` found no model, for the dead letter."""
    if not served:
        return "no model is loaded yet"
    if not settings.configured:
        return (
            f"several models are served ({', '.join(sorted(served))}) and no route is set "
            "(WORKER_MODELS__ROUTE_FIELD or WORKER_MODELS__ROUTES)"
        )
    field = settings.route_field
    named = field_at(obj, field) if isinstance(obj, dict) and field else None
    if named is not None:
        return f"{field} {named!r} names no model served here ({', '.join(sorted(served))})"
    return f"no route matches this record (served: {', '.join(sorted(served))})"
