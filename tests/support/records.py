"""Input records for the tests: a good one, and one of each malformed kind."""

from __future__ import annotations

import json

from devtools import simulator


def outlier(asset: str, i: int) -> bytes:
    """A reading far from anything the simulator's plant makes: an outlier to any model."""
    values = dict.fromkeys(simulator.FEATURES, 1e3)
    return json.dumps(
        {"asset_id": asset, "ts": f"2026-11-21T10:{i // 60:02d}:{i % 60:02d}Z", "values": values}
    ).encode()


def good(asset: str, i: int) -> bytes:
    values = dict.fromkeys(simulator.FEATURES, 1.0)
    values["speed"] = 2.0
    return json.dumps(
        {"asset_id": asset, "ts": f"2026-11-21T10:{i // 60:02d}:{i % 60:02d}Z", "values": values}
    ).encode()


MALFORMED = {
    "empty": None,
    "too_large": b"{" + b" " * 4096 + b"}",
    "not_utf8": b"\xff\xfe",
    "not_json": b"{oops",
    "not_object": b"[]",
    "bad_asset_id": b'{"ts": "2026-11-21T10:00:00Z", "values": {}}',
    "bad_ts": b'{"asset_id": "p", "ts": "noon", "values": {}}',
    "bad_values": b'{"asset_id": "p", "ts": "2026-11-21T10:00:00Z"}',
    "missing_feature": b'{"asset_id": "p", "ts": "2026-11-21T10:00:00Z", "values": {"rpm": 1}}',
    "non_numeric": good("p", 0).replace(b'"speed": 2.0', b'"speed": "2.0"'),
    "non_finite": good("p", 0).replace(b'"speed": 2.0', b'"speed": Infinity'),
}
