"""No silent passes on CI (tests/support/ci.py): a pytest run of tests that skip themselves,
with CI=true and without."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import REPO

SKIPPING = """
import pytest

def test_skips_in_its_body():
    pytest.skip("kcat not installed")

@pytest.mark.skipif(True, reason="needs root")
def test_skipped_by_its_mark():
    pass

@pytest.mark.xfail(reason="a known failure", strict=True)
def test_expected_to_fail():
    assert False

def test_passes():
    pass
"""

SKIPPING_MODULE = """
import pytest

pytest.importorskip("no_module_of_that_name")

def test_never_collected():
    pass
"""


def pytest_run(directory: Path, ci: str | None) -> tuple[int, str]:
    """pytest on `directory` with the CI plugin, CI set to `ci` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.ci", "-p", "no:cacheprovider",
         "--rootdir", str(directory), "-rA", str(directory)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("ci", ["true", "1"])
def test_on_ci_a_skip_fails_naming_why(tmp_path: Path, ci: str) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    code, output = pytest_run(tmp_path, ci)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in output  # the mark's skip: at setup
    assert "skipped on CI, where every test must run" in output
    assert "kcat not installed" in output
    assert "needs root" in output


def test_on_ci_a_module_that_skips_itself_fails(tmp_path: Path) -> None:
    (tmp_path / "test_module.py").write_text(SKIPPING_MODULE)
    code, output = pytest_run(tmp_path, "true")
    assert code != pytest.ExitCode.OK, output
    assert "skipped on CI, where every test must run" in output
    assert "no_module_of_that_name" in output


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_off_ci_a_skip_stays_a_skip(tmp_path: Path, ci: str | None) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_module.py").write_text(SKIPPING_MODULE)
    code, output = pytest_run(tmp_path, ci)
    assert code == pytest.ExitCode.OK, output
    assert "1 passed, 3 skipped, 1 xfailed" in output
