"""Render tier, expensive checks: linters, compose validation, the generated code's tests.

Each check runs once per distinct file (or set of files) across every rendered project (the
matrix, and the few rendered with several code locations: conftest.rendered_projects), so
every distinct file is checked while identical ones are not checked twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from launchpad_dev import workflow_lint
from launchpad_dev.common import CACHE, ROOT, answers_of, code_locations, computed, note, run
from launchpad_dev.tools import missing, require_tool

BIN = Path(sys.executable).parent
# What every code location shares (pipes/SHARED/): a package, with tests of its own.
SHARED = "launchpad_pipes"


def distinct(
    rendered: dict, select: Callable[[dict, Path], Iterable[Path]]
) -> dict[str, tuple[Path, list[str]]]:
    """Group rendered projects by the content of the files `select` picks.

    Returns digest -> (project dir of the first combination with that content, ids).
    """
    groups: dict[str, tuple[Path, list[str]]] = {}
    for cid, (answers, root, error) in sorted(rendered.items()):
        assert error is None, f"{cid}: {error}"
        digest = hashlib.sha256()
        for path in select(answers, root):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        key = digest.hexdigest()
        groups.setdefault(key, (root, []))[1].append(cid)
    return groups


def image_files(answers: dict, root: Path) -> list[Path]:
    """The definitions of the webserver and daemon images, and of the code locations' (one for
    all of them)."""
    cf = computed(root)["containerfile"]
    return [root / f"platform/webserver/{cf}", root / f"platform/daemon/{cf}", root / f"pipes/{SHARED}/{cf}"]


def parallel(fn, items) -> list:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, items))


def test_containerfiles_pass_hadolint(rendered_projects):
    hadolint = require_tool("hadolint", BIN)
    files: dict[str, Path] = {}
    for answers, root, _ in rendered_projects.values():
        for path in image_files(answers, root):
            files.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    results = parallel(lambda p: (p, run([hadolint, "--no-color", str(p)])), files.values())
    failures = [f"{p}:\n{r.stdout}" for p, r in results if r.returncode != 0 or r.stdout.strip()]
    note("distinct Containerfiles/Dockerfiles linted (hadolint)", len(files))
    assert not failures, "\n".join(failures)


def python_files(answers: dict, root: Path) -> list[Path]:
    return sorted(root.rglob("*.py")) + [root / "ruff.toml"]


def test_python_passes_ruff(rendered_projects):
    ruff = require_tool("ruff", BIN)
    groups = distinct(rendered_projects, python_files)

    def check(root: Path) -> list[str]:
        problems = []
        for cmd in ([ruff, "check", "--no-cache", "."], [ruff, "format", "--check", "--no-cache", "."]):
            result = run(cmd, cwd=root)
            if result.returncode != 0:
                problems.append(f"{root}: {' '.join(cmd[1:])}\n{result.stdout}")
        return problems

    problems = [p for ps in parallel(check, [root for root, _ in groups.values()]) for p in ps]
    note("distinct Python file sets checked (ruff check + ruff format --check)", len(groups))
    assert not problems, "\n".join(problems)


# The published platform images a prebuilt project pins (scripts/images.py, NAMES).
PLATFORM = ("webserver", "daemon", "pipes-base")


def copy_with_env(root: Path, work: Path) -> Path:
    """A copy of a rendered project with .env made from .env.example, as `make` would (with the
    pinned platform images that make sets from platform/images.lock, for a prebuilt project, and
    with compute_logs=s3 the store's settings that a user must fill in)."""
    shutil.copytree(root, work)
    shutil.copy(work / ".env.example", work / ".env")
    if "\nDAGSTER_S3_BUCKET=\n" in (work / ".env").read_text():
        with (work / ".env").open("a") as env:
            env.write(
                "DAGSTER_S3_BUCKET=logs\nDAGSTER_S3_ACCESS_KEY_ID=key\nDAGSTER_S3_SECRET_ACCESS_KEY=secret\n"
            )
    if "PLATFORM_REGISTRY=" in (work / ".env").read_text():
        digest = "@sha256:" + "0" * 64
        pins = [f"{n.upper().replace('-', '_')}_IMAGE=r.example.com/launchpad-{n}{digest}" for n in PLATFORM]
        with (work / ".env").open("a") as env:
            env.write("\n".join(pins) + "\n")
    return work


def compose_files(answers: dict, root: Path) -> list[Path]:
    return [root / "compose.yaml", root / ".env.example"]


@pytest.mark.parametrize("tool", ["docker compose", "podman-compose"])
def test_compose_file_passes_the_tools_own_validation(tool, rendered_projects, tmp_path):
    if tool == "docker compose":
        docker = require_tool("docker", BIN)
        probe = run([docker, "compose", "version"])
        if probe.returncode != 0:
            missing(f"`docker compose` (the Compose v2 plugin) is not installed: {probe.stdout.strip()}")
        cmd = [docker, "compose", "-f", "compose.yaml", "config", "--quiet"]
    else:
        require_tool("podman")  # podman-compose needs the binary (no engine is started)
        require_tool("podman-compose", BIN)
        # Its own PodmanCompose.run, a batch of projects per process (as compose-lint's below):
        # the same arguments, in the project's directory (launchpad_dev/podman_compose_batch.py).
        cmd = ["-f", "compose.yaml", "config"]
    # podman-compose reads the compose files of the projects that name it (Podman's); `docker
    # compose` reads every one: Docker's command, and the provider behind `podman compose`
    # (compose_also) that a Podman project's compose.yaml names too.
    projects = {
        cid: project
        for cid, project in rendered_projects.items()
        if tool == "docker compose" or computed(project[1])["compose_command"] == tool
    }
    assert projects, f"no rendered project uses {tool}"
    groups = distinct(projects, compose_files)

    def check(item) -> str | None:
        index, root = item
        work = copy_with_env(root, tmp_path / str(index))
        result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return f"{root}:\n{result.stdout}{result.stderr}"
        return None

    def batch(chunk: list[tuple[int, Path]]) -> list[str | None]:
        works = {str(copy_with_env(root, tmp_path / str(index))): root for index, root in chunk}
        lines = "".join(json.dumps([work, *cmd]) + "\n" for work in works)
        result = subprocess.run(
            [sys.executable, "-m", "launchpad_dev.podman_compose_batch"],
            input=lines, cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        replies = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["dir"] for r in replies] == list(works), f"{len(replies)} replies for {len(works)} files"
        found: list[str | None] = []
        for reply in replies:
            root = works[reply["dir"]]
            if reply["exit"] != 0:
                found.append(f"{root}:\n{reply['stdout'][-3000:]}{reply['stderr'][-3000:]}")
                continue
            # What podman-compose resolved (on stdout; warnings go to stderr) is the same stack.
            services = yaml.safe_load(reply["stdout"])["services"]
            if set(services) != set(yaml.safe_load((root / "compose.yaml").read_text())["services"]):
                found.append(f"{root}: podman-compose resolved other services")
        return found

    items = list(enumerate(root for root, _ in groups.values()))
    if tool == "podman-compose":
        failures = [f for chunk in parallel(batch, [items[0::2], items[1::2]]) for f in chunk if f]
    else:
        failures = [f for f in parallel(check, items) if f]
    note(f"distinct compose files validated ({tool} config)", len(groups))
    assert not failures, "\n".join(failures)


def compose_lint_files(answers: dict, root: Path) -> list[Path]:
    return [root / "compose.yaml", root / ".env.example", root / ".compose-lint.yml"]


def test_compose_file_passes_compose_lint(rendered_projects, tmp_path):
    """compose-lint finds nothing at any severity; its exceptions are .compose-lint.yml's.
    Its own entry point runs once per distinct file, a batch of them per process
    (launchpad_dev/lint_batch.py: the same arguments, in the project's directory)."""
    require_tool("compose-lint", BIN)
    groups = distinct(rendered_projects, compose_lint_files)
    argv = ["check", "--fail-on", "low", "--strict-config", "--format", "json", "compose.yaml"]
    works = [copy_with_env(root, tmp_path / str(i)) for i, (root, _) in enumerate(groups.values())]
    rendered_of = {str(work): root for work, (root, _) in zip(works, groups.values(), strict=True)}

    def batch(chunk: list[Path]) -> list[dict]:
        lines = "".join(json.dumps([str(work), *argv]) + "\n" for work in chunk)
        result = subprocess.run(
            [sys.executable, "-m", "launchpad_dev.lint_batch"],
            input=lines,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.loads(line) for line in result.stdout.splitlines()]

    results = [r for chunk in parallel(batch, [works[0::2], works[1::2]]) for r in chunk]
    assert len(results) == len(works), f"{len(results)} results for {len(works)} compose files"
    failures = []
    for result in results:
        root = rendered_of[result["dir"]]
        if result["exit"] != 0:
            output = result["stdout"][-3000:] + result["stderr"][-2000:]
            failures.append(f"{root}: exit {result['exit']}\n{output}")
            continue
        findings = [f for f in json.loads(result["stdout"])["findings"] if not f.get("suppressed")]
        if findings:
            failures.append(f"{root}: {findings}")
    note("distinct compose files linted (compose-lint, --fail-on low)", len(groups))
    assert not failures, "\n".join(failures)


def location_files(root: Path, location: str) -> list[Path]:
    """What a code location's own checks depend on: its package, its tests, its pins (its
    pyproject.toml too, as parsed: see distinct_locations), and the shared package it uses. For
    the shared package (SHARED): its package and its tests."""
    pipes = root / "pipes" / location
    code = [p for d in ("src", "tests") for p in (pipes / d).rglob("*") if p.is_file()]
    if location == SHARED:
        return sorted(code)
    shared = [p for p in (root / "pipes" / SHARED / "src").rglob("*") if p.is_file()]
    return sorted(code) + sorted(shared) + [pipes / "requirements.txt", pipes / "build.sh"]


def instance_files(answers: dict, root: Path) -> list[Path]:
    """The instance configuration, and the locked Dagster set (the core) it is checked with."""
    return [root / "config/dagster.yaml", root / "platform/requirements-core.txt"]


UV = str(Path(sys.executable).with_name("uv"))


# (uv.lock, every pyproject.toml of the workspace) -> the export: they alone decide it.
EXPORTS: dict[tuple[str, ...], str] = {}


def locked_export(root: Path) -> str:
    """What `make test` installs: uv.lock's set for every workspace member (each code location,
    platform) and the root project's dev group, hashes included. `--locked`: uv.lock must
    agree with the project's pyproject files, as `make test`'s `uv sync --locked` requires."""
    inputs = (root / "uv.lock").read_text(), *(p.read_text() for p in sorted(root.glob("**/pyproject.toml")))
    if inputs not in EXPORTS:
        cmd = [UV, "export", "--locked", "--all-packages", "--no-emit-workspace", "--no-header", "--quiet"]
        export = run(cmd, cwd=root)
        assert export.returncode == 0, f"{root}: {' '.join(cmd[1:])}\n{export.stdout}"
        EXPORTS[inputs] = export.stdout
    return EXPORTS[inputs]


def dagster_venv(root: Path) -> Path:
    """A virtualenv with the project's locked set and dev tools (what `make test` installs:
    uv.lock's export, dev group included, hashes checked), cached by content."""
    export = locked_export(root)
    key = hashlib.sha256(export.encode()).hexdigest()[:12]
    venv = CACHE / "venvs" / f"dagster-locked-{key}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        locked = venv.parent / f"{venv.name}.txt"
        locked.write_text(export)
        python = str(venv / "bin/python")
        for cmd in (
            [UV, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [UV, "pip", "sync", "--quiet", "--python", python, "--require-hashes", str(locked)],
        ):
            result = run(cmd, timeout=900)
            assert result.returncode == 0, result.stdout
        (venv / ".complete").write_text(key)
    return venv


def distinct_locations(rendered: dict) -> dict[str, tuple[Path, str, list[str]]]:
    """Group the code locations of every rendered project by their files and the locked set
    they are tested with: digest -> (project dir, location, ids of the projects)."""
    groups: dict[str, tuple[Path, str, list[str]]] = {}
    for cid, (_answers, root, error) in sorted(rendered.items()):
        assert error is None, f"{cid}: {error}"
        export = locked_export(root)
        for location in [SHARED, *code_locations(root)]:
            digest = hashlib.sha256(export.encode() + b"\0")
            for path in location_files(root, location):
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
            # Its pyproject.toml as parsed: its comments (the image's Python version) change nothing.
            pyproject = tomllib.loads((root / "pipes" / location / "pyproject.toml").read_text())
            digest.update(json.dumps(pyproject, sort_keys=True).encode())
            groups.setdefault(digest.hexdigest(), (root, location, []))[2].append(cid)
    return groups


def test_generated_code_loads_and_its_tests_pass(rendered_projects):
    """Each code location's build step runs, then its definitions load (dagster definitions
    validate) and its own tests pass, each on its own as `make test` runs them (its src/ and
    the shared package's on the path, from its directory; on a copy of both, so that the
    rendered project stays as rendered). The shared package's own tests pass too."""
    groups = distinct_locations(rendered_projects)
    venvs = {root: dagster_venv(root) for root, _, _ in groups.values()}  # sequential: installs

    def check(item: tuple[Path, str]) -> list[str]:
        root, location = item
        venv = venvs[root]
        directory = Path(tempfile.mkdtemp(prefix=f"{location}-")) / location
        shutil.copytree(root / "pipes" / location, directory)
        shared = directory.parent / SHARED
        if location != SHARED:
            shutil.copytree(root / "pipes" / SHARED / "src", shared / "src")
        env = {
            "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(directory / "src"), str(shared / "src")])),
            "DAGSTER_HOME": "",
            "PYTEST_ADDOPTS": "-p no:cacheprovider",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        problems = []
        if location == SHARED:
            tests = run([str(venv / "bin/python"), "-m", "pytest", "-q", "tests"], cwd=directory, env=env)
            if tests.returncode != 0 or " passed" not in tests.stdout:
                problems.append(f"{root}: pipes/{SHARED} tests\n{tests.stdout}")
            return problems
        # The build step, as `make test` runs it: .venv's tools first on PATH.
        path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        step = run(["sh", "build.sh"], cwd=directory, env={**env, "PATH": path, "VIRTUAL_ENV": str(venv)})
        if step.returncode != 0:
            return [f"{root} ({location}): build.sh\n{step.stdout}"]
        dagster = str(venv / "bin/dagster")
        validate = run(
            [dagster, "definitions", "validate", "-m", f"{location}.definitions"], cwd=directory, env=env
        )
        if validate.returncode != 0 or "Validation successful" not in validate.stdout:
            problems.append(f"{root} ({location}): dagster definitions validate\n{validate.stdout}")
        tests = run([str(venv / "bin/python"), "-m", "pytest", "-q", "tests"], cwd=directory, env=env)
        if tests.returncode != 0 or " passed" not in tests.stdout:
            problems.append(f"{root} ({location}): pipes/{location} tests\n{tests.stdout}")
        return problems

    items = [(root, location) for root, location, _ in groups.values()]
    problems = [p for ps in parallel(check, items) for p in ps]
    shared = sum(location == SHARED for _, location in items)
    note(
        "distinct code locations validated and tested (dagster definitions validate + pytest)",
        len(groups) - shared,
    )
    note(f"distinct shared packages (pipes/{SHARED}) tested (pytest)", shared)
    versions = sorted({answers_of(root)["dagster_version"] for root, _ in items})
    note("Dagster versions tested", ", ".join(versions))
    assert not problems, "\n\n".join(problems)


def helm_values_files(answers: dict, root: Path) -> list[Path]:
    return [root / "deploy/helm/values.yaml", root / "deploy/helm/values-bundled-postgres.yaml"]


def filled_helm_values(root: Path) -> dict:
    """deploy/helm/values.yaml as `make helm-values REGISTRY=... IMAGE_TAG=...` writes it."""
    text = (root / "deploy/helm/values.yaml").read_text()
    return yaml.safe_load(
        text.replace("@REGISTRY@", "registry.example.com/team").replace("@IMAGE_TAG@", "v1")
    )


def test_helm_values_pass_the_official_charts_schemas(rendered_projects):
    """Each distinct deploy/helm/values.yaml (alone, and with values-bundled-postgres.yaml),
    merged over the chart's defaults as Helm does, passes the official chart's schemas, with
    their Kubernetes types from kubernetes-validate's bundled schemas, and its Kubernetes
    objects the strict Kubernetes schema (launchpad_dev/helm_chart.py)."""
    from launchpad_dev import helm_chart

    if reason := helm_chart.reference_missing():
        missing(reason)
    groups = distinct(rendered_projects, helm_values_files)
    problems = []
    for root, _ in groups.values():
        values = filled_helm_values(root)
        overlay = yaml.safe_load((root / "deploy/helm/values-bundled-postgres.yaml").read_text())
        for label, candidate in (
            ("", values),
            (" + bundled PostgreSQL", helm_chart.helm_merge(values, overlay)),
        ):
            problems += [f"{root}{label}: {problem}" for problem in helm_chart.problems(candidate)]
    note("distinct Helm values validated (the official chart's schemas + strict Kubernetes)", len(groups))
    assert not problems, "\n".join(problems[:40])


def workflow_files(answers: dict, root: Path) -> list[Path]:
    return sorted((root / ".github/workflows").glob("*.yml"))


@pytest.mark.parametrize("tool", workflow_lint.LINTERS)
def test_workflows_pass_the_linters(tool, rendered_projects):
    """Each distinct generated GitHub Actions workflow passes actionlint, zizmor (security
    analysis) and check-jsonschema (the bundled workflow schema) with no finding, offline
    (launchpad_dev/workflow_lint.py)."""
    workflow_lint.command(tool)  # skips (fails in CI) once, before the loop, when it is missing
    groups = distinct(rendered_projects, workflow_files)

    def check(root: Path) -> str | None:
        found = workflow_lint.findings(tool, workflow_files({}, root), cwd=root)
        return f"{root}: {found}" if found else None

    failures = [f for f in parallel(check, [root for root, _ in groups.values()]) if f]
    note(f"distinct GitHub Actions workflows linted ({tool})", len(groups))
    assert not failures, "\n".join(failures)


def test_generated_workflows_bound_every_job_and_pin_every_tool(rendered_projects):
    """Every job of each distinct generated workflow has timeout-minutes; every tool it
    installs with pipx is pinned, podman-compose to the version the template's tests run."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (tested,) = [
        r for r in pyproject["project"]["optional-dependencies"]["test"] if r.startswith("podman-compose==")
    ]
    groups = distinct(rendered_projects, workflow_files)
    problems, pinned = [], 0
    for root, _ in groups.values():
        for path in workflow_files({}, root):
            for name, job in yaml.safe_load(path.read_text())["jobs"].items():
                if not isinstance(job.get("timeout-minutes"), int):
                    problems.append(f"{path}: {name} has no timeout-minutes")
                for step in job.get("steps", []):
                    for tool in re.findall(r"pipx (?:install|run) (\S+)", step.get("run", "")):
                        tool = tool.strip('"')
                        if "==" not in tool:
                            problems.append(f"{path}: {name} installs {tool} unpinned")
                        elif tool.startswith("podman-compose"):
                            pinned += 1
                            if tool != tested:
                                problems.append(f"{path}: {tool}, but the tests run {tested}")
    assert pinned, "no generated workflow installs podman-compose"
    assert not problems, "\n".join(problems)


def test_instance_configs_pass_dagsters_validation(rendered_projects, tmp_path):
    """Each distinct config/dagster.yaml, and the instance the Helm chart renders from each
    distinct deploy/helm/values.yaml (K8sRunLauncher: dagster-k8s is in the locked set), with
    the Dagster version its project pins."""
    from launchpad_dev import helm_chart

    groups = distinct(rendered_projects, instance_files)
    by_venv: dict[Path, list[Path]] = {}
    for root, _ in groups.values():
        by_venv.setdefault(dagster_venv(root), []).append(root / "config/dagster.yaml")
    # Without the chart's reference files (outside CI), the compose instances are still checked.
    reason = helm_chart.reference_missing()
    helm_groups = (
        {}
        if reason
        else distinct(
            rendered_projects,
            lambda a, root: [*helm_values_files(a, root), root / "platform/requirements-core.txt"],
        )
    )
    for index, (root, _) in enumerate(helm_groups.values()):
        chart_instance = tmp_path / f"helm-{index}" / "dagster.yaml"
        chart_instance.parent.mkdir()
        chart_instance.write_text(yaml.safe_dump(helm_chart.chart_instance(filled_helm_values(root))))
        by_venv.setdefault(dagster_venv(root), []).append(chart_instance)
    note("distinct Helm chart instances validated by Dagster", len(helm_groups))
    checker = Path(__file__).parent / "check_instance_config.py"
    problems = []
    for venv, configs in by_venv.items():
        result = run([str(venv / "bin/python"), str(checker), *map(str, configs)])
        if result.returncode != 0 or result.stdout.count("ok:") != len(configs):
            problems.append(f"{venv.name}:\n{result.stdout}")
    note("distinct instance configs validated by Dagster", len(groups))
    assert not problems, "\n\n".join(problems)
    if reason:
        missing(f"the Helm chart's instances were not checked: {reason}")
