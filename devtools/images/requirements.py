"""The requirements an image installs, from pyproject.toml alone (a layer of their own,
rebuilt only when the dependencies change), one per line: the project's dependencies and
those of the extras named, or (`--only`) the extras' alone.

    python requirements.py s3 > requirements.txt
    python requirements.py --only training > training.txt

pyproject.toml is read beside this file (as the Dockerfile copies them) or at the repository
root.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(extras: list[str], only: bool, pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = [] if only else list(project["dependencies"])
    for extra in extras:
        wanted += [r for r in project["optional-dependencies"][extra]
                   if not r.startswith(project["name"])]  # fmt: skip
    return wanted


def main(args: list[str]) -> None:
    here = Path(__file__).resolve().parent
    pyproject = here / "pyproject.toml"
    if not pyproject.is_file():
        pyproject = here.parents[1] / "pyproject.toml"
    only = "--only" in args
    print("\n".join(requirements([a for a in args if a != "--only"], only, pyproject)))


if __name__ == "__main__":
    main(sys.argv[1:])
