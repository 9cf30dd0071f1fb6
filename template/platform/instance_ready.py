#!/usr/bin/env python3
"""Make the Dagster instance's storage ready, then run the command.

    instance_ready.py -- COMMAND [ARG...]

PostgreSQL storage (config/dagster.yaml): wait until the server accepts connections. The
whole stack starts at once (`make up`, a Quadlet pod, a reboot), and PostgreSQL may still be
starting, or creating its cluster on a first start; every Dagster process opens the instance as
it starts (a code server too) and would fail, or serve that error as its code's, until it is
restarted. Here they wait for it instead (a TCP connection every 0.2 s, no Dagster import: a
restarted server is usually there at once), and then start. A server that does not come
within WAIT_SECONDS is left to Dagster to report. On a new database, one process creates the
tables while the others wait (a PostgreSQL advisory lock; create_postgres_schema_once).

SQLite storage: create the databases once, one process at a time. The webserver, the daemon
and each code location start together on a new data volume, and each would create the
databases (run history, event log index, schedules) itself. Two processes doing that at once
can both record the schema version: the version table then has two rows, and every Dagster
process refuses the database from then on ("Version table 'alembic_version' has more than one
head present"), at every start, until the volume is deleted. So the first start is serialized
here: under an exclusive lock on the data volume, the first process creates the databases and
leaves a marker; the others wait for the lock, find the marker and go on. Later starts see the
marker and go on at once.

The command replaces this process (exec): nothing stays resident.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

MARKER = ".launchpad-instance-ready"
LOCK = ".launchpad-instance.lock"
WAIT_SECONDS = 300
# The PostgreSQL advisory lock the first start's table creation holds (any constant: "Laun").
ADVISORY_LOCK = 0x4C61756E


def storage_settings() -> dict:
    """The `storage` section of $DAGSTER_HOME/dagster.yaml ({} if there is none)."""
    import yaml  # PyYAML comes with Dagster

    config = Path(os.environ.get("DAGSTER_HOME", "/opt/dagster/home")) / "dagster.yaml"
    settings = yaml.safe_load(config.read_text()) if config.is_file() else None
    storage = (settings or {}).get("storage")
    return storage if isinstance(storage, dict) else {}


def sqlite_base_dir(storage: dict) -> Path | None:
    """The SQLite storage's base_dir, or None for other storage."""
    sqlite = storage.get("sqlite")
    if not isinstance(sqlite, dict) or not sqlite.get("base_dir"):
        return None
    return Path(str(sqlite["base_dir"]))


def setting(value: object) -> str | None:
    """A dagster.yaml value: a literal, or {env: NAME} read from the environment."""
    if isinstance(value, dict) and set(value) == {"env"}:
        return os.environ.get(str(value["env"])) or None
    return None if value is None else str(value)


def postgres_connection_args(storage: dict) -> dict | None:
    """psycopg2.connect's arguments for the PostgreSQL storage (None for other storage)."""
    postgres = storage.get("postgres")
    if not isinstance(postgres, dict):
        return None
    if postgres.get("postgres_url") is not None:
        url = setting(postgres["postgres_url"])
        return {"dsn": url} if url else None
    db = postgres.get("postgres_db")
    if not isinstance(db, dict):
        return None
    names = {"hostname": "host", "port": "port", "username": "user", "password": "password"}
    args = {key: setting(db.get(name)) for name, key in names.items()}
    args["dbname"] = setting(db.get("db_name"))
    params = db.get("params")
    if isinstance(params, dict):
        args.update({str(key): setting(value) for key, value in params.items()})
    return {key: value for key, value in args.items() if value is not None}


def postgres_address(storage: dict) -> tuple[str, int] | None:
    """(host, port) of the PostgreSQL storage, or None for other storage (or an address that
    cannot be read without Dagster: then there is nothing to wait for here)."""
    args = postgres_connection_args(storage)
    if not args:
        return None
    if "dsn" in args:
        url = urlsplit(args["dsn"])
        return (url.hostname, url.port or 5432) if url.hostname else None
    if not args.get("host"):
        return None
    try:
        return args["host"], int(args.get("port") or 5432)
    except ValueError:
        return None


def wait_for_postgres(host: str, port: int, timeout: float = WAIT_SECONDS) -> bool:
    """True once host:port accepts a TCP connection (the PostgreSQL image opens its TCP port
    only when the server is up, after a first start's initialisation), False after timeout."""
    deadline = time.monotonic() + timeout
    said = 0.0
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return True
        except OSError as error:  # refused, or the name is not resolvable yet
            now = time.monotonic()
            if now >= deadline:
                print(
                    f"instance_ready: PostgreSQL at {host}:{port} is still not reachable "
                    f"({error}); starting anyway",
                    file=sys.stderr,
                    flush=True,
                )
                return False
            if now - said >= 10:
                print(
                    f"instance_ready: waiting for PostgreSQL at {host}:{port} ({error})",
                    file=sys.stderr,
                    flush=True,
                )
                said = now
            time.sleep(0.2)


def create_databases() -> None:
    """Open the instance and each of its storages: Dagster creates what is missing."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        instance.get_runs(limit=1)  # run storage
        instance.all_instigator_state()  # schedule storage
        instance.event_log_storage.get_maximum_record_id()  # event log storage (its index)


def create_postgres_schema_once(args: dict) -> None:
    """On a new database, the tables are created by one process, the others wait for it: the
    webserver, the daemon and every code location start at once, and two Dagster processes
    creating the same tables at the same moment fail ("duplicate key value violates unique
    constraint pg_type_typname_nsp_index"), and that code location fails to load. A PostgreSQL
    advisory lock serializes the first start; once the tables exist (alembic_version, which
    Dagster writes with them), every process goes on at once. A connection that fails is left
    to Dagster to report."""
    try:
        import psycopg2  # dagster-postgres's driver, in every image with PostgreSQL storage
    except ImportError:  # (not an image of this project: nothing to serialize)
        return
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg2.connect(connect_timeout=10, **args)
            break
        except psycopg2.Error as error:
            # A first start opens the port before the server takes connections.
            if "the database system is" not in str(error) or time.monotonic() > deadline:
                return
            time.sleep(0.5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
            cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if not cursor.fetchone()[0]:
                create_databases()
            cursor.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))
    finally:
        connection.close()


def ensure_ready() -> None:
    """PostgreSQL: wait until it accepts connections, the tables created once. SQLite: the
    databases, created once."""
    storage = storage_settings()
    address = postgres_address(storage)
    if address and wait_for_postgres(*address):
        args = postgres_connection_args(storage)
        if args:
            create_postgres_schema_once(args)
    base = sqlite_base_dir(storage)
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
