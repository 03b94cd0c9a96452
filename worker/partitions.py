"""The state of each partition this worker holds: what is saved with its offsets.

Per partition: the assets whose alert state is not idle (a run above the threshold, an open
episode, a raised threshold), the only ones a checkpoint has to save; the next offset, as of
the last batch that read it; and, in an alert storm, the text last written when not all
assets fit. The number of open episodes is derived from the assets held, never counted by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from worker.assets import AssetState
from worker.checkpoint import encode

# A partition whose assets' alert state does not all fit in its commit (an alert storm) saves
# what fits at most this often: the text is lossy anyway, and writing it out for hundreds of
# open episodes at every batch would halve the worker's rate when it is needed most.
OVERFLOW_REFRESH_S = 1.0

TopicPartition = tuple[str, int]


class PartitionStates:
    """The assets each partition's checkpoint saves, its position, and its overflow text."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._held: dict[int, dict[str, AssetState]] = {}  # partition -> asset id -> state
        self._positions: dict[TopicPartition, int] = {}
        # partitions whose assets' state did not all fit: (text, assets in it, when written)
        self._overflow: dict[int, tuple[str, int, float]] = {}

    @property
    def open_episodes(self) -> int:
        """Assets with an open episode, over every partition held. Counted when asked (the
        metrics thread asks at a scrape, not every batch), over copies of the dicts the loop
        changes: a copy is taken whole while the interpreter lock is held."""
        held = [tuple(assets.items()) for assets in tuple(self._held.values())]
        return len({a for assets in held for a, s in assets if s.rules.episode is not None})

    def moved_to(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The next offset of each partition a batch read."""
        self._positions.update(offsets)

    def position(self, tp: TopicPartition) -> int | None:
        return self._positions.get(tp)

    def observed(self, asset_id: str, state: AssetState) -> None:
        """An asset's rules moved: saved with its partition unless they are idle again."""
        if state.rules.idle:
            self._held.get(state.partition, {}).pop(asset_id, None)
        else:
            self._held.setdefault(state.partition, {})[asset_id] = state

    def restored(self, asset_id: str, state: AssetState) -> None:
        """An asset whose state came with a gained partition (`state.partition`)."""
        self._held.setdefault(state.partition, {})[asset_id] = state

    def evicted(self, asset_id: str, state: AssetState) -> bool:
        """An asset left the worker's memory; True if its partition's saved state changed
        (not when the asset has come back since, with a state of its own)."""
        held = self._held.get(state.partition, {})
        if held.get(asset_id) is not state:
            return False
        del held[asset_id]
        return True

    def lost(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions this worker no longer holds: forget everything about them."""
        for tp in tps:
            self._held.pop(tp[1], None)
            self._overflow.pop(tp[1], None)
            self._positions.pop(tp, None)

    def checkpoints(
        self, partitions: Iterable[TopicPartition], max_bytes: int
    ) -> tuple[dict[TopicPartition, str], int]:
        """The text to commit with each partition's offset (its assets' alert state), and how
        many assets did not fit in `max_bytes` per partition (0: save nothing). Where not all
        fit, the text is written anew at most every OVERFLOW_REFRESH_S seconds."""
        texts, unsaved, now = {}, 0, self.clock()
        for tp in partitions:
            held = self._held.get(tp[1], {})
            overflow = self._overflow.get(tp[1])
            if overflow is not None and now - overflow[2] < OVERFLOW_REFRESH_S:
                text, left_out = overflow[0], max(0, len(held) - overflow[1])
            else:
                states = [(a, s.rules) for a, s in held.items() if s.partition == tp[1]]
                fitted = overflow[1] if overflow is not None else None
                text, left_out = encode(states, max_bytes, fitted)
                if left_out:
                    self._overflow[tp[1]] = (text, len(states) - left_out, now)
                else:
                    self._overflow.pop(tp[1], None)
            texts[tp] = text
            unsaved += left_out
        return texts, unsaved
