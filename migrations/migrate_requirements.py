"""Part of the Copier migration to v0.2.0 (migrate_layout.py): dependencies move into pyproject.toml.

Before v0.2.0 you pinned your code location's dependencies in pipes/requirements.txt; from
v0.2.0 you declare them in pipes/<package>/pyproject.toml and `make lock` writes the
requirements file (every package pinned, with hashes) from uv.lock. `move` adds each
requirement you had added (any line that is not one of the template's Dagster pins) to that
pyproject.toml and tells you to run `make lock`: until then `make build` refuses to build.
Nothing is dropped: every line moved is printed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CONFLICT = re.compile(r"^(<<<<<<<|=======|>>>>>>>)( |$)")
TEMPLATE_PINS = re.compile(r"^(dagster|dagster-[a-z-]+|sqlalchemy)\s*([=<>!~;]|$)", re.IGNORECASE)
ANCHOR = '    "dagster-core",\n'


def users_requirements(text: str) -> list[str]:
    """The requirement lines of an old (hand-pinned) requirements file that the user added."""
    found = []
    for line in text.splitlines():
        entry = line.split(" #", 1)[0].strip()
        if not entry or entry.startswith(("#", "-")) or CONFLICT.match(line) or line[:1].isspace():
            continue
        if entry.endswith("\\"):  # an exported, hashed line: the template's own
            continue
        if not TEMPLATE_PINS.match(entry) and entry not in found:
            found.append(entry)
    return found


def move(text: str, pyproject_path: Path) -> int:
    """Add the requirements the user had added to the old pipes/requirements.txt (`text`) to the
    dependencies of `pyproject_path`; print them, and that `make lock` comes next."""
    moved = users_requirements(text)
    if not moved:
        return 0
    pyproject = pyproject_path.read_text()
    if ANCHOR not in pyproject:
        print(
            f"error: {pyproject_path} has no dependencies list to add these to; add them by hand:\n  "
            + "\n  ".join(moved),
            file=sys.stderr,
        )
        return 1
    lines = "".join(f"    {json.dumps(entry)},\n" for entry in moved if json.dumps(entry) not in pyproject)
    pyproject_path.write_text(pyproject.replace(ANCHOR, ANCHOR + lines, 1))
    print(f"Your dependencies moved from pipes/requirements.txt to {pyproject_path}:")
    for entry in moved:
        print(f"  {entry}")
    print(f"{pyproject_path.parent}/requirements.txt comes from `make lock`: run it, then `make build`.")
    return 0
