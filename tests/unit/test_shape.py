"""The shape check `make lint` runs (devtools/shape.py) finds what it is there to find."""

from __future__ import annotations

from pathlib import Path

from devtools.shape import MAX_FUNCTION, MAX_MODULE, breaches


def test_a_long_module_and_a_long_or_wide_batch_function_are_named(tmp_path: Path) -> None:
    worker = tmp_path / "worker"
    worker.mkdir()
    (tmp_path / "anomaly").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    (worker / "decide.py").write_text(
        "class Rules:\n"
        "    def __init__(self, a, b, c, d, e, f, g):\n        pass\n\n"
        "    def step(self, a, b, c, d, e, f):\n        pass\n\n"
        "def wide(a, b, c, d, e, f, *rest):\n    pass\n\n"
        f"def long():\n{body}\n"
    )
    (worker / "cli.py").write_text("def wide(a, b, c, d, e, f, g):\n    pass\n" + "\n" * MAX_MODULE)
    assert breaches(tmp_path) == [
        f"worker/cli.py: {MAX_MODULE + 2} lines (at most {MAX_MODULE})",  # not the batch path
        "worker/decide.py:8 wide: 7 parameters (at most 6)",
        f"worker/decide.py:11 long: {MAX_FUNCTION + 1} lines (at most {MAX_FUNCTION})",
    ]


def test_the_code_here_keeps_the_shape() -> None:
    assert breaches() == []
