"""Refresh the locks that the template ships, one set per `dagster_version` choice.

    python tools/refresh_locks.py            # re-lock: keep every locked version that still fits
    python tools/refresh_locks.py --upgrade  # move every package to its newest allowed version

For each Dagster version offered in copier.yml this renders the default project, runs its own
`make lock` (uv, universal: every Python version and platform the template offers, glibc and
musl) and copies uv.lock, its checksum and the three exported requirements files back into
the template as conditional files, e.g. `template/{% if dagster_version == '1.13.27' %}uv.lock{%
endif %}`: Copier writes the one for the project's version and copies it verbatim (a lock is
data, never a Jinja template). It also writes template/platform/requirements-uv.txt: the pinned
uv of copier.yml's `uv_version`, with the hashes of every platform's wheel. tests/test_lock.py
(`test_shipped_lock_matches_its_declarations_on_every_python_and_libc`) fails when a shipped
lock is stale.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import matrix  # noqa: E402
from conftest import snapshot_template  # noqa: E402

TEMPLATE = ROOT / "template"
# The files of a project that `make lock` writes, shipped for each Dagster version.
SHIPPED = (
    "uv.lock",
    "uv.lock.sha256",
    "platform/requirements-core.txt",
    "platform/requirements.txt",
    "pipes/requirements.txt",
)


def shipped(path: str, version: str) -> Path:
    """Where the template keeps a project's `path` for one Dagster version."""
    parent, _, name = path.rpartition("/")
    return TEMPLATE / parent / f"{{% if dagster_version == '{version}' %}}{name}{{% endif %}}"


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        sys.exit("error: uv not found: pip install -e '.[test]' installs the pinned uv")
    return found


def refresh_uv_requirements(uv_bin: str, version: str) -> None:
    out = subprocess.run(
        [uv_bin, "pip", "compile", "--universal", "--generate-hashes", "--no-header", "--quiet", "-"],
        input=f"uv=={version}\n", text=True, capture_output=True, check=True,
    ).stdout  # fmt: skip
    header = (
        f"# uv {version}: installs the images' locked dependencies, runs `make lock` (every wheel's hash).\n"
    )
    (TEMPLATE / "platform" / "requirements-uv.txt").write_text(header + out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="upgrade every package within its range")
    args = parser.parse_args()
    import copier

    uv_bin = uv()
    uv_version = matrix.questions()["uv_version"]["default"]
    installed = subprocess.run(
        [uv_bin, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    if installed != uv_version:
        sys.exit(
            f"error: copier.yml pins uv {uv_version}, this uv is {installed} (pyproject.toml's test extra)"
        )
    refresh_uv_requirements(uv_bin, uv_version)
    for version in matrix.choice_values("dagster_version"):
        for path in SHIPPED:  # a new version starts from empty files
            shipped(path, version).touch()
        with tempfile.TemporaryDirectory() as tmp:
            template = snapshot_template(Path(tmp) / "template")
            project = Path(tmp) / "project"
            answers = {"dagster_version": version}
            copier.run_copy(str(template), str(project), data=answers, defaults=True, quiet=True)
            if not (project / "uv.lock").read_text().strip():
                (project / "uv.lock").unlink()
            flags = "--upgrade" if args.upgrade else ""
            make = ["make", "-C", str(project), "lock", f"UV={uv_bin}", f"LOCK_FLAGS={flags}"]
            subprocess.run(make, check=True)
            for path in SHIPPED:
                shutil.copyfile(project / path, shipped(path, version))
        print(f"dagster {version}: {', '.join(SHIPPED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
