"""The documentation says what copier.yml says: one row per question, one table, no third copy."""

from __future__ import annotations

import re

import matrix
from conftest import ROOT

GENERATE = ROOT / "docs" / "generate.md"


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under `## heading`; fails if prose splits it."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append(line)
    stray = [line for line in lines[first + len(block) :] if line.startswith("| `")]
    assert not stray, f"rows after the '{heading}' table ended (prose splits it): {stray[:2]}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in block[2:]]


def questions() -> list[str]:
    return [name for name, spec in matrix.questions().items() if spec.get("when") is not False]


def test_generate_md_explains_every_question_once_in_one_table():
    rows = table_rows(GENERATE.read_text(), "Questions and what they change")
    named = [re.fullmatch(r"`(\w+)`", row[0]).group(1) for row in rows]
    assert sorted(named) == sorted(questions()), f"missing {set(questions()) - set(named)}"
    assert len(named) == len(set(named)), "a question has two rows"


def test_generate_md_lists_every_base_image_of_the_table():
    rows = table_rows(GENERATE.read_text(), "Base images")
    bases = matrix.choice_values("base_image")
    assert [row[0].strip("`") for row in rows] == bases


def test_readme_links_to_the_questions_instead_of_repeating_them():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/generate.md)" in readme
    repeated = [q for q in questions() if re.search(rf"^\| `{q}` \|", readme, re.M)]
    assert not repeated, f"README.md repeats the rows of {repeated}; link to docs/generate.md"
