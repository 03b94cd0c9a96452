"""The README's demo, end to end: broker, two models trained, worker, a mixed fleet with
simulated faults, a plant upset on four more pumps, a sensor that drops out, a pump stopped in
a maintenance window and one stopped outside any, summary; an episode's report, and its page
on the review page."""

import re
import subprocess
import sys
from pathlib import Path

from devtools.local_broker import free_port
from tests.support.models import REPO


def test_the_demo_detects_every_injected_fault(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--assets", "4", "--compressors", "2",
         "--readings", "300",
         "--http-port", str(free_port()), "--review-port", str(free_port()),
         "--workdir", str(tmp_path / "demo")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    found = re.search(r"faults detected: 6/6; false alerts: (\d+)", demo.stdout)
    assert found, demo.stdout
    assert int(found.group(1)) <= 1
    # the summary says how soon each fault was caught
    delays = [int(d) for d in re.findall(r"DETECTED after (\d+) readings", demo.stdout)]
    assert len(delays) == 6
    assert re.search(r"compressor-01 .*DETECTED", demo.stdout)  # caught by its own model
    # the stuck sensors are broken transmitters: instrumentation events, not process episodes
    assert re.search(r"pump-02  stuck .*DETECTED after \d+ readings as instrumentation: "
                     r"current stuck", demo.stdout), demo.stdout  # fmt: skip
    assert not re.search(r"OPEN     pump-02 ", demo.stdout), demo.stdout
    # the plant upset on the four pumps after the faulted ones (no fault of their own): one
    # incident, paged once, its episodes no false alerts
    assert "a plant upset on pump-04..pump-07 (readings 135-179)" in demo.stdout, demo.stdout
    assert re.search(
        r"plant upset on pump-04\.\.pump-07 \(readings 135-179\): 4/4 pumps opened an episode, "
        r"in one incident \(incident_open, 2 incident_update\), 1 page\n", demo.stdout,
    ), demo.stdout  # fmt: skip
    told = re.findall(r"  INCIDENT (.+)  \S+  one cause: (\d) episodes, one page", demo.stdout)
    assert [n for _, n in told] == ["2", "3", "4"], demo.stdout
    assert sorted(told[-1][0].split(", ")) == [f"pump-0{i}" for i in range(4, 8)]
    joined = re.findall(r"OPEN     (pump-0[4-7]) .*\(no page: in (pump-0[4-7])'s incident\)",
                        demo.stdout)  # fmt: skip
    assert len(joined) == 3, demo.stdout
    assert len({first for _, first in joined}) == 1  # all three in the first one's
    assert 'anomaly_alert_events_total{type="incident_open"} 1.0' in demo.stdout
    # pages: pump-00's spike, pump-01's drift, pump-03's broken correlation, the upset once
    # (pump-02's stuck sensor is instrumentation)
    assert 'anomaly_pages_total{model="pump"} 4.0' in demo.stdout, demo.stdout
    # the sensor that dropped out: said silent once its bound had passed, back when it was
    assert re.search(
        r"sensor dropout: pump-01 flow out for 30 readings \(filled for up to 10 s\): "
        r"SILENT after 10 readings, BACK at its first reading again",
        demo.stdout,
    ), demo.stdout
    # the pump serviced in its window and the one that stopped outside any: said stopped and
    # started again, no page
    assert re.search(
        r"maintenance: pump-00 stopped in its window \(readings 210-269\): said stopped then "
        r"started; 0 pages", demo.stdout,
    ), demo.stdout  # fmt: skip
    assert re.search(
        r"stop: pump-03 stopped outside any window \(readings 225-254\): said stopped at "
        r"reading 225, started at reading 255; 0 pages", demo.stdout,
    ), demo.stdout  # fmt: skip
    assert 'anomaly_records_total{outcome="stopped"} 69.0' in demo.stdout  # 39 + 30
    assert "anomaly_dead_letters_total" in demo.stdout
    assert "worker drained and exited with code 0" in demo.stdout
    # the report of one episode, as a user asks for it (anomaly-train report EPISODE_ID)
    shown = re.search(r"episode report \(anomaly-train report (\S+)\): (\S+\.png)", demo.stdout)
    assert shown, demo.stdout
    assert Path(shown.group(2)).read_bytes()[:4] == b"\x89PNG"
    # the same episode on the review page, through the demo's stand-in for the identity proxy
    page = re.search(r"review page for (\S+): (http://127\.0\.0\.1:\d+/episodes/\S+) \(shown, "
                     r"its figure (\d+) bytes", demo.stdout)  # fmt: skip
    assert page, demo.stdout
    assert page.group(1) == shown.group(1)
    assert page.group(2).endswith(f"/episodes/{shown.group(1)}")
    assert int(page.group(3)) > 1000
