#!/usr/bin/env python3
"""Create a SQLite instance's databases once, one process at a time, then run the command.

    instance_ready.py -- COMMAND [ARG...]

With SQLite storage (config/dagster.yaml), the webserver, the daemon and each code location
start together on a new data volume, and each would create the databases (run history, event
log index, schedules) itself. Two processes doing that at once can both record the schema
version: the version table then has two rows, and every Dagster process refuses the database
from then on ("Version table 'alembic_version' has more than one head present"), at every
start, until the volume is deleted. So the first start is serialized here: under an exclusive
lock on the data volume, the first process creates the databases and leaves a marker; the
others wait for the lock, find the marker and go on. Later starts see the marker and go on at
once (no Dagster import: a few milliseconds). Other storages (PostgreSQL) are untouched.

The command replaces this process (exec): nothing stays resident.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

MARKER = ".launchpad-instance-ready"
LOCK = ".launchpad-instance.lock"


def sqlite_base_dir() -> Path | None:
    """The SQLite storage's base_dir of $DAGSTER_HOME/dagster.yaml, or None for other storage."""
    import yaml  # PyYAML comes with Dagster

    config = Path(os.environ.get("DAGSTER_HOME", "/opt/dagster/home")) / "dagster.yaml"
    settings = yaml.safe_load(config.read_text()) if config.is_file() else None
    storage = (settings or {}).get("storage") or {}
    sqlite = storage.get("sqlite") if isinstance(storage, dict) else None
    if not isinstance(sqlite, dict) or not sqlite.get("base_dir"):
        return None
    return Path(str(sqlite["base_dir"]))


def create_databases() -> None:
    """Open the instance and each of its storages: Dagster creates what is missing."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        instance.get_runs(limit=1)  # run storage
        instance.all_instigator_state()  # schedule storage
        instance.event_log_storage.get_maximum_record_id()  # event log storage (its index)


def ensure_ready() -> None:
    base = sqlite_base_dir()
    if base is None or (base / MARKER).exists():
        return
    base.mkdir(parents=True, exist_ok=True)
    with open(base / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (base / MARKER).exists():
            create_databases()
            (base / MARKER).write_text("the SQLite databases were created by one process\n")


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: instance_ready.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    ensure_ready()
    os.execvp(command[0], command)
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
