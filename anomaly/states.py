"""Operating states: when an asset is not running, and the start-up that follows a stop.

A model's rule (`OperatingStates.stopped_when`, set at training: `TRAINING_STATES__STOPPED_WHEN`,
recorded in the manifest) says when a record shows its asset stopped, as comparisons of the
model's features with numbers, joined by `and` and `or` (`and` binds first):

    speed < 100
    speed < 100 or current <= 0.5
    status == 0

Records in that state are neither scored nor learnt, and no window spans a stop: the worker
empties the asset's window at it, the training job splits the series around it. After a stop,
the asset's first records are its start-up transient: for `grace_s` seconds of record time
from its first running record they are neither scored nor learnt either.

The grace is chosen at training from the training data's own restarts, in two steps:

1. before fitting, the start-ups the values show are left out of the fit (`measure_grace`):
   for each restart, how long until every feature is back within the running records'
   central range (their 0.5th to 99.5th percentiles) for `SETTLED` records in a row;
2. once fitted, the grace the worker applies is how long the model itself takes to see each
   restart as normal: from the restart until its scores stay at or under the threshold for
   `SETTLED` records in a row (training/job.py). The longest of those, rounded up to a second.

A history without a restart gives no grace unless one is set (`TRAINING_STATES__GRACE_S`,
which always wins, for both steps).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

SETTLED = 5  # records in a row back within the running range that end a start-up
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_CLAUSE = re.compile(
    r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|!=|<|>)\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*$"
)

FloatArray = npt.NDArray[np.float64]


class StateRuleError(ValueError):
    """A rule that does not read, or names a feature the model does not have."""


# One comparison: (feature index, operator, number); a rule: clauses or-ed, each and-ed.
Comparison = tuple[int, str, float]
Rule = tuple[tuple[Comparison, ...], ...]


def parse_rule(text: str, features: Sequence[str]) -> Rule:
    """`text` as comparisons of `features` with numbers; StateRuleError saying what is wrong."""
    alternatives = []
    for part in re.split(r"\s+or\s+", text.strip()):
        clauses = []
        for clause in re.split(r"\s+and\s+", part):
            found = _CLAUSE.match(clause)
            if not found:
                raise StateRuleError(
                    f"{clause.strip()!r} is not a comparison: write <feature> <op> <number>, "
                    f"op one of {', '.join(sorted(_OPS))}, joined by 'and' / 'or'"
                )
            name, op, number = found.groups()
            if name not in features:
                raise StateRuleError(
                    f"{name!r} is not a feature of the model ({', '.join(features)})"
                )
            try:
                value = float(number)
            except ValueError:
                raise StateRuleError(f"{number!r} is not a number") from None
            clauses.append((list(features).index(name), op, value))
        alternatives.append(tuple(clauses))
    return tuple(alternatives)


def stopped(rule: Rule, values: Sequence[float] | FloatArray) -> bool:
    """Whether one record's values show its asset stopped (a missing value, NaN, compares
    false: it says nothing)."""
    return any(all(_OPS[op](values[i], v) for i, op, v in clauses) for clauses in rule)


def stopped_rows(rule: Rule, rows: FloatArray) -> npt.NDArray[np.bool_]:
    """`stopped` for each row of (n, features)."""
    out = np.zeros(len(rows), dtype=bool)
    for clauses in rule:
        both = np.ones(len(rows), dtype=bool)
        for i, op, v in clauses:
            both &= _OPS[op](rows[:, i], v)  # type: ignore[arg-type]
        out |= both
    return out


class OperatingStates(BaseModel):
    """A model's operating-state rule and the start-up grace after a stop (in the manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stopped_when: str = Field(min_length=1)
    grace_s: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    grace_from: str = Field(
        default="set", description="'measured' from the training data's restarts, or 'set'"
    )

    def rule(self, features: Sequence[str]) -> Rule:
        return parse_rule(self.stopped_when, features)


def not_running(
    rule: Rule, ts: FloatArray, rows: FloatArray, grace_s: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """One asset's series (time order): the rows stopped, and the start-up rows within
    `grace_s` of each first running row after a stop."""
    stop = stopped_rows(rule, rows)
    starting = np.zeros(len(ts), dtype=bool)
    if grace_s > 0:
        restarts = np.flatnonzero(stop[:-1] & ~stop[1:]) + 1
        for r in restarts.tolist():
            end = np.searchsorted(ts, ts[r] + grace_s, side="left")
            starting[r:end] = True
        starting &= ~stop
    return stop, starting


def restarts(
    rule: Rule, ts: FloatArray, rows: FloatArray, longest: int = 3600
) -> list[tuple[FloatArray, FloatArray]]:
    """Each restart in one asset's series: its running records from the first after a stop
    until the next stop (at most `longest`), times and rows."""
    stop = stopped_rows(rule, rows)
    out = []
    for r in (np.flatnonzero(stop[:-1] & ~stop[1:]) + 1).tolist():
        end = r + longest
        later = np.flatnonzero(stop[r:end])
        end = r + int(later[0]) if len(later) else min(end, len(rows))
        out.append((ts[r:end], rows[r:end]))
    return out


def settling(ts: FloatArray, settled: npt.NDArray[np.bool_]) -> float | None:
    """Seconds from `ts[0]` to the first of SETTLED records in a row that are `settled`
    (None: never within the series)."""
    run = 0
    for k, ok in enumerate(settled.tolist()):
        run = run + 1 if ok else 0
        if run >= SETTLED:
            return float(ts[k - SETTLED + 1] - ts[0])
    return None


def longest_start_up(found: Sequence[float | None]) -> float | None:
    """The longest of the start-ups measured, rounded up to a second (None: none settled)."""
    settled = [f for f in found if f is not None]
    return float(math.ceil(max(settled))) if settled else None


def measure_grace(rule: Rule, series: Sequence[tuple[FloatArray, FloatArray]]) -> float | None:
    """The longest start-up in `series` ((ts, rows) per asset, time order) as the values see
    it: from a restart until every feature has been back within the running rows' central
    range (0.5th to 99.5th percentiles) for SETTLED records in a row. None when no restart
    settles in the data."""
    running = [rows[~stopped_rows(rule, rows)] for _, rows in series]
    if sum(len(r) for r in running) < 2 * SETTLED:
        return None
    low, high = np.percentile(np.concatenate(running), [0.5, 99.5], axis=0)
    found = [
        settling(t, np.all((r >= low) & (r <= high), axis=1))
        for ts, rows in series
        for t, r in restarts(rule, ts, rows)
    ]
    return longest_start_up(found)
