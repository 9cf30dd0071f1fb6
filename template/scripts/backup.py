#!/usr/bin/env python3
"""Back up and restore the run history (`make backup`, `make restore`).

    backup.py backup --method pg_dump --engine podman --project SLUG --dir backups
    backup.py restore --method pg_dump --engine podman --compose podman-compose --project SLUG \
        --file backups/SLUG-20260101T020000Z.dump --confirm yes --service pipes-NAME...
    backup.py backup|restore --method volume --engine podman --compose podman-compose \
        --project SLUG --image IMAGE --dir backups [--file F --confirm yes] --service NAME...
    backup.py backup|restore --method server ...     (explains, exits 1)

With the bundled PostgreSQL (method pg_dump): `backup` runs pg_dump inside the postgres
container (custom format, a consistent snapshot, also while runs write) into
DIR/SLUG-YYYYMMDDTHHMMSSZ.dump (UTC), readable by its owner only, written whole or not at all.
`restore` replaces the whole database with such a file (CONFIRM=yes): it stops the webserver,
the daemon and the code locations, starts PostgreSQL alone, restores in one transaction; make
then starts the stack (`make up`). The credentials are .env's (DAGSTER_PG_USER,
DAGSTER_PG_DB), which make exports.

With SQLite (method volume) the history is files on the data volume (SLUG_dagster-data: the
SQLite databases, compute logs, step outputs, the locations' state). `backup` stops the
Dagster services (--service, and the webserver and the daemon), so that no process writes,
copies the whole volume into DIR/SLUG-YYYYMMDDTHHMMSSZ.tgz (a tar stream from a one-off
container of --image, read-only, no network) and starts the stopped services again. `restore`
(CONFIRM=yes) checks the file, stops the services, empties the volume and unpacks the file
into it; make then starts the stack. With an external PostgreSQL server (server) there is
nothing for make to do: both commands explain how to do it with the server's tools. Standard
library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import stack

SUFFIXES = {"pg_dump": ".dump", "volume": ".tgz"}


def backup_name(project: str, when: datetime.datetime, suffix: str = ".dump") -> str:
    """The file name of a backup of `project` taken at `when`."""
    return f"{project}-{when.astimezone(datetime.UTC):%Y%m%dT%H%M%SZ}{suffix}"


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
    raise ValueError(f"make backs up method {method} itself")


def credentials(env: dict[str, str]) -> list[str]:
    return ["-U", env.get("DAGSTER_PG_USER", ""), "-d", env.get("DAGSTER_PG_DB", "")]


def step(command: list[str], stdin: str | None = None, stdout=None) -> int:
    """Run `command` (printed first, as make prints a recipe line), reading the file `stdin`."""
    with open(stdin or os.devnull, "rb") as source:
        return subprocess.run(stack.shown(command), stdin=source, stdout=stdout).returncode


def volume(project: str) -> str:
    """The data volume's name (compose names a volume PROJECT_VOLUME)."""
    return f"{project}_dagster-data"


def one_off(args: argparse.Namespace, *command: str, writable: bool = False) -> list[str]:
    """A one-off container of args.image with the data volume at /data, no network."""
    mount = f"{volume(args.project)}:/data{'' if writable else ':ro'}"
    return [args.engine, "run", "--rm", "-i", "--network=none", "-v", mount, args.image, *command]


def stopped(args: argparse.Namespace) -> list[str]:
    """The Dagster services (each writes the SQLite files), which a copy needs stopped."""
    return ["webserver", "daemon", *args.service]


def running(args: argparse.Namespace) -> list[str]:
    """The services of stopped(args) that run now."""
    names = []
    for service in stopped(args):
        found = subprocess.run(
            [args.engine, "container", "inspect", f"{args.project}-{service}"],
            capture_output=True, text=True,
        )  # fmt: skip
        states = json.loads(found.stdout or "[]") if found.returncode == 0 else []
        if states and states[0].get("State", {}).get("Running"):
            names.append(service)
    return names


