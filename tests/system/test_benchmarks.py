"""Smoke test: every benchmark runs end to end on a tiny input and writes its results.

Figures are not asserted: timings belong to the benchmarks, never to tests.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import REPO

# On the default broker (Apache Kafka 4) where it matters, on Tansu (faster to start) elsewhere.
TINY = {
    "throughput": ["--records", "3600", "--assets", "30", "--repeats", "1",
                   "--baseline-records", "200"],
    "latency": ["--rate", "500", "--seconds", "2", "--burst", "500", "--assets", "50",
                "--broker", "tansu"],
    "memory": ["--assets", "500", "--window", "5", "--broker", "tansu"],
    "scaling": ["--records", "20000", "--assets", "100", "--repeats", "1", "--broker", "tansu"],
    "soak": ["--rate", "500", "--minutes", "0.1", "--interval", "2", "--assets", "50"],
    "models": ["--records", "4000", "--assets", "20", "--repeats", "1", "--window", "5"],
    "review": ["--assets", "4", "--readings", "4200", "--fault-readings", "100",
               "--repeats", "1"],
}  # fmt: skip


@pytest.mark.parametrize("name", TINY)
def test_benchmark_runs_and_writes_its_results(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *TINY[name], "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / f"{name}.json").read_text())
    assert results["machine"]["cores"]
    if name != "models":  # the only one without a broker
        expected = "tansu" if "tansu" in TINY[name] else "kafka4"
        assert results["broker"]["name"] == expected
        assert f"kafka-python reports {results['broker']['version']}" in done.stdout
    assert "|---|" in done.stdout  # the table for docs/benchmarks.md
    if name == "soak":  # not a figure: what the soak checks besides its figures
        assert results["produced"] == results["committed"] == 3000
