#!/usr/bin/env python3
"""Print the release notes of a version: its section of CHANGELOG.md, without the heading.

    python3 tools/release_notes.py vX.Y.Z [--changelog CHANGELOG.md] > notes.md

The release workflow (.github/workflows/release.yml) publishes them as the GitHub release of the
tag vX.Y.Z. A section is a `## vX.Y.Z (DATE)` heading (optionally followed by `commit SHA`, as
the CHANGELOG records released versions) and everything up to the next `## ` heading. Exits 1,
with one `error:` line and nothing on stdout, when the tag is not vX.Y.Z, when the CHANGELOG has
no section for it, when the section still says `(unreleased)` (the release procedure in
docs/update.md dates it before tagging), or when it is empty.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = re.compile(r"v\d+\.\d+\.\d+")


class NotesError(Exception):
    pass


def release_notes(changelog: str, tag: str) -> str:
    """The body of `tag`'s section of `changelog` (blank lines around it removed, one final
    newline); NotesError says why there is none."""
    if not TAG.fullmatch(tag):
        raise NotesError(f"{tag!r} is not a release tag vX.Y.Z")
    lines = changelog.splitlines()
    heading = re.compile(rf"## {re.escape(tag)}(?: \(([^)]*)\).*)?")
    found = [i for i, line in enumerate(lines) if heading.fullmatch(line)]
    if not found:
        raise NotesError(f"CHANGELOG.md has no section '## {tag} (DATE)': add one before tagging {tag}")
    if len(found) > 1:
        raise NotesError(f"CHANGELOG.md has {len(found)} sections for {tag}")
    start = found[0]
    if (heading.fullmatch(lines[start])[1] or "").strip().lower() == "unreleased":
        raise NotesError(
            f"CHANGELOG.md's section for {tag} still says (unreleased): date it "
            f"('## {tag} (YYYY-MM-DD)') before tagging (docs/update.md, Release procedure)"
        )
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = "\n".join(lines[start + 1 : end]).strip("\n")
    if not body.strip():
        raise NotesError(f"CHANGELOG.md's section for {tag} is empty")
    return body + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", help="the release tag, vX.Y.Z")
    parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args(argv)
    try:
        notes = release_notes(args.changelog.read_text(encoding="utf-8"), args.tag)
    except NotesError as error:
        print(f"error: release notes: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
