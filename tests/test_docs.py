"""The documentation says what copier.yml says: one row per question, one table, no third copy."""

from __future__ import annotations

import re

from launchpad_dev import matrix
from launchpad_dev.common import ROOT

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


# ------------------------------------------------- claims that drift (issue 30, "docs that stay true")

REPOSITORY_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED_PAGES = [
    ROOT / "template" / "README.md.jinja",
    *sorted((ROOT / "template" / "docs").glob("*.jinja")),
]
# `make TARGET` in an inline code span, or at the start of a line of a code block.
INLINE_MAKE = re.compile(r"`(?:sudo )?make ([a-z][a-z0-9-]*)")
BLOCK_MAKE = re.compile(r"^\s*(?:\$ |sudo )?make ([a-z][a-z0-9-]*)", re.M)
# A path of this repository, in backticks; one with an upper-case placeholder (NAME, MODE) or
# a pattern is not a path.
REPOSITORY_PATH = re.compile(
    r"`((?:tests|template|docs|benchmarks|tools|launchpad_dev|\.ci|\.github)/[^`\s]*)`"
)
STALE = re.compile(r"\bplanned\b|not written yet|not yet written|will be added|coming soon", re.I)


def named_targets(text: str) -> list[str]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    return INLINE_MAKE.findall(text) + [t for block in blocks for t in BLOCK_MAKE.findall(block)]


def makefile_targets(root) -> set[str]:
    text = (root / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


def test_every_make_target_the_docs_name_exists(template_snapshot, tmp_path):
    """Every `make TARGET` in the README and docs (the repository's and the generated ones) is a
    target of a rendered project (Podman's or Docker's)."""
    from launchpad_dev.engines import render

    targets = set()
    for name, answers in {
        "podman": {"container_engine": "podman"},
        "docker": {"container_engine": "docker"},
        "prebuilt": {"platform_images": "prebuilt"},  # make pin-images, make verify-images
        "login": {"ui_access": "login"},  # make user-add, user-remove, users, ca-cert
        "s3": {"compute_logs": "s3"},  # make helm-s3-secret
    }.items():
        targets |= makefile_targets(render(template_snapshot, tmp_path / name, answers))
    missing = {
        f"{page.relative_to(ROOT)}: make {target}"
        for page in REPOSITORY_PAGES + GENERATED_PAGES
        for target in named_targets(page.read_text())
        if target not in targets
    }
    assert not missing, sorted(missing)


def test_every_repository_path_the_docs_name_exists():
    """A path of this repository named in the README or docs/ exists (placeholders aside), or
    is a generated project's file (docs/kubernetes.md: template/docs/kubernetes.md.jinja)."""

    # The generated files whose template's name is conditional ({% if prebuilt %}NAME{% endif %}).
    conditional = {
        re.sub(r"\{% if [^%]*%\}|\{% endif %\}", "", str(p.relative_to(ROOT / "template"))).removesuffix(
            ".jinja"
        )
        for p in (ROOT / "template").rglob("*")
        if "{% if" in str(p.relative_to(ROOT / "template"))
    }

    def exists(path: str) -> bool:
        path = path.split("::")[0].rstrip("/")
        candidates = (path, f"template/{path}", f"template/{path}.jinja")
        return any((ROOT / p).exists() for p in candidates) or path in conditional

    missing = {
        f"{page.relative_to(ROOT)}: {path}"
        for page in REPOSITORY_PAGES
        for path in REPOSITORY_PATH.findall(page.read_text())
        if not re.search(r"[<>*{]|[A-Z]{3,}|\.\.\.", path) and not exists(path)
    }
    assert not missing, sorted(missing)


def test_no_page_promises_what_exists_or_is_gone():
    """No 'planned' or 'not written yet' sentence: what exists is described, what does not is an
    issue, not a promise in the docs."""
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for page in REPOSITORY_PAGES + GENERATED_PAGES
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if STALE.search(line)
    ]
    assert not found, found


