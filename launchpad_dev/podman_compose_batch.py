"""`podman-compose config` over many projects in one process: `python -m launchpad_dev.podman_compose_batch`.

The render tier validates several hundred distinct compose files with podman-compose; a process
per file spends most of its time starting Python and importing podman-compose. This runs
podman-compose's own `PodmanCompose.run` (what its console script runs) once per project, in
the project's directory, with the same arguments, on a fresh `PodmanCompose` holding the
commands its module registered, and the environment of the process as it was before each run.

stdin: one JSON list per line, [directory, argument, ...]; stdout: one JSON object per line,
{"dir", "exit", "stdout", "stderr"}, in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import traceback

from launchpad_dev.lint_batch import exit_status, serve


def config(directory: str, argv: list[str]) -> dict:
    import podman_compose

    compose = podman_compose.PodmanCompose()
    compose.commands = podman_compose.podman_compose.commands
    environ = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.chdir(directory)
    handler = logging.StreamHandler(err)
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                asyncio.run(compose.run(argv))
            except SystemExit as exit_:
                code = exit_status(exit_)
            except podman_compose.PodmanComposeError as error:  # what its main() prints
                err.write(f"Error: {error}\n")
                code = 1
            except Exception:  # what Python prints of an error its main() lets through
                traceback.print_exc(file=err)
                code = 1
    finally:
        logging.getLogger().removeHandler(handler)
        os.environ.clear()
        os.environ.update(environ)
    return {"dir": directory, "exit": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    serve(config)
