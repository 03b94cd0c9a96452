"""The README's demo, end to end: broker, training, worker, simulated faults, summary."""

import re
import subprocess
import sys
from pathlib import Path

from devtools.local_broker import free_port
from tests.support.models import REPO


def test_the_demo_detects_every_injected_fault(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--assets", "4", "--readings", "300",
         "--http-port", str(free_port()), "--workdir", str(tmp_path / "demo")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    found = re.search(r"faults detected: 4/4; false alerts: (\d+)", demo.stdout)
    assert found, demo.stdout
    assert int(found.group(1)) <= 1
    # the summary says how soon each fault was caught
    delays = [int(d) for d in re.findall(r"DETECTED after (\d+) readings", demo.stdout)]
    assert len(delays) == 4
    assert "anomaly_dead_letters_total" in demo.stdout
    assert "worker drained and exited with code 0" in demo.stdout
