"""--soak and --burst: the default project's stack under a long load (issue 17), not in CI.

    .venv/bin/python benchmarks/run.py --soak [N]    # N runs one after another (default 500)
    .venv/bin/python benchmarks/run.py --burst [N]   # N queued runs at once (default 1,000)

Both render the default answers (image delivery) on the first usable engine, build them (the
build cache allowed: these modes measure the running stack, not the build), start the stack
with `make up` and drive it through Dagster's GraphQL API; the stack is removed afterwards.

- soak: N runs of example_job, one after another; after every N/100-th run (and before the
  first), 2 s of rest, then each container's resident memory
  (launchpad_dev.bench.container_rss_mib). Per service, the growth per 100 runs is the slope of
  a least-squares line through the samples after the warm-up (the first 10% of the runs).
  Dagster users report slow memory growth in webserver and daemon (dagster-io/dagster #18997,
  #21307, #32070).
- burst: the fault tier's slow_job (launchpad_dev/load.py: one op sleeping `seconds`) added to
  the code location, then N runs of it submitted at once, so the queue fills and
  max_concurrent_runs (config/dagster.yaml) is what holds them back. Reported: runs per
  minute, each container's peak memory (sampled every 2 s), and the most runs executing at
  once, from the runs' start and end times, which must equal the limit and never exceed it;
  whether every run reached SUCCESS and none was lost.

Errors and broken promises (a run that fails, a run lost, the limit exceeded or never reached)
make the mode exit 1; the JSON is written either way.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from launchpad_dev import bench
from launchpad_dev.bench_failures import failed_entry, one_line, run_failure
from launchpad_dev.common import snapshot_template
from launchpad_dev.load import SLOW_JOB, max_overlap

WARM_UP = 0.1  # the share of a soak's runs left out of the growth fit
SAMPLES = 100  # a soak samples memory about this many times
FINISHED = """query ($ids: [String!]) { runsOrError(filter: {runIds: $ids,
  statuses: [SUCCESS, FAILURE, CANCELED]}) { ... on Runs { count } } }"""


def main(mode: str, count: int, engines: list, args, log) -> int:
    engine = engines[0]
    report: dict = {
        "mode": mode,
        "runs": count,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            f"{engine.name}_version": engine.run("--version").stdout.strip(),
        },
        "engine": engine.name,
    }
    track = bench.Track(mode, log)
    try:
        with tempfile.TemporaryDirectory(prefix="lpbench-") as tmp:
            work = Path(tmp)
            layout = bench.Launchpad(engine, work, snapshot_template(work / "template"))
            try:
                track.step("copy, build (cache allowed), up")
                layout.copy()
                if mode == "burst":
                    definitions = layout.root / "pipes" / layout.package / "src" / layout.package
                    definitions /= "definitions.py"
                    definitions.write_text(definitions.read_text() + SLOW_JOB)
                layout.build()
                layout.up()
                if mode == "soak":
                    soak(layout, count, track)
                else:
                    burst(layout, count, args.burst_seconds, track)
            finally:
                bench.remove_layout(layout, track)
        report[mode] = track.figures
    except KeyboardInterrupt:
        report[mode] = {**track.figures, "interrupted": True, "step": track.now}
    except Exception as exc:  # recorded in the JSON; the generated project failed
        report[mode] = failed_entry(exc, track.now, track.figures)
    finally:
        bench.write_report(report, args.json, log)
    print((soak_table if mode == "soak" else burst_table)(report[mode]), flush=True)
    if report[mode].get("interrupted"):
        return 130
    return 0 if report[mode].get("ok") else 1


def memory(layout) -> dict[str, float]:
    """Each container's resident memory (MiB): the Dagster services, and PostgreSQL when the
    project runs its own (storage: postgres, the default)."""
    return {
        service: bench.container_rss_mib(layout.engine, name) for service, name in containers(layout).items()
    }


def containers(layout) -> dict[str, str]:
    names = layout.containers()
    postgres = layout.container("postgres")
    if layout.engine.run("container", "inspect", postgres).returncode == 0:
        names["postgres"] = postgres
    return names


def process_counts(layout) -> dict[str, int]:
    return {s: len(bench.container_processes(layout.engine, n)) for s, n in containers(layout).items()}


def baseline_counts(layout, seconds: float = 5) -> dict[str, int]:
    """Each container's fewest processes over `seconds`, after the first run. Not before it:
    the first run leaves a process in the code server for good (multiprocessing's resource
    tracker, which Python starts with the first spawned process), and with counts from before
    the first run every sample of the 500-run soak waited 20 s in vain."""
    fewest: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for service, count in process_counts(layout).items():
            fewest[service] = min(count, fewest.get(service, count))
        time.sleep(0.5)
    return fewest


def settled_memory(layout, idle: dict[str, int], timeout: float = 20) -> tuple[dict[str, float], bool]:
    """memory() once no container has more processes than at idle (`idle`: baseline_counts
    after the first run), so that a run's process that outlives its SUCCESS by a moment is
    not counted as the code server's growth; (memory, settled). After `timeout` s the sample
    is taken anyway, and counted as unsettled."""
    deadline = time.monotonic() + timeout
    while True:
        counts = process_counts(layout)
        settled = all(counts.get(s, 0) <= n for s, n in idle.items())
        if settled or time.monotonic() > deadline:
            return memory(layout), settled
        time.sleep(0.5)


def started_at(layout) -> dict[str, str]:
    """Each Dagster service's container start time: a restart during the load shows here."""
    return {
        service: layout.engine.run("inspect", "--format", "{{.State.StartedAt}}", name).stdout.strip()
        for service, name in layout.containers().items()
    }


