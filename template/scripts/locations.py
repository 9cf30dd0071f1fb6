#!/usr/bin/env python3
"""The code locations on this host: list, check, build steps, tests (`make locations`, ...).

    locations.py list NAME:SERVICE... [--orphan DIR]...      make locations
    locations.py check --location NAME NAME:SERVICE...       make check-location (LOCATION)
    locations.py build-steps NAME...                          make build-steps, make reload
    locations.py test NAME...                                 make test
    locations.py lint                                         make lint

The Makefile names each code location with its compose service (pipes/NAME/, pipes-NAME) and
the directories of pipes/ that are no code location (any more): `list` warns about those, as
`make build` does (docs/update.md, "Removing a code location"). A location's build step is
pipes/NAME/build.sh, run from its directory with .venv's tools first on PATH (the image build
runs it too). `test` runs every location's build step, then each location's tests
(pipes/NAME/tests, in .venv) each on its own, then the scripts' own tests (scripts/tests),
and names every part that failed. `lint` runs ruff on pipes/ (check, then format --check) and
compose-lint on compose.yaml (exceptions in .compose-lint.yml), from .venv, stopping at the
first that fails. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

VENV = Path(".venv")
# pytest's exit code when it collected no test.
NO_TESTS = 5


def orphan_warning(directory: str) -> str:
    return (
        f"warning: pipes/{directory}/ is not a code location (code_locations in"
        " .copier-answers.yml): it is not built, served or tested; copier update deleted the"
        " files it had generated there, edited ones included"
        f" (git log --stat -- pipes/{directory} finds them)"
    )


def warn_orphans(orphans: list[str]) -> None:
    for directory in orphans:
        print(orphan_warning(directory), file=sys.stderr)


def pairs(items: list[str]) -> dict[str, str]:
    """{NAME: SERVICE} from the Makefile's NAME:SERVICE arguments."""
    return dict(item.split(":", 1) for item in items)


def check(location: str, names: list[str]) -> str | None:
    """None when LOCATION is empty (every location) or names a code location, else the error."""
    unknown = [name for name in location.split() if name not in names]
    if unknown:
        return f"no code location named '{location}'; the code locations are: {' '.join(names)}"
    return None


def build_step(name: str) -> int:
    """Run pipes/NAME/build.sh on this host; 0, or 1 after an error line."""
    print(f"== build step of {name} (pipes/{name}/build.sh)", flush=True)
    venv = VENV.resolve()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    env["VIRTUAL_ENV"] = str(venv)
    if subprocess.run(["sh", "build.sh"], cwd=Path("pipes") / name, env=env).returncode:
        print(
            f"error: the build step of the code location {name} failed"
            f" (pipes/{name}/build.sh; its output is above)",
            file=sys.stderr,
        )
        return 1
    return 0


def outcome(results: dict[str, int]) -> tuple[list[str], list[str]]:
    """(the parts without tests, the parts that failed) from pytest's exit code per part."""
    untested = [name for name, code in results.items() if code == NO_TESTS]
    failed = [name for name, code in results.items() if code not in (0, NO_TESTS)]
    return untested, failed


def pytest(*args: str) -> int:
    return subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", *args]).returncode


def build_steps(names: list[str]) -> int:
    """Each location's build step in turn; 1 at the first that fails."""
    return 1 if any(build_step(name) for name in names) else 0


def test(names: list[str], shared: list[str] = ()) -> int:
    """The build steps of the locations `names`, then the tests of the `shared` packages of
    pipes/ (they have no build step) and of each location, then scripts/tests."""
    if build_steps(names):
        return 1
    results = {}
    for name in [*shared, *names]:
        print(f"== tests of {name}", flush=True)
        tests = Path("pipes") / name / "tests"
        results[name] = pytest(str(tests)) if tests.is_dir() else NO_TESTS
    untested, failed = outcome(results)
    if untested:
        print(
            f"note: no tests in: {' '.join(untested)} (pytest collected none in"
            " pipes/NAME/tests; not a failure)",
            file=sys.stderr,
        )
    if list(Path("scripts/tests").glob("test_*.py")):
        print("== tests of scripts/", flush=True)
        if pytest("-q", "scripts/tests"):
            failed.append("scripts")
    if failed:
        print(f"error: tests failed in: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


LINTERS = [
    ["ruff", "check", "pipes"],
    ["ruff", "format", "--check", "pipes"],
    ["compose-lint", "check", "--fail-on", "low", "--strict-config", "-q", "compose.yaml"],
]


def lint() -> int:
    for tool, *args in LINTERS:
        command = [str(VENV / "bin" / tool), *args]
        print(" ".join(command), flush=True)
        if done := subprocess.run(command).returncode:
            return done
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "check", "build-steps", "test", "lint"])
    parser.add_argument("names", nargs="*", help="NAME:SERVICE (list, check) or NAME")
    parser.add_argument("--orphan", action="append", default=[], help="a directory of pipes/")
    parser.add_argument("--location", default="", help="LOCATION (check)")
    parser.add_argument("--shared", action="append", default=[], help="a shared package (test)")
    args = parser.parse_intermixed_args(argv)
    if args.action == "list":
        for name, service in pairs(args.names).items():
            print(f"{name}\tpipes/{name}/\t{service}")
        warn_orphans(args.orphan)
        return 0
    if args.action == "check":
        if error := check(args.location, list(pairs(args.names))):
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.action == "build-steps":
        return build_steps(args.names)
    if args.action == "lint":
        return lint()
    return test(args.names, args.shared)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
