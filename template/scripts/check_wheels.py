"""Refuse a lock that an image cannot install: `make lock` runs this on each image's export.

    python3 scripts/check_wheels.py --uv "UV COMMAND" --python 3.13 --libc gnu IMAGE=FILE...

The images install wheels only (`uv pip sync --no-build`: they carry no compiler, and a build
from source would make the image depend on whatever that build does that day). uv.lock is
universal, so it may pin a version that publishes only a source distribution, or wheels for
other Python versions or machines than the image's. This asks uv, for each image's export,
what the image's install will ask: is there a wheel for every pinned package, for this Python,
Linux (glibc or musl) and this machine's architecture. If not, it names the package, the image
and the ways out, and exits 1 (`make lock` then puts the previous lock back).

Ways out (docs/real-projects.md): a bound in the location's pyproject.toml that keeps the
package to a version with wheels (this script looks up the newest one), or a wheel you build
yourself and keep in pipes/NAME/wheels/. Building from source inside the images is not offered.
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor

# The oldest glibc among the supported bases (UBI 9: 2.34; Debian bookworm has 2.36): a wheel
# this accepts installs on every glibc base.
GLIBC = "2_34"
NO_WHEEL = re.compile(
    r"Because (?:only )?(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==(?P<version>[^ ]+))? has no "
    r"(?P<why>usable wheels|wheels with a matching [a-zA-Z ]+tag|wheels)"
)


def machine() -> str:
    """The architecture the images are built for: this host's (amd64 or arm64)."""
    arch = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def target(libc: str, arch: str) -> str:
    """uv's --python-platform for the images."""
    return f"{arch}-unknown-linux-musl" if libc == "musl" else f"{arch}-manylinux_{GLIBC}"


def compile_args(uv: list[str], python: str, platform_tag: str) -> list[str]:
    return [
        *uv, "pip", "compile", "--quiet", "--no-header", "--no-deps", "--no-build",
        "--python-version", python, "--python-platform", platform_tag,
    ]  # fmt: skip


def check(uv: list[str], python: str, platform_tag: str, requirements: str) -> tuple[int, str]:
    """(uv's exit code, its output) for one export, checked as the image installs it: from uv's
    cache first (about 2 s; `uv lock` has just filled it), from the index when the cache lacks
    an entry (about 15 s)."""
    for mode in (["--offline"], []):
        done = subprocess.run(
            [*compile_args(uv, python, platform_tag), *mode, requirements],
            capture_output=True,
            text=True,
        )
        output = done.stdout + done.stderr
        if done.returncode == 0 or NO_WHEEL.search(output):
            break
    return done.returncode, output


def newest_with_wheels(uv: list[str], python: str, platform_tag: str, name: str) -> str | None:
    """The newest version of `name` that has a wheel for the images, or None."""
    done = subprocess.run(
        [*compile_args(uv, python, platform_tag), "-"],
        input=f"{name}\n",
        capture_output=True,
        text=True,
    )
    found = re.search(rf"^{re.escape(name)}==(\S+)", done.stdout, re.M | re.I)
    return found.group(1) if done.returncode == 0 and found else None


def required_by(lock: str, name: str) -> list[tuple[str, str]]:
    """The packages of uv.lock (name, version) that depend on `name`."""
    with open(lock, "rb") as file:
        packages = tomllib.load(file).get("package", [])
    return [
        (p["name"], p.get("version", "?"))
        for p in packages
        if any(d.get("name") == name for d in p.get("dependencies", []))
        and not str(p.get("source", {})).startswith(("{'editable'", "{'virtual'"))
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uv", required=True, help="the uv command (with its index settings)")
    parser.add_argument("--python", required=True, help="the images' Python version, e.g. 3.13")
    parser.add_argument("--libc", choices=["gnu", "musl"], required=True)
    parser.add_argument("--lock", default="uv.lock", help="the lock the exports come from")
    parser.add_argument(
        "--arch", default=machine(), help="x86_64 or aarch64 (default: this host's)"
    )
    parser.add_argument("exports", nargs="+", metavar="IMAGE=FILE")
    args = parser.parse_args(argv)
    uv = shlex.split(args.uv)
    platform_tag = target(args.libc, args.arch)
    exports = [item.split("=", 1) for item in args.exports]
    where = (
        f"Python {args.python} on Linux {args.arch} ({'musl' if args.libc == 'musl' else 'glibc'})"
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda e: check(uv, args.python, platform_tag, e[1]), exports))
    refused: dict[tuple[str, str | None, str], list[str]] = {}
    for (image, _file), (code, output) in zip(exports, results, strict=True):
        if code == 0:
            continue
        found = NO_WHEEL.search(output)
        if found is None:  # another failure (the index unreachable, ...): uv's own words
            print(
                f"error: checking the lock for the {image} image failed:\n{output.strip()}",
                file=sys.stderr,
            )
            return 1
        refused.setdefault((found["name"], found["version"], found["why"]), []).append(image)
    if not refused:
        return 0
    for (name, version, why), images in refused.items():
        pinned = f"{name} {version}" if version else name
        parents = required_by(args.lock, name)
        via = f" (required by {', '.join(f'{n} {v}' for n, v in parents)})" if parents else ""
        print(
            f"error: uv.lock pins {pinned}{via}, which has no wheel for {where} ({why}): the "
            f"{', '.join(images)} image{'s' if len(images) > 1 else ''} could not install it "
            "(images install wheels only; they build nothing from source).",
            file=sys.stderr,
        )
        print(
            "  Ways out, in the pyproject.toml of the code location that needs it, "
            "then make lock again:",
            file=sys.stderr,
        )
        for parent, parent_version in parents:
            print(
                f'  - keep {parent} to an earlier release, e.g. "{parent}<{parent_version}";',
                file=sys.stderr,
            )
        newest = newest_with_wheels(uv, args.python, platform_tag, name)
        if newest:
            prerelease = ", a pre-release" if re.search(r"[a-z]", newest) else ""
            print(
                f'  - or bound {name} itself: "{name}<={newest}" (the newest version with such a '
                f"wheel{prerelease});",
                file=sys.stderr,
            )
        print(
            "  - or build a wheel of it yourself and keep it in pipes/NAME/wheels/ "
            "(docs/real-projects.md in the template's repository).",
            file=sys.stderr,
        )
    print("The previous uv.lock and requirements files are kept.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
