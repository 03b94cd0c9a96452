"""How soon the review page shows an episode: the page and its figure for an episode of about
1,000 records, on a real broker with the worker that raised it.

    python -m benchmarks.review [--assets 12] [--readings 5600] [--fault-readings 1200]
                                [--repeats 3]

Trains a model (window 10) on clean simulator data, streams `--assets` pumps of `--readings`
readings each (one a second, each sent with its own time as its broker time, as a live
stream's) with faults of `--fault-readings` readings on four of them into a 4-partition topic
(long enough after them for their episodes to resolve: the hold is an hour of record time),
runs the worker until every record is committed, and takes the
resolved episode with the most records. Then, `--repeats` times, a fresh page process
(`python -m review`) is started on those topics; once it has read them it is asked, through
its proxy headers, for the episode's page, its figure (drawn: the asset's records from 600 s
before the episode to 600 s after it, read from its partition and scored by the model) and
the figure again (kept). Before those, another episode's figure is drawn: the page's first,
which loads the model version from the store. Each figure is the time from the request to
the last byte of the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anomaly.kafka import make_producer
from anomaly.records import parse_ts
from anomaly.settings import KafkaSettings
from benchmarks.common import (
    REPO,
    add_broker_option,
    broker_args,
    machine,
    median,
    prepare_topics,
    run_role,
    started_broker,
    train_model,
    wait_until,
    workdir,
    write_results,
)
from devtools.simulator import Fleet
from devtools.topics import create_topics
from training.kafka_range import plan_range, read_planned

HEADERS = {"X-Forwarded-User": "bench", "X-Forwarded-Groups": "anomaly-judges"}
LISTENING = re.compile(r"review page at (http://[0-9.]+:\d+/)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.review", description=__doc__)
    parser.add_argument("--assets", type=int, default=12)
    parser.add_argument("--readings", type=int, default=5600)
    parser.add_argument("--fault-readings", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser, ("kafka4",))
    args = parser.parse_args()
    work = workdir("review")
    store = work / "store"
    print("training the model (window 10)", flush=True)
    train_model(store, window=10)
    with started_broker(args.broker, work) as (running, about):
        topic = "bench-review"
        kafka = prepare_topics(running, topic)
        alerts, feedback = f"{topic}-alerts", f"{topic}-alerts.verdicts"
        create_topics(kafka, {feedback: 1})
        fleet = Fleet(args.assets, seed=11, start=datetime.now(UTC).replace(microsecond=0)
                      - timedelta(seconds=args.readings))  # fmt: skip
        faults = fleet.faults(args.readings, first=400, length=args.fault_readings)[:4]
        sent = _produce_live(kafka, topic, fleet.records(args.readings, faults))
        print(f"{sent} records of {args.assets} pumps; the worker scores them", flush=True)
        run_role(["worker", *broker_args(running), "--topic", topic, "--group", "bench-review",
                  "--store", str(store), "--records", str(sent)])  # fmt: skip
        planned = plan_range(kafka, alerts, 0, None, 10**6)
        events = [json.loads(r.value or b"") for r in read_planned(kafka, planned)]
        resolved = [e for e in events if e.get("type") == "resolve"]
        if not resolved:
            kinds = sorted({str(e.get("type")) for e in events})
            raise SystemExit(f"no episode resolved ({len(events)} events: {kinds})")
        resolved.sort(key=lambda e: -int(e["records"]))
        longest, other = resolved[0], resolved[1 if len(resolved) > 1 else 0]
        print(f"episode {longest['episode_id']} of {longest['asset_id']}: {longest['records']} "
              f"records; {len(resolved)} episodes resolved", flush=True)  # fmt: skip
        env = {**os.environ, "REVIEW_KAFKA__BOOTSTRAP_SERVERS": running.bootstrap,
               "REVIEW_TOPICS__INPUT": topic, "REVIEW_TOPICS__ALERTS": alerts,
               "REVIEW_TOPICS__FEEDBACK": feedback, "REVIEW_STORE__PATH": str(store),
               "REVIEW_HTTP__HOST": "127.0.0.1", "REVIEW_HTTP__PORT": "0"}  # fmt: skip
        runs = [_measure(env, work / f"review-{i}.log", longest["episode_id"], other["episode_id"])
                for i in range(args.repeats)]  # fmt: skip
    figures = {k: median([r[k] for r in runs]) for k in runs[0]}
    results: dict[str, Any] = {
        "machine": machine(), "broker": about, "assets": args.assets,
        "readings": args.readings, "episode_records": longest["records"], "runs": runs,
        "median": figures,
    }  # fmt: skip
    table = "\n".join([
        "| episode records | page s | figure drawn s | figure kept s | page + figure drawn s | "
        "the page's first figure s |",
        "|---|---|---|---|---|---|",
        f"| {longest['records']} | {figures['page_s']:.3f} | {figures['figure_s']:.3f} | "
        f"{figures['figure_kept_s']:.3f} | {figures['page_s'] + figures['figure_s']:.3f} | "
        f"{figures['first_figure_s']:.3f} ({other['records']} records) |",
    ])  # fmt: skip
    write_results(args.out, "review", results, table)


def _produce_live(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    """The records, each with its own time as its broker time, as a live stream's (a
    producer that sends each reading as it is taken)."""
    producer = make_producer(kafka, linger_ms=20, batch_size=256 * 1024)
    n = 0
    for key, value in records:
        stamp = int(parse_ts(json.loads(value)["ts"]).timestamp() * 1000)
        producer.send(topic, key=key, value=value, timestamp_ms=stamp)
        n += 1
    producer.flush()
    producer.close()
    return n


def _measure(env: dict[str, str], log: Path, episode_id: str, first_id: str) -> dict[str, float]:
    """A fresh page: `first_id`'s figure drawn first (the page's first), then `episode_id`'s
    page, its figure drawn, and kept."""
    with log.open("wb") as out:
        page = subprocess.Popen([sys.executable, "-m", "review"], cwd=REPO, env=env,
                                stdout=out, stderr=out)  # fmt: skip
    try:
        found: list[str] = []

        def listening() -> bool:
            found[:] = LISTENING.findall(log.read_text(errors="replace"))
            return bool(found) or page.poll() is not None

        wait_until(listening, 60, "the review page to listen")
        if not found:
            raise RuntimeError(f"the review page exited: {log.read_text()[-2000:]}")
        base = found[0]
        wait_until(lambda: _status(base + "readyz") == 200, 60, "the page to read the topics")
        first_s = _timed(f"{base}episodes/{first_id}/figure.png")
        where = f"{base}episodes/{episode_id}"
        page_s = _timed(where)
        figure_s = _timed(where + "/figure.png")
        kept_s = _timed(where + "/figure.png")
        print(f"  page {page_s:.3f} s, figure drawn {figure_s:.3f} s, kept {kept_s:.3f} s "
              f"(the page's first figure: {first_s:.3f} s)", flush=True)  # fmt: skip
        return {"page_s": page_s, "figure_s": figure_s, "figure_kept_s": kept_s,
                "first_figure_s": first_s}  # fmt: skip
    finally:
        page.terminate()
        page.wait(30)


def _timed(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=HEADERS), timeout=60) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - began


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except OSError:
        return 0


if __name__ == "__main__":
    main()
