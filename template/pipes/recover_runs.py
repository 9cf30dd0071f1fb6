#!/usr/bin/env python3
"""Serve a code location, and fail the runs that a previous pipes container left behind.

    recover_runs.py --location NAME -- dagster api grpc ...      (or dagster code-server start ...)
    recover_runs.py --check-serving [--port 4000]                 (the image's HEALTHCHECK)

With the code-server run launcher (DefaultRunLauncher in dagster.yaml) every run executes
as a child process of this container's code server. When the container dies (out of
memory, killed, host reboot) its runs die with it, and Dagster's run monitoring cannot see
that for this launcher: they would stay STARTED for ever. So once the new code server
serves (and the daemon can reach this location again, to retry them), every run of this
location still in progress that last changed before this container started is certainly
dead: it is marked failed, and a run retry policy (dagster/max_retries) runs it again.
With the container run launcher nothing is marked: runs outlive this container.

One process: the server's command (a console script of the image, `dagster`) runs in this
interpreter, in place of this script, and the check runs in a thread beside it, once the
server answers. So the container holds one Python process with one copy of Dagster, and
SIGTERM reaches the server directly (Dagster's CLI turns it into a clean shutdown).

Before the server starts, the location's state directory (DAGSTER_LOCATION_DATA, on the data
volume) is created if it is missing.

--check-serving asks the gRPC health service of the server on --port (what
`dagster api grpc-health-check` asks) with grpcio alone: about 0.1 s of CPU instead of a
Dagster import (1 to 2 s) every time the engine checks the container.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import entry_points

LOST = (
    "The pipes container restarted while this run executed in it (it was killed, ran out "
    "of memory, or the host restarted); the run's process is gone."
)
# After the server answers, give the webserver and daemon time to see it again (they
# watch the server), so that the daemon can launch the retries.
SETTLE_SECONDS = 10


def log(message: str) -> None:
    print(f"recover_runs: {message}", flush=True)


def serving(port: int, timeout: float = 5) -> bool:
    """True if the code server on port answers its gRPC health check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = health_pb2.HealthCheckRequest(service="DagsterApi")
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


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
        if serving(port):
            return True
        time.sleep(1)
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


def console_script(name: str):
    """The function behind an installed console script (`dagster`), to call in this process."""
    found = entry_points(group="console_scripts", name=name)
    if not found:
        raise SystemExit(f"recover_runs: {name!r} is not a console script of this environment")
    return next(iter(found)).load()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--location", help="this code location's name")
    parser.add_argument("--port", type=int, default=4000, help="the code server's port")
    parser.add_argument(
        "--check-serving", action="store_true", help="exit 0 if the code server on --port serves"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's command")
    args = parser.parse_args()
    if args.check_serving:
        return 0 if serving(args.port) else 1
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.location or not command:
        parser.error("give --location NAME, then the code server's command after --")

    # The location's own writable directory on the data volume (DAGSTER_LOCATION_DATA, set by
    # the image): made here, before any code of the location runs, so that the code and its
    # runs (here or in their own containers, which mount the same volume) find it.
    if data := os.environ.get("DAGSTER_LOCATION_DATA"):
        os.makedirs(data, exist_ok=True)

    # The storage first (instance_ready.py, beside this file): PostgreSQL accepting
    # connections, or SQLite's databases created by one process at a time.
    from instance_ready import ensure_ready

    ensure_ready()
    server = console_script(command[0])
    booted = datetime.now(UTC)
    threading.Thread(target=watch, args=(args.location, args.port, booted), daemon=True).start()
    sys.argv = command
    return server()


if __name__ == "__main__":
    sys.exit(main())
