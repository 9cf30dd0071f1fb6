"""Print the lines of a service's log that name an error: `make up` runs this when it fails.

    podman-compose logs --tail 2000 webserver 2>&1 | python3 scripts/log_errors.py [--limit 25]

A failing start often ends in one long traceback (SQLAlchemy's fills 30 lines), and its last
lines hide its cause, which is logged first. This keeps what names an error: each exception
line of a traceback (`package.SomeError: message`, the cause's too), `error:`/`ERROR`/`FATAL`/
`CRITICAL` lines and PostgreSQL's `FATAL:`; repeated lines are printed once with their count, in
the order they first appeared, the last --limit of them. The compose tools' prefixes
(`[webserver] | `, `webserver-1  | `) and colours are removed. Exits 1 if nothing matched (the
caller then shows the log's last lines).
"""

from __future__ import annotations

import argparse
import re
import sys

COLOUR = re.compile(r"\x1b\[[0-9;]*m")
PREFIX = re.compile(r"^(?:\[[\w.-]+\]\s*\|\s?|[\w.-]+\s+\|\s?)")
EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Failure|Warning)\b(?::.*)?$"
)
WORDS = re.compile(r"\b(?:error:|ERROR|FATAL|CRITICAL|failed to load)\b|FATAL:")


def clean(line: str) -> str:
    return PREFIX.sub("", COLOUR.sub("", line.rstrip("\n"))).strip()


def errors(lines: list[str], limit: int) -> list[str]:
    counts: dict[str, int] = {}
    for raw in lines:
        line = clean(raw)
        if line and (EXCEPTION.match(line) or WORDS.search(line)):
            counts[line] = counts.get(line, 0) + 1
    kept = list(counts.items())[-limit:]
    return [f"{line}  (x{count})" if count > 1 else line for line, count in kept]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=25, help="at most this many lines")
    args = parser.parse_args(argv)
    found = errors(sys.stdin.readlines(), args.limit)
    for line in found:
        print(f"  {line}")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
