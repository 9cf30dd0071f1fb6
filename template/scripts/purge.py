#!/usr/bin/env python3
"""Delete finished runs older than N days (`make purge DAYS=N [DRY_RUN=1]`, the daily purge).

    purge.py --days N [--dry-run] --engine podman --container SLUG-daemon [--container ...]
    purge.py --inside --days N [--dry-run]        (in a container with the instance's config)
    purge.py --inside --daily N -- COMMAND...     (the daily purge beside COMMAND, the daemon)

A run is deleted when it is finished (SUCCESS, FAILURE or CANCELED) and was last updated (it
ended) more than N days ago: its record, its event log (Dagster's `DagsterInstance.delete_run`)
and its compute logs (the stdout/stderr files the compute log manager of config/dagster.yaml
captured, `delete_logs`). Runs that are queued, starting, running or canceling are never
touched, whatever their age. With --dry-run nothing is deleted: it prints what would be, the
runs, their events and the bytes of their event logs (as stored, serialized) and compute logs.
Runs are read and deleted in batches of BATCH, so a long history never sits in memory at once.

On the host (make) this checks DAYS, then runs itself in the first of the given containers
that is running (the daemon's: it has Dagster and the instance's storage settings; the kube
stack's daemon is another container), with its own text on the container's standard input.
Host part: standard library only; the rest imports Dagster, which the container has.

With run_retention_days > 0 the daemon's container starts with --daily (compose.yaml, the kube
YAML): a child process purges once a day while this process becomes the daemon's command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

BATCH = 500
# A generous ceiling: ten years (copier.yml's run_retention_days takes the same).
MAX_DAYS = 3650
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
DAY_SECONDS = 86400
# The daily purge's first, after the daemon's start.
FIRST_DELAY = 600


def parse_days(text: str | None) -> int:
    """DAYS as a whole number of days, or ValueError with the one line to print."""
    if text is None or not str(text).strip():
        raise ValueError("DAYS is missing: make purge DAYS=N (finished runs older than N days)")
    text = str(text).strip()
    if not text.lstrip("+").isdigit():
        raise ValueError(f"DAYS must be a whole number of days, 0 or more (got '{text[:20]}')")
    days = int(text)
    if days > MAX_DAYS:
        raise ValueError(f"DAYS must be at most {MAX_DAYS} (got {days})")
    return days


def cutoff(days: int, now: float) -> datetime.datetime:
    """The instant before which a finished run's last update makes it old enough."""
    return datetime.datetime.fromtimestamp(now - days * DAY_SECONDS, tz=datetime.UTC)


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# ------------------------------------------------------------------ inside the container
def old_runs(instance, before: datetime.datetime, cursor: str | None):
    """One batch of finished runs last updated before `before` (newest first)."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus(status) for status in FINISHED]
    return instance.get_run_records(
        filters=RunsFilter(statuses=statuses, updated_before=before), limit=BATCH, cursor=cursor
    )


def event_figures(instance, run_id: str) -> tuple[int, int]:
    """The run's events and their bytes as stored (serialized), read a page at a time."""
    from dagster._serdes import serialize_value

    count = size = 0
    cursor = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        for record in page.records:
            count += 1
            size += len(serialize_value(record.event_log_entry).encode())
        if not page.has_more:
            return count, size
        cursor = page.cursor


def compute_log_files(manager, run_id: str) -> list[str]:
    """The files of the run's captured stdout/stderr that exist (local compute logs only)."""
    from dagster._core.storage.compute_log_manager import ComputeIOType

    keys: list[list[str]] = []
    for io_type in (ComputeIOType.STDOUT, ComputeIOType.STDERR):
        try:
            keys += manager.get_log_keys_for_log_key_prefix([run_id, "compute_logs"], io_type)
        except (FileNotFoundError, NotImplementedError):
            pass
    files = set()
    for key in keys:
        metadata = manager.get_log_metadata(key)
        for path in (metadata.stdout_location, metadata.stderr_location):
            if path and os.path.isfile(path):
                files.add(path)
    return sorted(files)


