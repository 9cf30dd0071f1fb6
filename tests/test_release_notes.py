"""tools/release_notes.py, which the release workflow publishes as a tag's GitHub release."""

from __future__ import annotations

import subprocess
import sys

import pytest

from launchpad_dev.common import ROOT

SCRIPT = ROOT / "tools" / "release_notes.py"
CHANGELOG = """\
# Changelog

Intro.

## v1.3.0 (unreleased)

### Added
- next

## v1.2.0 (2026-12-01) commit 0123456789abcdef0123456789abcdef01234567

### Added
- a thing

### Changed
- another, with `## code` in it

## v1.1.0 (2026-11-01)

First.
"""


def notes(tag: str, changelog=None) -> subprocess.CompletedProcess:
    path = changelog or ROOT / "CHANGELOG.md"
    return subprocess.run(
        [sys.executable, str(SCRIPT), tag, "--changelog", str(path)], capture_output=True, text=True
    )


def test_a_released_version_prints_exactly_its_section(tmp_path):
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG)
    result = notes("v1.2.0", tmp_path / "CHANGELOG.md")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "### Added\n- a thing\n\n### Changed\n- another, with `## code` in it\n"
    last = notes("v1.1.0", tmp_path / "CHANGELOG.md")
    assert (last.returncode, last.stdout) == (0, "First.\n")


def test_the_repositorys_changelog_gives_each_release_its_notes():
    released = notes("v0.1.0")
    assert released.returncode == 0, released.stderr
    assert released.stdout.startswith("First release.\n") and "\n## " not in released.stdout
    section = (ROOT / "CHANGELOG.md").read_text().split("## v0.1.0 ", 1)[1].split("\n", 1)[1]
    assert released.stdout.strip() == section.split("\n## ", 1)[0].strip()


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("v1.4.0", "no section '## v1.4.0 (DATE)'"),
        ("v1.3.0", "still says (unreleased)"),
        ("1.2.0", "is not a release tag vX.Y.Z"),
        ("v1.2", "is not a release tag vX.Y.Z"),
        ("v1.2.0.1", "is not a release tag vX.Y.Z"),
    ],
)
def test_no_notes_fail_with_one_error_line_and_print_nothing(tag, says, tmp_path):
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG)
    result = notes(tag, tmp_path / "CHANGELOG.md")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: release notes: ") and result.stderr.count("\n") == 1
    assert says in result.stderr


def test_an_empty_section_fails(tmp_path):
    empty = "# Changelog\n\n## v2.0.0 (2027-01-01)\n\n## v1.0.0 (2026-01-01)\n\nx\n"
    (tmp_path / "CHANGELOG.md").write_text(empty)
    result = notes("v2.0.0", tmp_path / "CHANGELOG.md")
    assert result.returncode == 1 and "is empty" in result.stderr
