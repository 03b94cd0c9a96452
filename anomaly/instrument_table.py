"""Many assets' sensors checked at once: the worker's form of anomaly/instruments.py.

`InstrumentTable` holds the instrument state of every asset of one model, one row each in
shared arrays (grown by doubling as assets arrive), and `step_batch` decides a whole batch of
records, however its assets interleave, with exactly the answers `step` gives record by record
on each asset's own `InstrumentState` (tests/unit/test_instruments.py holds them equal). Besides
the faults, it says which sensors are `held`: a moving sensor that holds one value far longer
than training saw it do (anomaly/instruments.py), before that is long enough to call it stuck;
the worker does not trust such a reading either (worker/score.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from anomaly.instruments import KINDS, BoolArray, Change, FloatArray, SensorProfile

IntArray = npt.NDArray[np.intp]
_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True, eq=False)
class Stepped:
    """A batch's answers: per record and feature, inside a fault after that record (`faulted`,
    as `faulted(state)` after `step`); the faults that opened or ended (`changes`: (the record's
    index in the batch, the change), in record order, each record's as `step` returns them)."""

    faulted: BoolArray
    changes: list[tuple[int, Change]]
    # per record and feature: a moving sensor held far longer than training held it (not yet
    # stuck: no event; its readings are not to be trusted either)
    held: BoolArray | None = None


class InstrumentTable:
    """The instrument state of many assets of one model, one row each in shared arrays (grown
    by doubling as assets arrive): `InstrumentState`'s fields, a row per asset; the ring holds
    a record's two flags in one byte (bit 0 loud, bit 1 rough), `counts` both counts in one
    integer (loud + rough << 32). Per asset, `window` + 35 bytes a feature and 9 more (777 at 8
    features, `window` 61): the ring is most of it."""

    def __init__(self, profile: SensorProfile, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity {capacity}: at least 1")
        self.profile = profile
        self._rows: dict[str, int] = {}
        self._free: list[int] = []  # released rows, reused before new ones
        self._size = 0  # rows ever handed out
        n, window = len(profile.features), profile.rules.window
        self._before = np.full((capacity, n), np.nan)
        self._last = np.full((capacity, n), np.nan)
        self._run = np.zeros((capacity, n), dtype=np.int64)
        self._ring = np.zeros((capacity, window, n), dtype=np.int8)
        self._pos = np.zeros(capacity, dtype=np.int64)  # the ring's place for the next record
        self._counts = np.zeros((capacity, n), dtype=np.int64)
        self._latched = np.zeros((capacity, 2, n), dtype=bool)
        self._kind = np.full((capacity, n), -1, dtype=np.int8)
        self._used = np.zeros(capacity, dtype=bool)
        self._stuck_at, self._held_at = (  # as integers (never: the largest)
            _runs_at(profile.limits.stuck_after),
            _runs_at(profile.limits.held_after),
        )

    @property
    def capacity(self) -> int:
        """The rows the arrays have room for."""
        return len(self._pos)

    def __len__(self) -> int:
        """The assets held."""
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        """The state's bytes, all `capacity` rows."""
        arrays = (self._before, self._last, self._run, self._ring, self._pos, self._counts)
        return sum(a.nbytes for a in (*arrays, self._latched, self._kind, self._used))

    def slot(self, asset_id: str) -> int:
        """The asset's row; on first sight a fresh one (a released row, else a new one)."""
        row = self._rows.get(asset_id)
        if row is not None:
            return row
        if self._free:
            row = self._free.pop()
        else:
            if self._size == self.capacity:
                self._grow()
            row, self._size = self._size, self._size + 1
        self._before[row] = self._last[row] = np.nan
        self._run[row] = self._ring[row] = self._pos[row] = self._counts[row] = 0
        self._latched[row], self._kind[row], self._used[row] = False, -1, True
        self._rows[asset_id] = row
        return row

    def slots(self, asset_ids: Sequence[str]) -> IntArray:
        """The assets' rows, as `slot` gives each (a batch's records: one lookup each)."""
        rows = self._rows
        found = [rows.get(asset_id, -1) for asset_id in asset_ids]
        if -1 in found:  # assets seen for the first time
            found = [self.slot(a) if r < 0 else r for a, r in zip(asset_ids, found, strict=True)]
        return np.array(found, dtype=np.intp)

    def release(self, asset_id: str) -> None:
        """Forget the asset (evicted, or its partition moved): its row is reused, reset. An
        asset the table does not hold: nothing."""
        row = self._rows.pop(asset_id, None)
        if row is not None:
            self._used[row] = False
            self._free.append(row)

    def _grow(self) -> None:
        for name in ("_before", "_last", "_run", "_ring", "_pos", "_counts", "_latched", "_kind"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, old]))  # the new rows are reset when used
        self._used = np.concatenate([self._used, np.zeros_like(self._used)])

    def step_batch(self, slots: npt.ArrayLike, values: npt.ArrayLike) -> Stepped:
        """Records of the table's assets (`slots` (N,) their rows, `values` (N, features)), each
        asset's in order, assets interleaved: as `step` on each asset's state record by record.

        Vectorised over the whole batch however the assets interleave. The records sorted by
        row (stable: each row's a group, in order), each rule's recurrence is a scan along them
        that restarts at each group's first record from the row's state (`maximum.accumulate`
        of the latest record that decides; the ring's counts, a cumulative sum). Where they are
        rare (the records of a row with a sensor latched or about to be; the records at which a
        fault opened or ended), only those records are looked at."""
        rows = np.asarray(slots, dtype=np.intp)
        v = np.asarray(values, dtype=np.float64)
        n, width = len(rows), len(self.profile.features)
        if rows.shape != (n,) or v.shape != (n, width):
            raise ValueError(f"slots {rows.shape} and values {v.shape}: (N,) and (N, {width})")
        if not n:
            return Stepped(np.zeros((0, width), dtype=bool), [], np.zeros((0, width), dtype=bool))
        if rows.min() < 0 or rows.max() >= self._size or not self._used[rows].all():
            raise ValueError("slots must be rows the table handed out and holds")
        limits, window = self.profile.limits, self.profile.rules.window
        key = rows.astype(np.uint16) if self._size <= 1 << 16 else rows  # 16 bits: radix sort
        order = np.argsort(key, kind="stable")
        row, v = rows[order], np.take(v, order, axis=0)
        groups = _Groups.of(row)
        starts, ends, group, rank = groups.starts, groups.ends, groups.group, groups.rank
        held_by = row[starts]

        # The record before and the one before it; the changes and the roughness.
        last = _shifted(v, starts, np.take(self._last, held_by, axis=0))
        before = _shifted(last, starts, np.take(self._before, held_by, axis=0))
        scratch = np.subtract(v, last)
        held = np.abs(scratch, out=scratch) <= limits.tolerance
        np.multiply(last, 2, out=scratch)
        np.subtract(v, scratch, out=scratch)
        rough = np.abs(np.add(scratch, before, out=scratch), out=scratch)
        loud, calm = rough > limits.loud, rough > limits.calm

        # Runs of held values.
        run0 = np.take(self._run, held_by, axis=0)
        run = _carried_runs(held, run0, groups)

        # The ring: each record's flags in, those of `window` records before out (from the ring
        # for a row's first `window` records of the batch, else from the batch itself).
        code = loud.view(np.int8) | (calm.view(np.int8) << 1)
        position = (self._pos[row] + rank) % window
        early = rank < window
        ring = self._ring.reshape(-1, width)  # a row's ring: `window` rows
        place = row * window + position
        if early.all():
            out = np.take(ring, place, axis=0)
        else:
            out = np.empty_like(code)
            out[early] = np.take(ring, place[early], axis=0)
            late = np.flatnonzero(~early)
            out[late] = np.take(code, late - window, axis=0)
        delta = (calm.view(np.int8) - (out >> 1)).astype(np.int64) << 32
        delta += loud.view(np.int8) - (out & 1)
        counts = np.cumsum(delta, axis=0)
        counts0 = np.take(self._counts, held_by, axis=0)
        before_first = np.take(counts, starts, axis=0) - np.take(delta, starts, axis=0)
        counts += np.take(counts0 - before_first, group, axis=0)
        loud_n, calm_n = (counts & 0xFFFFFFFF) > window // 2, (counts >> 32) > window // 2

        # Stuck and noisy latch, on the records of the rows that latched before or start now.
        start = np.zeros((n, 2, width), dtype=bool)
        np.greater_equal(run, self._stuck_at, out=start[:, 0])
        if loud_n.any():
            some = np.flatnonzero(loud_n.any(axis=1))
            alone = calm_n[some].sum(axis=1, keepdims=True) - calm_n[some] == 0
            start[some, 1] = loud_n[some] & alone
        was = np.take(self._latched, held_by, axis=0)
        latched = np.zeros_like(start)
        latching = bool(start.any() or was.any())
        if latching:
            hot = np.logical_or.reduceat(start.reshape(n, -1).any(axis=1), starts)
            hot |= was.reshape(len(starts), -1).any(axis=1)
            pick = np.flatnonzero(hot[group])
            ran = np.take(_shifted(run, starts, run0), pick, axis=0)
            calm_picked = np.take(calm_n, pick, axis=0)
            end = np.stack([(run[pick] == 1) & (ran < limits.stuck_after), ~calm_picked], axis=1)
            picked = np.take(start, pick, axis=0)
            hot_was = np.take(was, np.flatnonzero(hot), axis=0)
            _put_rows(latched, pick, _carried_latch(picked, end, hot_was, _Groups.of(row[pick])))

        # Faulted: some rule holds. A fault's kind, the first that held at the record it opened:
        # from the records at which faults opened or ended, per row and feature in order.
        out_of_range = (v < limits.floor) | (v > limits.ceiling)
        active = out_of_range | latched[:, 0] | latched[:, 1]
        kind0 = np.take(self._kind, held_by, axis=0).astype(np.int64)
        at, feature = np.nonzero(active != _shifted(active, starts, kind0 >= 0))
        by_feature = np.argsort(feature * n + at)
        at, feature = at[by_feature], feature[by_feature]
        of, opened = group[at], active[at, feature]
        now = np.where(out_of_range[at, feature], 0, np.where(latched[at, 0, feature], 1, 2))
        same = np.zeros(len(at) + 1, dtype=bool)  # the event before: of the same row and feature
        same[1:-1] = (of[1:] == of[:-1]) & (feature[1:] == feature[:-1])
        kind = np.where(opened, now, np.where(same[:-1], np.roll(now, 1), kind0[of, feature]))
        final = ~same[1:]
        kind0[of[final], feature[final]] = np.where(opened[final], now[final], -1)

        # Back into the table: each row's state after its last record of the batch.
        for table, after in (
            (self._before, last),
            (self._last, v),
            (self._run, run),
            (self._counts, counts),
        ):
            _put_rows(table, held_by, np.take(after, ends, axis=0))
        if latching:
            _put_rows(self._latched, held_by, np.take(latched, ends, axis=0))
        if len(at):
            _put_rows(self._kind, held_by, kind0.astype(np.int8))
        kept = np.flatnonzero(rank > (ends - starts)[group] - window)  # each row's last `window`
        _put_rows(ring, place[kept], np.take(code, kept, axis=0))
        self._pos[held_by] = (self._pos[held_by] + ends - starts + 1) % window

        # In the batch's order.
        faulted_, held_ = np.empty_like(active), np.empty_like(active)
        _put_rows(faulted_, order, active)
        _put_rows(held_, order, run >= self._held_at)
        record = order[at]
        in_order = np.argsort(record * width + feature)
        changes = zip(
            record[in_order].tolist(),
            feature[in_order].tolist(),
            kind[in_order].tolist(),
            opened[in_order].tolist(),
            strict=True,
        )
        return Stepped(faulted_, [(r, Change(f, KINDS[k], o)) for r, f, k, o in changes], held_)


