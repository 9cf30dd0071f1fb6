"""`copier update` between real releases of this template.

The releases are the CHANGELOG's "## vX.Y.Z (...) commit SHA" lines. A temporary clone of
this repository gets a tag on each recorded commit, and the topmost, unreleased version is
tagged on the current state (the working tree, committed in the clone). So every test goes
from a real older template state to the current one, whatever tags this clone happens to have.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import copier
import pytest
import yaml

from launchpad_dev.common import ROOT, snapshot_template
from test_lock import add_dependency, make

RELEASE = re.compile(r"^## (v\d+\.\d+\.\d+)\b[^\n]*?(?:commit ([0-9a-f]{40}))?$", re.M)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Launchpad Tests",
    "GIT_AUTHOR_EMAIL": "tests@launchpad.invalid",
    "GIT_COMMITTER_NAME": "Launchpad Tests",
    "GIT_COMMITTER_EMAIL": "tests@launchpad.invalid",
}
CONFLICT = re.compile(r"^(<<<<<<<|>>>>>>>)", re.M)


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def releases() -> list[tuple[str, str | None]]:
    """[(version, commit or None if unreleased)], newest first, from CHANGELOG.md."""
    found = RELEASE.findall((ROOT / "CHANGELOG.md").read_text())
    return [(version, sha or None) for version, sha in found]


@pytest.fixture(autouse=True)
def git_identity(monkeypatch):
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> dict:
    """A clone of this repository with the releases tagged."""
    env = {**os.environ, **GIT_ENV}
    clone = tmp_path_factory.mktemp("template-repo") / "launchpad"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(ROOT), str(clone)], check=True)
    # The current state is the working tree (the tests also run before a commit).
    for folder in ("template", "migrations"):
        shutil.rmtree(clone / folder, ignore_errors=True)
    snapshot_template(clone)
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    subprocess.run(
        ["git", "commit", "--quiet", "--allow-empty", "-m", "current"], cwd=clone, check=True, env=env
    )
    for version, sha in releases():
        subprocess.run(["git", "tag", "--force", version, sha or "HEAD"], cwd=clone, check=True, env=env)
    ordered = [version for version, _ in releases()]
    assert len(ordered) >= 2, "CHANGELOG.md must record a release older than the current one"
    return {"path": clone, "newest": ordered[0], "previous": ordered[1]}


def copy(repo: dict, dest: Path, ref: str, answers: dict) -> Path:
    copier.run_copy(str(repo["path"]), dest, vcs_ref=ref, data=answers, defaults=True, quiet=True)
    git("init", "--quiet", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "--quiet", "-m", f"generated at {ref}", cwd=dest)
    return dest


def update(project: Path, ref: str, **data) -> None:
    copier.run_update(
        str(project),
        vcs_ref=ref,
        data=data,
        defaults=True,
        overwrite=True,
        quiet=True,
        unsafe=True,  # the v0.2.0 migration is a command: copier update --trust
        conflict="inline",
    )


def tree(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".git/"):
            text = path.read_text()
            if rel == ".copier-answers.yml":
                text = re.sub(r"^_commit: .*\n", "", text, flags=re.M)
            files[rel] = text
    return files


def fresh_tree(repo: dict, dest: Path, answers: dict) -> dict[str, str]:
    """tree() of a fresh copy of the newest release with `answers`."""
    copier.run_copy(str(repo["path"]), dest, vcs_ref=repo["newest"], data=answers, defaults=True, quiet=True)
    return tree(dest)


def update_answer_like_fresh(repo: dict, tmp_path: Path, answers: dict, **change) -> tuple[Path, dict]:
    """Copy the newest release with `answers`, update with the answers in `change`: the project
    must equal a fresh copy with both. Returns (project, its tree())."""
    project = copy(repo, tmp_path / "project", repo["newest"], answers)
    update(project, repo["newest"], **change)
    updated, expected = tree(project), fresh_tree(repo, tmp_path / "fresh", {**answers, **change})
    assert set(updated) == set(expected)
    assert [f for f in expected if updated[f] != expected[f]] == []
    return project, updated


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


# Non-default answers, as v0.1.0 named them.
OLD_ANSWERS = {
    "project_name": "Update Test",
    "container_engine": "docker",
    "storage": "sqlite",
    "max_concurrent_runs": 7,
    "system_packages": "libpq5",
}
OVERRIDE = "services:\n  daemon:\n    mem_limit: 3g\n"
NEW_ANSWERS = {
    **{k: v for k, v in OLD_ANSWERS.items() if k != "system_packages"},
    "pipes_system_packages": "libpq5",
}


def test_update_keeps_user_edits_and_brings_new_boilerplate(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    # Typical user edits: a new asset module, a compose setting, a dependency.
    module = project / "pipes/src/update_test/more_assets.py"  # v0.1.0 layout
    module.write_text("import dagster as dg\n\n\n@dg.asset\ndef extra() -> int:\n    return 1\n")
    # The user tunes a setting (a line the template does not change) and overrides compose
    # settings in compose.override.yaml, as the generated docs/update.md advises.
    instance = project / "config/dagster.yaml"
    assert instance.read_text().count("    purge_after_days: 90\n") == 1
    instance.write_text(
        instance.read_text().replace("    purge_after_days: 90\n", "    purge_after_days: 30\n")
    )
    (project / "compose.override.yaml").write_text(OVERRIDE)
    requirements = project / "pipes/requirements.txt"
    requirements.write_text(requirements.read_text() + "pyarrow==18.1.0\n")
    image = project / "pipes/Dockerfile"  # v0.1.0's one image definition of the code location
    image.write_text(image.read_text() + "# team: keep this in step with the platform's mirror\n")
    git("commit", "--quiet", "-am", "user edits", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "--allow-empty", "-m", "user module", cwd=project)

    update(project, template_repo["newest"])

    files = tree(project)
    assert not [f for f, text in files.items() if CONFLICT.search(text)], (
        "conflict markers after a clean update"
    )
    assert not [f for f in files if f.endswith(".rej")]
    # The v0.2.0 migration moved the code location to pipes/update_test/, the user's module with it.
    assert "def extra() -> int" in files["pipes/update_test/src/update_test/more_assets.py"]
    assert not [f for f in files if f.startswith(("pipes/src/", "pipes/tests/"))], "old layout left behind"
    assert "    purge_after_days: 30\n" in files["config/dagster.yaml"]
    assert "    purge_after_days: 90\n" not in files["config/dagster.yaml"]
    assert files["compose.override.yaml"] == OVERRIDE
    # The dependency added to v0.1.0's pipes/requirements.txt moved into the location's
    # pyproject.toml (the v0.2.0 migration); the lock is the user's to refresh, and `make build`
    # says so.
    assert '    "pyarrow==18.1.0",\n' in files["pipes/update_test/pyproject.toml"]
    assert "pyarrow" not in files["pipes/update_test/requirements.txt"]
    # The old image definition, changed, has no place of its own any more (every location's
    # image is built from pipes/launchpad_pipes/'s): the migration kept it beside the location.
    kept = files["pipes/update_test/Dockerfile.before-v0.2.0"]
    assert kept.endswith("# team: keep this in step with the platform's mirror\n")
    assert "pipes/Dockerfile" not in files
    refused = make(project, "build")
    assert refused.returncode != 0 and "run 'make lock', then build again" in refused.stdout, refused.stdout
    locked = make(project, "lock")
    assert locked.returncode == 0, locked.stdout
    exported = (project / "pipes/update_test/requirements.txt").read_text()
    assert "pyarrow==18.1.0 \\\n    --hash=sha256:" in exported
    assert make(project, "check-lock").returncode == 0
    # New boilerplate arrived.
    assert "check-merge-conflict" in files[".pre-commit-config.yaml"]
    assert "copier check-update" in files["docs/update.md"]
    assert "template-update:" in files[".github/workflows/ci.yml"]
    # The migration renamed the answer, so the value survived the rename.
    recorded = answers_of(project)
    assert recorded["pipes_system_packages"] == "libpq5" and "system_packages" not in recorded
    assert recorded["_commit"] == template_repo["newest"]
    # Every code location's image is built from one definition (pipes/launchpad_pipes/).
    assert "apt-get install -y --no-install-recommends libpq5" in files["pipes/launchpad_pipes/Dockerfile"]
    assert recorded["max_concurrent_runs"] == 7 and recorded["container_engine"] == "docker"


def test_untouched_project_updates_to_exactly_a_fresh_copy(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    update(project, template_repo["newest"])
    updated, expected = tree(project), fresh_tree(template_repo, tmp_path / "fresh", NEW_ANSWERS)
    assert set(updated) == set(expected)
    different = [f for f in expected if updated[f] != expected[f]]
    assert not different, different


def test_dagster_bump_brings_the_new_lock_to_an_untouched_project(template_repo, tmp_path):
    old = {**NEW_ANSWERS, "dagster_version": "1.12.22"}
    project, updated = update_answer_like_fresh(template_repo, tmp_path, old, dagster_version="1.13.27")
    assert 'version = "1.13.27"' in updated["uv.lock"]
    assert make(project, "check-lock").returncode == 0


def test_dagster_bump_leaves_a_users_lock_to_them_and_build_says_make_lock(template_repo, tmp_path):
    old = {**NEW_ANSWERS, "dagster_version": "1.12.22"}
    project = copy(template_repo, tmp_path / "project", template_repo["newest"], old)
    add_dependency(project, "pyarrow>=18")
    assert make(project, "lock").returncode == 0
    git("add", "-A", cwd=project)  # uv.lock.sha256 included: `make lock` recorded it
    git("commit", "--quiet", "-m", "add pyarrow", cwd=project)

    update(project, template_repo["newest"], dagster_version="1.13.27")

    # The declarations merged (new Dagster pin, the user's dependency); the lock did not.
    assert '"dagster==1.13.27"' in (project / "pyproject.toml").read_text()
    assert '"pyarrow>=18"' in (project / "pipes/update_test/pyproject.toml").read_text()
    refused = make(project, "build")
    assert refused.returncode != 0
    assert "run 'make lock', then build again" in refused.stdout, refused.stdout
    locked = make(project, "lock")
    assert locked.returncode == 0, locked.stdout
    requirements = (project / "pipes/update_test/requirements.txt").read_text()
    assert "\ndagster==1.13.27 \\\n" in requirements and "\npyarrow==" in requirements
    assert not CONFLICT.search((project / "uv.lock").read_text())
    assert make(project, "check-lock").returncode == 0


def test_conflicting_edit_is_shown_inline_never_lost(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    readme = project / "README.md"
    old_line = "The webserver and daemon images share their layers (same base, same pinned"
    assert old_line in readme.read_text(), "the v0.1.0 README no longer has the line this test edits"
    mine = "Image layers: ask the platform team in #data-platform before changing the pins."
    readme.write_text(readme.read_text().replace(old_line, mine))
    git("commit", "--quiet", "-am", "user edit that the template also changes", cwd=project)

    update(project, template_repo["newest"])

    text = readme.read_text()
    assert CONFLICT.search(text), "the conflicting edit was not marked"
    assert mine in text, "the user's line was lost"
    assert "Every image starts with the same layers" in text, "the template's new text is missing"
    # Everything else updated cleanly.
    others = [f for f, t in tree(project).items() if f != "README.md" and CONFLICT.search(t)]
    assert not others, others


def test_notes_appended_to_the_readme_merge_without_conflict(template_repo, tmp_path):
    """The edit users make most: notes at the end of README.md, kept through every update."""
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    readme = project / "README.md"
    notes = "\n## Team notes\n\nOn-call: #data-platform. Backups run nightly at 02:00 UTC.\n"
    readme.write_text(readme.read_text() + notes)
    git("commit", "--quiet", "-am", "team notes", cwd=project)

    update(project, template_repo["newest"])

    text = readme.read_text()
    assert not CONFLICT.search(text), f"appended notes conflicted:\n{text[-1500:]}"
    assert text.endswith(notes), "the notes are no longer at the end of README.md"
    assert "[docs/update.md](docs/update.md)" in text, "the template's new README text did not arrive"
    assert not [f for f, t in tree(project).items() if CONFLICT.search(t)]


def test_a_users_code_env_and_readme_notes_survive_the_update_from_the_previous_release(
    template_repo, tmp_path
):
    """What users change most, at once, from the previous release: their code (an example
    module edited, a new module, registered in definitions.py), their .env (made from
    .env.example as `make` makes it, one value changed) and notes appended to README.md. The
    update merges all of it without a conflict marker anywhere, and keeps every edit."""
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    code = project / "pipes/src/update_test"  # the previous release's layout
    assets = code / "assets.py"
    text = assets.read_text()
    assert text.count("for i in range(1, 11)]") == 1, "the previous release's example changed"
    assets.write_text(text.replace("for i in range(1, 11)]", "for i in range(1, 51)]"))
    customers = "import dagster as dg\n\n\n@dg.asset\ndef customers() -> list[str]:\n    return []\n"
    (code / "customers.py").write_text(customers)
    definitions = code / "definitions.py"
    text = definitions.read_text()
    sensors, registered = "from .sensors import inbox_sensor\n", "    assets=[raw_orders, order_summary"
    for old, new in (
        (sensors, "from .customers import customers\n" + sensors),
        (f"{registered}],\n", f"{registered}, customers],\n"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    definitions.write_text(text)
    env = (project / ".env.example").read_text()
    assert env.count("\nDAGSTER_UI_PORT=3000\n") == 1
    env = env.replace("\nDAGSTER_UI_PORT=3000\n", "\nDAGSTER_UI_PORT=3100\n")
    (project / ".env").write_text(env)
    readme = project / "README.md"
    notes = "\n## Team notes\n\nOn-call: #data-platform. The sales team owns the orders assets.\n"
    readme.write_text(readme.read_text() + notes)
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "user code, README notes", cwd=project)
    assert git("status", "--porcelain", "--ignored", ".env", cwd=project) == "!! .env", ".env is not ignored"

    update(project, template_repo["newest"])

    files = {**tree(project), ".env": (project / ".env").read_text()}
    assert not [f for f, text in files.items() if CONFLICT.search(text)], "conflict markers after the update"
    assert not [f for f in files if f.endswith(".rej")]
    first = "pipes/update_test/src/update_test"
    assert "for i in range(1, 51)]" in files[f"{first}/assets.py"]
    assert "key_prefix=" in files[f"{first}/assets.py"], "the template's change to assets.py is missing"
    assert files[f"{first}/customers.py"] == customers
    definitions = files[f"{first}/definitions.py"]
    assert "from .customers import customers\n" in definitions
    assert f"{registered}, customers],\n" in definitions
    assert "defs = with_defaults(defs)\n" in definitions, "the shared defaults are missing"
    assert files[".env"] == env, "the update changed .env"
    assert files["README.md"].endswith(notes)
    assert "[docs/update.md](docs/update.md)" in files["README.md"]
    # What every location shares arrived, and no location has its own copy of it.
    shared = "pipes/launchpad_pipes/src/launchpad_pipes"
    assert "class AtomicFilesystemIOManager" in files[f"{shared}/io_manager.py"]
    copies = [f for f in files if f.endswith(("/io_manager.py", "/recover_runs.py")) and shared not in f]
    assert not copies, copies


def test_changing_an_answer_during_update_rerenders_consistently(template_repo, tmp_path):
    answers = {**NEW_ANSWERS, "code_delivery": "image"}
    project, updated = update_answer_like_fresh(template_repo, tmp_path, answers, code_delivery="volume")
    assert "FROM dependencies AS code" not in updated["pipes/launchpad_pipes/Dockerfile"]
    assert "/opt/dagster/app/update_test:ro,z" in updated["compose.yaml"]
    assert answers_of(project)["code_delivery"] == "volume"


def test_switching_compute_logs_to_s3_brings_the_s3_lock_set_to_an_untouched_project(template_repo, tmp_path):
    """compute_logs=s3 changes the lock set (dagster-aws joins it): an update that switches the
    answer brings the -s3 lock and exports, as a fresh copy has them, and they pass check-lock."""
    project, updated = update_answer_like_fresh(template_repo, tmp_path, NEW_ANSWERS, compute_logs="s3")
    assert '"dagster-aws",' in updated["pyproject.toml"]
    assert '\nname = "dagster-aws"\n' in updated["uv.lock"]
    for export in (
        "platform/requirements-core.txt",
        "platform/requirements.txt",
        "pipes/update_test/requirements.txt",
    ):
        assert "\ndagster-aws==" in updated[export], export
    assert make(project, "check-lock").returncode == 0


def test_a_local_project_of_the_previous_release_switches_to_login(template_repo, tmp_path):
    """Issue 31: a project of the previous release (no ui_access: the UI on this host only),
    updated with `--data ui_access=login`, equals a fresh copy with the login proxy (its recorded
    bind address kept): the proxy, the read-only webserver, the Caddyfile and the users script."""
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    update(project, template_repo["newest"], ui_access="login")
    updated = tree(project)
    login = {**NEW_ANSWERS, "ui_access": "login", "ui_bind_address": "127.0.0.1"}
    expected = fresh_tree(template_repo, tmp_path / "fresh", login)
    assert set(updated) == set(expected)
    assert [f for f in expected if updated[f] != expected[f]] == []
    assert {"config/Caddyfile", "scripts/ui_users.py"} <= set(updated)
    assert "  proxy:\n" in updated["compose.yaml"] and "  webserver-viewer:\n" in updated["compose.yaml"]
    assert answers_of(project)["ui_access"] == "login"


def test_releases_are_recorded_in_order():
    found = releases()
    assert found[0][1] is None or found[0][0].startswith("v"), found
    assert all(sha for _, sha in found[1:]), "every release but the newest must name its commit"
    versions = [tuple(int(p) for p in v[1:].split(".")) for v, _ in found]
    assert versions == sorted(versions, reverse=True)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{found[0][0][1:]}"' in pyproject, "pyproject.toml's version is the newest release"


def test_adding_a_code_location_keeps_the_edits_of_the_existing_one(template_repo, tmp_path):
    """From the previous release (one code location, in its old place): the update that adds a
    second location keeps the user's edits and modules in the first, and brings the second."""
    project = copy(template_repo, tmp_path / "project", template_repo["previous"], OLD_ANSWERS)
    assets = project / "pipes/src/update_test/assets.py"
    assets.write_text(assets.read_text() + "\n# team note: revenue is in EUR\n")
    (project / "pipes/src/update_test/more_assets.py").write_text("import dagster as dg\n")
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "user edits", cwd=project)

    update(project, template_repo["newest"], code_locations=["update_test", "sales"])

    files = tree(project)
    assert not [f for f, text in files.items() if CONFLICT.search(text)]
    first = "pipes/update_test/src/update_test"
    assert files[f"{first}/assets.py"].endswith("# team note: revenue is in EUR\n")
    assert files[f"{first}/more_assets.py"] == "import dagster as dg\n"
    assert "pipes/sales/src/sales/definitions.py" in files and "pipes/sales/pyproject.toml" in files
    compose = yaml.safe_load(files["compose.yaml"])
    assert {"pipes-update-test", "pipes-sales"} <= set(compose["services"])
    workspace = yaml.safe_load(files["config/workspace.yaml"])["load_from"]
    assert [e["grpc_server"]["location_name"] for e in workspace] == ["update_test", "sales"]
    assert answers_of(project)["code_locations"] == ["update_test", "sales"]
    assert make(project, "check-lock").returncode == 0, "the lock for two locations is not uv's own"