def purge(instance, days: int, dry_run: bool, now: float | None = None, out=None) -> dict:
    """Delete (or with dry_run count) the finished runs older than `days`; the figures."""
    out = out or (lambda line: print(line, flush=True))
    before = cutoff(days, time.time() if now is None else now)
    manager = instance.compute_log_manager
    totals = {"runs": 0, "events": 0, "event_bytes": 0, "log_files": 0, "log_bytes": 0}
    cursor = None
    verb = "would delete" if dry_run else "deleted"
    dry = "dry run: " if dry_run else ""
    out(f"{dry}finished runs last updated before {before:%Y-%m-%d %H:%M} UTC")
    while True:
        batch = old_runs(instance, before, cursor)
        if not batch:
            break
        for record in batch:
            run_id = record.dagster_run.run_id
            events, event_bytes = event_figures(instance, run_id)
            files = compute_log_files(manager, run_id)
            totals["runs"] += 1
            totals["events"] += events
            totals["event_bytes"] += event_bytes
            totals["log_files"] += len(files)
            totals["log_bytes"] += sum(os.path.getsize(path) for path in files)
            if not dry_run:
                instance.delete_run(run_id)
                manager.delete_logs(prefix=[run_id])
        out(f"  {verb} {totals['runs']} runs so far")
        # A dry run deletes nothing: page on. Else the deleted runs are gone: query again.
        cursor = batch[-1].dagster_run.run_id if dry_run else None
        if len(batch) < BATCH:
            break
    out(
        f"{verb} {totals['runs']} runs, {totals['events']} events"
        f" ({human(totals['event_bytes'])} of event logs as stored),"
        f" {totals['log_files']} compute log files ({human(totals['log_bytes'])})"
    )
    return totals


def daily(days: int, command: list[str]) -> int:
    """The daily purge: a child process purges once a day (each time in a new interpreter, so
    that Dagster's memory is given back between purges) while this process becomes `command`
    (the daemon's), keeping its process id and its signals."""
    if not command:
        print("error: --daily needs the command to run after '--'", file=sys.stderr)
        return 2
    if os.fork() == 0:
        try:
            loop(days)
        finally:
            os._exit(1)
    os.execvp(command[0], command)
    return 1  # not reached


def loop(days: int) -> None:
    """Forever: the purge, FIRST_DELAY after the start (not during it: the daemon is busy
    starting), then once a day. A daemon restarted more often than daily still purges; a purge
    that finds nothing old costs one query. A failure is said and tried again the next day."""
    print(f"the daily purge deletes finished runs older than {days} days", flush=True)
    delay = FIRST_DELAY
    while True:
        time.sleep(delay)
        delay = DAY_SECONDS
        done = subprocess.run([sys.executable, __file__, "--inside", "--days", str(days)])
        if done.returncode:
            print(f"error: the daily purge failed (exit {done.returncode})", flush=True)


def inside(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        purge(instance, args.days, args.dry_run)
    return 0


# ---------------------------------------------------------------------------- on the host
def running(engine: str, container: str) -> bool:
    done = subprocess.run([engine, "container", "inspect", container], capture_output=True)
    if done.returncode:
        return False
    found = json.loads(done.stdout or "[]")
    return bool(found) and bool(found[0].get("State", {}).get("Running"))


def command(engine: str, container: str, days: int, dry_run: bool) -> list[str]:
    """The command that runs this script inside `container`, reading it from standard input."""
    return [
        engine, "exec", "-i", container, "python3", "-", "--inside", "--days", str(days),
        *(["--dry-run"] if dry_run else []),
    ]  # fmt: skip


def host(args: argparse.Namespace) -> int:
    try:
        days = parse_days(args.days)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    up = [container for container in args.container if running(args.engine, container)]
    if not up:
        print(
            f"error: the daemon is not running ({' '.join(args.container)}); start the stack"
            " first (make up)",
            file=sys.stderr,
        )
        return 1
    with open(__file__, "rb") as source:
        return subprocess.run(
            command(args.engine, up[0], days, args.dry_run), stdin=source
        ).returncode


def main(argv: list[str]) -> int:
    rest: list[str] = []
    if "--" in argv:
        argv, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days")
    # make passes DRY_RUN as it is given: empty or 0 is no dry run.
    parser.add_argument("--dry-run", nargs="?", const="1", default="")
    parser.add_argument("--inside", action="store_true")
    parser.add_argument("--daily", type=int)
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--container", action="append", default=[])
    args = parser.parse_args(argv)
    if args.dry_run not in ("", "0", "1"):
        print(f"error: DRY_RUN must be 1 or empty (got '{args.dry_run[:20]}')", file=sys.stderr)
        return 2
    args.dry_run = args.dry_run == "1"
    if args.inside and args.daily is not None:
        return daily(parse_days(str(args.daily)), rest)
    if args.inside:
        args.days = parse_days(args.days)
        return inside(args)
    return host(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
