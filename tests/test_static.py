"""Render tier, expensive checks: linters, compose validation, the generated code's tests.

Each check runs once per distinct file (or set of files) across the whole rendered
matrix, so every distinct file is checked while identical ones are not checked twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import CACHE, computed, note, run
from tools import missing, require_tool

BIN = Path(sys.executable).parent


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
    cf = computed(root)["containerfile"]
    return [root / f"platform/webserver/{cf}", root / f"platform/daemon/{cf}", root / f"pipes/{cf}"]


def parallel(fn, items) -> list:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, items))


def test_containerfiles_pass_hadolint(rendered_matrix):
    hadolint = require_tool("hadolint", BIN)
    files: dict[str, Path] = {}
    for answers, root, _ in rendered_matrix.values():
        for path in image_files(answers, root):
            files.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    results = parallel(lambda p: (p, run([hadolint, "--no-color", str(p)])), files.values())
    failures = [f"{p}:\n{r.stdout}" for p, r in results if r.returncode != 0 or r.stdout.strip()]
    note("distinct Containerfiles/Dockerfiles linted (hadolint)", len(files))
    assert not failures, "\n".join(failures)


def python_files(answers: dict, root: Path) -> list[Path]:
    return sorted(root.rglob("*.py")) + [root / "ruff.toml"]


def test_python_passes_ruff(rendered_matrix):
    ruff = require_tool("ruff", BIN)
    groups = distinct(rendered_matrix, python_files)

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


def copy_with_env(root: Path, work: Path) -> Path:
    """A copy of a rendered project with .env made from .env.example, as `make` would."""
    shutil.copytree(root, work)
    shutil.copy(work / ".env.example", work / ".env")
    return work


def compose_files(answers: dict, root: Path) -> list[Path]:
    return [root / "compose.yaml", root / ".env.example"]


@pytest.mark.parametrize("tool", ["docker compose", "podman-compose"])
def test_compose_file_passes_the_tools_own_validation(tool, rendered_matrix, tmp_path):
    if tool == "docker compose":
        docker = require_tool("docker", BIN)
        probe = run([docker, "compose", "version"])
        if probe.returncode != 0:
            missing(f"`docker compose` (the Compose v2 plugin) is not installed: {probe.stdout.strip()}")
        cmd = [docker, "compose", "-f", "compose.yaml", "config", "--quiet"]
    else:
        require_tool("podman")  # podman-compose needs the binary (no engine is started)
        cmd = [require_tool("podman-compose", BIN), "-f", "compose.yaml", "config"]
    groups = distinct(rendered_matrix, compose_files)

    def check(item) -> str | None:
        index, root = item
        work = copy_with_env(root, tmp_path / str(index))
        result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return f"{root}:\n{result.stdout}{result.stderr}"
        if tool == "podman-compose":
            # What podman-compose resolved (on stdout; warnings go to stderr) is the same stack.
            resolved = yaml.safe_load(result.stdout)
            if set(resolved["services"]) != set(
                yaml.safe_load((root / "compose.yaml").read_text())["services"]
            ):
                return f"{root}: podman-compose resolved other services"
        return None

    failures = [f for f in parallel(check, enumerate(root for root, _ in groups.values())) if f]
    note(f"distinct compose files validated ({tool} config)", len(groups))
    assert not failures, "\n".join(failures)


def compose_lint_files(answers: dict, root: Path) -> list[Path]:
    return [root / "compose.yaml", root / ".env.example", root / ".compose-lint.yml"]


def test_compose_file_passes_compose_lint(rendered_matrix, tmp_path):
    """compose-lint finds nothing at any severity; its exceptions are .compose-lint.yml's."""
    compose_lint = require_tool("compose-lint", BIN)
    groups = distinct(rendered_matrix, compose_lint_files)

    def check(item) -> str | None:
        index, root = item
        work = copy_with_env(root, tmp_path / str(index))
        cmd = [
            compose_lint,
            "check",
            "--fail-on",
            "low",
            "--strict-config",
            "--format",
            "json",
            "compose.yaml",
        ]
        result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            return f"{root}: exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        findings = [f for f in json.loads(result.stdout)["findings"] if not f.get("suppressed")]
        return f"{root}: {findings}" if findings else None

    failures = [f for f in parallel(check, enumerate(root for root, _ in groups.values())) if f]
    note("distinct compose files linted (compose-lint, --fail-on low)", len(groups))
    assert not failures, "\n".join(failures)