def write_backup(directory: str, name: str, copy, failure: str) -> int:
    """DIR/NAME (mode 0600, DIR 0700) written by `copy(out)`, which returns its exit status,
    through NAME.partial, so that a failed copy leaves no file that looks whole."""
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.umask(0o077)
    file = folder / name
    partial = file.with_name(file.name + ".partial")
    with partial.open("wb") as out:
        done = copy(out)
    if done:
        partial.unlink(missing_ok=True)
        print(f"error: {failure} failed; no backup written", file=sys.stderr)
        return 1
    partial.replace(file)
    print(f"backup written: {file} ({file.stat().st_size} bytes)")
    return 0


def backup_volume(args: argparse.Namespace) -> int:
    """A copy of the whole data volume, taken with the Dagster services stopped."""
    name = backup_name(args.project, datetime.datetime.now(datetime.UTC), ".tgz")
    compose = shlex.split(args.compose)
    restart = [] if args.keep_stopped else running(args)
    if restart and (done := step([*compose, "stop", *restart])):
        return done
    tar = one_off(args, "tar", "-C", "/data", "-czf", "-", ".")

    def copy(out) -> int:
        return step(tar, stdout=out)

    try:
        return write_backup(args.dir, name, copy, "copying the data volume")
    finally:
        if restart:
            step([*compose, "start", *restart])


def readable(file: str, method: str) -> bool:
    """Whether `file` is a backup of `method` (a gzip tar for volume; pg_dump checks its own)."""
    if method != "volume":
        return True
    try:
        with tarfile.open(file, "r:gz") as archive:
            archive.getmembers()
    except (tarfile.TarError, OSError, EOFError):
        return False
    return True


def restore_volume(args: argparse.Namespace) -> int:
    compose = shlex.split(args.compose)
    if done := step([*compose, "stop", *stopped(args)]):
        return done
    unpack = "find /data -mindepth 1 -delete && tar -C /data -xzf -"
    if done := step(one_off(args, "sh", "-c", unpack, writable=True), args.file):
        print("error: unpacking the backup into the data volume failed", file=sys.stderr)
        return done
    print(f"restored {args.file}; starting the stack")
    return 0


def backup(args: argparse.Namespace) -> int:
    if args.method == "volume":
        return backup_volume(args)
    container = f"{args.project}-postgres"
    login = credentials(os.environ)
    ready = subprocess.run([args.engine, "exec", container, "pg_isready", "-q", *login])
    if ready.returncode:
        print(
            "error: the postgres service is not running; start it with 'make up'", file=sys.stderr
        )
        return 1
    name = backup_name(args.project, datetime.datetime.now(datetime.UTC))
    dump = [args.engine, "exec", "-i", container, "pg_dump", "--format=custom", *login]
    return write_backup(
        args.dir, name, lambda out: subprocess.run(dump, stdout=out).returncode, "pg_dump"
    )


def restore(args: argparse.Namespace) -> int:
    file = args.file
    suffix = SUFFIXES[args.method]
    if not file or not Path(file).is_file():
        print(
            f"error: name an existing backup: make restore FILE={args.dir}/<file>{suffix}"
            " CONFIRM=yes",
            file=sys.stderr,
        )
        return 1
    if args.confirm != "yes":
        what = "database" if args.method == "pg_dump" else "data volume"
        print(
            f"This replaces the whole {what} of {args.project} with {file}."
            f" Run: make restore FILE={file} CONFIRM=yes",
            file=sys.stderr,
        )
        return 1
    if not readable(file, args.method):
        print(f"error: {file} is no backup of the data volume (a .tgz)", file=sys.stderr)
        return 1
    if args.method == "volume":
        return restore_volume(args)
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
    parser.add_argument("--image", default="", help="an image with tar (volume)")
    parser.add_argument(
        "--keep-stopped", action="store_true", help="the services are stopped: start none (volume)"
    )
    args = parser.parse_args(argv)
    if args.method == "server":
        for line in explanation(args.method, args.engine, args.project, dict(os.environ)):
            print(line, file=sys.stderr)
        return 1
    return backup(args) if args.action == "backup" else restore(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
