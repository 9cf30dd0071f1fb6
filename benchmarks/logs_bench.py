"""The launchpad-logs layout of benchmarks/run.py (issue 33): what keeping the step logs in S3
costs a run, against keeping them on the stack's volume, and the run queue's tag limit under a
drain.

The default answers with run_tag_limits [{key: source, value: orders, limit: TAG_LIMIT}] (the
example job carries the tag source=orders) twice: compute_logs=volume (lp-logs-vol) and
compute_logs=s3 (lp-logs-s3) against moto's S3 server, started on this host for the layout
(launchpad_dev/step_logs.py: the containers reach it at the host's address; its settings in the
project's .env, as the tests write them). Both are built and started with `make up`, and are up
at once on the same engine, measured in turns so that the machine's load weighs on both alike:

1. launch -> SUCCESS of example_job, median of `launches` each (after one run each to warm the
   code servers): `volume_launch_to_success_s`, `s3_launch_to_success_s`, and their
   `s3_launch_overhead` (s3 / volume - 1). The bucket must then hold step logs of every run of
   the s3 stack (`s3_runs_with_logs`), or the figure would not be the cost of S3.
2. a drain per stack, the volume one first: DRAIN runs of example_job submitted at once (threads,
   as tests/test_upgrade.py does), the wall time from the first submission until all are SUCCESS
   (`volume_drain_20_s`, `s3_drain_20_s`), and the most runs started at once, from the runs'
   startTime and endTime (GraphQL, read when all have finished): `volume_max_started_at_once`,
   `s3_max_started_at_once`, and `max_started_at_once`, the larger. Above TAG_LIMIT the tag
   limit did not hold: the layout fails (after recording the figures). With them, the median
   span of a run from its start to its end (`volume_drain_run_median_s`, `s3_drain_run_median_s`):
   a run much shorter than the queue's pace between two launches seldom overlaps the next.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from launchpad_dev.bench import Launchpad, Track, launch_to_success, remove_layout, start_warm
from launchpad_dev.bench_failures import BenchError, run_failure
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import Engine, set_env
from launchpad_dev.step_logs import S3Server

TAG_LIMIT = 2
TAG = {"key": "source", "value": "orders"}  # example_job's tag
DRAIN = 20
SECRET_KEY = "bench-S3/secret+key="  # moto accepts any; characters a real secret key has
POLL = 0.5


class LogsLaunchpad(Launchpad):
    """The default answers with the tag limit and compute_logs; with s3, the store's settings in
    .env."""

    def __init__(self, engine: Engine, work: Path, template: Path, compute_logs: str, s3: S3Server | None):
        super().__init__(
            engine, work, template, name=f"lp-logs-{'vol' if compute_logs == 'volume' else 's3'}"
        )
        self.compute_logs, self.s3 = compute_logs, s3

    def answers(self) -> dict:
        return {
            **super().answers(),
            "compute_logs": self.compute_logs,
            "run_tag_limits": [{**TAG, "limit": TAG_LIMIT}],
        }

    def copy(self) -> None:
        super().copy()
        if self.s3 is not None:
            for key, value in self.s3.settings(secret_key=SECRET_KEY).items():
                set_env(self.root, key, value)


def max_at_once(runs: list[dict]) -> int:
    """The most runs between their startTime and endTime at one moment (an end before a start at
    the same instant: one run handing over to the next is not two at once)."""
    edges = sorted(
        [(r["startTime"], 1) for r in runs] + [(r["endTime"], -1) for r in runs], key=lambda e: (e[0], e[1])
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def drain(stack: Stack, count: int, timeout: float = 900) -> tuple[float, list[dict]]:
    """`count` runs of example_job submitted at once from 8 threads (a client each); seconds from
    the first submission until all are SUCCESS, and the runs (status, startTime, endTime)."""
    port = int(stack.url.rsplit(":", 1)[1])
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: Stack(port, stack.location).launch(), range(count)))
    while True:
        runs = stack.runs_by_id(ids)
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        if failed:
            first = failed[0]["runId"]
            raise BenchError(f"{len(failed)} of {count} runs ended {failed[0]['status']}: {first}: "
                             f"{run_failure(stack, first)}")  # fmt: skip
        if len(runs) == count and all(r["status"] == "SUCCESS" for r in runs):
            return time.monotonic() - began, runs
        if time.monotonic() - began > timeout:
            statuses = sorted(r["status"] for r in runs)
            raise BenchError(f"{count} runs not all SUCCESS within {timeout} s: {statuses}")
        time.sleep(POLL)


def runs_with_logs(s3: S3Server) -> set[str]:
    """The run ids under PREFIX/storage/RUN_ID/ in the bucket (every page of the listing)."""
    storage = f"{s3.prefix}/storage/"
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=storage)
    return {o["Key"][len(storage) :].split("/")[0] for page in pages for o in page.get("Contents", [])}


def measure_logs(engine: Engine, work: Path, template: Path, track: Track, launches: int) -> dict:
    figures, step = track.figures, track.step
    s3 = S3Server()
    layouts: dict[str, LogsLaunchpad] = {}
    try:
        step("start moto's S3 server on this host")
        s3.start()
        figures["s3_endpoint"] = s3.endpoint
        for key in ("volume", "s3"):
            layouts[key] = LogsLaunchpad(engine, work, template, key, s3 if key == "s3" else None)
        stacks = start_warm(layouts, step)

        step(f"{launches} launches -> SUCCESS each, in turns")
        figures["launches"] = launches
        times: dict[str, list[float]] = {key: [] for key in stacks}
        for _ in range(launches):
            for key, stack in stacks.items():
                times[key].append(launch_to_success(stack))
        for key in stacks:
            figures[f"{key}_launch_to_success_s"] = round(statistics.median(times[key]), 3)
            figures[f"{key}_launch_to_success_all_s"] = [round(t, 2) for t in times[key]]
        volume, logs = figures["volume_launch_to_success_s"], figures["s3_launch_to_success_s"]
        figures["s3_launch_overhead"] = round(logs / volume - 1, 3)
        stored = runs_with_logs(s3)
        figures["s3_runs_with_logs"] = len(stored)
        if len(stored) < launches + 1:
            raise BenchError(
                f"the bucket holds step logs of {len(stored)} runs, the s3 stack ran {launches + 1}"
            )

        for key, stack in stacks.items():
            step(f"{key}: {DRAIN} runs at once, tag limit {TAG_LIMIT}")
            took, runs = drain(stack, DRAIN)
            figures[f"{key}_drain_{DRAIN}_s"] = round(took, 1)
            figures[f"{key}_max_started_at_once"] = max_at_once(runs)
            spans = [r["endTime"] - r["startTime"] for r in runs]
            figures[f"{key}_drain_run_median_s"] = round(statistics.median(spans), 2)
        figures["tag_limit"] = TAG_LIMIT
        figures["max_started_at_once"] = max(figures[f"{key}_max_started_at_once"] for key in stacks)
        if figures["max_started_at_once"] > TAG_LIMIT:
            raise BenchError(
                f"{figures['max_started_at_once']} runs tagged source=orders started at once "
                f"(volume {figures['volume_max_started_at_once']}, s3 {figures['s3_max_started_at_once']}): "
                f"the tag limit is {TAG_LIMIT}"
            )
    finally:
        for layout in layouts.values():
            remove_layout(layout, track)
        s3.stop()
    return figures
