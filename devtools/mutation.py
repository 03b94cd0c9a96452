"""Mutation testing of the core (`make mutation`): run mutmut over the modules that
[tool.mutmut] in pyproject.toml names, then write the results file.

Each mutant that no test killed is either listed in the equivalents file (its module,
function and the line before and after the mutation, with the reason it changes no
behaviour) or unexplained. The results file gives the score per module and overall and
every survivor with its diff; the exit code is 0 only when no survivor is unexplained
(1 otherwise; 2 when mutmut itself failed). docs/testing.md says how to handle a survivor.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

RESULTS = Path("tests/mutation/results.md")
EQUIVALENTS = Path("tests/mutation/equivalents.toml")
WORKDIR = Path("mutants")
# mutmut's statuses that count as killed; every other one (survived, no tests, timeout
# aside: suspicious, segfault, skipped, not checked) is a survivor to kill or explain.
KILLED = frozenset({"killed", "timeout", "caught by type check"})
# mutmut names a mutant module.x_function__mutmut_N or module.xǁClassǁmethod__mutmut_N
_NAME = re.compile(
    r"^(?P<module>[\w.]+?)\.x(?:\u01c1(?P<cls>\w+)\u01c1(?P<method>\w+)|_(?P<func>\w+))"
    r"__mutmut_\d+$"
)


@dataclass(frozen=True)
class Mutant:
    """One mutant as mutmut left it: its name, status and (for a survivor) diff."""

    name: str
    status: str
    diff: str = ""

    @property
    def module(self) -> str:
        return _parts(self.name)[0]

    @property
    def function(self) -> str:
        return _parts(self.name)[1]

    @property
    def killed(self) -> bool:
        return self.status in KILLED

    def lines(self, mark: str) -> str:
        """The diff's removed ('-') or added ('+') lines, stripped, joined by newlines: what
        an equivalents entry matches (stable while mutmut's numbering shifts)."""
        return "\n".join(
            line[1:].strip()
            for line in self.diff.splitlines()
            if line.startswith(mark) and not line.startswith(mark * 3)
        )


@dataclass(frozen=True)
class Equivalent:
    """A survivor explained: it changes no behaviour, for `reason`."""

    module: str
    function: str
    original: str
    mutated: str
    reason: str

    def matches(self, mutant: Mutant) -> bool:
        return (self.module, self.function, self.original, self.mutated) == (
            mutant.module,
            mutant.function,
            mutant.lines("-"),
            mutant.lines("+"),
        )


def _parts(name: str) -> tuple[str, str]:
    """(module, function) of a mutant's name; the class joins a method's name with a dot."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a mutmut mutant name: {name!r}")
    if match["cls"]:
        return match["module"], f"{match['cls']}.{match['method']}"
    return match["module"], match["func"]


def _mutmut(*args: str, show: bool = False) -> subprocess.CompletedProcess[str]:
    """mutmut's command line from this environment (the venv's script beside Python); its
    output captured, or (`show`) left on the terminal: its progress over a long run."""
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
    }  # one core per mutant, torch included
    return subprocess.run(command, env=env, capture_output=not show, text=True, check=False)


def run_mutmut() -> float:
    """A fresh run (the previous work dir removed: cached verdicts would not see changed
    tests), one worker, its progress shown; returns its wall time in seconds. Raises
    RuntimeError if it fails."""
    shutil.rmtree(WORKDIR, ignore_errors=True)
    started = time.monotonic()
    done = _mutmut("run", "--max-children", "1", show=True)
    if done.returncode != 0:
        raise RuntimeError(f"mutmut run failed ({done.returncode}): its output is above")
    return time.monotonic() - started


def collect() -> list[Mutant]:
    """Every mutant of the last run, with the diff of each that survived."""
    listed = _mutmut("results", "--all", "true")
    if listed.returncode != 0:
        raise RuntimeError(f"mutmut results failed:\n{listed.stdout}{listed.stderr}")
    mutants = []
    for line in listed.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or not _NAME.match(name):
            continue
        diff = ""
        if status not in KILLED:
            diff = "\n".join(_mutmut("show", name).stdout.splitlines()[1:])  # less the heading
        mutants.append(Mutant(name, status, diff))
    if not mutants:
        raise RuntimeError("mutmut reported no mutants: run it first (without --report-only)")
    return mutants


def load_equivalents(path: Path) -> list[Equivalent]:
    with path.open("rb") as f:
        entries = tomllib.load(f).get("equivalent", [])
    return [Equivalent(**{k: str(v).strip() for k, v in entry.items()}) for entry in entries]


@dataclass(frozen=True)
class Tally:
    """One module's (or all modules') counts; the score is the share of mutants killed."""

    total: int
    killed: int
    explained: int

    @property
    def survived(self) -> int:
        return self.total - self.killed

    @property
    def unexplained(self) -> int:
        return self.survived - self.explained

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def tally(mutants: Sequence[Mutant], reasons: Mapping[str, str]) -> Tally:
    killed = sum(m.killed for m in mutants)
    explained = sum(m.name in reasons for m in mutants if not m.killed)
    return Tally(len(mutants), killed, explained)


def explain(mutants: Sequence[Mutant], equivalents: Sequence[Equivalent]) -> dict[str, str]:
    """Survivor name -> the reason it is equivalent, for each the equivalents file lists."""
    reasons = {}
    for mutant in mutants:
        if mutant.killed:
            continue
        for entry in equivalents:
            if entry.matches(mutant):
                reasons[mutant.name] = entry.reason
                break
    return reasons


def report(
    mutants: Sequence[Mutant],
    reasons: Mapping[str, str],
    unused: Sequence[Equivalent],
    wall_s: float | None,
) -> str:
    """The results file's text: the scores, then every survivor with its diff."""
    modules = sorted({m.module for m in mutants})
    rows = [(module, tally([m for m in mutants if m.module == module], reasons))
            for module in modules] + [("overall", tally(mutants, reasons))]  # fmt: skip
    out = [
        "# Mutation testing results",
        "",
        "Written by `make mutation` (devtools/mutation.py; how to read and act on it:",
        "docs/testing.md). Score: the share of mutants that a unit test killed. A survivor is",
        "either killed by a new test or listed in tests/mutation/equivalents.toml with the",
        "reason it changes no behaviour.",
        "",
        f"mutmut {version('mutmut')}, one worker"
        + (f", {wall_s / 60:.1f} min wall time" if wall_s is not None else "")
        + f", {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "| module | mutants | killed | survived | equivalent | unexplained | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, t in rows:
        out.append(
            f"| {name} | {t.total} | {t.killed} | {t.survived} | {t.explained} "
            f"| {t.unexplained} | {t.score:.1f}% |"
        )
    survivors = [m for m in mutants if not m.killed]
    out += ["", f"## Survivors ({len(survivors)})", ""]
    for mutant in survivors:
        verdict = "equivalent" if mutant.name in reasons else "UNEXPLAINED"
        out += [f"### `{mutant.name}`: {mutant.status}, {verdict}", ""]
        if mutant.name in reasons:
            out += [" ".join(reasons[mutant.name].split()), ""]
        out += ["```diff", mutant.diff, "```", ""]
    if unused:
        out += ["## Equivalents that matched no survivor (remove them)", ""]
        out += [f"- {e.module} {e.function}: `{e.mutated}`" for e in unused] + [""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.mutation", description=__doc__)
    parser.add_argument(
        "--report-only", action="store_true", help="read the last run's results, run nothing"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--equivalents", type=Path, default=EQUIVALENTS)
    args = parser.parse_args(argv)
    try:
        wall_s = None if args.report_only else run_mutmut()
        mutants = collect()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    equivalents = load_equivalents(args.equivalents)
    reasons = explain(mutants, equivalents)
    unused = [e for e in equivalents if not any(e.matches(m) for m in mutants if not m.killed)]
    args.results.write_text(report(mutants, reasons, unused, wall_s))
    t = tally(mutants, reasons)
    print(
        f"{t.total} mutants, {t.killed} killed ({t.score:.1f}%): {t.survived} survivors, "
        f"{t.explained} explained as equivalent, {t.unexplained} unexplained; see {args.results}"
    )
    return 1 if t.unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
