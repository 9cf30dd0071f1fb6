"""The template repository's own GitHub Actions workflows (.github/workflows/): they pass the
linters offline (launchpad_dev/workflow_lint.py), keep the promises of docs/testing.md ("Where each
check runs"), and their matrix entries map to the test suite's selection options."""

from __future__ import annotations

import re

import pytest
import yaml

from launchpad_dev import matrix, selection, workflow_lint
from launchpad_dev.common import ROOT

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
# The tiers that only .ci/run runs, and why (docs/testing.md says the same).
CI_RUN_ONLY = {
    "tests/test_kube.py": "Podman 5.4's Quadlet generator in a debootstrapped Debian trixie root",
    "tests/test_faults.py": "a two-location stack per engine has a bad day: the longest tier",
    "tests/test_push.py": "Debian's docker-registry package",
    "tests/test_publish.py": "Debian's docker-registry package",
    "tests/test_prebuilt.py": "the published images' registry, Debian's docker-registry package",
    "tests/test_upgrade.py": "two Dagster versions' image sets per engine and storage: minutes of builds",
}
# The jobs that need more than the workflow's `contents: read`; no job has id-token (the images
# are signed with the project's key, not keyless).
JOB_PERMISSIONS = {
    ("release.yml", "release"): {"contents": "write"},  # gh release create
    ("release.yml", "images"): {"contents": "read", "packages": "write"},  # push to ghcr.io
}
PIN = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")


def load(name: str) -> dict:
    # PyYAML reads `on:` as True (YAML 1.1); the workflows' other keys are plain.
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def test_there_are_the_ci_and_release_workflows():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]


@pytest.mark.parametrize("tool", workflow_lint.LINTERS)
def test_the_templates_workflows_pass_the_linters(tool):
    found = workflow_lint.findings(tool, WORKFLOWS, cwd=ROOT)
    assert found is None, found


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_is_least_privilege_pinned_and_bounded(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"] == "${{ github.workflow }}-${{ github.ref }}"
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{name} has no timeout-minutes"
        allowed = JOB_PERMISSIONS.get((path.name, name))
        assert job.get("permissions") == allowed, f"{name}: permissions {job.get('permissions')}"
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{name}: checkout keeps the token"
    uses = [line for line in path.read_text().splitlines() if "uses:" in line]
    unpinned = [line.strip() for line in uses if not PIN.match(line)]
    assert uses and not unpinned, f"not pinned to a commit with its release: {unpinned}"


def test_ci_cancels_superseded_runs_and_release_does_not():
    assert load("ci.yml")["concurrency"]["cancel-in-progress"] is True
    assert load("release.yml")["concurrency"]["cancel-in-progress"] is False


def commands(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_every_test_file_runs_in_a_job_or_is_named_as_ci_run_only():
    ci = load("ci.yml")
    named = set(re.findall(r"tests/test_\w+\.py", "\n".join(commands(j) for j in ci["jobs"].values())))
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_*.py")}
    assert named <= files, f"the workflow names missing files: {named - files}"
    assert files - named == set(CI_RUN_ONLY), f"in no job and not named .ci/run-only: {files - named}"
    for job in ci["jobs"].values():
        if "pytest" in commands(job):
            assert ".venv/bin/python -m pytest -n 0" in commands(job)
    assert ci["env"]["LAUNCHPAD_STRICT"] == "1" and ci["env"]["LAUNCHPAD_IMAGES"] == "upstream"


def test_render_shards_cover_the_matrix():
    shards = load("ci.yml")["jobs"]["render"]["strategy"]["matrix"]["shard"]
    parsed = [matrix.parse_shard(s) for s in shards]
    (count,) = {n for _, n in parsed}
    assert sorted(k for k, _ in parsed) == list(range(1, count + 1))


def test_build_jobs_cover_every_base_on_every_engine():
    """Each entry maps to LAUNCHPAD_ENGINES, LAUNCHPAD_BASES and (custom) a pytest -k that
    selects build tests by their ids; together they select every image set, each once."""
    import test_build

    entries = load("ci.yml")["jobs"]["build"]["strategy"]["matrix"]["include"]
    ids = {"-".join(str(v) for v in matrix.image_key(a) if v is not None): a for a in test_build.IMAGE_SETS}
    chosen: list[str] = []
    for entry in entries:
        assert entry["engine"] in selection.ENGINE_NAMES
        assert entry["base"] in matrix.choice_values("base_image")
        picked = [
            i
            for i, a in ids.items()
            if a["container_engine"] == entry["engine"]
            and a["base_image"] == entry["base"]
            and (not entry["select"] or entry["select"] in i)
        ]
        assert picked, entry
        chosen += picked
    assert sorted(chosen) == sorted(ids), "an image set is built by no job, or by two"


def test_release_publishes_the_platform_images_with_the_committed_key_only():
    """The images job (launchpad_dev/publish.py): its matrix from copier.yml through the first
    job, QEMU from Ubuntu's packages (no third-party action), the token on standard input, the
    key in a 0600 file, and the key refused unless its public half is the one the template ships."""
    release = load("release.yml")
    matrix_job, images = release["jobs"]["images-matrix"], release["jobs"]["images"]
    assert "python -m launchpad_dev.publish matrix" in commands(matrix_job)
    assert images["needs"] == "images-matrix"
    assert images["strategy"]["matrix"] == "${{ fromJSON(needs.images-matrix.outputs.matrix) }}"
    assert images["env"]["REGISTRY"] == (
        "${{ vars.PLATFORM_IMAGES_REGISTRY || format('ghcr.io/{0}', github.repository_owner) }}"
    )
    run = commands(images)
    assert "apt-get install -y -q qemu-user-static" in run
    assert not [s["uses"] for s in images["steps"] if "qemu" in s.get("uses", "")]
    assert "--password-stdin" in run and "umask 077" in run
    assert "--platforms linux/amd64,linux/arm64" in run
    assert "--expect-template-pub" in run
    assert "id-token" not in (ROOT / ".github/workflows/release.yml").read_text()
