"""Serve a code location, and fail the runs that a previous pipes container left behind.

    python3 -m launchpad_pipes.recover_runs -- dagster api grpc ...   (or dagster code-server start)
    python3 -m launchpad_pipes.recover_runs --check-serving [--port 4000]   (the HEALTHCHECK)
    python3 -m launchpad_pipes.recover_runs --run -- dagster api execute_run ARGS  (run containers)

The code location is DAGSTER_LOCATION_NAME (set by its image, as is DAGSTER_MODULE_NAME, which
the server's command reads too), or --location NAME.

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
volume) is created if it is missing. The image runs this module through the platform's
instance_ready.py (`instance_ready.py -- python3 -m launchpad_pipes.recover_runs -- ...`), which
makes the instance's storage ready first and then gives this process its place (exec).

--run is the entrypoint of each run's own container (the container run launcher,
container_kwargs in dagster.yaml): it starts the run's process and passes it SIGTERM and
SIGINT (a run terminated from the UI). When the kernel kills that process because the
container went past its memory ceiling (RUN_MEMORY_LIMIT in .env; the cgroup counts the
kill), the run would otherwise end as "container not found" once run monitoring looks: it is
marked failed at once, with a message that names the ceiling.

--check-serving asks the gRPC health service of the server on --port (what
`dagster api grpc-health-check` asks) with grpcio alone: about 0.1 s of CPU instead of a
Dagster import (1 to 2 s) every time the engine checks the container.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

LOST = (
    "The pipes container restarted while this run executed in it (it was killed, ran out "
    "of memory, or the host restarted); the run's process is gone."
)
OUT_OF_MEMORY = (
    "The run's container went past its memory ceiling ({limit}; RUN_MEMORY_LIMIT in .env): the "
    "kernel killed the run's process (out of memory). Give the run more memory, or use less."
)
# The container's memory cgroup: (its out-of-memory kill count's file, its ceiling's file), for
# cgroup v2 and v1.
CGROUPS = [
    (Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory.max")),
    (
        Path("/sys/fs/cgroup/memory/memory.oom_control"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ),
]
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


def out_of_memory_kills() -> tuple[int, str]:
    """(the number of processes the kernel killed in this container for want of memory, its
    memory ceiling as text), from the container's cgroup; (0, "") where it cannot be read."""
    for events, ceiling in CGROUPS:
        try:
            counts = dict(line.split() for line in events.read_text().splitlines() if " " in line)
        except (OSError, ValueError):
            continue
        try:
            limit = ceiling.read_text().strip()
            limit = f"{int(limit) // 2**20} MiB" if limit.isdigit() else limit
        except OSError:
            limit = "unknown"
        return int(counts.get("oom_kill", 0)), limit
    return 0, ""


def run_id_of(command: list[str]) -> str | None:
    """The run id in `dagster api execute_run ARGS` (ARGS: Dagster's serialized ExecuteRunArgs,
    which stores it as pipeline_run_id)."""
    for argument in command:
        if argument.startswith("{"):
            try:
                args = json.loads(argument)
                return args.get("pipeline_run_id") or args.get("run_id")
            except (ValueError, AttributeError):
                return None
    return None


def guard_run(command: list[str]) -> int:
    """Run the run's process; if the kernel killed it for want of memory, mark its run failed."""
    kills_before, _ = out_of_memory_kills()
    child = subprocess.Popen(command)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    kills, limit = out_of_memory_kills()
    run_id = run_id_of(command)
    if code != -signal.SIGKILL or kills <= kills_before or not run_id:
        return code
    from dagster import DagsterInstance, DagsterRunStatus

    message = OUT_OF_MEMORY.format(limit=limit)
    log(message)
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
            instance.report_run_failed(run, message)
    return code


def console_script(name: str):
    """The function behind an installed console script (`dagster`), to call in this process."""
    found = entry_points(group="console_scripts", name=name)
    if not found:
        raise SystemExit(f"recover_runs: {name!r} is not a console script of this environment")
    return next(iter(found)).load()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--location",
        default=os.environ.get("DAGSTER_LOCATION_NAME"),
        help="this code location's name (default: $DAGSTER_LOCATION_NAME)",
    )
    parser.add_argument("--port", type=int, default=4000, help="the code server's port")
    parser.add_argument(
        "--check-serving", action="store_true", help="exit 0 if the code server on --port serves"
    )
    parser.add_argument(
        "--run", action="store_true", help="run the run's command (after --) in this container"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's command")
    args = parser.parse_args()
    if args.check_serving:
        return 0 if serving(args.port) else 1
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.run:
        return guard_run(command) if command else parser.error("give the run's command after --")
    if not args.location or not command:
        parser.error("give --location NAME (or DAGSTER_LOCATION_NAME), then the server's command")

    # The location's own writable directory on the data volume (DAGSTER_LOCATION_DATA, set by
    # the image): made here, before any code of the location runs, so that the code and its
    # runs (here or in their own containers, which mount the same volume) find it.
    if data := os.environ.get("DAGSTER_LOCATION_DATA"):
        os.makedirs(data, exist_ok=True)

    server = console_script(command[0])
    booted = datetime.now(UTC)
    threading.Thread(target=watch, args=(args.location, args.port, booted), daemon=True).start()
    sys.argv = command
    return server()


if __name__ == "__main__":
    sys.exit(main())
