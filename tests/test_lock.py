"""Locked dependencies: the locks the template ships, and the generated project's `make lock`
and `make build` guard, with the real uv against PyPI (no engine needed).

The template ships a lock and its exports for each lock set, copier.yml's computed `lock_set`:
one per `dagster_version` choice, and one more with dagster-aws for compute_logs=s3 (uv.lock
assembled by template/uv.lock.jinja around one workspace member per code location, the exports
as conditional files; refreshed by `python tools/refresh_locks.py`). A generated project declares
its dependencies in pyproject.toml files; `make lock` resolves them; `make build` refuses a
lock that no longer matches, before any image is built.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import copier
import pytest
import yaml

from launchpad_dev import matrix
from launchpad_dev.common import note, run
from launchpad_dev.engines import uv_wheel_hashes

UV = str(Path(sys.executable).with_name("uv"))
PLATFORM_EXPORTS = ("platform/requirements-core.txt", "platform/requirements.txt")
# Python versions the base images offer, and the two C libraries (Debian/UBI glibc, Alpine musl).
PYTHONS = sorted(
    {p for base in matrix.questions()["base_images"]["default"].values() for p in base["pythons"]}
)


def render(template_snapshot: Path, dest: Path, **answers) -> Path:
    copier.run_copy(str(template_snapshot), dest, data=answers, defaults=True, quiet=True)
    return dest


def make(project: Path, *targets: str, **variables: str):
    # ENGINE/COMPOSE=false: nothing here may reach an engine (the guard runs before a build).
    settings = {"UV": UV, "ENGINE": "false", "COMPOSE": "false", **variables}
    return run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(project),
            *targets,
            *(f"{k}={v}" for k, v in settings.items()),
        ]
    )


def locations(project: Path) -> list[str]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())["code_locations"]


def exports(project: Path) -> list[str]:
    """The requirements files `make lock` writes: the platform's, then each code location's."""
    return [*PLATFORM_EXPORTS, *(f"pipes/{name}/requirements.txt" for name in locations(project))]


def add_dependency(project: Path, requirement: str, location: str | None = None) -> None:
    """Add `requirement` to a code location's dependencies (by default the first one's)."""
    pyproject = project / "pipes" / (location or locations(project)[0]) / "pyproject.toml"
    text = pyproject.read_text()
    anchor = '    "dagster-core",\n'
    assert anchor in text
    pyproject.write_text(text.replace(anchor, f'{anchor}    "{requirement}",\n', 1))


def snapshot(project: Path) -> dict[str, bytes | None]:
    """The files `make lock` writes (None: absent, as uv.lock.sha256 is in a new project)."""
    files = ("uv.lock", "uv.lock.sha256", *exports(project))
    return {path: (project / path).read_bytes() if (project / path).exists() else None for path in files}


def exported_versions(text: str) -> dict[str, str]:
    """name -> version of the packages an export pins."""
    return dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", text, re.M))


@pytest.mark.parametrize("lock_set, answers", matrix.lock_sets().items(), ids=list(matrix.lock_sets()))
def test_shipped_lock_matches_its_declarations_on_every_python_and_libc(
    template_snapshot, tmp_path, lock_set, answers
):
    version = answers["dagster_version"]
    project = render(template_snapshot, tmp_path / "project", **answers)
    check = make(project, "check-lock")
    assert check.returncode == 0, (
        f"the shipped lock {lock_set} is stale; run tools/refresh_locks.py\n{check.stdout}"
    )
    lock = tomllib.loads((project / "uv.lock").read_text())
    assert lock["requires-python"] == ">=3.11"
    # Universal: one resolution covers every Python the bases offer; compiled packages carry
    # wheels for each of them, for glibc (manylinux) and musl (musllinux).
    grpcio = next(p for p in lock["package"] if p["name"] == "grpcio")
    wheels = [w["url"].rsplit("/", 1)[1] for w in grpcio["wheels"]]
    for python in PYTHONS:
        tag = "cp" + python.replace(".", "")
        for libc in ("manylinux", "musllinux"):
            assert any(f"-{tag}-" in w and libc in w and "x86_64" in w for w in wheels), (python, libc)
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert locked["dagster"] == version
    # dagster-aws (the S3 compute log manager) joins the locked set only with compute_logs=s3,
    # in every image's export (each process loads the instance), at the library version that
    # goes with the Dagster version: 0.(minor + 16).patch.
    minor, patch = version.split(".")[1:]
    libs = f"0.{int(minor) + 16}.{patch}"
    pins = {path: exported_versions((project / path).read_text()) for path in exports(project)}
    assert all(path_pins["dagster"] == version for path_pins in pins.values()), pins.keys()
    if answers["compute_logs"] == "s3":
        assert locked["dagster-aws"] == libs and "boto3" in locked
        for path, path_pins in pins.items():
            assert path_pins.get("dagster-aws") == libs, (path, path_pins.get("dagster-aws"))
            assert path_pins.get("boto3") == locked["boto3"], path
    else:
        assert "dagster-aws" not in locked
        for path, path_pins in pins.items():
            assert not {"dagster-aws", "boto3"} & path_pins.keys(), path


def test_build_refuses_a_stale_lock_with_one_instruction(template_snapshot, tmp_path):
    project = render(template_snapshot, tmp_path / "project")
    add_dependency(project, "pyarrow>=18")
    build = make(project, "build")
    assert build.returncode != 0, build.stdout
    errors = [line for line in build.stdout.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: uv.lock does not match the declared dependencies (pyproject.toml files) or the package "
        "index: run 'make lock', then build again"
    ], build.stdout
    # An export edited by hand is refused too (the images install the exports).
    project = render(template_snapshot, tmp_path / "edited")
    export = exports(project)[-1]
    requirements = project / export
    requirements.write_text(requirements.read_text() + "pyarrow==18.1.0\n")
    build = make(project, "build")
    assert build.returncode != 0
    assert f"error: {export} is not the export of uv.lock: run 'make lock'" in build.stdout


def test_make_lock_adds_a_dependency_to_pipes_only_and_refuses_one_that_does_not_exist(
    template_snapshot, tmp_path
):
    project = render(template_snapshot, tmp_path / "project")
    before = snapshot(project)
    mine = exports(project)[-1]
    mtimes = {path: (project / path).stat().st_mtime_ns for path in exports(project)}
    add_dependency(project, "pyarrow>=18")
    started = time.monotonic()
    lock = make(project, "lock")
    note("make lock after adding one dependency (s)", round(time.monotonic() - started, 2))
    assert lock.returncode == 0, lock.stdout
    after = snapshot(project)
    # Only the pipes image's requirements change: the platform images are not rebuilt.
    changed = [path for path in after if after[path] != before[path]]
    assert changed == ["uv.lock", "uv.lock.sha256", mine]
    # make decides by modification time: the platform images' inputs were not rewritten.
    touched = [path for path in exports(project) if (project / path).stat().st_mtime_ns != mtimes[path]]
    assert touched == [mine], touched
    assert re.search(rb"^pyarrow==[0-9.]+ \\\n    --hash=sha256:", after[mine], re.M)
    assert make(project, "check-lock").returncode == 0

    add_dependency(project, "launchpad-no-such-package-4c1e")
    failed = make(project, "lock")
    assert failed.returncode != 0
    assert "launchpad-no-such-package-4c1e" in failed.stdout and "was not found" in failed.stdout, (
        failed.stdout
    )
    assert (
        "error: locking failed (see above); uv.lock and the requirements files are unchanged" in failed.stdout
    )
    assert snapshot(project) == after, "a failed `make lock` changed the lock or an export"


def test_a_fresh_project_installs_the_pinned_uv_with_its_hashes(template_snapshot, tmp_path):
    """Without UV set, `make` puts the pinned uv in .tools/ from its wheel (a hash of
    platform/requirements-uv.txt), downloaded once into the user's cache: a second project
    reuses it, and a kept wheel altered on disk is never used: it is downloaded again (and an
    altered copy of the binary unpacked beside it is unpacked again)."""
    cache = tmp_path / "cache"
    env = {key: value for key, value in os.environ.items() if key != "UV"}
    env["XDG_CACHE_HOME"] = str(cache)
    hashes = uv_wheel_hashes(matrix.ROOT / "template/platform/requirements-uv.txt")
    pinned = ["uv", matrix.questions()["uv_version"]["default"]]

    def bootstrap(name: str) -> Path:
        project = render(template_snapshot, tmp_path / name)
        check = subprocess.run(
            ["make", "--no-print-directory", "-C", str(project), "check-lock"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        version = run([str(project / ".tools/bin/uv"), "--version"])
        assert version.stdout.split()[:2] == pinned, version.stdout
        (wheel,) = cache.glob("dagster-launchpad/uv-wheel/*/uv-*.whl")
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in hashes, "the kept wheel is not a locked one"
        return wheel

    wheel = bootstrap("first")
    kept = wheel.stat().st_mtime_ns
    assert bootstrap("second").stat().st_mtime_ns == kept, "the kept wheel was downloaded again"
    wheel.write_bytes(b"not uv")
    bootstrap("third")  # the altered wheel is replaced by a good download, then used
    (wheel.parent / "uv").write_bytes(b"#!/bin/sh\necho tampered\n")
    bootstrap("fourth")  # the binary kept beside it, altered, is unpacked again from the wheel


def test_make_test_and_lint_use_the_locked_set_and_refuse_a_stale_one(template_snapshot, tmp_path):
    """`make lint test` installs uv.lock's set plus the dev tools into .venv (uv sync --locked)
    and passes on a fresh project; with a dependency declared but not locked it stops."""
    project = render(template_snapshot, tmp_path / "project")
    checked = make(project, "lint", "test")
    assert checked.returncode == 0, checked.stdout[-3000:]
    freeze = run([UV, "pip", "freeze", "--python", str(project / ".venv/bin/python")])
    installed = dict(line.split("==", 1) for line in freeze.stdout.splitlines() if "==" in line)
    locked = {p["name"]: p["version"] for p in tomllib.loads((project / "uv.lock").read_text())["package"]}
    assert installed, freeze.stdout
    assert {name: v for name, v in installed.items() if locked.get(name) != v} == {}, (
        "installed outside the lock"
    )
    assert installed["dagster"] == matrix.questions()["dagster_version"]["default"]
    assert {"pytest", "ruff", "dagster-webserver"} <= installed.keys()

    add_dependency(project, "tomli-w>=1.0")
    (project / ".venv/.installed").unlink()
    stale = make(project, "test")
    assert stale.returncode != 0
    assert "--locked" in stale.stdout and "uv.lock" in stale.stdout, stale.stdout[-2000:]


def test_three_code_locations_share_one_lock_and_each_has_its_own_export(template_snapshot, tmp_path):
    """The shipped lock, assembled for three code locations, is uv's own; a dependency added to
    one location changes that location's export alone (so only its image is rebuilt)."""
    names = ["data_platform", "sales", "ml_models"]
    project = render(template_snapshot, tmp_path / "project", code_locations=names)
    check = make(project, "check-lock")
    assert check.returncode == 0, check.stdout
    assert "recorded uv.lock's checksum in uv.lock.sha256" in check.stdout
    lock = tomllib.loads((project / "uv.lock").read_text())
    members = {p["name"]: p["source"] for p in lock["package"] if "editable" in p["source"]}
    assert members == {
        "launchpad-pipes": {"editable": "pipes/launchpad_pipes"},
        **{f"pipes-{n.replace('_', '-')}": {"editable": f"pipes/{n}"} for n in names},
    }
    before = snapshot(project)
    add_dependency(project, "pyarrow>=18", location="sales")
    assert make(project, "lock").returncode == 0
    after = snapshot(project)
    changed = [path for path in after if after[path] != before[path]]
    assert changed == ["uv.lock", "uv.lock.sha256", "pipes/sales/requirements.txt"]
    assert b"\npyarrow==" in after["pipes/sales/requirements.txt"]
    assert make(project, "check-lock").returncode == 0