def growth_per_100_runs(samples: list[dict], warm_up: int) -> dict[str, float]:
    """Per service: the slope (MiB per 100 runs) of the least-squares line through the samples
    taken after `warm_up` runs (None when fewer than two samples remain)."""
    kept = [s for s in samples if s["run"] > warm_up]
    services = samples[0]["rss_mib"] if samples else {}
    out = {}
    for service in services:
        if len(kept) < 2:
            out[service] = None
            continue
        slope, _ = statistics.linear_regression(
            [s["run"] for s in kept], [s["rss_mib"][service] for s in kept]
        )
        out[service] = round(slope * 100, 2)
    return out


def soak(layout, runs: int, track) -> None:
    figures, stack = track.figures, layout.stack
    every = max(1, runs // SAMPLES)
    warm_up = int(runs * WARM_UP)
    before = started_at(layout)
    time.sleep(2)
    idle: dict[str, int] = {}  # the process counts to settle to, taken after the first run
    samples = [{"run": 0, "rss_mib": memory(layout)}]
    figures.update(soak_rss_samples=samples, soak_sample_every_runs=every, soak_warm_up_runs=warm_up)
    figures["soak_unsettled_samples"] = 0
    times: list[float] = []
    began = time.monotonic()
    for i in range(1, runs + 1):
        track.step(f"run {i} of {runs}", say=i % max(1, runs // 10) == 0)
        times.append(round(bench.launch_to_success(stack), 2))
        if i == 1:
            idle = baseline_counts(layout)
        if i % every == 0 or i == runs:
            time.sleep(2)  # the daemon is between ticks
            rss, settled = settled_memory(layout, idle)
            samples.append({"run": i, "rss_mib": rss})
            figures["soak_unsettled_samples"] += not settled
    track.step("growth", say=False)
    tenth = max(1, runs // 10)
    figures["soak_s"] = round(time.monotonic() - began, 1)
    figures["soak_launch_to_success_s"] = {
        "median": round(statistics.median(times), 2),
        "first_10pct_median": round(statistics.median(times[:tenth]), 2),
        "last_10pct_median": round(statistics.median(times[-tenth:]), 2),
        "max": max(times),
    }
    figures["soak_rss_growth_mib_per_100_runs"] = growth_per_100_runs(samples, warm_up)
    figures["soak_rss_first_last_mib"] = {
        service: [samples[0]["rss_mib"][service], samples[-1]["rss_mib"][service]]
        for service in samples[0]["rss_mib"]
    }
    after = started_at(layout)
    figures["restarted"] = [s for s in before if after.get(s) != before[s]]
    figures["all_success"] = len(times) == runs
    figures["ok"] = figures["all_success"] and not figures["restarted"]


class PeakSampler(threading.Thread):
    """Each container's peak resident memory (MiB), sampled every 2 s until `done` is set."""

    def __init__(self, layout):
        super().__init__(daemon=True)
        self.layout, self.peaks, self.done = layout, {}, threading.Event()
        self.samples = 0

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for service, mib in memory(self.layout).items():
                    self.peaks[service] = max(self.peaks.get(service, 0.0), mib)
                self.samples += 1
            except Exception:  # a container between restarts: the next sample will do
                pass
            self.done.wait(2)


def wait_all(stack, run_ids: list[str], timeout: float, track) -> list[dict]:
    """Wait until every run has finished (or the timeout), then read them all. The waiting
    asks for a count only, every 10 s: reading 1,000 runs every 2 s kept the webserver busy."""
    deadline = time.monotonic() + timeout
    while True:
        finished = stack.gql(FINISHED, ids=run_ids)["runsOrError"]["count"]
        track.step(f"{finished} of {len(run_ids)} runs finished", say=False)
        if finished >= len(run_ids) or time.monotonic() > deadline:
            return stack.runs_by_id(run_ids)
        time.sleep(10)


def burst(layout, runs: int, seconds: float, track) -> None:
    figures, stack = track.figures, layout.stack
    config = yaml.safe_load((layout.root / "config/dagster.yaml").read_text())
    limit = config["concurrency"]["runs"]["max_concurrent_runs"]
    work = {"ops": {"nap": {"config": {"seconds": int(seconds)}}}}
    figures.update(burst_runs=runs, burst_run_seconds=int(seconds), max_concurrent_runs=limit)
    sampler = PeakSampler(layout)
    sampler.start()
    began = time.time()
    try:
        track.step(f"submit {runs} runs of slow_job ({int(seconds)} s each)")
        run_ids = [stack.launch("slow_job", run_config=work) for _ in range(runs)]
        figures["burst_submit_s"] = round(time.time() - began, 1)
        track.step("wait for every run to finish")
        results = wait_all(stack, run_ids, timeout=300 + runs * (seconds + 20), track=track)
    finally:
        sampler.done.set()
        sampler.join(timeout=60)
    statuses = {r["runId"]: r["status"] for r in results}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    figures["burst_statuses"] = counts
    figures["burst_lost"] = len(set(run_ids) - set(statuses))
    figures["all_success"] = counts.get("SUCCESS", 0) == runs
    failed = [r for r, s in statuses.items() if s in ("FAILURE", "CANCELED")]
    if failed:
        figures["burst_first_failure"] = one_line(f"run {failed[0]}: {run_failure(stack, failed[0])}")
    intervals = [(r["startTime"], r["endTime"]) for r in results if r.get("startTime") and r.get("endTime")]
    overlap = max_overlap(intervals) if intervals else 0
    figures["burst_max_overlap"] = overlap
    figures["burst_limit_held"] = overlap <= limit
    figures["burst_limit_reached"] = overlap == limit
    if intervals:
        elapsed = max(end for _, end in intervals) - began
        figures["burst_s"] = round(elapsed, 1)
        figures["burst_runs_per_min"] = round(len(intervals) / elapsed * 60, 1)
    figures["burst_peak_rss_mib"] = sampler.peaks
    figures["burst_memory_samples"] = sampler.samples
    # The limit must be reached (the queue really held runs back) unless there were fewer runs.
    reached = figures["burst_limit_reached"] or runs < limit
    figures["ok"] = (
        figures["all_success"] and not figures["burst_lost"] and figures["burst_limit_held"] and reached
    )


def _failed_line(figures: dict) -> list[str]:
    if not figures.get("failed"):
        return []
    return [f"  FAILED at '{figures['step']}': {figures['error'][:600]}"]


def soak_table(figures: dict) -> str:
    lines = ["== soak =="]
    growth = figures.get("soak_rss_growth_mib_per_100_runs", {})
    first_last = figures.get("soak_rss_first_last_mib", {})
    if growth:
        width = max(len(s) for s in growth) + 2
        lines.append(f"{'service':{width}}{'first MiB':>10}{'last MiB':>10}{'MiB/100 runs':>14}")
        for service, slope in growth.items():
            first, last = first_last.get(service, ["-", "-"])
            lines.append(f"{service:{width}}{first:>10}{last:>10}{'-' if slope is None else slope:>14}")
        launch = figures["soak_launch_to_success_s"]
        samples = figures["soak_rss_samples"]
        lines.append(
            f"{samples[-1]['run']} runs in {figures['soak_s']} s; "
            f"launch -> SUCCESS median {launch['median']} s "
            f"(first 10% {launch['first_10pct_median']} s, "
            f"last 10% {launch['last_10pct_median']} s, "
            f"max {launch['max']} s); growth fitted after {figures['soak_warm_up_runs']} runs of warm-up, "
            f"{len(samples)} samples; restarted: {', '.join(figures['restarted']) or 'none'}"
        )
    return "\n".join(lines + _failed_line(figures))


def burst_table(figures: dict) -> str:
    lines = ["== burst =="]
    if "burst_max_overlap" in figures:
        peaks = ", ".join(f"{s} {m:g}" for s, m in figures["burst_peak_rss_mib"].items())
        lines += [
            f"{figures['burst_runs']} runs of {figures['burst_run_seconds']} s: "
            f"{', '.join(f'{s} {n}' for s, n in figures['burst_statuses'].items())}, "
            f"{figures['burst_lost']} lost; submitted in {figures['burst_submit_s']} s, all finished in "
            f"{figures.get('burst_s', '-')} s ({figures.get('burst_runs_per_min', '-')} runs/min)",
            f"most runs at once: {figures['burst_max_overlap']} "
            f"(max_concurrent_runs {figures['max_concurrent_runs']}: "
            f"{'held' if figures['burst_limit_held'] else 'EXCEEDED'}, "
            f"{'reached' if figures['burst_limit_reached'] else 'NOT reached'})",
            f"peak RSS MiB: {peaks}",
        ]
        if "burst_first_failure" in figures:
            lines.append(f"  first failed run: {figures['burst_first_failure'][:600]}")
    return "\n".join(lines + _failed_line(figures))
