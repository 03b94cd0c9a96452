"""The one record decoder (anomaly/decoding.py): size, JSON, model, then a record or a
reading; every refusal says why and, once known, which model the message was for."""

from __future__ import annotations

import json

import pytest

from anomaly.decoding import Decoder
from anomaly.records import Reading, Record, RecordError
from anomaly.settings import InputSettings, RouteSettings

PUMP = ("flow", "pressure")
COMPRESSOR = ("current", "speed")


def message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def whole(asset: str = "pump-1", kind: str | None = None, **values: object) -> bytes:
    body: dict[str, object] = {"asset_id": asset, "ts": "2026-12-06T10:00:00Z",
                               "values": values or {"flow": 1.0, "pressure": 2.0}}  # fmt: skip
    if kind is not None:
        body["asset_type"] = kind
    return json.dumps(body).encode()


def values(decoder: Decoder, value: bytes) -> tuple[str, tuple[float, ...]]:
    """The model and the values of a whole record."""
    model, item = decoder.decode(value)
    assert isinstance(item, Record)
    return model, item.values


def refusal(decoder: Decoder, value: bytes | None) -> tuple[str, str | None]:
    with pytest.raises(RecordError) as caught:
        decoder.decode(value)
    return caught.value.reason, caught.value.model


def test_one_model_takes_every_message_without_a_route() -> None:
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP})
    model, item = decoder.decode(whole(flow=3.0, pressure=4.0, extra=9.0))
    assert model == "pumps"
    assert item == Record("pump-1", item.ts, (3.0, 4.0))


def test_routes_pick_each_messages_model_and_its_features() -> None:
    routes = RouteSettings(route_field="asset_type", routes={"cmp-*": "compressors"})
    decoder = Decoder(InputSettings(), routes, {"pumps": PUMP, "compressors": COMPRESSOR})
    assert values(decoder, whole("pump-1", "pumps")) == ("pumps", (1.0, 2.0))
    assert values(decoder, whole("cmp-7", current=5.0, speed=6.0)) == ("compressors", (5.0, 6.0))
    assert refusal(decoder, whole("fan-1")) == ("no_model", None)


def test_a_refusal_after_routing_names_the_model() -> None:
    routes = RouteSettings(route_field="asset_type")
    decoder = Decoder(InputSettings(), routes, {"pumps": PUMP, "compressors": COMPRESSOR})
    assert refusal(decoder, whole("p", "pumps", flow=1.0)) == ("missing_feature", "pumps")
    assert refusal(decoder, whole("p", "pumps", flow="x", pressure=1)) == ("non_numeric", "pumps")


def test_bytes_are_refused_before_they_are_read() -> None:
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP}, max_bytes=64)
    assert refusal(decoder, None) == ("empty", None)
    assert refusal(decoder, whole(flow=1.0, pressure=2.0, pad="x" * 64)) == ("too_large", None)
    assert refusal(decoder, b"{not json") == ("not_json", None)
    unlimited = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP})
    assert values(unlimited, whole(flow=1.0, pressure=2.0, pad="x" * 64))[0] == "pumps"


def test_a_partial_decoder_lets_a_record_lack_some_features() -> None:
    lacking = whole(flow=1.0)
    assert refusal(Decoder(InputSettings(), RouteSettings(), {"m": PUMP}), lacking)[0] == (
        "missing_feature"
    )
    _, item = Decoder(InputSettings(), RouteSettings(), {"m": PUMP}, partial=True).decode(lacking)
    assert isinstance(item, Record)
    assert item.missing == (1,)


def test_unknown_features_are_learned_from_the_first_record_but_the_excluded() -> None:
    decoder = Decoder(InputSettings(), RouteSettings(), {"m": None}, exclude=("id",))
    assert values(decoder, whole(pressure=2.0, flow=1.0, id=7)) == ("m", (1.0, 2.0))
    assert decoder.features["m"] == ("flow", "pressure")
    assert values(decoder, whole(flow=3.0, pressure=4.0, other=5.0)) == ("m", (3.0, 4.0))
    empty = Decoder(InputSettings(), RouteSettings(), {"m": None}, exclude=("id",))
    assert refusal(empty, message(asset_id="a", ts=1, values={"id": 1})) == ("bad_values", "m")


def test_fields_named_the_producers_way_route_by_its_asset_field() -> None:
    layout = InputSettings(asset_field="tags.host", time_field="time", values_field="fields")
    routes = RouteSettings(routes={"cmp-*": "compressors", "*": "pumps"})
    decoder = Decoder(layout, routes, {"pumps": PUMP, "compressors": COMPRESSOR})
    body = message(tags={"host": "cmp-2"}, time=1_700_000_000, fields={"current": 1, "speed": 2})
    model, item = decoder.decode(body)
    assert (model, item.asset_id) == ("compressors", "cmp-2")