def sdist_only_index(root: Path, name: str, version: str) -> Path:
    """A PEP 503 package index (a directory, served over HTTP by the test) holding one package
    that publishes a source distribution only, with static metadata (uv reads it, builds nothing)."""
    import io
    import tarfile

    base = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{base}/PKG-INFO": f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n",
        f"{base}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ),
    }
    project = root / "simple" / name
    project.mkdir(parents=True)
    archive = project / f"{base}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path, text in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (project / "index.html").write_text(f'<a href="{archive.name}#sha256={digest}">{archive.name}</a>\n')
    return root / "simple"


def test_make_lock_refuses_a_package_without_a_wheel_before_any_build(template_snapshot, tmp_path):
    """A dependency available only as a source distribution (from an index the test serves on
    127.0.0.1, named in secrets/pip.conf as a private index is) is refused by `make lock` by
    name, with the ways out, and nothing changes: the images install wheels only."""
    import functools
    import http.server
    import threading

    project = render(template_snapshot, tmp_path / "project")
    name = "launchpad-source-only"
    index = sdist_only_index(tmp_path / "index", name, "1.0.0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(index.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (project / "secrets").mkdir(exist_ok=True)
        (project / "secrets/pip.conf").write_text(
            f"[global]\nextra-index-url = http://127.0.0.1:{server.server_port}/simple/\n"
        )
        before = snapshot(project)
        add_dependency(project, name)
        refused = make(project, "lock", "PYTHON=" + sys.executable)
    finally:
        server.shutdown()
    assert refused.returncode != 0, refused.stdout
    python = yaml.safe_load((project / ".copier-answers.yml").read_text()).get("python_version", "3.13")
    assert f"error: uv.lock pins {name} 1.0.0" in refused.stdout, refused.stdout
    assert f"has no wheel for Python {python} on Linux" in refused.stdout, refused.stdout
    assert "pipes/NAME/wheels/" in refused.stdout and "The previous uv.lock" in refused.stdout
    assert snapshot(project) == before, "a refused `make lock` changed the lock or an export"
    assert not list(project.rglob("requirements.txt.new")), "the refused exports were left behind"