class _Groups(NamedTuple):
    """A batch sorted by row: each row's records, a group; their first records (`starts`) and
    last ones (`ends`); each record's group and rank in it."""

    starts: IntArray
    ends: IntArray
    group: IntArray
    rank: IntArray

    @classmethod
    def of(cls, row: IntArray) -> _Groups:
        n = len(row)
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(row[1:], row[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        ends = np.append(starts[1:], n) - 1
        return cls(starts, ends, group, np.arange(n) - starts[group])


def _shifted(x: npt.NDArray[_T], starts: IntArray, carried: npt.ArrayLike) -> npt.NDArray[_T]:
    """Per record of a sorted batch: `x` at the record before in its group; `carried` (one per
    group) at each group's first."""
    shifted = np.empty_like(x)
    shifted[1:] = x[:-1]
    _put_rows(shifted, starts, carried)
    return shifted


def _put_rows(table: npt.NDArray[Any], index: IntArray, rows: npt.ArrayLike) -> None:
    """`table[index] = rows`, each row copied whole as one block of bytes where `table` is
    C-contiguous (numpy's own assignment copies a row element by element: several times slower
    on rows of a few features)."""
    if table.ndim < 2 or not table.flags.c_contiguous:
        table[index] = rows
        return
    block = np.dtype((np.void, table.itemsize * int(np.prod(table.shape[1:]))))
    rows = np.broadcast_to(rows, (len(index), *table.shape[1:]))
    rows = np.ascontiguousarray(rows, dtype=table.dtype).reshape(len(index), -1)
    table.reshape(len(table), -1).view(block)[:, 0][index] = rows.view(block)[:, 0]


def _carried_runs(
    held: BoolArray, run0: npt.NDArray[np.int64], groups: _Groups
) -> npt.NDArray[np.int64]:
    """Per record of a sorted batch: records in a row, itself included, that held their value,
    each group's run before it (`run0`) carried on at its first records. From the latest record
    that moved, or a group's first record less its run: the groups lifted apart by their longest
    runs so that none reaches back into the group before. Only on the features that held at all
    where they are few."""
    features = np.flatnonzero(held.any(axis=0))
    width = held.shape[1]
    if not len(features):
        return np.ones(held.shape, dtype=np.int64)
    few = len(features) <= width // 2
    if few:
        held, run0 = np.take(held, features, axis=1), np.take(run0, features, axis=1)
    starts = groups.starts
    lift = (np.cumsum(run0.max(axis=1))[groups.group] + np.arange(len(held)))[:, None]
    moved = lift * ~held
    _put_rows(moved, starts, np.take(lift, starts, axis=0) - run0 * np.take(held, starts, axis=0))
    run = lift + 1 - np.maximum.accumulate(moved, axis=0)
    if not few:
        return run
    every = np.ones((len(held), width), dtype=np.int64)
    every[:, features] = run
    return every


def _carried_latch(start: BoolArray, end: BoolArray, was: BoolArray, groups: _Groups) -> BoolArray:
    """Per record of a sorted batch: latched by its latest start or end (a start first at one
    record), from each group's latch before it (`was`) at its first record."""
    twice = 2 * np.arange(len(start), dtype=np.int32)[:, None, None]
    decided = (twice + start) * (start | end)  # 0: neither (a group's first always decides)
    starts = groups.starts
    first = np.take(start, starts, axis=0) | (was & ~np.take(end, starts, axis=0))
    _put_rows(decided, starts, np.take(twice, starts, axis=0) + first)
    return np.asarray(np.maximum.accumulate(decided, axis=0) & 1, dtype=bool)


def _runs_at(limit: FloatArray) -> npt.NDArray[np.int64]:
    """A run limit as integers (inf, never: the largest)."""
    out = np.full(len(limit), np.iinfo(np.int64).max)
    finite = np.isfinite(limit)
    out[finite] = limit[finite]
    return out
