"""No silent passes on CI: with CI set (CI=true, as CI services set it), a test that skips
itself (a tool or a data set missing: kcat, unshare, SKAB) fails instead, naming why it would
have skipped. CI has every tool and data set the tests need (`make system`, README); a skip
there is a broken CI machine, not a pass. Off CI, skips stay skips (a laptop without kcat).

Loaded by tests/conftest.py (`pytest_plugins`)."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

TRUE = {"1", "true", "yes", "on"}


def on_ci() -> bool:
    """Whether the CI variable is set true (GitHub Actions, GitLab CI and most set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in TRUE


def _failed_instead(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr: Any = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    reason = str(reason).removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"skipped on CI, where every test must run (CI={os.environ.get('CI')}): {reason}; "
        "install what it needs on the CI machine (README, 'Tests')"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and on_ci():
        _failed_instead(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and on_ci():  # a module that skips itself whole (importorskip)
        _failed_instead(report)
