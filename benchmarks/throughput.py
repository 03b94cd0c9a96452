"""Throughput of one worker against the bare consumer's ceiling and the batch-size-1 baseline.

    python -m benchmarks.throughput [--records 300000] [--assets 2000] [--repeats 3]
                                    [--batch-size 2000] [--broker kafka4|tansu|kafka09]

Produces the records once to a 4-partition topic on a local broker (Apache Kafka 4 unless
--broker says otherwise), then, back to back on
the same topic, each with a fresh consumer group and a fresh process: (a) the ceiling, a bare
kafka-python consumer with the worker's consumer settings that only reads; (b) the worker end
to end (poll, decode, score, alert rules, publish, commit) until every record is committed;
(c) the same worker with batch size 1 (on the first `--baseline-records` records); (d) the
worker with a model trained without the sensors' profile (no broken-sensor checks:
anomaly/instruments.py), what those checks cost. For window lengths 1 and 60. Medians of the
repeats.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_broker_option,
    broker_args,
    fleet_records,
    machine,
    median,
    prepare_topics,
    produce,
    run_role,
    started_broker,
    train_model,
    workdir,
    write_results,
)  # fmt: skip
from worker.settings import BatchSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--baseline-records", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", default="1,60")
    parser.add_argument(
        "--batch-size", type=int, default=BatchSettings().size,
        help="records per batch, the ceiling's and the worker's (default: the worker's default)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    per_asset = args.records // args.assets
    for window in windows:
        if per_asset < 2 * window:  # the records before a full window are not scored
            parser.error(
                f"window {window}: {per_asset} records per asset ({args.records} over "
                f"{args.assets} assets) would leave most unscored; give at least "
                f"{2 * window * args.assets} records or fewer assets"
            )
    work = workdir("throughput")
    settings = vars(args) | {"out": str(args.out)}
    results: dict[str, Any] = {"machine": machine(), "settings": settings, "windows": {}}
    with started_broker(args.broker, work) as (broker, about):
        results["broker"] = about
        topic = "bench-" + uuid.uuid4().hex[:6]
        kafka = prepare_topics(broker, topic)
        n = produce(kafka, topic, fleet_records(args.records, args.assets))
        print(f"produced {n} records of {args.assets} assets to {topic} (4 partitions)")
        for window in windows:
            store, plain = work / f"store-w{window}", work / f"store-w{window}-plain"
            train_model(store, window)
            train_model(plain, window, instruments=False)
            runs: dict[str, list[dict[str, Any]]] = {
                "ceiling": [],
                "worker": [],
                "baseline": [],
                "no_sensor_checks": [],
            }
            for repeat in range(args.repeats):
                common = [*broker_args(broker), "--topic", topic]
                sized = ["--batch-size", str(args.batch_size)]
                group = f"g-{uuid.uuid4().hex[:6]}"
                whole = ["--records", str(n)]
                runs["ceiling"].append(
                    run_role(["ceiling", *common, "--group", group, *whole, *sized])
                )
                checked = [
                    "worker",
                    *common,
                    "--group",
                    group + "w",
                    *whole,
                    "--store",
                    str(store),
                    *sized,
                ]
                unchecked = [
                    "worker",
                    *common,
                    "--group",
                    group + "p",
                    *whole,
                    "--store",
                    str(plain),
                    *sized,
                ]
                # the two workers take turns going first (a run can warm the broker's cache)
                for role, argv in sorted(
                    (("worker", checked), ("no_sensor_checks", unchecked)),
                    reverse=repeat % 2 == 1,
                ):
                    runs[role].append(run_role(argv))
                runs["baseline"].append(run_role(
                    ["worker", *common, "--group", group + "b", "--records",
                     str(min(n, args.baseline_records)), "--store", str(store),
                     "--batch-size", "1"]))  # fmt: skip
                print(f"window {window} repeat {repeat + 1}: " + ", ".join(
                    f"{k} {v[-1]['records_per_s']:.0f}/s" for k, v in runs.items()))  # fmt: skip
                for role in ("worker", "no_sensor_checks"):
                    print(f"  {role}'s loop, s per 1M records: " + ", ".join(
                        f"{stage} {s:.2f}" for stage, s in
                        runs[role][-1]["stage_s_per_million"].items()))  # fmt: skip
            med: dict[str, dict[str, Any]] = {
                k: {f: median([r[f] for r in v]) for f in v[0] if f != "stage_s_per_million"}
                for k, v in runs.items()
            }
            for role in ("worker", "no_sensor_checks"):
                med[role]["stage_s_per_million"] = {
                    stage: median([r["stage_s_per_million"][stage] for r in runs[role]])
                    for stage in runs[role][0]["stage_s_per_million"]
                }
            med["ratios"] = {
                "worker_over_ceiling": round(med["worker"]["records_per_s"]
                                             / med["ceiling"]["records_per_s"], 3),
                "worker_over_baseline": round(med["worker"]["records_per_s"]
                                              / med["baseline"]["records_per_s"], 2),
                "worker_over_no_sensor_checks": round(
                    med["worker"]["records_per_s"] / med["no_sensor_checks"]["records_per_s"], 3),
            }  # fmt: skip
            results["windows"][str(window)] = {"median": med, "runs": runs}
    rows = ["| window | ceiling rec/s | worker rec/s | batch-1 rec/s | worker/ceiling | "
            "worker/batch-1 | worker CPU s per 1M | worker peak RSS MB | without sensor checks "
            "rec/s | worker/without |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for window, r in results["windows"].items():
        m = r["median"]
        rows.append(
            f"| {window} | {m['ceiling']['records_per_s']:.0f} | {m['worker']['records_per_s']:.0f}"
            f" | {m['baseline']['records_per_s']:.0f} | {m['ratios']['worker_over_ceiling']:.2f}"
            f" | {m['ratios']['worker_over_baseline']:.1f} | {m['worker']['cpu_s_per_million']:.1f}"
            f" | {m['worker']['peak_rss_mb']:.0f} | {m['no_sensor_checks']['records_per_s']:.0f}"
            f" | {m['ratios']['worker_over_no_sensor_checks']:.2f} |"
        )
    write_results(args.out, "throughput", results, "\n".join(rows))


if __name__ == "__main__":
    main()
