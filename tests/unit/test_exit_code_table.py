"""docs/testing.md's table of which test produces each exit code: a row for every code the
worker and the training job define (and the README lists), each naming tests that exist."""

from __future__ import annotations

import re

import pytest

from tests.support.models import REPO
from training.cli import ExitCode as TrainingExit
from worker.errors import ExitCode as WorkerExit

TABLE = REPO / "docs" / "testing.md"
CODES = {"worker": {int(c) for c in WorkerExit}, "training": {int(c) for c in TrainingExit}}


def rows() -> list[tuple[str, int, list[str]]]:
    """(process, code, tests named) of each row of the table."""
    out = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in CODES and cells[1].isdigit():
            tests = re.findall(r"`(tests/[^`]+::test_\w+)`", cells[3])
            out.append((cells[0], int(cells[1]), tests))
    return out


@pytest.mark.parametrize("process", list(CODES))
def test_every_exit_code_has_a_row_naming_a_test(process: str) -> None:
    found = {code for p, code, tests in rows() if p == process and tests}
    assert sorted(CODES[process] - found) == [], "exit codes without a test in docs/testing.md"
    assert sorted(found - CODES[process]) == [], "rows for codes the process does not define"


def test_the_codes_the_readme_lists_are_the_ones_defined() -> None:
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    for process, label in (("worker", "Worker exit codes"), ("training", "Training exit codes")):
        bullet = readme.split(f"**{label}**:", 1)[1].split("\n- **", 1)[0]
        listed = {int(n) for n in re.findall(r"(?:^\s*|: |; |\n\s+)(\d+) [a-zA-Z(]", bullet)}
        if process == "worker":  # the second SIGINT's, in the "Stopping" bullet
            assert "a second SIGINT exits at once with 130" in readme
            listed.add(130)
        assert listed == CODES[process], process


def test_the_tests_the_table_names_exist() -> None:
    named = {test for _, _, tests in rows() for test in tests}
    assert len(named) >= 15
    for test in sorted(named):
        path, name = test.split("::")
        assert f"def {name}(" in (REPO / path).read_text(encoding="utf-8"), test
