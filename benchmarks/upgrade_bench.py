"""The launchpad-upgrade layout of benchmarks/run.py (issue 32): `make upgrade` and `make purge`
on a history of runs, one stack per engine.

The default answers (bundled PostgreSQL), rendered at Dagster OLD from the template as a git
repository (copier update reads a commit), built and started with `make up`:

1. upgrade: HISTORY finished runs with their events written through the Dagster instance in the
   daemon's container (one Python process: each run added with `instance.add_run`, status
   SUCCESS, then its events, run start, engine events and run success, inserted in batches into
   the event log table, serialized as Dagster stores them), back-dated AGE_DAYS; REAL_RUNS real
   launches of example_job too. Then, as a user does it: commit, `copier update --data
   dagster_version=NEW --defaults`, commit, and `make upgrade` timed (`upgrade_wall_s`: it
   builds the new images first, then stops, backs up, migrates and starts). A thread polls the
   webserver's /server_info every POLL s meanwhile; the longest span in which it did not answer
   200 is `upgrade_downtime_s` (target DOWNTIME_TARGET s), beside the upgrade's own printed
   "downtime N s" (`upgrade_reported_downtime_s`: from stopping the daemon to the stack ready).
   The runs and events before and after must be equal, or the layout fails.
2. purge: PURGE_RUNS - HISTORY more back-dated runs (PURGE_RUNS in all), then `make purge
   DAYS=PURGE_DAYS DRY_RUN=1` (`purge_dry_run_s`; it must delete nothing) and `make purge
   DAYS=PURGE_DAYS` (`purge_s`; it must delete exactly the back-dated runs and keep the real
   ones). PostgreSQL's pg_database_size and the event log's rows before, after the purge, after
   a plain `VACUUM (ANALYZE)` (what autovacuum does: space reusable, the files rarely shorter)
   and after `VACUUM FULL` (the files rewritten: what the history really took).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import requests

from launchpad_dev.bench import Launchpad, Track, launch_to_success, remove_layout, seconds
from launchpad_dev.bench_failures import BenchError
from launchpad_dev.engines import Engine, buildable_answers, env_value
from launchpad_dev.upgrades import NEW, OLD, template_repository, update_to_new

HISTORY = 1_000
PURGE_RUNS = 10_000
AGE_DAYS = 30
PURGE_DAYS = 7
REAL_RUNS = 3
POLL = 0.2
DOWNTIME_TARGET = 30
JOB = "bench_history"
# Runs with their events, written inside the daemon's container: argv count, job name.
WRITE = """
import datetime, logging, sys, time, uuid
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import serialize_value

count, job = int(sys.argv[1]), sys.argv[2]
EVENTS = [
    (DagsterEventType.RUN_START, None, "Started execution of run."),
    (DagsterEventType.ENGINE_EVENT, EngineEventData(), "Launching run in a code server process."),
    (DagsterEventType.ENGINE_EVENT, EngineEventData(), "Executing steps in process."),
    (DagsterEventType.ENGINE_EVENT, EngineEventData(), "Finished steps in process."),
    (DagsterEventType.RUN_SUCCESS, None, "Finished execution of run."),
]
rows = []
def flush(storage):
    with storage.index_connection() as conn:
        conn.execute(SqlEventLogStorageTable.insert(), rows)
    rows.clear()
with DagsterInstance.get() as instance:
    storage = instance.event_log_storage
    now = time.time()
    for i in range(count):
        run_id = str(uuid.uuid4())
        instance.add_run(DagsterRun(job_name=job, run_id=run_id, status=DagsterRunStatus.SUCCESS,
                                    tags={"launchpad/bench": "history"}))
        for k, (kind, data, message) in enumerate(EVENTS):
            stamp = now + k * 0.5
            entry = EventLogEntry(error_info=None, level=logging.DEBUG, user_message=message,
                                  run_id=run_id, timestamp=stamp, job_name=job,
                                  dagster_event=DagsterEvent(event_type_value=kind.value, job_name=job,
                                                             event_specific_data=data, message=message))
            rows.append({"run_id": run_id, "event": serialize_value(entry),
                         "dagster_event_type": kind.value, "timestamp":
                         datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).replace(tzinfo=None)})
        if len(rows) >= 5000:
            flush(storage)
    if rows:
        flush(storage)
print(count, flush=True)
"""
# The written runs, back-dated (as tests/test_faults.py back-dates a run for the purge).
BACK_DATE = f"""
UPDATE runs SET create_timestamp = now() - interval '{AGE_DAYS} days',
  update_timestamp = now() - interval '{AGE_DAYS} days',
  start_time = extract(epoch FROM now() - interval '{AGE_DAYS} days'),
  end_time = extract(epoch FROM now() - interval '{AGE_DAYS} days') + 2
  WHERE pipeline_name = '{JOB}';
