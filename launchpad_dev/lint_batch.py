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


def exit_status(exit_: SystemExit) -> int:
    """The process's exit status for a SystemExit, as the interpreter would make it."""
    return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)


def lint(directory: str, argv: list[str]) -> dict:
    from compose_lint.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.chdir(directory)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_status(exit_)
    return {"dir": directory, "exit": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def serve(run) -> None:
    """For each line of stdin, [directory, argument, ...], the JSON line of run(directory, argv)."""
    for line in sys.stdin:
        directory, *argv = json.loads(line)
        sys.stdout.write(json.dumps(run(directory, argv)) + "\n")
        sys.stdout.flush()


def main() -> None:
    serve(lint)


if __name__ == "__main__":
    main()
