"""What a scrape of the metrics service costs with a long history (issue 34):
`python benchmarks/metrics_bench.py [--runs 10000] [--scrapes 30]`.

A SQLite instance (the storage of storage=sqlite) filled through Dagster's run storage with
RUNS finished runs (SUCCESS and FAILURE, three jobs, each with its start and end) plus 20 runs
in progress (10 queued, 10 started) and a daemon heartbeat; then the template's
platform/metrics.py, run on this host as the images run it, is scraped over HTTP:

- `first_scrape_ms`: the first scrape, which counts the whole history's finished runs once;
- `scrape_median_ms`, `scrape_max_ms`: SCRAPES scrapes after it, 1 s apart, two new runs
  finished between each (what a busy instance writes between two scrapes of a Prometheus);
- `exporter_rss_mib`: the exporter's resident memory after them (its process_resident_memory_bytes);
- `counted_ok`: whether the last scrape's finished-run counters add up to what was written.

Target (issue 34): a scrape under 200 ms at 10,000 runs, the service under 60 MiB. Prints a
table, writes benchmarks/results-metrics.json. The PostgreSQL storage is not measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launchpad_dev import prom
from launchpad_dev.local_registry import free_port

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = ROOT / "template" / "platform" / "metrics.py"
RESULTS = ROOT / "benchmarks" / "results-metrics.json"


def fill(home: Path, runs: int) -> tuple[object, int]:
    """The instance in `home` with `runs` finished runs, 10 queued and 10 started; returns the
    instance and how many of the finished runs failed."""
    from dagster import DagsterEvent, DagsterEventType, DagsterInstance
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, make_new_run_id
    from dagster._daemon.types import DaemonHeartbeat

    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home / 'data'}\n")
    instance = DagsterInstance.from_config(str(home))
    storage = instance.run_storage
    origin = RemoteRepositoryOrigin(
        GrpcServerCodeLocationOrigin(host="pipes", port=4000, location_name="here"), "__repository__"
    )
    failed = 0
    for index in range(runs):
        job = f"job_{index % 3}"
        status = DagsterRunStatus.FAILURE if index % 20 == 0 else DagsterRunStatus.SUCCESS
        failed += status == DagsterRunStatus.FAILURE
        run = DagsterRun(job_name=job, run_id=make_new_run_id(), status=status)
        storage.add_run(run)
        for kind in (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS):
            storage.handle_run_event(run.run_id, DagsterEvent(kind.value, job_name=job))
        if status == DagsterRunStatus.FAILURE:
            storage.handle_run_event(
                run.run_id, DagsterEvent(DagsterEventType.RUN_FAILURE.value, job_name=job)
            )
    for index in range(20):
        job = f"job_{index % 3}"
        run = DagsterRun(
            job_name=job, run_id=make_new_run_id(), status=DagsterRunStatus.QUEUED,
            remote_job_origin=RemoteJobOrigin(origin, job),
        )  # fmt: skip
        storage.add_run(run)
        if index % 2:
            storage.handle_run_event(run.run_id, DagsterEvent(DagsterEventType.RUN_START.value, job_name=job))
    instance.add_daemon_heartbeat(
        DaemonHeartbeat(timestamp=time.time(), daemon_type="SCHEDULER", daemon_id="d", errors=[])
    )
    return instance, failed


def finish_two(instance) -> None:
    from dagster import DagsterEvent, DagsterEventType
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, make_new_run_id

    for _ in range(2):
        run = DagsterRun(job_name="job_new", run_id=make_new_run_id(), status=DagsterRunStatus.NOT_STARTED)
        instance.run_storage.add_run(run)
        for kind in (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS):
            instance.run_storage.handle_run_event(run.run_id, DagsterEvent(kind.value, job_name="job_new"))


def timed_scrape(url: str) -> tuple[float, prom.Samples]:
    started = time.perf_counter()
    samples = prom.scrape(url)
    return (time.perf_counter() - started) * 1000, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        home = Path(tmp)
        started = time.monotonic()
        instance, failed = fill(home, args.runs)
        print(f"filled {args.runs} runs in {time.monotonic() - started:.0f} s", flush=True)
        port = free_port()
        env = {"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"}
        command = [
            sys.executable,
            "-B",
            str(EXPORTER),
            "--port",
            str(port),
            "--webserver",
            "http://127.0.0.1:9",
        ]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                try:
                    first_ms, _ = timed_scrape(url)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            times = []
            for _ in range(args.scrapes):
                finish_two(instance)
                time.sleep(1)
                elapsed, samples = timed_scrape(url)
                times.append(elapsed)
        finally:
            process.terminate()
            process.wait(timeout=30)
        counted = prom.total(samples, "dagster_runs_finished_total")
        expected = args.runs + 2 * args.scrapes
        figures = {
            "runs": args.runs,
            "first_scrape_ms": round(first_ms, 1),
            "scrape_median_ms": round(statistics.median(times), 1),
            "scrape_max_ms": round(max(times), 1),
            "exporter_rss_mib": round(prom.value(samples, "process_resident_memory_bytes") / 2**20, 1),
            "failed_runs": failed,
            # The last scrape shows job_new's count (it showed 0 only on its first scrape).
            "counted_ok": counted == expected,
        }
        instance.dispose()
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:>20}  {value}")
    print(f"(written to {RESULTS.relative_to(ROOT)})")
    return 0 if figures["counted_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
