"""The mutation-testing report (devtools/mutation.py): mutant names, the equivalents' matching
and the counts that decide `make mutation`'s exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.mutation import Equivalent, Mutant, explain, load_equivalents, report, tally

DIFF = """--- anomaly/rules.py
+++ anomaly/rules.py
@@ -1,3 +1,3 @@
 def flags(
-    out = np.zeros(len(above), dtype=bool)
+    out = np.zeros(len(above), dtype=None)
     return out"""


@pytest.mark.parametrize(
    ("name", "module", "function"),
    [
        ("anomaly.rules.x_flags__mutmut_3", "anomaly.rules", "flags"),
        ("worker.checkpoint.x__row__mutmut_12", "worker.checkpoint", "_row"),
        ("anomaly.model.calibration.x\u01c1Threshold\u01c1widened__mutmut_2",
         "anomaly.model.calibration", "Threshold.widened"),
    ],
)  # fmt: skip
def test_a_mutants_name_gives_its_module_and_function(
    name: str, module: str, function: str
) -> None:
    mutant = Mutant(name, "survived")
    assert (mutant.module, mutant.function) == (module, function)


def test_a_name_that_is_not_mutmuts_is_refused() -> None:
    with pytest.raises(ValueError, match="not a mutmut mutant name"):
        _ = Mutant("anomaly.replay.flags", "killed").module


def test_an_equivalent_matches_by_function_and_lines_not_by_number() -> None:
    entry = Equivalent(
        "anomaly.rules",
        "flags",
        "out = np.zeros(len(above), dtype=bool)",
        "out = np.zeros(len(above), dtype=None)",
        "why",
    )
    renumbered = Mutant("anomaly.rules.x_flags__mutmut_99", "survived", DIFF)
    assert renumbered.lines("-") == "out = np.zeros(len(above), dtype=bool)"
    assert entry.matches(renumbered)
    elsewhere = Mutant("anomaly.rules.x_changes__mutmut_1", "survived", DIFF)
    assert not entry.matches(elsewhere)


def test_survivors_explained_or_not_and_the_score() -> None:
    """5 mutants: 2 killed (one by a timeout), 3 survivors, 1 of them listed: 40%, 2 left."""
    mutants = [
        Mutant("anomaly.rules.x_flags__mutmut_1", "killed"),
        Mutant("anomaly.rules.x_flags__mutmut_2", "timeout"),
        Mutant("anomaly.rules.x_flags__mutmut_3", "survived", DIFF),
        Mutant("anomaly.rules.x_changes__mutmut_5", "survived", "-    a = 1\n+    a = 2"),
        Mutant("anomaly.onset.x_steps__mutmut_1", "no tests", "-    a = 1\n+    a = 2"),
    ]
    entry = Equivalent(
        "anomaly.rules",
        "flags",
        "out = np.zeros(len(above), dtype=bool)",
        "out = np.zeros(len(above), dtype=None)",
        "the dtype does not matter here",
    )
    reasons = explain(mutants, [entry])
    assert reasons == {"anomaly.rules.x_flags__mutmut_3": "the dtype does not matter here"}
    total = tally(mutants, reasons)
    assert (total.total, total.killed, total.survived, total.explained, total.unexplained) == (
        5, 2, 3, 1, 2,
    )  # fmt: skip
    assert total.score == 40.0
    text = report(mutants, reasons, [], 60.0)
    assert "| anomaly.rules | 4 | 2 | 2 | 1 | 1 | 50.0% |" in text
    assert "| anomaly.onset | 1 | 0 | 1 | 0 | 1 | 0.0% |" in text
    assert "| overall | 5 | 2 | 3 | 1 | 2 | 40.0% |" in text
    assert "### `anomaly.onset.x_steps__mutmut_1`: no tests, UNEXPLAINED" in text
    assert "### `anomaly.rules.x_flags__mutmut_3`: survived, equivalent" in text


def test_the_equivalents_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "equivalents.toml"
    path.write_text(
        '[[equivalent]]\nmodule = "m"\nfunction = "f"\noriginal = " a "\nmutated = "b"\n'
        'reason = """two\nlines"""\n'
    )
    assert load_equivalents(path) == [Equivalent("m", "f", "a", "b", "two\nlines")]


def test_the_projects_equivalents_file_is_well_formed() -> None:
    entries = load_equivalents(Path(__file__).parents[1] / "mutation" / "equivalents.toml")
    assert entries
    assert all(e.module and e.function and e.original and e.mutated and e.reason
               for e in entries)  # fmt: skip
