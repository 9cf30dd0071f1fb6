"""A layout that fails is a finding, not the end of the benchmark (issue 17).

benchmarks/run.py measures each layout in turn; when one fails (a build that breaks, a run that
ends FAILURE, a location that never loads, a command that times out), the failure is recorded
in that layout's JSON entry and table column, its stack is torn down and the benchmark goes on
with the next layout and the next engine. Only a failure of the generated project itself
(PROJECT_LAYOUTS) makes it exit non-zero; the JSON is written either way.

A Dagster run that ends FAILURE is explained by its own events, fetched through GraphQL: the
messages of its ERROR and CRITICAL events and the errors its events carry (the daemon's
"Caught an unrecoverable error while dequeuing the run" is an engine event at INFO level whose
error says why; the run's failure event only says "marked as failed from outside the
execution context").
"""

from __future__ import annotations

import os
import re
import subprocess
import traceback
from pathlib import Path

import requests

# The layouts that are the generated project: their failure fails the benchmark (exit 1).
# The baselines, and launchpad-pip (the project with pip swapped in by the benchmark, measured
# only to compare installers), are comparisons: their failure is recorded and the run goes on.
PROJECT_LAYOUTS = (
    "launchpad",
    "launchpad-locations",
    "launchpad-login",
    "launchpad-upgrade",
    "launchpad-logs",
)
# LAUNCHPAD_BENCH_BREAK=<layout>[,<layout>...]: break these layouts on purpose (their example
# asset raises, so their first run ends FAILURE), to see the benchmark record the failure and go on.
BREAK_VARIABLE = "LAUNCHPAD_BENCH_BREAK"
BROKEN_MESSAGE = "broken on purpose by LAUNCHPAD_BENCH_BREAK"
# The example asset's first line, where the break goes.
ASSET_ANCHOR = '    """A batch of orders'

RUN_EVENTS = """query ($id: ID!) { logsForRun(runId: $id) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { message level }
  ... on ErrorEvent { error { message causes { message } } } } }
  ... on PythonError { message } } }"""


class BenchError(RuntimeError):
    pass


def run_failure(stack, run_id: str) -> str:
    """Why a run failed, from its events: ERROR/CRITICAL messages and every error an event
    carries (with its causes), in order, each once, joined with ' | '."""
    try:
        logs = stack.gql(RUN_EVENTS, id=run_id)["logsForRun"]
    except (requests.RequestException, AssertionError, KeyError) as exc:
        return f"(its events could not be read: {exc!r})"
    if logs.get("__typename") == "PythonError":
        return f"(its events could not be read: {logs.get('message')})"
    found: list[str] = []
    for event in logs.get("events") or []:
        error = event.get("error") or {}
        texts = []
        if event.get("level") in ("ERROR", "CRITICAL") or error:
            texts.append(event.get("message") or "")
        if error:
            texts.append(error.get("message") or "")
            texts += [c.get("message") or "" for c in error.get("causes") or []]
        for text in texts:
            text = one_line(text)
            if text and text not in found:
                found.append(text)
    return " | ".join(found) or "(no error event)"


def one_line(text: str, limit: int = 2000) -> str:
    """Whitespace (newlines too) collapsed; at most `limit` characters."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: BaseException) -> str:
    """One line for the JSON and the table: the exception's type and message. A failed run's
    BenchError already carries the run's error message (launch_to_success)."""
    if isinstance(error, subprocess.TimeoutExpired):
        return one_line(f"timed out after {error.timeout:g} s: {_argv(error.cmd)}")
    if isinstance(error, subprocess.CalledProcessError):
        output = (error.stdout or "") + (error.stderr or "")
        return one_line(f"{_argv(error.cmd)} failed ({error.returncode}): {output[-1500:]}")
    message = str(error) or repr(error)
    return one_line(message if isinstance(error, BenchError) else f"{type(error).__name__}: {message}")


def _argv(cmd) -> str:
    return " ".join(map(str, cmd)) if isinstance(cmd, list | tuple) else str(cmd)


def failed_entry(error: BaseException, step: str, figures: dict | None = None) -> dict:
    """A layout's JSON entry after a failure: what it measured before, then failed/error/step,
    and the end of the traceback (where in the benchmark it happened)."""
    trace = "".join(traceback.format_exception(error)).strip().splitlines()
    return {
        **(figures or {}),
        "failed": True,
        "error": describe(error),
        "step": step,
        "traceback_tail": trace[-6:],
    }


def broken_layouts() -> set[str]:
    return {n.strip() for n in os.environ.get(BREAK_VARIABLE, "").split(",") if n.strip()}


def break_code(code_file: Path) -> None:
    """Make the example asset raise: the layout's next run ends FAILURE (with this message)."""
    text = code_file.read_text()
    if ASSET_ANCHOR not in text:
        raise BenchError(f"{code_file}: no example asset to break ({ASSET_ANCHOR.strip()!r} not found)")
    code_file.write_text(
        text.replace(ASSET_ANCHOR, f"    raise RuntimeError({BROKEN_MESSAGE!r})\n{ASSET_ANCHOR}", 1)
    )
