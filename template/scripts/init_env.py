#!/usr/bin/env python3
"""Create the project's local, uncommitted files: .env and secrets/pip.conf.

.env is copied from .env.example with placeholder secrets replaced by random values;
secrets/pip.conf is the (commented-out) pip configuration that image builds mount as a
build secret. Run by `make` when either is missing; never overwrites an existing file.
"""

import secrets
import sys
from pathlib import Path

PLACEHOLDER = "change-me"

PIP_CONF = """\
# pip settings used by the image builds ONLY, mounted as a build secret for the
# `pip install` step: they never reach an image layer, the image history or the
# answers file. This file is not committed (.gitignore). Uncomment to install from a
# private index or a mirror, e.g.:
#
# [global]
# index-url = https://USER:TOKEN@pypi.example.internal/simple
# extra-index-url = https://pypi.org/simple
"""


def write_private(path: Path, text: str) -> None:
    """Create path readable by its owner only, then fill it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def create_env(root: Path) -> None:
    target, example = root / ".env", root / ".env.example"
    if target.exists():
        return
    lines = []
    for line in example.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value == PLACEHOLDER:
            line = f"{key}={secrets.token_urlsafe(24)}"
        lines.append(line)
    write_private(target, "\n".join(lines) + "\n")
    print(f"created {target.name} from {example.name} (secrets generated; keep it out of git)")


def create_pip_conf(root: Path) -> None:
    target = root / "secrets" / "pip.conf"
    if target.exists():
        return
    write_private(target, PIP_CONF)
    print("created secrets/pip.conf (build-time pip settings, e.g. a private index; not committed)")


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    create_env(root)
    create_pip_conf(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
