"""Copier migration to v0.2.0: the code location moves from pipes/ to pipes/<package>/.

    python migrate_layout.py stash TEMPLATE_DIR      (before the update, in the project's root)
    python migrate_layout.py restore   (after it)

Up to v0.1.0 a project had one code location in pipes/ (pipes/src/<package>, pipes/tests,
pipes/pyproject.toml, ...). From v0.2.0 each code location has a directory of its own, and the
first one is pipes/<package>/. Copier cannot follow a move: it would delete the old files, the
ones you edited included, and write the template's new examples at the new paths. So:

- `stash` (before) copies every file of the old layout, as it is in your project, and the same
  file as the old template version generated it, to .copier-migration/;
- `restore` (after) writes each one at its new path: your file as it was when you never changed
  it from the template's (the new template's version stays), otherwise your changes merged
  into the new version with `git merge-file` (a conflict is left inline, between markers, as
  Copier does), and files you added moved as they are. The dependencies you had added to
  pipes/requirements.txt move into pipes/<package>/pyproject.toml (migrate_requirements.py).
  The old image definition (pipes/Containerfile or pipes/Dockerfile) has no new place of its
  own: every code location's image is now built from pipes/launchpad_pipes/'s. If you had
  changed it, your version is kept as pipes/<package>/<name>.before-v0.2.0 to carry your changes
  over by hand (a merge into the shared definition would be mostly conflicts), and said so.
  Then the old directories, now empty of your files, are removed. Every move is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

STASH = Path(".copier-migration")
OLD_ROOT = Path("pipes")
REQUIREMENTS = "requirements.txt"
# The old image definition: from v0.2.0 one for every location, pipes/launchpad_pipes/<name>.
IMAGE_DEFINITIONS = {"Containerfile", "Dockerfile"}


def old_layout_files() -> list[Path]:
    """The files of the pre-v0.2.0 layout: pipes/src, pipes/tests and pipes/* files."""
    if not (OLD_ROOT / "src").is_dir():
        return []
    found = [p for p in OLD_ROOT.iterdir() if p.is_file()]
    for sub in ("src", "tests"):
        found += [p for p in (OLD_ROOT / sub).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(found)


def stash(template: Path) -> int:
    files = old_layout_files()
    if not files:
        return 0
    answers = yaml.safe_load(Path(".copier-answers.yml").read_text())
    import copier

    data = {k: v for k, v in answers.items() if not k.startswith("_")}
    if "pipes_system_packages" in data:  # renamed just before: the old template's name
        data["system_packages"] = data["pipes_system_packages"]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        copier.run_copy(
            str(template), str(old), vcs_ref=answers["_commit"], data=data, defaults=True, quiet=True
        )
        shutil.rmtree(STASH, ignore_errors=True)
        for path in files:
            for side, source in (("yours", path), ("template", old / path)):
                if source.is_file():
                    target = STASH / side / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
    (STASH / "package").write_text(answers["package_name"])
    return 0


def new_path(path: Path, package: str) -> Path:
    return OLD_ROOT / package / path.relative_to(OLD_ROOT)


def restore() -> int:
    if not STASH.is_dir():
        return 0
    package = (STASH / "package").read_text().strip()
    yours_root = STASH / "yours"
    conflicts = []
    for yours in sorted(p for p in yours_root.rglob("*") if p.is_file()):
        path = yours.relative_to(yours_root)
        old_template = STASH / "template" / path
        target = new_path(path, package)
        if path.name == REQUIREMENTS and path.parent == OLD_ROOT:
            continue  # moved into pyproject.toml below
        mine = yours.read_bytes()
        if old_template.is_file() and old_template.read_bytes() == mine:
            continue  # never changed: the new template's version (if any) stands
        if path.name in IMAGE_DEFINITIONS and path.parent == OLD_ROOT:
            kept = target.with_name(f"{path.name}.before-v0.2.0")
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(yours, kept)
            print(
                f"kept your changed {path} as {kept}: every code location's image is now built "
                f"from pipes/launchpad_pipes/{path.name}; carry your changes over to it"
            )
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or not old_template.is_file():
            shutil.copyfile(yours, target)
            print(f"moved {path} -> {target}")
            continue
        merged = subprocess.run(
            ["git", "merge-file", "-p", "-L", "before updating", "-L", "last update", "-L",
             "after updating", str(yours), str(old_template), str(target)],
            capture_output=True,
        )  # fmt: skip
        if merged.returncode < 0 or merged.returncode > 127:
            print(f"error: could not merge {path}: {merged.stderr.decode()}", file=sys.stderr)
            return 1
        target.write_bytes(merged.stdout)
        if merged.returncode:
            conflicts.append(str(target))
        print(f"merged your changes to {path} into {target}")
    # Your dependencies, from the old pipes/requirements.txt.
    requirements = yours_root / OLD_ROOT / REQUIREMENTS
    if requirements.is_file():
        sys.path.insert(0, str(Path(__file__).parent))
        import migrate_requirements

        status = migrate_requirements.move(requirements.read_text(), OLD_ROOT / package / "pyproject.toml")
        if status:
            return status
    for sub in ("src", "tests"):
        shutil.rmtree(OLD_ROOT / sub, ignore_errors=True)
    for path in old_layout_files() + [p for p in OLD_ROOT.iterdir() if p.is_file()]:
        path.unlink(missing_ok=True)
    shutil.rmtree(STASH)
    if conflicts:
        print("Conflicts to resolve (between the markers): " + ", ".join(conflicts))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "stash":
        sys.exit(stash(Path(sys.argv[2])))
    sys.exit(restore())