def code_files(answers: dict, root: Path) -> list[Path]:
    """What the code location's own checks depend on: the package, its tests, its pins."""
    pipes = root / "pipes"
    code = [p for d in ("src", "tests") for p in (pipes / d).rglob("*") if p.is_file()]
    return sorted(code) + [pipes / "requirements.txt", pipes / "pyproject.toml", root / "uv.lock"]


def instance_files(answers: dict, root: Path) -> list[Path]:
    return [root / "config/dagster.yaml", root / "uv.lock"]


UV = str(Path(sys.executable).with_name("uv"))


def dagster_venv(root: Path) -> Path:
    """A virtualenv with the project's locked set and dev tools (what `make test` installs:
    uv.lock's export for pipes, dev group included, hashes checked), cached by content."""
    export = [UV, "export", "--frozen", "--package", "pipes", "--no-emit-workspace", "--no-header", "--quiet"]
    export = run(export, cwd=root)
    assert export.returncode == 0, export.stdout
    key = hashlib.sha256(export.stdout.encode()).hexdigest()[:12]
    venv = CACHE / "venvs" / f"dagster-locked-{key}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        locked = venv.parent / f"{venv.name}.txt"
        locked.write_text(export.stdout)
        python = str(venv / "bin/python")
        for cmd in (
            [UV, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [UV, "pip", "sync", "--quiet", "--python", python, "--require-hashes", str(locked)],
        ):
            result = run(cmd, timeout=900)
            assert result.returncode == 0, result.stdout
        (venv / ".complete").write_text(key)
    return venv


def test_generated_code_loads_and_its_tests_pass(rendered_matrix):
    groups = distinct(rendered_matrix, code_files)
    roots = [root for root, _ in groups.values()]
    venvs = {root: dagster_venv(root) for root in roots}  # sequential: installs

    def check(root: Path) -> list[str]:
        venv = venvs[root]
        package = yaml.safe_load((root / ".copier-answers.yml").read_text())["package_name"]
        env = {
            "PYTHONPATH": str(root / "pipes/src"),
            "DAGSTER_HOME": "",
            "PYTEST_ADDOPTS": "-p no:cacheprovider",
        }
        problems = []
        dagster = str(venv / "bin/dagster")
        validate = run(
            [dagster, "definitions", "validate", "-m", f"{package}.definitions"], cwd=root / "pipes", env=env
        )
        if validate.returncode != 0 or "Validation successful" not in validate.stdout:
            problems.append(f"{root}: dagster definitions validate\n{validate.stdout}")
        tests = run([str(venv / "bin/python"), "-m", "pytest", "-q", "tests"], cwd=root / "pipes", env=env)
        if tests.returncode != 0 or " passed" not in tests.stdout:
            problems.append(f"{root}: pipes tests\n{tests.stdout}")
        return problems

    problems = [p for ps in parallel(check, roots) for p in ps]
    note("distinct code locations validated and tested (dagster definitions validate + pytest)", len(groups))
    note("Dagster versions tested", ", ".join(sorted({v.name.split("-")[1] for v in venvs.values()})))
    assert not problems, "\n\n".join(problems)


def test_instance_configs_pass_dagsters_validation(rendered_matrix):
    """Each distinct config/dagster.yaml, with the Dagster version its project pins."""
    groups = distinct(rendered_matrix, instance_files)
    by_venv: dict[Path, list[Path]] = {}
    for root, _ in groups.values():
        by_venv.setdefault(dagster_venv(root), []).append(root / "config/dagster.yaml")
    checker = Path(__file__).parent / "check_instance_config.py"
    problems = []
    for venv, configs in by_venv.items():
        result = run([str(venv / "bin/python"), str(checker), *map(str, configs)])
        if result.returncode != 0 or result.stdout.count("ok:") != len(configs):
            problems.append(f"{venv.name}:\n{result.stdout}")
    note("distinct instance configs validated by Dagster", len(groups))
    assert not problems, "\n\n".join(problems)
