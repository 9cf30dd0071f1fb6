"""What the upgrade tier (tests/test_upgrade.py) and the upgrade benchmark
(benchmarks/upgrade_bench.py) share: the two Dagster versions, the template as a git repository
(copier update reads a commit), and a project committed as a user keeps it, updated to the new
Dagster version and committed again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

OLD, NEW = "1.12.22", "1.13.27"
GIT = ["git", "-c", "user.name=Launchpad Tests", "-c", "user.email=tests@launchpad.invalid"]


def git(root: Path, *args: str) -> str:
    """git in `root` with the tests' identity; its output, or RuntimeError with its message."""
    done = subprocess.run([*GIT, "-C", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout


def template_repository(template: Path, dest: Path) -> Path:
    """The template snapshot as a git repository at `dest` (kept when it is one already)."""
    if not (dest / ".git").is_dir():
        shutil.copytree(template, dest)
        git(dest, "init", "--quiet")
        git(dest, "add", "-A")
        git(dest, "commit", "--quiet", "-m", "template")
    return dest


def update_to_new(root: Path) -> None:
    """The project committed, `copier update` to NEW, committed. The checksum of the lock goes:
    the update brings the template's lock for NEW untouched, whose checksum make records again
    (what `make lock` would do). The caller checks the result."""
    import copier

    (root / "uv.lock.sha256").unlink(missing_ok=True)
    git(root, "init", "--quiet")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", f"Dagster {OLD}")
    copier.run_update(str(root), data={"dagster_version": NEW}, defaults=True, overwrite=True,
                      quiet=True, vcs_ref="HEAD", conflict="inline")  # fmt: skip
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", f"Dagster {NEW}")
