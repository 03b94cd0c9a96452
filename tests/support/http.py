"""HTTP for the tests: the worker's probes and metrics."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(url: str) -> tuple[int, str]:
    """The status and body of a GET; (0, "") while nothing listens there (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.read().decode())
    except OSError:
        return 0, ""
