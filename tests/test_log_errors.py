"""`make up`'s failure output (template/scripts/log_errors.py): the lines of a log that name an
error, a traceback's cause included, from both compose tools' output; no engine needed."""

from __future__ import annotations

import subprocess
import sys

from launchpad_dev.common import ROOT

SCRIPT = ROOT / "template" / "scripts" / "log_errors.py"
WRAPPED = (
    'sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not translate host name "postgres"'
)
CAUSE = 'psycopg2.OperationalError: could not translate host name "postgres" to address: Temporary failure'
FRAMES = [
    f'  File "/opt/venv/lib/python3.13/site-packages/sqlalchemy/pool/base.py", line {n}, in x'
    for n in range(60)
]
# The shape of the webserver's log when a start failed (docs/benchmarks.md, round 5): the cause
# first, then one long traceback whose last 30 lines say nothing of it.
LOG = [
    "WARNING:root:Retrying failed database connection",
    "Traceback (most recent call last):",
    *FRAMES[:20],
    CAUSE,
    "",
    "The above exception was the direct cause of the following exception:",
    "",
    "Traceback (most recent call last):",
    *FRAMES[20:],
    WRAPPED,
    "dagster_postgres.utils.DagsterPostgresException: too many retries for DB connection",
]


def filtered(lines: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT)], input="\n".join(lines) + "\n", capture_output=True, text=True
    )


def test_the_cause_of_a_long_traceback_is_printed_and_its_frames_are_not():
    assert CAUSE not in "\n".join(LOG[-30:]), "the sample must hide its cause from a 30-line tail"
    for prefix in ("\x1b[1;32m[webserver] |\x1b[0m ", "webserver-1  | ", ""):
        result = filtered([prefix + line for line in LOG])
        assert result.returncode == 0, result.stderr
        lines = [line.strip() for line in result.stdout.splitlines()]
        assert lines == [
            CAUSE,
            WRAPPED,
            "dagster_postgres.utils.DagsterPostgresException: too many retries for DB connection",
        ], (prefix, lines)


def test_repeats_are_counted_once_and_error_words_kept():
    fatal = '2026-12-06 FATAL:  password authentication failed for user "dagster"'
    result = filtered([fatal] * 5 + ["error: code location 'sales' failed to load:", "all is well"])
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"  {fatal}  (x5)",
        "  error: code location 'sales' failed to load:",
    ]


def test_a_log_without_errors_prints_nothing_and_says_so():
    result = filtered(["Serving dagster-webserver on http://0.0.0.0:3000 in process 1", "INFO all fine"])
    assert result.returncode == 1 and result.stdout == ""
