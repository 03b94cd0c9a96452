"""Memory: an idle worker with a model loaded, then with many distinct assets at window 60.

    python -m benchmarks.memory [--assets 100000] [--broker kafka4|tansu|kafka09]

The worker (max_assets = --assets) reads one record of each of 2 x --assets distinct assets:
RSS after the first half shows the cost of a full table, after the second half that the bound
holds memory flat (the least recently seen assets are evicted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

from benchmarks.common import (
    REPO,
    add_broker_option,
    broker_args,
    machine,
    prepare_topics,
    produce,
    started_broker,
    train_model,
    wait_until,
    workdir,
    write_results,
)  # fmt: skip
from devtools.simulator import FEATURES, clean_rows


def records(n: int) -> Iterator[tuple[bytes, bytes]]:
    rows = clean_rows(1000, seed=5)
    for i in range(n):
        asset = f"asset-{i:07d}"
        values = dict(zip(FEATURES, rows[i % 1000].tolist(), strict=True))
        yield (
            asset.encode(),
            orjson.dumps({"asset_id": asset, "ts": "2026-11-21T10:00:00Z", "values": values}),
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser)
    args = parser.parse_args()
    work = workdir("memory")
    store = work / "store"
    train_model(store, window=args.window)
    with started_broker(args.broker, work) as (broker, about):
        topic = "mem-" + uuid.uuid4().hex[:6]
        kafka = prepare_topics(broker, topic)
        ready = work / "ready"
        role = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.roles", "memory", *broker_args(broker),
             "--topic", topic, "--group", "mem", "--store", str(store), "--records",
             str(2 * args.assets), "--max-assets", str(args.assets), "--ready", str(ready)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(ready.exists, 120, "the idle worker")
        produce(kafka, topic, records(2 * args.assets))
        out, _ = role.communicate(timeout=1800)
        figures = json.loads(out.strip().splitlines()[-1])
    results = {"machine": machine(), "broker": about, "window": args.window,
               "max_assets": args.assets, **figures}  # fmt: skip
    idle = f"| idle, model loaded (window {args.window}) | 0 | {figures['idle_rss_mb']} |"
    rows = ["| state | assets tracked | RSS MB |", "|---|---|---|", idle]
    for seen, mark in figures["after"].items():
        rows.append(f"| after {seen} distinct assets | {mark['assets']} | {mark['rss_mb']} |")
    write_results(args.out, "memory", results, "\n".join(rows))


if __name__ == "__main__":
    main()