# A measured figure: a number with a unit of time, size or rate (`7.3 s`, `2051 s`, `34 minutes`,
# `266 MB`, `450.1 MiB`, `9 %`, `36.9 runs/min`), or a count of tests (`219 passed`). A number
# that a setting word comes just before or after (`every 10 s`, `within 15 s`, `after 60 s`,
# `up to 20 s`, `its 4 GiB ceiling`, `rounds 0.2 s apart`, ...) is a setting, not a figure.
FIGURE = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?"
    r"(?:\s?(?:ms|s|min|minutes?|hours?|MB|MiB|GB|GiB|kB|KiB|B)\b|\s?%|\sruns/min\b|\s(?:passed|skipped)\b)"
)
SETTING_BEFORE = re.compile(
    r"(?:\bevery|\bwithin|\bafter|\bup to|\bat most|\bover|\bdefault|ceiling|timeout|\blimit"
    r"|\bperiod|\binterval|\bruns of)[^.;:\d]{0,12}$",
    re.I,
)
SETTING_AFTER = re.compile(r"^\s?(?:ceiling|timeout|limit|apart|more every)\b", re.I)
# Where figures come from: "Figures from `COMMAND`", "Measured with `COMMAND`" or "Timed with
# `COMMAND`" (the command in the first code span after them, in the same sentence), or, for
# figures whose command is not known, "command not recorded" ("the command ... was not
# recorded", at most five words between).
COMMAND_MARKER = re.compile(
    r"\b(?:[Ff]igures? (?:from|of)|[Mm]easured (?:with|by|in)|[Tt]imed (?:with|by))\b[^`.]{0,120}"
    r"`(?:[A-Z_]+=\S* )*(?:sudo |flock \S+ )?"
    r"(?:\S*python3?|\S*pytest|make|bash|\S*benchmarks/run\.py|\S*\.ci/run|podman|docker|time|copier)\b"
    r"[^`]*`"
    r"|\bcommands? (?:\w+ ){0,5}?(?:was |were )?not recorded\b"
)


def sections(page) -> list[tuple[str, str]]:
    """(heading, body) of each section of a page: from a heading of any level to the next
    one, code blocks (and a template's Jinja tags) left out, lines joined."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", page.read_text(), flags=re.M | re.S)
    if page.suffix == ".jinja":
        text = re.sub(r"\{%.*?%\}|\{#.*?#\}|\{\{.*?\}\}", "", text, flags=re.S)
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    heads = ["(top of the page)", *parts[1::2]]
    return [(head, " ".join(body.split())) for head, body in zip(heads, parts[0::2], strict=True)]


def measured_figures(body: str) -> list[str]:
    return [
        m.group(0)
        for m in FIGURE.finditer(body)
        if not SETTING_BEFORE.search(body[max(0, m.start() - 40) : m.start()])
        and not SETTING_AFTER.search(body[m.end() : m.end() + 20])
    ]


def sections_without_their_command(page) -> list[str]:
    return [
        f"{page.relative_to(ROOT)}: {head} ({', '.join(figures[:3])})"
        for head, body in sections(page)
        if (figures := measured_figures(body)) and not COMMAND_MARKER.search(body)
    ]


def test_every_section_that_states_figures_names_the_command_that_produced_them():
    """A section (a heading of any level to the next) of the README or docs (the repository's and
    the generated ones) that states a measured figure (a number with a unit of time, size or rate,
    or a count of tests passed or skipped; a setting such as `every 10 s` or `within 15 s` is
    not one) says which command produced it: "Figures from `COMMAND`", "Measured with
    `COMMAND`" or "Timed with `COMMAND`", with a command in the code span (python, pytest,
    make, bash, benchmarks/run.py, .ci/run, podman, docker, ...). A figure whose command is
    not known says so: "command not recorded". The marker covers its own section, not the
    sections below it; docs/testing.md ("The docs checks") has the convention."""
    missing = [s for page in REPOSITORY_PAGES + GENERATED_PAGES for s in sections_without_their_command(page)]
    assert not missing, missing
