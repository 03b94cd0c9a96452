"""Waiting for a condition with a deadline (never for a fixed time)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float = 60,
    what: str = "",
    state: Callable[[], str] | None = None,
) -> None:
    """Until `condition()` holds; past `timeout_s`, fail naming `what` and, with `state`, what
    the thing waited for was doing then (a process's exit status and log, say)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            detail = f"\n{state()}" if state is not None else ""
            raise AssertionError(f"timed out waiting for {what or condition}{detail}")
        time.sleep(0.05)
