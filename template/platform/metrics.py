#!/usr/bin/env python3
"""The Dagster instance's metrics in Prometheus' text format (the metrics service).

    metrics.py [--port 9464] [--webserver http://webserver:3000]
    metrics.py --check [--port 9464]   # the health check: exit 0 if the port accepts connections

Serves GET /metrics on --port. Every scrape reads the instance's storage (the
storage section of $DAGSTER_HOME/dagster.yaml: SQLite or PostgreSQL, as every Dagster process
here) and asks the webserver's GraphQL API for the code locations. Dagster itself is not
imported: the process stays small (its resident memory is process_resident_memory_bytes).

Bounded reads: no query of a scrape reads every run. Dagster's `runs` table has an index on
(status, update_timestamp, create_timestamp); each scrape reads
- the runs in progress (NOT_STARTED, QUEUED, STARTING, STARTED, CANCELING), by status: the
  queue, its oldest run, the gauges;
- the runs written since the last scrape (update_timestamp from LAG_SECONDS before it, every
  status named: one index range per status), for the finished-run counters and the launch
  latencies; what was already counted is remembered for LAG_SECONDS (a write that commits
  late is still seen once);
- the daemons' heartbeats (one row per daemon).
Only the first scrape counts the finished runs of the whole history, once, so that the
counters start from the instance's totals.

The metrics (docs: README.md, "Metrics and alerts"):
- dagster_runs_finished_total{job,status}: runs that ended SUCCESS, FAILURE or CANCELED (a
  job and status first counted after the first scrape shows 0 for one scrape, then its count);
- dagster_runs{job,status}: runs in progress now, by status;
- dagster_run_queue_length, dagster_run_queue_oldest_age_seconds: queued runs, the oldest's age;
- dagster_run_launch_latency_seconds: a histogram of each run's wait from its creation
  (queued) to its start, observed once per run seen starting while this process runs;
- dagster_daemon_heartbeat_age_seconds{daemon}: seconds since each daemon's last heartbeat;
- dagster_code_location_loaded{location}: 1 loaded, 0 failed to load (or loading);
  dagster_code_location_last_error_timestamp_seconds{location}: when it last failed to load;
- dagster_metrics_source_up{source}: 1 if this scrape could read the storage (source="storage")
  or the webserver (source="webserver"), else 0; the metrics of a source that could not be read
  are left out of the scrape, not reported as zero.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime

# instance_ready.py is beside this file (/opt/dagster/): Python finds it in the script's directory.
from instance_ready import postgres_connection_args, sqlite_base_dir, storage_settings
from prometheus_client import start_http_server
from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

IN_PROGRESS = ("NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
STATUSES = IN_PROGRESS + FINISHED
LAG_SECONDS = 60.0
# A scrape reads at most this many runs written since the last one; more wait for the next.
BATCH = 5000
LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus updatedTimestamp
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def epoch(value: object) -> float | None:
    """A storage timestamp as seconds since the epoch. Dagster writes UTC, without a zone
    (PostgreSQL returns a datetime, SQLite text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


class Storage:
    """The instance's run storage, read with plain SQL (sqlite3 or psycopg2)."""

    def __init__(self, storage: dict):
        self.base_dir = sqlite_base_dir(storage)
        self.postgres = postgres_connection_args(storage)
        if self.base_dir is None and self.postgres is None:
            raise SystemExit("metrics: dagster.yaml's storage is neither sqlite nor postgres")
        self.mark = "?" if self.base_dir is not None else "%s"

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        sql = sql.replace("%s", self.mark)
        if self.base_dir is not None:
            # Dagster's SQLite run storage (runs and daemon heartbeats): BASE_DIR/history/runs.db.
            path = self.base_dir / "history" / "runs.db"
            if not path.exists():  # no run and no heartbeat yet
                return []
            connection = sqlite3.connect(path, timeout=5)
            try:
                return connection.execute(sql, args).fetchall()
            finally:
                connection.close()
        import psycopg2  # dagster-postgres' driver

        connection = psycopg2.connect(connect_timeout=5, **self.postgres)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall()
        finally:
            connection.close()


def marks(values: tuple) -> str:
    return ", ".join(["%s"] * len(values))


class DagsterCollector(Collector):
    """Reads the storage and the webserver at each scrape (one at a time)."""

    def __init__(self, storage: Storage, webserver: str):
        self.storage, self.webserver = storage, webserver
        self.lock = threading.Lock()
        self.finished: dict[tuple[str, str], float] = {}  # (job, status): count
        # What the scrapes showed of each counter: a series that appears after the first
        # scrape shows 0 once, its count from the next scrape on, so that Prometheus' increase()
        # sees a job's first failure (a series that starts at 1 has no increase).
        self.shown: dict[tuple[str, str], float] = {}
        self.cursor: float | None = None  # the newest update_timestamp read (epoch)
        self.seen: dict[tuple[str, str], float] = {}  # (run_id, status): its update_timestamp
        self.started: set[str] = set()  # runs whose launch latency was observed, not finished
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.location_errors: dict[str, float] = {}

    def describe(self):
        """Nothing: without this method, registering the collector would call collect() once at
        the start, and that first read (the history's totals) would come before any run."""
        return []

    def collect(self):
        with self.lock:
            # One family per metric name: Prometheus refuses a second HELP or TYPE line.
            families = []
            up = GaugeMetricFamily(
                "dagster_metrics_source_up",
                "1 if this scrape could read the source, else 0",
                labels=["source"],
            )
            sources = {"storage": self.read_storage, "webserver": self.read_locations}
            for source, read in sources.items():
                try:
                    families += read()
                    up.add_metric([source], 1)
                except Exception as error:  # noqa: BLE001 - reported as the source being down
                    print(f"metrics: reading the {source} failed: {error}", file=sys.stderr)
                    up.add_metric([source], 0)
            yield from [*families, up]

    # ------------------------------------------------------------------ storage

    def read_storage(self) -> list:
        now = time.time()
        if self.cursor is None:
            self.first_read()
        else:
            self.read_changes()
        in_progress = self.storage.query(
            "SELECT pipeline_name, status, count(*) FROM runs"
            f" WHERE status IN ({marks(IN_PROGRESS)}) GROUP BY pipeline_name, status",
            IN_PROGRESS,
        )
        oldest = self.storage.query(
            "SELECT min(create_timestamp) FROM runs WHERE status = %s", ("QUEUED",)
        )
        beats = self.storage.query("SELECT daemon_type, timestamp FROM daemon_heartbeats")

        runs = GaugeMetricFamily("dagster_runs", "Runs in progress now", labels=["job", "status"])
        queued = 0
        for job, status, count in in_progress:
            runs.add_metric([job or "", status], count)
            queued += count if status == "QUEUED" else 0
        finished = CounterMetricFamily(
            "dagster_runs_finished", "Runs that ended, by job and status", labels=["job", "status"]
        )
        for key, count in sorted(self.finished.items()):
            self.shown[key] = count if key in self.shown else 0.0
            finished.add_metric(list(key), self.shown[key])
        length = GaugeMetricFamily("dagster_run_queue_length", "Runs waiting in the queue")
        length.add_metric([], queued)
        oldest_at = epoch(oldest[0][0]) if oldest else None
        age = GaugeMetricFamily(
            "dagster_run_queue_oldest_age_seconds", "Age of the oldest queued run (0: none)"
        )
        age.add_metric([], max(0.0, now - oldest_at) if oldest_at else 0.0)
        latency = HistogramMetricFamily(
            "dagster_run_launch_latency_seconds", "Seconds from a run's creation to its start"
        )
        cumulative, bucket_pairs = 0, []
        for bound, count in zip(LATENCY_BUCKETS, self.buckets, strict=True):
            cumulative += count
            bucket_pairs.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        latency.add_metric([], bucket_pairs, self.latency_sum)
        heartbeat = GaugeMetricFamily(
            "dagster_daemon_heartbeat_age_seconds",
            "Seconds since the daemon's last heartbeat",
            labels=["daemon"],
        )
        for daemon, at in beats:
            heartbeat.add_metric([daemon], max(0.0, now - (epoch(at) or now)))
        return [runs, finished, length, age, latency, heartbeat]

    def first_read(self) -> None:
        """The whole history's finished runs, once; the cursor at the newest write."""
        rows = self.storage.query(
            "SELECT pipeline_name, status, count(*) FROM runs"
            f" WHERE status IN ({marks(FINISHED)}) GROUP BY pipeline_name, status",
            FINISHED,
        )
        for job, status, count in rows:
            self.finished[(job or "", status)] = float(count)
        self.shown = dict(self.finished)  # the history: shown as it is
        newest = self.storage.query("SELECT max(update_timestamp) FROM runs")
        self.cursor = (epoch(newest[0][0]) if newest else None) or 0.0
        # What the next reads will see again (written within LAG_SECONDS of the newest write)
        # is counted already: marked seen, not counted twice.
        self.read_changes(count=False)
        # The runs in progress now: their launch latency, if they started, is not observed
        # (their start was before this process); when they end, they are counted.
        rows = self.storage.query(
            f"SELECT run_id FROM runs WHERE status IN ({marks(IN_PROGRESS)})"
            " AND start_time IS NOT NULL",
            IN_PROGRESS,
        )
        self.started = {run_id for (run_id,) in rows}

    def read_changes(self, count: bool = True) -> None:
        """The runs written since the last read (and LAG_SECONDS before it): each newly finished
        run counted, each newly started run's launch latency observed (unless `count` is
        False: then only marked seen)."""
        since = datetime.fromtimestamp(self.cursor - LAG_SECONDS, UTC).replace(tzinfo=None)
        rows = self.storage.query(
            "SELECT run_id, pipeline_name, status, create_timestamp, start_time, update_timestamp"
            f" FROM runs WHERE status IN ({marks(STATUSES)}) AND update_timestamp >= %s"
            f" ORDER BY update_timestamp LIMIT {BATCH}",
            (*STATUSES, since if self.storage.base_dir is None else since.isoformat(" ")),
        )
        for run_id, job, status, created, start_time, updated in rows:
            updated_at = epoch(updated) or 0.0
            self.cursor = max(self.cursor, updated_at)
            if (run_id, status) in self.seen:
                continue
            self.seen[(run_id, status)] = updated_at
            if not count:
                continue
            if start_time is not None and run_id not in self.started:
                self.observe(float(start_time) - (epoch(created) or float(start_time)))
                self.started.add(run_id)
            if status in FINISHED:
                key = (job or "", status)
                self.finished[key] = self.finished.get(key, 0.0) + 1
                self.started.discard(run_id)
        horizon = self.cursor - 2 * LAG_SECONDS
        self.seen = {key: at for key, at in self.seen.items() if at >= horizon}

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.latency_sum += seconds
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
                break

    # ------------------------------------------------------------------ code locations

    def read_locations(self) -> list:
        request = urllib.request.Request(
            f"{self.webserver}/graphql",
            data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.load(response)
        workspace = (answer.get("data") or {}).get("workspaceOrError") or {}
        if workspace.get("__typename") != "Workspace":
            raise RuntimeError(f"the webserver's workspace: {answer}")
        loaded = GaugeMetricFamily(
            "dagster_code_location_loaded",
            "1 if the code location is loaded, 0 if it failed to load or is loading",
            labels=["location"],
        )
        errors = GaugeMetricFamily(
            "dagster_code_location_last_error_timestamp_seconds",
            "When the code location last failed to load (seen by this process)",
            labels=["location"],
        )
        for entry in workspace["locationEntries"]:
            name = entry["name"]
            failed = (entry.get("locationOrLoadError") or {}).get("__typename") == "PythonError"
            ok = entry.get("loadStatus") == "LOADED" and not failed
            loaded.add_metric([name], 1 if ok else 0)
            if failed:
                self.location_errors[name] = float(entry.get("updatedTimestamp") or time.time())
            if name in self.location_errors:
                errors.add_metric([name], self.location_errors[name])
        return [loaded, errors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("METRICS_PORT", "9464")))
    parser.add_argument(
        "--webserver", default=os.environ.get("DAGSTER_WEBSERVER_URL", "http://webserver:3000")
    )
    parser.add_argument("--check", action="store_true", help="exit 0 if the port is served")
    args = parser.parse_args()
    if args.check:
        socket.create_connection(("127.0.0.1", args.port), timeout=4).close()
        return
    REGISTRY.register(DagsterCollector(Storage(storage_settings()), args.webserver.rstrip("/")))
    start_http_server(args.port)
    print(f"metrics: serving on port {args.port}, webserver {args.webserver}", flush=True)
    threading.Event().wait()  # the server's thread serves; this one waits until stopped


if __name__ == "__main__":
    main()
