#!/usr/bin/env python3
"""Start the code server, then fail the runs that a previous pipes container left behind.

With the code-server run launcher (DefaultRunLauncher in dagster.yaml) every run executes
as a child process of this container's code server. When the container dies (out of
memory, killed, host reboot) its runs die with it, and Dagster's run monitoring cannot see
that for this launcher: they would stay STARTED for ever. So once the new code server
serves (and the daemon can reach this location again, to retry them), every run of this
location still in progress that last changed before this container started is certainly
dead: it is marked failed, and a run retry policy (dagster/max_retries) runs it again.
With the container run launcher nothing is marked: runs outlive this container.

    recover_runs.py --location NAME -- dagster code-server start ...

The command runs as a child; SIGTERM and SIGINT are passed on to it, and its exit status
is this process's. The check runs in a second child (this script with --booted), which
imports Dagster and exits when done: this process, alive as long as the container, stays
small (about 13 MB instead of 115).
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

LOST = (
    "The pipes container restarted while this run executed in it (it was killed, ran out "
    "of memory, or the host restarted); the run's process is gone."
)
# After the server answers, give the webserver and daemon time to see it again (they
# watch the server), so that the daemon can launch the retries.
SETTLE_SECONDS = 10


def log(message: str) -> None:
    print(f"recover_runs: {message}", flush=True)


def wait_serving(port: int, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    # A port that accepts connections first (cheap), then the server's own health check.
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    while time.monotonic() < deadline:
        check = ["dagster", "api", "grpc-health-check", "--port", str(port)]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return True
        time.sleep(2)
    return False


def recover(location: str, booted: datetime) -> None:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    in_progress = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    with DagsterInstance.get() as instance:
        launcher = instance.get_ref().run_launcher_data
        if launcher is not None and launcher.class_name != "DefaultRunLauncher":
            return  # runs execute elsewhere (their own containers) and outlive this one
        for record in instance.get_run_records(RunsFilter(statuses=in_progress)):
            run, changed = record.dagster_run, record.update_timestamp
            origin = run.remote_job_origin
            if origin is None or origin.location_name != location:
                continue
            if changed.tzinfo is None:
                changed = changed.replace(tzinfo=UTC)
            if changed >= booted:
                continue  # started by this container's server: alive
            if run.status == DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, LOST)
            else:
                instance.report_run_failed(run, LOST)
            log(f"run {run.run_id} of {run.job_name} was {run.status.value}: marked lost")


def watch(location: str, port: int, booted: datetime) -> None:
    if not wait_serving(port):
        log("the code server did not start serving; no run marked")
        return
    time.sleep(SETTLE_SECONDS)
    for attempt in range(10):
        try:
            recover(location, booted)
            return
        except Exception as error:  # the database may still be starting: try again
            log(f"could not check for lost runs ({error}); retrying")
            time.sleep(min(60, 5 * (attempt + 1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--location", required=True, help="this code location's name")
    parser.add_argument("--port", type=int, default=4000, help="the code server's port")
    parser.add_argument("--booted", help=argparse.SUPPRESS)  # the checking child
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's command")
    args = parser.parse_args()
    if args.booted:
        watch(args.location, args.port, datetime.fromisoformat(args.booted))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the code server's command after --")

    # With SQLite storage, the databases are created by one process at a time (the webserver,
    # the daemon and every code location start together): instance_ready.py, beside this file.
    from instance_ready import ensure_ready

    ensure_ready()
    booted = datetime.now(UTC)
    server = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: server.send_signal(number))
    check = [sys.executable, __file__, "--location", args.location, "--port", str(args.port)]
    checker = subprocess.Popen([*check, "--booted", booted.isoformat()])
    threading.Thread(target=checker.wait, daemon=True).start()  # reaped when it is done
    status = server.wait()
    if checker.poll() is None:
        checker.kill()
    return status


if __name__ == "__main__":
    sys.exit(main())
