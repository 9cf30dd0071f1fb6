#!/usr/bin/env python3
"""Read .env and write it for make: every setting as a make variable holding its exact value.

    python3 scripts/env_make.py .env .build/env.mk

make cannot read .env itself: it would cut a value at '#', expand '$', keep quotes as part of
the value and drop a trailing backslash, and hand the recipes (and the compose tool, which
prefers the environment to .env) a mangled password. The Makefile includes the file this
writes instead (and rewrites it whenever .env changes); each value reaches the recipes'
environment exactly as .env means it.

.env's syntax, as the compose tools read it (one setting per line):
    KEY=value          the value up to a ' #' comment, spaces around it dropped
    KEY='value'        exactly what is between the single quotes ('$', '#', '"', spaces)
    KEY="value"        the same, with \\" for '"' and \\\\ for a backslash
Blank lines and lines starting with '#' are comments; 'export KEY=value' is KEY=value. No
'$VAR' is expanded (the compose tools run by hand would expand it in an unquoted or
double-quoted value: single-quote a value holding '$'). A value cannot span lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

KEY = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
# Variables that change how make itself or its shell works: not settings of the project.
RESERVED = re.compile(r"SHELL|PATH|VPATH|GPATH|CURDIR|SUFFIXES|MFLAGS|MAKE[A-Z_]*")
# Appended to each value in the written file and expanding to nothing there: a value ending in
# a backslash would otherwise continue onto the next line.
END = "$(launchpad-end)"


class EnvError(ValueError):
    pass


def parse_value(text: str) -> str:
    """The value that the text after 'KEY=' stands for (see the module's docstring)."""
    if text[:1] == "'":
        end = text.find("'", 1)
        if end < 0:
            raise EnvError("the single quote that opens the value is not closed on this line")
        value, rest = text[1:end], text[end + 1 :]
    elif text[:1] == '"':
        chars, i = [], 1
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                i += 1
            chars.append(text[i])
            i += 1
        if i >= len(text):
            raise EnvError("the double quote that opens the value is not closed on this line")
        value, rest = "".join(chars), text[i + 1 :]
    else:
        return re.split(r"\s#", text, maxsplit=1)[0].strip()
    if rest.strip() and not re.match(r"\s+#", rest):
        raise EnvError(
            f"text after the closing quote: {rest.strip()[:40]!r} (a comment needs ' #')"
        )
    return value


def parse(text: str) -> dict[str, str]:
    """{KEY: value} of a .env file's text; EnvError names the line of the first error."""
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = KEY.fullmatch(stripped)
        try:
            if not match:
                raise EnvError("not a setting: write KEY=value (letters, digits and '_' in KEY)")
            key = match.group(1)
            if RESERVED.fullmatch(key):
                raise EnvError(f"{key} is make's or the shell's own variable, not a setting")
            settings[key] = parse_value(match.group(2))
        except EnvError as error:
            raise EnvError(f"line {number}: {error}") from None
    return settings


def make_text(settings: dict[str, str]) -> str:
    """A makefile defining and exporting each setting with its exact value."""
    out = ["# Written by scripts/env_make.py from .env whenever .env changes: do not edit.", ""]
    for key, value in settings.items():
        out += [f"define {key} :=", value.replace("$", "$$") + END, "endef", f"export {key}"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    try:
        settings = parse(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: cannot read {source}: {error}", file=sys.stderr)
        return 1
    except EnvError as error:
        print(f"error: {source}, {error}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.touch(mode=0o600)
    partial.write_text(make_text(settings), encoding="utf-8")
    partial.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
