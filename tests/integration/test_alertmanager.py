"""An asset in alarm reaches the engineer where they already are: a real worker scraped by a
real Prometheus with the project's rules, a real Alertmanager (Debian's
prometheus-alertmanager) delivering to a webhook receiver in the test: the alert, then its
resolution. A stuck transmitter reaches the instrument technicians instead (`kind:
instrumentation`, a receiver of its own), and pages no process engineer. A plant upset that
moves four pumps together is one incident and one page (Alertmanager groups by the
`incident` label: one group, its members listed), while faults of other pumps in the same
minutes page on their own."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools import local_broker
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from tests.support.http import get
from tests.support.kafka import Running, alert_events, processed, produce, read, settings_on
from tests.support.models import Trained
from tests.support.observability import RULES, running_prometheus
from tests.support.waiting import wait_until
from tests.unit.test_incidents import ALONE, UPSET
from worker.settings import AlertSettings


class Receiver:
    """A webhook receiver: every alert Alertmanager delivers, in order."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []  # each as delivered (its groupKey)
        received, notified = self.alerts, self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.extend(body["alerts"])
                notified.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def seen(self, asset_id: str, status: str) -> list[dict[str, Any]]:
        return [a for a in list(self.alerts)
                if a["labels"].get("asset_id") == asset_id and a["status"] == status]  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def technicians() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def alertmanager(receiver: Receiver, technicians: Receiver, tmp_path: Path) -> Iterator[str]:
    """Alertmanager routing the asset alerts (kind: asset) to the receiver and the sensor
    faults (kind: instrumentation) to the technicians, fast: 1 s group wait and interval,
    resolutions sent."""
    port = local_broker.free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route: {receiver: ops, group_by: [alertname, asset_id], group_wait: 1s,"
        " group_interval: 1s, repeat_interval: 1h,\n"
        "        routes: [{receiver: plant, matchers: ['kind=\"asset\"'],\n"
        "                  group_by: [alertname, incident]},\n"
        "                 {receiver: technicians, matchers: ['kind=\"instrumentation\"'],\n"
        "                  group_by: [alertname, asset_id, feature]}]}\n"
        "receivers:\n"
        "  - name: ops\n"
        f"  - name: plant\n    webhook_configs: [{{url: '{receiver.url}', send_resolved: true}}]\n"
        f"  - name: technicians\n    webhook_configs: [{{url: '{technicians.url}',"
        " send_resolved: true}]\n"
    )
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={config}",
         f"--storage.path={tmp_path / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        local_broker.wait_for_port(port, process, "alertmanager", 30)
        wait_until(lambda: get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, "alertmanager")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


@contextmanager
def watched(running: Running, alertmanager: str, tmp_path: Path) -> Iterator[None]:
    """A real Prometheus scraping the running worker every second, with the project's rules,
    alerting through `alertmanager`."""
    wait_until(lambda: running.worker.http is not None, what="the worker's HTTP server")
    assert running.worker.http is not None
    shutil.copy(RULES, tmp_path / "rules.yml")
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "alerting: {alertmanagers: [{static_configs: [{targets: "
        f"['{alertmanager}']}}]}}]}}\n"
        "scrape_configs:\n"
        "  - job_name: sensor-anomaly-worker\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{running.worker.http.port}']}}]\n"
    )
    with running_prometheus(tmp_path, config):
        yield


