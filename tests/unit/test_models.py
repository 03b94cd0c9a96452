"""Named models: the store's layout, routing, and one worker core serving two asset types."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from anomaly.model import Artifact, ModelStore, model_names, model_store
from anomaly.routing import route
from anomaly.settings import RouteSettings, TopicSettings
from devtools.simulator import COMPRESSOR, Fleet
from tests.support.fakes import as_records
from tests.support.models import Trained, train_compressors
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings, ModelsSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")


@pytest.fixture(scope="module")
def compressors(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A window-1 model of the compressors (five sensors of their own), in a named store."""
    root = tmp_path_factory.mktemp("compressors")
    train_compressors(root / "store")
    assert model_names(root / "store") == ["compressor"]
    return model_store(root / "store", "compressor").load_current()


def test_the_store_root_is_the_default_model_and_names_live_under_models(
    trained: Trained, tmp_path: Path
) -> None:
    shutil.copytree(trained.root, tmp_path / "store")
    root = tmp_path / "store"
    assert model_names(root) == ["default"]  # a store from before named models
    assert model_store(root).location == str(root)
    assert model_store(root, "pumps").location == str(root / "models" / "pumps")
    shutil.copytree(root / "versions", root / "models" / "pumps" / "versions")
    (root / "models" / "Bad Name").mkdir()
    assert model_names(root) == ["default", "pumps"]
    with pytest.raises(ValueError, match="is not a model name"):
        model_store(root, "../elsewhere")
    assert model_names(tmp_path / "empty") == []


def test_routes_by_field_then_asset_patterns_else_the_only_model() -> None:
    served = {"pump", "compressor"}
    by_field = RouteSettings(
        route_field="asset_type", routes={"motor-*": "motor", "c-*": "compressor"}
    )
    assert route({"asset_type": "pump", "asset_id": "c-1"}, by_field, served) == "pump"
    assert route({"asset_type": "fan", "asset_id": "c-1"}, by_field, served) == "compressor"
    assert route({"asset_id": "motor-1"}, by_field, served) is None  # its model is not served
    assert route({"asset_id": "x"}, by_field, served) is None
    assert route({"asset_id": "x"}, RouteSettings(), {"default"}) == "default"
    assert route({"asset_id": "x"}, RouteSettings(), served) is None  # two models, no route
    assert route([1, 2], by_field, served) is None


def test_several_named_models_need_a_route() -> None:
    with pytest.raises(ValidationError, match="several models need a route"):
        ModelsSettings(names=("pump", "compressor"))
    with pytest.raises(ValidationError, match="is not a model name"):
        ModelsSettings(routes={"p-*": "Pumps!"})
    assert ModelsSettings(names=("pump", "compressor"), route_field="asset_type").configured


def test_one_core_scores_two_asset_types_each_with_its_own_model(
    trained: Trained, compressors: Artifact
) -> None:
    """A mixed batch: pumps (eight sensors) and compressors (five) each scored by their model,
    events naming it; a third type has no model and is dead-lettered with its reason."""
    pumps = ModelStore(trained.root).load_current()
    p = BatchProcessor(
        TOPICS, BatchSettings(), AlertSettings(), routes=RouteSettings(route_field="asset_type")
    )
    p.set_model(pumps, "pump")
    p.set_model(compressors, "compressor")
    pump_fleet, compressor_fleet = Fleet(3, seed=5), Fleet(3, seed=6, kind=COMPRESSOR)
    messages = [
        *pump_fleet.records(300, pump_fleet.faults(300, first=150)),
        *compressor_fleet.records(300, compressor_fleet.faults(300, first=150)),
    ]
    motor = {"asset_id": "motor-1", "asset_type": "motor", "ts": "2026-01-01T00:00:00Z",
             "values": {"rpm": 1.0}}  # fmt: skip
    messages.append((b"motor-1", json.dumps(motor).encode()))
    records = as_records(messages, partitions=1)
    results = [p.process(records[i : i + 200]) for i in range(0, len(records), 200)]
    scored = sum(r.stats.scored_by_model["pump"] for r in results)
    assert scored == 3 * 300  # window 1: every pump record
    assert sum(r.stats.scored_by_model["compressor"] for r in results) == 3 * 300
    letters = [json.loads(m.value) for r in results for m in r.messages if m.topic == "dlq"]
    assert [(d["reason"], d["model"]) for d in letters] == [("no_model", None)]
    assert "'motor' names no model served here" in letters[0]["error"]
    events = [json.loads(m.value) for r in results for m in r.messages if m.topic == "alerts"]
    # each fault caught by its asset's model: an episode, or (its stuck sensor) a sensor fault
    caught = {(e["asset_id"], e["model"]) for e in events if e["type"] in ("open", "sensor_fault")}
    for asset in ("pump-00", "pump-01", "pump-02"):
        assert (asset, "pump") in caught
    for asset in ("compressor-00", "compressor-01", "compressor-02"):
        assert (asset, "compressor") in caught
    versions = {e["model"]: e["model_version"] for e in events}
    assert versions == {"pump": pumps.version, "compressor": compressors.version}
