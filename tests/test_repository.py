"""The repository keeps its promises to a newcomer: README commands and CI agree."""

import re
import sys
from pathlib import Path

from launchpad_dev.common import ROOT, run
from launchpad_dev.tools import require_tool

TEST_COMMAND = ".venv/bin/python -m pytest"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in readme_commands()
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert TEST_COMMAND in [line.strip() for line in ci], ".ci/run must call the README's test command"


def test_readme_main_command_renders_the_defaults_and_starts_the_stack():
    main = [c for c in readme_commands() if c.startswith(".venv/bin/copier copy --defaults")]
    assert len(main) == 1, readme_commands()
    assert " make -C " in main[0] and main[0].endswith(" up")


def test_repository_has_the_layout_copier_users_expect():
    for path in [
        "copier.yml",
        "template",
        "tests",
        "docs",
        "README.md",
        "LICENSE",
        "pyproject.toml",
        ".ci/run",
    ]:
        assert (ROOT / path).exists(), path
    for page in ["generate.md", "work.md", "update.md", "architecture.md"]:
        assert (ROOT / "docs" / page).is_file(), page
    copier_yml = (ROOT / "copier.yml").read_text()
    assert "_subdirectory: template" in copier_yml and "_min_copier_version" in copier_yml
    assert "_tasks" not in copier_yml and "_jinja_extensions" not in copier_yml  # no --trust needed
    assert (ROOT / "template" / "{{ _copier_conf.answers_file }}.jinja").is_file()


def test_the_templates_own_python_is_lint_clean():
    ruff = require_tool("ruff", Path(sys.executable).parent)
    for args in (["check", "--no-cache", "tests"], ["format", "--check", "--no-cache", "tests"]):
        result = run([ruff, *args], cwd=ROOT)
        assert result.returncode == 0, result.stdout
