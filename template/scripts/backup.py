#!/usr/bin/env python3
"""Back up and restore the run history (`make backup`, `make restore`).

    backup.py backup --method pg_dump --engine podman --project SLUG --dir backups
    backup.py restore --method pg_dump --engine podman --compose podman-compose --project SLUG \
        --file backups/SLUG-20260101T020000Z.dump --confirm yes --service pipes-NAME...
    backup.py backup|restore --method server|volume ...     (explains, exits 1)

With the bundled PostgreSQL (method pg_dump): `backup` runs pg_dump inside the postgres
container (custom format, a consistent snapshot, also while runs write) into
DIR/SLUG-YYYYMMDDTHHMMSSZ.dump (UTC), readable by its owner only, written whole or not at all.
`restore` replaces the whole database with such a file (CONFIRM=yes): it stops the webserver,
the daemon and the code locations, starts PostgreSQL alone, restores in one transaction; make
then starts the stack (`make up`). The credentials are .env's (DAGSTER_PG_USER,
DAGSTER_PG_DB), which make exports. With an external PostgreSQL server (server) or SQLite
(volume) there is nothing for make to do: both commands explain how to do it. Standard
library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

import stack


def backup_name(project: str, when: datetime.datetime) -> str:
    """The file name of a backup of `project` taken at `when`."""
    return f"{project}-{when.astimezone(datetime.UTC):%Y%m%dT%H%M%SZ}.dump"


def explanation(method: str, engine: str, project: str, env: dict[str, str]) -> list[str]:
    """What to do instead, where make takes no backup (method server or volume)."""
    if method == "server":
        host, user, db = (env.get(f"DAGSTER_PG_{key}", "") for key in ("HOST", "USER", "DB"))
        return [
            f"Run history lives on your PostgreSQL server ({host}); back it up and restore it"
            " there, e.g.",
            f"  pg_dump --format=custom -h {host} -U {user} -d {db} > dagster.dump",
            f"  pg_restore --clean --if-exists -h {host} -U {user} -d {db} dagster.dump"
            "   (stack stopped)",
        ]
    image = env.get("BASE_IMAGE", "")
    return [
        "SQLite history is files on the dagster-data volume. Run 'make down', then copy the"
        " volume, e.g.",
        f'  {engine} run --rm -v {project}_dagster-data:/data:ro -v "$PWD":/out {image}'
        " tar -C /data -czf /out/dagster-data.tgz .",
        "Online backups (make backup / make restore) need storage=postgres; see docs/security.md.",
    ]


def credentials(env: dict[str, str]) -> list[str]:
    return ["-U", env.get("DAGSTER_PG_USER", ""), "-d", env.get("DAGSTER_PG_DB", "")]


def step(command: list[str], stdin: str | None = None, stdout=None) -> int:
    """Run `command` (printed first, as make prints a recipe line), reading the file `stdin`."""
    with open(stdin or os.devnull, "rb") as source:
        return subprocess.run(stack.shown(command), stdin=source, stdout=stdout).returncode


def backup(args: argparse.Namespace) -> int:
    container = f"{args.project}-postgres"
    login = credentials(os.environ)
    ready = subprocess.run([args.engine, "exec", container, "pg_isready", "-q", *login])
    if ready.returncode:
        print(
            "error: the postgres service is not running; start it with 'make up'", file=sys.stderr
        )
        return 1
    directory = Path(args.dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.umask(0o077)
    file = directory / backup_name(args.project, datetime.datetime.now(datetime.UTC))
    partial = file.with_name(file.name + ".partial")
    dump = [args.engine, "exec", "-i", container, "pg_dump", "--format=custom", *login]
    with partial.open("wb") as out:
        done = subprocess.run(dump, stdout=out)
    if done.returncode:
        partial.unlink(missing_ok=True)
        print("error: pg_dump failed; no backup written", file=sys.stderr)
        return 1
    partial.replace(file)
    print(f"backup written: {file} ({file.stat().st_size} bytes)")
    return 0


def restore(args: argparse.Namespace) -> int:
    file = args.file
    if not file or not Path(file).is_file():
        print(
            f"error: name an existing backup: make restore FILE={args.dir}/<file>.dump CONFIRM=yes",
            file=sys.stderr,
        )
        return 1
    if args.confirm != "yes":
        print(
            f"This replaces the whole database of {args.project} with {file}."
            f" Run: make restore FILE={file} CONFIRM=yes",
            file=sys.stderr,
        )
        return 1
    compose = shlex.split(args.compose)
    pg = [args.engine, "exec", "-i", f"{args.project}-postgres"]
    login = credentials(os.environ)
    restore_all = [
        *pg, "pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error",
        "--single-transaction", *login,
    ]  # fmt: skip
    steps = [
        # The file is a backup pg_restore can read, before anything stops.
        ([*pg, "pg_restore", "--list"], file, subprocess.DEVNULL),
        ([*compose, "stop", "webserver", "daemon", *args.service], None, None),
        ([*compose, "up", "-d", "postgres"], None, None),
    ]
    for command, stdin, stdout in steps:
        if done := step(command, stdin, stdout):
            return done
    ready = ["pg_isready", "-h", "127.0.0.1", *login]
    if not stack.wait_for(args.engine, f"{args.project}-postgres", ready, "postgres"):
        return 1
    if done := step(restore_all, file):
        return done
    print(f"restored {file}; starting the stack")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["backup", "restore"])
    parser.add_argument("--method", choices=["pg_dump", "server", "volume"], required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--compose", default="")
    parser.add_argument("--project", required=True)
    parser.add_argument("--dir", default="backups", help="BACKUP_DIR")
    parser.add_argument("--file", default="", help="FILE (restore)")
    parser.add_argument("--confirm", default="", help="CONFIRM (restore)")
    parser.add_argument("--service", action="append", default=[], help="a code location's")
    args = parser.parse_args(argv)
    if args.method != "pg_dump":
        for line in explanation(args.method, args.engine, args.project, dict(os.environ)):
            print(line, file=sys.stderr)
        return 1
    return backup(args) if args.action == "backup" else restore(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