def test_an_asset_in_alarm_is_delivered_by_alertmanager_and_so_is_its_resolution(
    broker: LocalBroker,
    trained: Trained,
    alertmanager: str,
    receiver: Receiver,
    technicians: Receiver,
    tmp_path: Path,
) -> None:
    shutil.copytree(trained.root, tmp_path / "store")
    settings = settings_on(broker, tmp_path / "store")
    running = Running(settings)
    try:
        with watched(running, alertmanager, tmp_path):
            fleet = Fleet(n_assets=3, seed=21, start=datetime.now(UTC) - timedelta(seconds=300))
            faults = fleet.faults(300, first=100)
            fault = next(f for f in faults if f.asset_id == "pump-00")
            records = list(fleet.records(300, faults))
            readings = [i for i, (key, _) in enumerate(records) if key == b"pump-00"]
            cut = readings[(fault.start + fault.end) // 2] + 1  # into the middle of its fault
            sent = produce(settings, records[:cut])
            wait_until(lambda: processed(running.metrics) >= sent, 60, "the readings so far")
            assert running.worker.processor.explained.get("pump-00", 0) is None, "not in alarm"
            wait_until(lambda: bool(receiver.seen("pump-00", "firing")), 60, "the alert")
            [alert, *_] = receiver.seen("pump-00", "firing")
            model = running.worker.processor.served["default"].artifact.manifest
            assert alert["labels"]["alertname"] == "AnomalyAssetInAlarm"
            assert alert["labels"]["model"] == "default"
            assert alert["labels"]["model_version"] == model.model_version
            assert alert["labels"]["top_feature"] in model.features
            annotations = alert["annotations"]
            assert annotations["summary"].startswith("pump-00 left its normal")
            assert "times its threshold" in annotations["description"]
            assert annotations["dashboard"].endswith("var-asset=pump-00")
            assert annotations["review"] == "/assets/pump-00"  # its episode on the review page

            # pump-02's current sensor stuck: the technicians are told, nobody else is paged
            stuck = next(f for f in faults if f.asset_id == "pump-02")
            assert stuck.kind == "stuck"
            mine = [i for i, (key, _) in enumerate(records) if key == b"pump-02"]
            into = mine[(stuck.start + stuck.end) // 2] + 1  # into the middle of its fault
            sent += produce(settings, records[cut:into])
            wait_until(lambda: processed(running.metrics) >= sent, 60, "the readings so far")
            wait_until(lambda: bool(technicians.seen("pump-02", "firing")), 60, "the sensor fault")
            [broken, *_] = technicians.seen("pump-02", "firing")
            assert broken["labels"]["alertname"] == "AnomalySensorFault"
            assert (broken["labels"]["feature"], broken["labels"]["fault"]) == ("current", "stuck")
            assert broken["annotations"]["summary"] == "pump-02's current sensor is stuck"

            sent += produce(settings, records[into:])  # the faults end
            wait_until(lambda: processed(running.metrics) >= sent, 60, "the rest")
            wait_until(lambda: running.worker.processor.open_episodes == 0, 30,
                       "every episode resolved")  # fmt: skip
            wait_until(lambda: bool(receiver.seen("pump-00", "resolved")), 60, "its resolution")
            wait_until(lambda: bool(technicians.seen("pump-02", "resolved")), 60,
                       "the sensor fault's end")  # fmt: skip
            assert not receiver.seen("pump-02", "firing"), "a broken sensor paged the plant"
            assert not technicians.seen("pump-00", "firing")
    finally:
        running.stop()


def test_an_upset_of_four_pumps_pages_once_and_other_faults_each_page_on_their_own(
    broker: LocalBroker,
    trained: Trained,
    alertmanager: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    shutil.copytree(trained.root, tmp_path / "store")
    # each episode stays open an hour once quiet (the spike's too: its page scraped)
    settings = settings_on(broker, tmp_path / "store")
    settings = settings.model_copy(update={"alerts": AlertSettings(resolve_after_s=3600.0)})
    running = Running(settings)
    try:
        with watched(running, alertmanager, tmp_path):
            start = datetime.now(UTC) - timedelta(seconds=700)
            fleet = Fleet(n_assets=8, seed=3, start=start, upsets=(UPSET,))
            records = list(fleet.records(700, ALONE))  # (a fault's timestamps are not read)
            cut = 8 * 440  # past every fault's opening, before the episodes resolve
            sent = produce(settings, records[:cut])
            wait_until(lambda: processed(running.metrics) >= sent, 60, "the readings so far")
            paging = set(UPSET.assets) | {f.asset_id for f in ALONE}
            wait_until(lambda: all(receiver.seen(a, "firing") for a in paging), 90, "the pages")
            firing = [n for n in receiver.notifications if n["status"] == "firing"]
            groups: dict[str, set[str]] = {}
            for notification in firing:
                assets = {a["labels"]["asset_id"] for a in notification["alerts"]}
                groups.setdefault(notification["groupKey"], set()).update(assets)
            assert sorted(map(sorted, groups.values())) == sorted(
                [sorted(UPSET.assets)] + [[f.asset_id] for f in ALONE]
            )  # fmt: skip: one page for the upset, its four members listed; one per fault
            [incident] = {a["labels"]["incident"] for a in receiver.alerts
                          if a["labels"]["asset_id"] in UPSET.assets}  # fmt: skip
            held = read(settings, settings.topics.alerts, alert_events(running.metrics))
            told = [json.loads(r.value or b"") for r in held]
            opened = [e for e in told if e["type"] == "incident_open"]
            assert [e["incident_id"] for e in opened] == [incident]
            named = {
                m["asset_id"]
                for e in told
                if e.get("incident_id") == incident
                for m in e.get("members", ())
            }  # fmt: skip: its open and resolve list them
            named |= {e["member_asset_id"] for e in told if e.get("incident_id") == incident}
            assert named == set(UPSET.assets)
            sent += produce(settings, records[cut:])
            wait_until(lambda: processed(running.metrics) >= sent, 60, "the rest")
    finally:
        running.stop()
