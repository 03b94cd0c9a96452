"""The shape the code keeps (`python -m devtools.shape`, run by `make lint`): no module of the
worker or the core over MAX_MODULE lines, and no function on the batch path (what runs for
every batch, from the poll to the commit: BATCH_PATH) over MAX_FUNCTION lines or
MAX_PARAMETERS parameters (self and cls not counted; constructors, which run once, left
out). Prints each breach and exits 1 if there is one."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE, MAX_FUNCTION, MAX_PARAMETERS = 400, 50, 6
BATCH_PATH = (
    "worker/runner.py", "worker/kafka_io.py", "worker/kafka_sink.py", "worker/pipeline.py",
    "worker/intake.py", "worker/windows.py", "worker/score.py", "worker/decide.py",
    "worker/emit.py", "worker/alarms.py", "worker/observe.py", "worker/assets.py",
    "worker/sensors.py", "worker/partitions.py", "worker/checkpoint.py", "worker/outbound.py",
    "anomaly/decoding.py", "anomaly/records.py", "anomaly/routing.py", "anomaly/assembly.py",
    "anomaly/rules.py", "anomaly/onset.py", "anomaly/events.py", "anomaly/kafka.py",
    "anomaly/model/detector.py", "anomaly/model/drift.py", "anomaly/model/calibration.py",
)  # fmt: skip


def breaches(root: Path = REPO) -> list[str]:
    out = []
    for path in sorted([*root.glob("worker/*.py"), *root.glob("anomaly/**/*.py")]):
        name = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_MODULE:
            out.append(f"{name}: {lines} lines (at most {MAX_MODULE})")
        if name not in BATCH_PATH:
            continue
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name == "__init__":
                continue
            args = node.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            count += (args.vararg is not None) + (args.kwarg is not None)
            if args.args and args.args[0].arg in ("self", "cls"):
                count -= 1
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            where = f"{name}:{node.lineno} {node.name}"
            if count > MAX_PARAMETERS:
                out.append(f"{where}: {count} parameters (at most {MAX_PARAMETERS})")
            if length > MAX_FUNCTION:
                out.append(f"{where}: {length} lines (at most {MAX_FUNCTION})")
    return out


def main() -> int:
    found = breaches()
    for breach in found:
        print(breach)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