def test_one_value_per_message_is_a_reading_of_a_known_sensor() -> None:
    layout = InputSettings(shape="value", asset_field="node", time_field="time",
                           sensor_field="tag")  # fmt: skip
    decoder = Decoder(layout, RouteSettings(), {"pumps": PUMP})
    model, item = decoder.decode(message(node="p-1", time=1_700_000_000_000, tag="flow", value=3))
    assert model == "pumps"
    assert isinstance(item, Reading)
    assert (item.sensor, item.value) == ("flow", 3.0)
    unknown = message(node="p-1", time=1_700_000_000_000, tag="speed", value=3)
    assert refusal(decoder, unknown) == ("unknown_sensor", "pumps")
    anything = Decoder(layout, RouteSettings(), {"pumps": None})  # features not known yet
    assert isinstance(anything.decode(unknown)[1], Reading)


def test_each_refusal_says_why() -> None:
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP}, max_bytes=64)
    reasons = {}
    for value in (None, whole(flow=1.0, pressure=2.0, pad="x" * 64),
                  message(asset_id="a", ts=1, values=[1, 2])):  # fmt: skip
        with pytest.raises(RecordError) as caught:
            decoder.decode(value)
        reasons[caught.value.reason] = str(caught.value)
    assert reasons["empty"] == "record has no value (a tombstone)"
    assert reasons["too_large"].endswith("bytes, over the limit of 64")
    learning = Decoder(InputSettings(), RouteSettings(), {"pumps": None})
    with pytest.raises(RecordError, match="record has no values object") as caught:
        learning.decode(message(asset_id="a", ts=1, values=["flow", "pressure"]))
    assert caught.value.reason == "bad_values"
    assert learning.features["pumps"] is None  # nothing learned from a list


def test_a_message_of_exactly_the_limit_is_read() -> None:
    body = whole(flow=1.0, pressure=2.0)
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP}, max_bytes=len(body))
    assert values(decoder, body) == ("pumps", (1.0, 2.0))


def test_without_a_route_no_model_of_several_takes_a_message() -> None:
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP, "compressors": COMPRESSOR})
    with pytest.raises(RecordError, match="several models are served") as caught:
        decoder.decode(whole())
    assert (caught.value.reason, caught.value.model) == ("no_model", None)


def test_with_routes_set_one_model_takes_only_what_they_send_it() -> None:
    routes = RouteSettings(routes={"pump-*": "pumps"})
    decoder = Decoder(InputSettings(), routes, {"pumps": PUMP})
    assert values(decoder, whole("pump-3")) == ("pumps", (1.0, 2.0))
    with pytest.raises(RecordError, match="no route matches this record"):
        decoder.decode(whole("fan-1"))
    named = Decoder(InputSettings(), RouteSettings(route_field="asset_type"), {"pumps": PUMP})
    with pytest.raises(RecordError, match="asset_type 'fans' names no model served here"):
        named.decode(whole("fan-1", "fans"))


def test_one_value_per_message_is_routed_by_its_own_asset_field() -> None:
    layout = InputSettings(shape="value", asset_field="node", time_field="time",
                           sensor_field="tag")  # fmt: skip
    routes = RouteSettings(routes={"cmp-*": "compressors", "*": "pumps"})
    decoder = Decoder(layout, routes, {"pumps": PUMP, "compressors": COMPRESSOR})
    compressor = message(node="cmp-1", time=1_700_000_000_000, tag="speed", value=3)
    assert decoder.decode(compressor)[0] == "compressors"
    pump = message(node="p-1", time=1_700_000_000_000, tag="flow", value=3)
    assert decoder.decode(pump)[0] == "pumps"
    with pytest.raises(RecordError, match=r"sensor 'speed' is not a feature of model pumps "
                       r"\(flow, pressure\)"):  # fmt: skip
        decoder.decode(message(node="p-1", time=1_700_000_000_000, tag="speed", value=3))


def labelled(asset: str, area: object) -> bytes:
    body = json.loads(whole(asset))
    body["labels"] = {"area": area}
    return json.dumps(body).encode()


def test_a_label_the_records_carry_is_kept_for_their_asset() -> None:
    kept: dict[str, str] = {}
    decoder = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP},
                      labels=("labels.area", kept))  # fmt: skip
    assert values(decoder, labelled("pump-1", "north")) == ("pumps", (1.0, 2.0))
    for unread in (labelled("pump-2", ""), labelled("pump-3", 7), whole("pump-4")):
        decoder.decode(unread)  # an empty label, a number, none: nothing kept
    decoder.decode(labelled("pump-1", "south"))  # the latest wins
    assert kept == {"pump-1": "south"}
    plain = Decoder(InputSettings(), RouteSettings(), {"pumps": PUMP})
    plain.decode(labelled("pump-5", "north"))
    assert plain.labels is None


def test_a_label_is_kept_under_the_asset_id_where_the_producer_puts_it() -> None:
    kept: dict[str, str] = {}
    layout = InputSettings(asset_field="tags.host", time_field="time", values_field="fields")
    decoder = Decoder(layout, RouteSettings(), {"pumps": PUMP}, labels=("tags.area", kept))
    decoder.decode(message(tags={"host": "p-9", "area": "east"}, time=1_700_000_000,
                           fields={"flow": 1, "pressure": 2}))  # fmt: skip
    nameless = message(tags={"area": "west"}, time=1_700_000_000, fields={"flow": 1})
    assert refusal(decoder, nameless) == ("bad_asset_id", "pumps")
    assert kept == {"p-9": "east"}  # a message without an asset id names no asset
