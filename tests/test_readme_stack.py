"""The README's main command, exactly as written, on this machine: render the defaults
and start the stack. Then a real browser looks at the result."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from launchpad_dev import matrix
from launchpad_dev.browser import capture_ui
from launchpad_dev.common import ROOT, computed, note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, make, missing, remove_stack, render, tool_env

ARTIFACTS = Path(os.environ.get("LAUNCHPAD_ARTIFACTS", ROOT / "test-artifacts"))
# The README's stack runs on the default engine (its tests run one at a time:
# launchpad_dev.selection.engine_of).
pytestmark = pytest.mark.engine(matrix.questions()["container_engine"]["default"])


def readme_main_command() -> str:
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(\.venv/bin/copier copy --defaults .*)$", text, re.M)
    assert len(commands) == 1, commands
    return commands[0]


def the_defaults(template_snapshot: Path, dest: Path) -> tuple[dict, dict]:
    """What the README's command will render, known before it starts anything: the defaults
    rendered from the test snapshot, as (recorded answers, Copier's computed answers)."""
    render(template_snapshot, dest, {})
    return yaml.safe_load((dest / ".copier-answers.yml").read_text()), computed(dest)


def test_readme_main_command_starts_the_default_stack(template_snapshot, tmp_path):
    answers, facts = the_defaults(template_snapshot, tmp_path / "defaults")
    slug, port, location = answers["project_slug"], answers["ui_port"], answers["code_locations"][0]
    engine = ENGINES[facts["engine"]].require()  # the default engine
    images = [facts["python_image"], *([facts["postgres_image"]] if facts["bundled_postgres"] else [])]
    for image in images:
        engine.require_image(image)
    if not (ROOT / ".venv/bin/copier").exists():
        missing("the README's command runs .venv/bin/copier: run `bash .ci/run` (or create .venv) first")
    project = tmp_path / "data-platform"
    command = readme_main_command()
    assert command.count("~/data-platform") == 2
    command = command.replace("~/data-platform", str(project))

    engine.clear_leftovers(slug)
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=1800
    )
    try:
        if result.returncode != 0:
            logs = {s: engine.run("logs", "--tail", "40", f"{slug}-{s}") for s in ("webserver", "postgres")}
            details = "\n".join(f"--- {s}:\n{r.stdout[-2500:]}{r.stderr[-2500:]}" for s, r in logs.items())
            raise AssertionError(f"{result.stdout[-3000:]}{result.stderr[-3000:]}\n{details}")
        assert f"Dagster UI ready at http://127.0.0.1:{port}" in result.stdout
        stack = Stack(port, location)
        stack.wait_loaded(timeout=60)
        run_id = stack.launch()
        assert stack.wait_run(run_id).value == "SUCCESS", stack.errors(run_id)

        seen = capture_ui(stack.url, location, "example", ["raw_orders", "order_summary"], run_id, ARTIFACTS)
        assert seen["asset graph"] == ["raw_orders", "order_summary"], seen
        assert seen["run page"], seen
        note("browser", str(seen))
        note("browser screenshots", f"{ARTIFACTS / 'ui-asset-graph.png'}, {ARTIFACTS / 'ui-run.png'}")
    finally:
        if (project / "Makefile").exists():
            remove_stack(engine, project, slug)


@pytest.mark.engine("podman")
def test_missing_base_image_is_explained_not_a_raw_pull_error(tmp_path):
    """Offline, `make build` says which image is missing and where to read about it."""
    engine = ENGINES["podman"].require()
    import copier

    project = tmp_path / "offline"
    copier.run_copy(
        str(ROOT), project, data={"project_slug": "offline"}, defaults=True, quiet=True, vcs_ref="HEAD"
    )
    absent = "registry.invalid/launchpad/python:3.13-absent"
    assert not engine.has_image(absent)
    result = make(project, "build", f"BASE_IMAGE={absent}", timeout=300)
    assert result.returncode != 0
    assert f"the image {absent} is not in the local podman image store" in result.stderr, result.stderr
    assert "README.md" in result.stderr and "mirror" in result.stderr
