"""Refresh the locks that the template ships, one per lock set (copier.yml's `lock_set`).

    python tools/refresh_locks.py            # re-lock: keep every locked version that still fits
    python tools/refresh_locks.py --upgrade  # move every package to its newest allowed version

A lock set is one combination of the answers that change the locked dependencies
(`matrix.LOCK_SET_KEYS`: each `dagster_version` choice, each `compute_logs` choice, as copier.yml
offers them), named by the `lock_set` it computes: `1.13.27`, `1.13.27-s3` (with dagster-aws),
... For each, this renders the default project with those answers, runs its own `make lock` (uv,
universal: every Python version and platform the template offers, glibc and musl) and copies
the result back into the template:

- the exports, as conditional files copied verbatim, e.g.
  `template/platform/{% if lock_set == '1.13.27' %}requirements.txt{% endif %}` and the
  same file in the code location directory (a location with no dependencies of its own has the
  same export whatever its name);
- uv.lock, cut around the lines that name the code locations' workspace members:
  `template/_includes/locks/LOCK_SET/{1,2,3}.lock`, which `template/uv.lock.jinja` puts back
  together around one member entry per code location (the parts are data: no Jinja in them).

It also writes template/platform/requirements-uv.txt: the pinned uv of copier.yml's
`uv_version`, with the hashes of every platform's wheel. tests/test_lock.py
(`test_shipped_lock_matches_its_declarations_on_every_python_and_libc`) fails when a shipped
lock is stale, and checks the assembled lock for one and three code locations.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from launchpad_dev import matrix
from launchpad_dev.common import ROOT, snapshot_template

TEMPLATE = ROOT / "template"
LOCATION_DIR = TEMPLATE / "pipes" / "{% yield location from code_locations %}{{ location }}{% endyield %}"
# The exports that `make lock` writes, shipped for each lock set: (in the project, in the
# template's directory).
EXPORTS = (
    ("platform/requirements-core.txt", TEMPLATE / "platform"),
    ("platform/requirements.txt", TEMPLATE / "platform"),
    ("pipes/{location}/requirements.txt", LOCATION_DIR),
)


def shipped(directory: Path, name: str, lock_set: str) -> Path:
    """Where the template keeps the file `name` of `directory` for one lock set."""
    return directory / f"{{% if lock_set == '{lock_set}' %}}{name}{{% endif %}}"


def lock_parts(lock: str, member: str) -> list[str]:
    """uv.lock cut around its one code location member `member`: the three parts between."""
    manifest_line = f'    "{member}",\n'
    start = lock.index('[[package]]\nname = "' + member + '"\n')
    end = lock.index("[[package]]\n", start + 1)
    if lock.count(manifest_line) != 1:
        raise SystemExit(f"error: {member} is not listed once in uv.lock's manifest")
    head, _, middle = lock[:start].partition(manifest_line)
    return [head, middle, lock[end:]]


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
    lock_sets = matrix.lock_sets()
    for lock_set, answers in lock_sets.items():
        parts = TEMPLATE / "_includes" / "locks" / lock_set
        if not parts.is_dir():
            # A new lock set starts from the lock of a set with the same Dagster version (the
            # versions it shares stay as that set locked them: -s3 adds dagster-aws and its own
            # dependencies, nothing else moves), or from an empty lock for a new version.
            seed = next(
                (
                    name
                    for name, other in lock_sets.items()
                    if other["dagster_version"] == answers["dagster_version"]
                    and (TEMPLATE / "_includes" / "locks" / name).is_dir()
                ),
                None,
            )
            parts.mkdir(parents=True)
            for index in (1, 2, 3):
                target = parts / f"{index}.lock"
                if seed:
                    shutil.copyfile(TEMPLATE / "_includes" / "locks" / seed / f"{index}.lock", target)
                else:
                    target.touch()
            for path, directory in EXPORTS:
                name = path.rpartition("/")[2]
                if seed:
                    shutil.copyfile(shipped(directory, name, seed), shipped(directory, name, lock_set))
                else:
                    shipped(directory, name, lock_set).touch()
        with tempfile.TemporaryDirectory() as tmp:
            template = snapshot_template(Path(tmp) / "template")
            project = Path(tmp) / "project"
            copier.run_copy(str(template), str(project), data=answers, defaults=True, quiet=True)
            location = (project / ".copier-answers.yml").read_text().split("package_name: ")[1].split()[0]
            if "[[package]]" not in (project / "uv.lock").read_text():
                (project / "uv.lock").unlink()
            flags = "--upgrade" if args.upgrade else ""
            make = ["make", "-C", str(project), "lock", f"UV={uv_bin}", f"LOCK_FLAGS={flags}"]
            subprocess.run(make, check=True)
            for path, directory in EXPORTS:
                name = path.rpartition("/")[2]
                shutil.copyfile(project / path.format(location=location), shipped(directory, name, lock_set))
            member = "pipes-" + location.replace("_", "-")
            for index, part in enumerate(lock_parts((project / "uv.lock").read_text(), member), 1):
                (parts / f"{index}.lock").write_text(part)
        print(f"lock set {lock_set}: uv.lock (in 3 parts), {', '.join(path for path, _ in EXPORTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