def test_removing_a_code_location_is_loud_and_its_code_stays_in_git(template_repo, tmp_path):
    """Copier deletes the files it had generated for a removed code location, edited ones
    included (it cannot tell them apart); files the user added stay. The project then says so
    (`make locations`, `make build`), and the edited files are in git's history."""
    answers = {**NEW_ANSWERS, "code_locations": ["update_test", "sales"]}
    project = copy(template_repo, tmp_path / "project", template_repo["newest"], answers)
    code = project / "pipes/sales/src/sales"
    (code / "definitions.py").write_text((code / "definitions.py").read_text() + "# sales edit\n")
    (code / "forecast.py").write_text("FORECAST = 1\n")
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "sales work", cwd=project)

    update(project, template_repo["newest"], code_locations=["update_test"])

    files = tree(project)
    assert "pipes-sales" not in files["compose.yaml"] and "sales" not in files["config/workspace.yaml"]
    assert files["pipes/sales/src/sales/forecast.py"] == "FORECAST = 1\n", "a user's own file was deleted"
    assert "pipes/sales/src/sales/definitions.py" not in files
    assert "# sales edit" in git("show", "HEAD:pipes/sales/src/sales/definitions.py", cwd=project)
    listed = make(project, "locations")
    assert listed.returncode == 0
    assert "warning: pipes/sales/ is not a code location" in listed.stdout, listed.stdout