"""
DOWNTIME = re.compile(r"downtime (\d+) s")


class UpgradeLaunchpad(Launchpad):
    """The default answers rendered at Dagster OLD from a git repository of the template."""

    def __init__(self, engine: Engine, work: Path, template: Path):
        super().__init__(engine, work, template, name="lp-upgrade")

    def render(self) -> None:
        import copier

        answers = buildable_answers({**self.answers(), "dagster_version": OLD})
        copier.run_copy(
            str(self.template), self.root, data=answers, defaults=True, quiet=True, vcs_ref="HEAD"
        )

    def images(self) -> list[str]:
        latest = super().images()
        return [*latest, *(ref.replace(":latest", ":pre-upgrade") for ref in latest)]

    def sql(self, query: str) -> str:
        user, db = env_value(self.root, "DAGSTER_PG_USER"), env_value(self.root, "DAGSTER_PG_DB")
        command = [self.engine.name, "exec", "-i", self.container("postgres"), "psql", "-X", "-q", "-t", "-A",
                   "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db]  # fmt: skip
        done = subprocess.run(command, input=query, capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise BenchError(f"psql failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        return done.stdout.strip()

    def counts(self) -> dict:
        runs, history, events = self.sql(
            "SELECT count(*) FROM runs; "
            f"SELECT count(*) FROM runs WHERE pipeline_name = '{JOB}'; SELECT count(*) FROM event_logs;"
        ).split()
        return {"runs": int(runs), "history_runs": int(history), "event_rows": int(events)}

    def size(self) -> int:
        return int(self.sql("SELECT pg_database_size(current_database());"))

    def write_history(self, count: int) -> float:
        """`count` finished runs with events, back-dated; seconds taken."""
        began = time.monotonic()
        command = [self.engine.name, "exec", "-i", self.container("daemon"), "python3", "-", str(count), JOB]
        done = subprocess.run(command, input=WRITE, capture_output=True, text=True, timeout=1800)
        if done.returncode or done.stdout.split()[-1:] != [str(count)]:
            raise BenchError(f"writing {count} runs failed: {done.stdout[-1500:]}{done.stderr[-3000:]}")
        self.sql(BACK_DATE)
        return time.monotonic() - began

    def make_output(self, *targets: str, timeout: float = 1800) -> str:
        done = subprocess.run(["make", "-C", str(self.root), *targets], capture_output=True, text=True,
                              timeout=timeout, env=_env())  # fmt: skip
        output = done.stdout + done.stderr
        if done.returncode:
            raise BenchError(f"make {' '.join(targets)} failed ({done.returncode}): {output[-4000:]}")
        return output


def _env() -> dict:
    from launchpad_dev.engines import tool_env

    return tool_env()


class Unreachable:
    """Polls a URL every POLL s in a thread; the longest span in which it did not answer 200."""

    def __init__(self, url: str):
        self.url, self.longest, self.polls, self.failures = url, 0.0, 0, 0
        self.down_since: float | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                ok = requests.get(self.url, timeout=1).status_code == 200
            except requests.RequestException:
                ok = False
            now = time.monotonic()
            self.polls += 1
            if ok:
                if self.down_since is not None:
                    self.longest = max(self.longest, now - self.down_since)
                self.down_since = None
            else:
                self.failures += 1
                if self.down_since is None:
                    self.down_since = began
            self.stopping.wait(max(0.0, POLL - (time.monotonic() - began)))

    def __enter__(self) -> Unreachable:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
        if self.down_since is not None:  # still down at the end: counted to now
            self.longest = max(self.longest, time.monotonic() - self.down_since)


def measure_upgrade(engine: Engine, work: Path, template: Path, track: Track) -> dict:
    figures, step = track.figures, track.step
    layout = UpgradeLaunchpad(engine, work, template_repository(template, work / "template-git"))
    try:
        step(f"render at Dagster {OLD}, make build, make up")
        layout.copy()
        figures["old_build_s"] = round(seconds(layout.build), 1)
        layout.up()
        for _ in range(REAL_RUNS):
            launch_to_success(layout.stack)

        step(f"{HISTORY} runs of history written, back-dated {AGE_DAYS} days")
        figures["history_write_s"] = round(layout.write_history(HISTORY), 1)
        before = layout.counts()
        if before["history_runs"] != HISTORY:
            raise BenchError(f"{HISTORY} runs written, {before['history_runs']} found")
        figures["upgrade_runs_before"] = before["runs"]
        figures["upgrade_event_rows_before"] = before["event_rows"]

        step(f"copier update to Dagster {NEW}, committed")
        root = layout.root
        update_to_new(root)
        if f"dagster=={NEW}" not in (root / "platform/requirements.txt").read_text():
            raise BenchError(f"copier update did not bring dagster=={NEW}")

        step("make upgrade, timed, the UI polled")
        with Unreachable(f"{layout.stack.url}/server_info") as ui:
            began = time.monotonic()
            output = layout.make_output("upgrade")
            figures["upgrade_wall_s"] = round(time.monotonic() - began, 1)
            # Until the UI answers again (make upgrade returns once the stack is ready).
            deadline = time.monotonic() + 120
            while ui.down_since is not None and time.monotonic() < deadline:
                time.sleep(POLL)
        figures["upgrade_downtime_s"] = round(ui.longest, 1)
        figures["upgrade_ui_polls"] = ui.polls
        figures["upgrade_ui_failed_polls"] = ui.failures
        figures["upgrade_downtime_target_s"] = DOWNTIME_TARGET
        figures["upgrade_downtime_met"] = figures["upgrade_downtime_s"] <= DOWNTIME_TARGET
        if f"upgraded: Dagster {OLD} -> {NEW}" not in output:
            raise BenchError(f"make upgrade did not say it upgraded: {output[-3000:]}")
        said = DOWNTIME.search(output)
        figures["upgrade_reported_downtime_s"] = int(said.group(1)) if said else None
        layout.wait_loaded()
        after = layout.counts()
        figures["upgrade_runs_after"] = after["runs"]
        figures["upgrade_event_rows_after"] = after["event_rows"]
        if after != before:
            raise BenchError(f"the upgrade changed the history: {before} before, {after} after")
        launch_to_success(layout.stack)

        step(f"{PURGE_RUNS - HISTORY} more runs of history: {PURGE_RUNS} back-dated")
        figures["purge_history_write_s"] = round(layout.write_history(PURGE_RUNS - HISTORY), 1)
        before = layout.counts()
        if before["history_runs"] != PURGE_RUNS:
            raise BenchError(f"{PURGE_RUNS} runs of history expected, {before['history_runs']} found")
        figures["purge_runs_before"] = before["runs"]
        figures["purge_event_rows_before"] = before["event_rows"]
        figures["purge_db_bytes_before"] = layout.size()

        step(f"make purge DAYS={PURGE_DAYS} DRY_RUN=1")
        began = time.monotonic()
        dry = layout.make_output("purge", f"DAYS={PURGE_DAYS}", "DRY_RUN=1")
        figures["purge_dry_run_s"] = round(time.monotonic() - began, 1)
        if f"would delete {PURGE_RUNS} runs, " not in dry:
            raise BenchError(f"the dry run did not count {PURGE_RUNS} runs: {dry[-2000:]}")
        if layout.counts() != before:
            raise BenchError(f"the dry run deleted: {before} before, {layout.counts()} after")

        step(f"make purge DAYS={PURGE_DAYS}")
        began = time.monotonic()
        done = layout.make_output("purge", f"DAYS={PURGE_DAYS}")
        figures["purge_s"] = round(time.monotonic() - began, 1)
        said = [line.strip() for line in done.splitlines() if line.startswith("deleted ")]
        figures["purge_said"] = said[-1] if said else ""
        after = layout.counts()
        figures["purge_runs_after"] = after["runs"]
        figures["purge_event_rows_after"] = after["event_rows"]
        figures["purge_db_bytes_after"] = layout.size()
        if after["history_runs"] or after["runs"] != before["runs"] - PURGE_RUNS:
            raise BenchError(f"the purge left {after} of {before}: expected the {PURGE_RUNS} old runs gone")
        figures["purge_autovacuumed"] = layout.sql(
            "SELECT string_agg(relname, ',') FROM pg_stat_user_tables"
            " WHERE relname IN ('runs', 'event_logs', 'run_tags') AND last_autovacuum IS NOT NULL;"
        )
        step("VACUUM (ANALYZE), then VACUUM FULL")
        layout.sql("VACUUM (ANALYZE);")
        figures["purge_db_bytes_after_vacuum"] = layout.size()
        began = time.monotonic()
        layout.sql("VACUUM FULL;")
        figures["vacuum_full_s"] = round(time.monotonic() - began, 1)
        figures["purge_db_bytes_after_vacuum_full"] = layout.size()
    finally:
        remove_layout(layout, track)
    return figures
