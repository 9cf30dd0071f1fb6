"""What most tiers share: the repository's paths, the template snapshot and the computed answers
it renders, the summary figures printed at the end of a run, running a command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from launchpad_dev import matrix

ROOT = matrix.ROOT
CACHE = Path(os.environ.get("LAUNCHPAD_CACHE", Path.home() / ".cache" / "dagster-launchpad"))

# Figures printed at the end of the run (tests/conftest.py, pytest_terminal_summary):
# name -> count (or text).
SUMMARY: dict[str, object] = {}
# The test snapshot of the template renders one file more: every computed answer (`when:
# false` in copier.yml) as Copier computed it, so that the tests read those values from Copier
# itself instead of deriving them again.
COMPUTED_FILE = ".launchpad-computed.json"


def note(name: str, value: object) -> None:
    SUMMARY[name] = value


def snapshot_template(dest: Path) -> Path:
    """The template as the working tree has it (tracked and untracked), without .git: what
    Copier reads (copier.yml, template/) and runs (migrations/, copier.yml's _migrations)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "copier.yml", dest / "copier.yml")
    for folder in ("template", "migrations"):
        shutil.copytree(ROOT / folder, dest / folder, dirs_exist_ok=True)
    return dest


def add_computed_answers_file(snapshot: Path) -> Path:
    """Make `snapshot` render COMPUTED_FILE: {name: value} of every computed answer."""
    names = [name for name, spec in matrix.questions().items() if spec.get("when") is False]
    pairs = ", ".join(f"{name!r}: {name}" for name in names)
    (snapshot / "template" / f"{COMPUTED_FILE}.jinja").write_text(f"{{{{ {{{pairs}}} | tojson }}}}\n")
    return snapshot


def computed(root: Path) -> dict:
    """The computed answers of a project rendered from the test snapshot, as Copier made them."""
    return json.loads((root / COMPUTED_FILE).read_text())


def answers_of(root: Path) -> dict:
    """The answers a rendered project recorded (.copier-answers.yml)."""
    return yaml.safe_load((root / ".copier-answers.yml").read_text())


def code_locations(root: Path) -> list[str]:
    """The code locations of a rendered project, in the order it declares them."""
    return list(answers_of(root)["code_locations"])


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run a command, returning the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
