"""The alarm budget before go-live (training/budget.py): `anomaly-train budget` replays a
stored model over a range of the input topic and states each asset's episodes, the same
episodes the worker raised on those records (a real broker, the real worker, the command as
typed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.local_broker import LocalBroker
from devtools.simulator import Fault, Fleet, timestamp
from tests.support.kafka import published_events, settings_on
from tests.support.models import Trained
from training.budget import WEEK_S, replay
from training.settings import TrainingSettings

REPO = Path(__file__).resolve().parents[2]
READINGS = 900


def test_the_budget_a_replay_states_is_the_episodes_the_worker_raised(
    broker: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    shutil.copytree(trained.root, tmp_path / "store")
    settings = settings_on(broker, tmp_path / "store")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    fleet = Fleet(n_assets=4, seed=41, start=start)
    faults = fleet.faults(READINGS, first=200)
    # pump-00 faults twice more: an asset with several episodes in the range
    again = [Fault("pump-00", "spike", "vibration", at, at + 6, timestamp(at), timestamp(at))
             for at in (500, 700)]  # fmt: skip
    events = published_events(settings, fleet.records(READINGS, faults + again), 120)
    raised = Counter(e["asset_id"] for e in events if e["type"] == "open")
    assert raised["pump-00"] >= 2, raised

    # the last hour: every record (the broker stamps them as produced, now: a range that ends
    # before now would find none of them by broker time)
    training = TrainingSettings(
        data={"source": "kafka", "since": "1h"}, kafka=settings.kafka,
        topics={"input": settings.topics.input}, store={"path": tmp_path / "store"},
    )  # fmt: skip
    found = replay(training, None, datetime.now(UTC))
    assert {b.asset_id: b.episodes for b in found} == {
        fleet.name(i): raised[fleet.name(i)] for i in range(4)
    }
    assert {b.span_s for b in found} == {float(READINGS)}  # 900 readings a second apart

    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TRAINING_TOPICS__INPUT": settings.topics.input}  # fmt: skip
    typed = subprocess.run(
        [sys.executable, "-m", "training", "budget", "--source", "kafka", "--since", "1h",
         "--store", str(tmp_path / "store")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert typed.returncode == 0, typed.stderr[-2000:]
    week = raised["pump-00"] * WEEK_S / READINGS
    assert re.search(rf"pump-00 +{raised['pump-00']} +0\.2 +{week:.2f}", typed.stdout), typed.stdout
    total = sum(raised.values())
    assert f"4 assets, {total} episodes: {total * WEEK_S / READINGS / 4:.2f} per asset" in (
        typed.stdout
    )
