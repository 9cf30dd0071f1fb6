"""compose-lint over many projects in one process: `python -m launchpad_dev.lint_batch`.

The render tier lints several hundred distinct compose files; a process per file spends most of
its time starting Python and importing compose-lint (80 of 110 ms here). This runs compose-lint's
own entry point (compose_lint.cli.main, the console script's) once per project, in the project's
directory, with the same arguments the command line would get.

stdin: one JSON list per line, [directory, argument, ...]; stdout: one JSON object per line,
{"dir", "exit", "stdout", "stderr"}, in the same order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys


def lint(directory: str, argv: list[str]) -> dict:
    from compose_lint.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.chdir(directory)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return {"dir": directory, "exit": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    reply = sys.stdout
    for line in sys.stdin:
        directory, *argv = json.loads(line)
        reply.write(json.dumps(lint(directory, argv)) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
