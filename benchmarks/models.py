"""Named models: the worker's core with two models against one, in the same run.

    python -m benchmarks.models [--records 120000] [--assets 200] [--repeats 3] [--window 10]

Trains a pump model (eight sensors) and a compressor model (five of their own), then, back to
back in this process, feeds the worker's core (`BatchProcessor`: decode, route, windows,
score, onset evidence, rules) batches of 500 records: (a) one model, every asset a pump;
(b) two models routed by `asset_type`, half the assets pumps and half compressors; the same
number of records each. Reports records per CPU second of each (the median of the repeats,
run alternately so that the machine's drift hits both alike), their ratio, and the memory
each asset's state takes under each model (tracemalloc over --assets assets). Kafka is left
out: it costs the same per record whatever model scores it; benchmarks/throughput.py measures
the whole worker.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path
from typing import Any

from anomaly.model import Artifact, model_store
from anomaly.settings import RouteSettings, TopicSettings
from benchmarks.common import machine, median, workdir, write_results
from devtools.simulator import COMPRESSOR, Fleet
from tests.support.fakes import FakeRecord, as_records
from training.job import train
from training.settings import TrainingSettings
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

BATCH = 500


def trained(root: Path, name: str, fleet: Fleet, window: int) -> Artifact:
    data = root / f"{name}.jsonl"
    data.write_bytes(b"".join(value + b"\n" for _, value in fleet.records(2000)))
    train(TrainingSettings(
        data={"path": data}, model={"window": window, "epochs": 10, "patience": 3},
        store={"path": root / "store", "model": name}, log_level="WARNING",
    ))  # fmt: skip
    return model_store(root / "store", name).load_current()


def processor(models: dict[str, Artifact]) -> BatchProcessor:
    routes = RouteSettings(route_field="asset_type") if len(models) > 1 else RouteSettings()
    p = BatchProcessor(TopicSettings(), BatchSettings(), AlertSettings(), routes=routes)
    for name, artifact in models.items():
        p.set_model(artifact, name)
    return p


def cpu_seconds(models: dict[str, Artifact], records: list[FakeRecord]) -> float:
    p = processor(models)
    started = time.process_time()
    for i in range(0, len(records), BATCH):
        p.process(records[i : i + BATCH])
    return time.process_time() - started


def bytes_per_asset(models: dict[str, Artifact], records: list[FakeRecord], assets: int) -> float:
    """What each asset's state adds once its window and history are full."""
    p = processor(models)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(0, len(records), BATCH):
        p.process(records[i : i + BATCH])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / assets


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models")
    parser.add_argument("--records", type=int, default=120_000)
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    work = workdir("models")
    half = args.assets // 2
    pump = trained(work, "pump", Fleet(10, seed=100), args.window)
    compressor = trained(work, "compressor", Fleet(10, seed=100, kind=COMPRESSOR), args.window)
    per_asset = max(1, args.records // args.assets)
    one = as_records(list(Fleet(args.assets, seed=7).records(per_asset)), partitions=4)
    mixed = as_records(
        _interleave(
            list(Fleet(half, seed=7).records(per_asset)),
            list(Fleet(args.assets - half, seed=7, kind=COMPRESSOR).records(per_asset)),
        ),
        partitions=4,
    )
    single = {"pump": pump}
    both = {"pump": pump, "compressor": compressor}
    cpu_one, cpu_two = [], []
    for _ in range(args.repeats):
        cpu_one.append(cpu_seconds(single, one))
        cpu_two.append(cpu_seconds(both, mixed))
    rate_one, rate_two = len(one) / median(cpu_one), len(mixed) / median(cpu_two)
    history = max(args.window, pump.manifest.rules.history)
    memory = {
        "pump": bytes_per_asset(single, one[: args.assets * (history + 1)], args.assets),
        "pump and compressor": bytes_per_asset(
            both, mixed[: args.assets * (history + 1)], args.assets
        ),
    }
    results: dict[str, Any] = {
        "machine": machine(),
        "records": len(one),
        "assets": args.assets,
        "window": args.window,
        "repeats": args.repeats,
        "one_model_records_per_cpu_s": round(rate_one),
        "two_models_records_per_cpu_s": round(rate_two),
        "two_over_one": round(rate_two / rate_one, 3),
        "bytes_per_asset": {k: round(v) for k, v in memory.items()},
    }
    table = "\n".join([
        "| case | records | records per CPU second | bytes per asset |",
        "|---|---|---|---|",
        f"| one model (pumps) | {len(one)} | {rate_one:,.0f} | {memory['pump']:,.0f} |",
        f"| two models (pumps and compressors, routed by asset_type) | {len(mixed)} | "
        f"{rate_two:,.0f} | {memory['pump and compressor']:,.0f} |",
        f"| two / one | | {rate_two / rate_one:.2f} | |",
    ])  # fmt: skip
    write_results(args.out, "models", results, table)


def _interleave(
    a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Two fleets' records in time order (each list is already by time, assets within)."""
    out = []
    step_a, step_b = max(1, len(a) // max(1, len(b))), 1
    i = j = 0
    while i < len(a) or j < len(b):
        out.extend(a[i : i + step_a])
        out.extend(b[j : j + step_b])
        i, j = i + step_a, j + step_b
    return out


if __name__ == "__main__":
    main()
