#!/usr/bin/env python3
"""Create .env from .env.example, replacing placeholder secrets with random values.

Run by `make` when .env does not exist yet; never overwrites an existing .env.
"""

import secrets
import sys
from pathlib import Path

PLACEHOLDER = "change-me"


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    target, example = root / ".env", root / ".env.example"
    if target.exists():
        print(f"{target.name} exists; leaving it as it is")
        return 0
    lines = []
    for line in example.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value == PLACEHOLDER:
            line = f"{key}={secrets.token_urlsafe(24)}"
        lines.append(line)
    target.touch(mode=0o600)
    target.write_text("\n".join(lines) + "\n")
    print(f"created {target.name} from {example.name} (secrets generated; keep it out of git)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
