"""Upgrade tier: `make upgrade` from Dagster 1.12.22 to 1.13.27 keeps the history, per engine.

Per engine and storage (bundled PostgreSQL, SQLite), one project rendered at
dagster_version=1.12.22 (code in the image) and started with `make up`:

- at least RUNS runs with events: LAUNCHED of them launched together through GraphQL (the
  queue, the daemon, the run launcher), the others executed one after the other by one Python
  process in the code location's container (`execute_in_process` against the instance: the
  same storage, events and materializations, in seconds instead of the two minutes that a
  process per run took here); the schedule and the sensor of the example location switched
  on, the sensor's ticks recorded; two schedules the test adds to the location's code (every
  minute, on by default, each tick skipped: no run, so the runs stay those counted) tick;
- the project committed, `copier update --data dagster_version=1.13.27` (the template as the
  working tree has it, committed in a temporary repository), committed;
- PostgreSQL only: a migration made to fail (a trigger that refuses the write of Dagster's data
  migration, as a missing privilege would): `make upgrade` stops with a clear message and the
  restore command; that command brings back the stack on 1.12.22 with every run; the trigger
  is then removed;
- `make upgrade`: the webserver runs 1.13.27, the same runs (ids and statuses), the same
  materializations, the schedule and the sensor still on with their ticks, the minutely
  schedule's ticks kept and a new tick after the upgrade, a new run reaches SUCCESS; a second
  `make upgrade` says there is nothing to do and recreates no container;
- SQLite only: `make restore` of the data volume's copy that the upgrade took, with
  ROLLBACK=yes, brings back 1.12.22 with the runs as they were.

The kube stack (Podman, per storage): the same project started with `make kube-up`, KUBE_RUNS
runs, the same update, `make kube-upgrade`: the webserver runs 1.13.27 with the same runs
(ids and statuses), a new run reaches SUCCESS, a second `make kube-upgrade` says there is
nothing to do and recreates no container, and the rollback command that a failed migration
would print (`make kube-restore FILE=<the claims' copy> CONFIRM=yes ROLLBACK=yes`) brings back
1.12.22 with the runs as they were.
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import copier
import pytest
from test_kube import clear as clear_kube
from test_run import start_sensor

from launchpad_dev.common import computed, note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, env_value, make, remove_stack
from launchpad_dev.upgrades import NEW, OLD, template_repository, update_to_new

RUNS = 50
LAUNCHED = 5
PORTS = {("podman", "postgres"): 3231, ("docker", "postgres"): 3232, ("podman", "sqlite"): 3233,
         ("docker", "sqlite"): 3234}  # fmt: skip
KUBE_RUNS = 5
KUBE_PORTS = {"postgres": 3235, "sqlite": 3236}
# The failure the test injects: a refused write, as the database would refuse it to a user
# without the privilege (the bundled PostgreSQL's user is its superuser, whom no REVOKE stops;
# a trigger stops it). Dagster's data migration run_partitions writes its row in
# secondary_indexes when it is done; deleting the row makes `dagster instance migrate` run it.
REFUSE = """
CREATE FUNCTION launchpad_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'permission denied for table secondary_indexes (the test refuses it)';
END $$;
CREATE TRIGGER launchpad_test_refuse BEFORE INSERT ON secondary_indexes
  FOR EACH ROW EXECUTE FUNCTION launchpad_test_refuse();
DELETE FROM secondary_indexes WHERE name = 'run_partitions';
"""
# The sensor's state and its ticks, with their ids (the API's sensor_ticks has none).
SENSOR = """query ($loc: String!) { sensorOrError(sensorSelector: {repositoryLocationName: $loc,
  repositoryName: "__repository__", sensorName: "inbox_sensor"}) { ... on Sensor { sensorState {
  status ticks(limit: 1000) { tickId status } } } } }"""
SCHEDULE_TICKS = """query ($loc: String!, $name: String!) { scheduleOrError(scheduleSelector: {
  repositoryLocationName: $loc, repositoryName: "__repository__", scheduleName: $name}) {
  ... on Schedule { scheduleState { status ticks(limit: 1000) { tickId status timestamp } } } } }"""
MINUTELY_NAMES = ("minutely_check", "minutely_audit")
# The project's own schedules (user code, kept by copier update): every minute, on by default;
# each tick is skipped, so they launch no run and the runs stay those the test counts. Two, so
# that the schedules have several ticks within one minute.
SCHEDULE = """

@dg.schedule(
    name="{name}",
    job=example_job,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def {name}(context):
    return dg.SkipReason("the upgrade tier's schedule {name}: it ticks and launches nothing")
"""
MINUTELY = "".join(SCHEDULE.format(name=name) for name in MINUTELY_NAMES)
# Runs executed by one process in the code location's container, against the instance (its
# config and storage, as the code server's runs): job.execute_in_process, one after the other.
HISTORY = """
import dagster as dg
from {package}.definitions import defs
job = (getattr(defs, "resolve_job_def", None) or defs.get_job_def)("example_job")
instance = dg.DagsterInstance.get()
for _ in range({count}):
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    print(result.run_id, "SUCCESS" if result.success else "FAILURE", flush=True)
"""
ALLOW = """
DROP TRIGGER launchpad_test_refuse ON secondary_indexes;
DROP FUNCTION launchpad_test_refuse();
"""


def checked(root: Path, *targets: str, timeout: float = 1200) -> str:
    done = make(root, *targets, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"make {' '.join(targets)}:\n{output[-4000:]}"
    return output


class Project:
    def __init__(self, engine, root: Path, slug: str, port: int, kube: bool = False):
        self.engine, self.root, self.slug = engine, root, slug
        # kube play names a pod's container <pod>-<container>: SLUG-SERVICE-SERVICE.
        self.name = (lambda s: f"{slug}-{s}-{s}") if kube else (lambda s: f"{slug}-{s}")
        self.package = slug.replace("-", "_")
        self.stack = Stack(port, self.package)
        self.services = ["webserver", "daemon", *computed(root)["pipes_services"].values()]

    def dagster_version(self) -> str:
        out = self.engine.run("exec", self.name("webserver"), "dagster", "--version", check=True)
        return out.stdout.strip().split()[-1]

    def container_ids(self) -> dict[str, str]:
        return {
            s: self.engine.run("inspect", "--format", "{{.Id}}", self.name(s)).stdout.strip()
            for s in self.services
        }

    def wait_finished(self, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            runs = {r["runId"]: r["status"] for r in self.stack.runs_by_id(run_ids)}
            if len(runs) == len(run_ids) and all(
                s in ("SUCCESS", "FAILURE", "CANCELED") for s in runs.values()
            ):
                return runs
            assert time.monotonic() < deadline, f"runs unfinished: {runs}"
            time.sleep(2)

    def launch_many(self, count: int) -> dict[str, str]:
        url = self.stack.url
        port = int(url.rsplit(":", 1)[1])
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda _: Stack(port, self.package).launch(), range(count)))
        return self.wait_finished(ids)

    def psql(self, sql: str) -> str:
        user, db = env_value(self.root, "DAGSTER_PG_USER"), env_value(self.root, "DAGSTER_PG_DB")
        command = [self.engine.name, "exec", "-i", f"{self.slug}-postgres", "psql", "-v",
                   "ON_ERROR_STOP=1", "-U", user, "-d", db]  # fmt: skip
        done = subprocess.run(command, input=sql, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def statuses(self) -> dict[str, str]:
        """The status of every run, by its id."""
        return {r["runId"]: r["status"] for r in self.stack.runs_by_id(list(self.stack.run_ids()))}

    def history(self, asset: str) -> tuple[dict[str, str], int, set, str]:
        """(status of every run, the asset's materializations, the sensor's ticks (id and
        status), the sensor's status)."""
        runs = self.statuses()
        state = self.stack.gql(SENSOR, loc=self.package)["sensorOrError"]["sensorState"]
        ticks = {(tick["tickId"], tick["status"]) for tick in state["ticks"]}
        return runs, self.stack.materializations(asset), ticks, state["status"]

    def schedule_ticks(self, name: str) -> list[dict]:
        """A minutely schedule's ticks (id, status, timestamp in seconds); none while the
        webserver has not got the location."""
        found = self.stack.gql(SCHEDULE_TICKS, loc=self.package, name=name)["scheduleOrError"]
        return (found.get("scheduleState") or {}).get("ticks") or []

    def wait_schedule_ticks(self, after: float = 0, timeout: float = 150) -> list[dict]:
        """Until each minutely schedule has a tick at or after `after` (epoch seconds): the
        ticks of both."""
        deadline = time.monotonic() + timeout
        while True:
            ticks = {name: self.schedule_ticks(name) for name in MINUTELY_NAMES}
            if all(any(t["timestamp"] >= after for t in found) for found in ticks.values()):
                return [tick for found in ticks.values() for tick in found]
            assert time.monotonic() < deadline, f"the schedules did not tick after {after}: {ticks}"
            time.sleep(3)

    def execute_in_process(self, count: int) -> dict[str, str]:
        """`count` runs of example_job executed by one process in the code location's
        container (HISTORY); their statuses."""
        service = computed(self.root)["pipes_services"][self.package]
        script = HISTORY.format(package=self.package, count=count)
        command = [self.engine.name, "exec", "-i", self.name(service), "python3", "-"]
        done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def add_minutely_schedule(root: Path, package: str) -> None:
    """The user's own schedule in the example location (jobs.py and definitions.py)."""
    src = root / "pipes" / package / "src" / package
    jobs, definitions = src / "jobs.py", src / "definitions.py"
    jobs.write_text(jobs.read_text() + MINUTELY)
    text = definitions.read_text()
    for old, new in (
        (
            "from .jobs import example_job, example_schedule",
            "from .jobs import example_job, example_schedule, minutely_audit, minutely_check",
        ),
        ("schedules=[example_schedule],", "schedules=[example_schedule, minutely_check, minutely_audit],"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    definitions.write_text(text)


@pytest.mark.parametrize("storage", ["postgres", "sqlite"])
@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_upgrade_keeps_history_and_a_failed_migration_rolls_back(
    engine_name, storage, template_snapshot, tmp_path
):
    begun = time.monotonic()
    engine = ENGINES[engine_name].require()
    slug = f"lp-upgrade-{engine_name[0]}{storage[0]}"
    port = PORTS[(engine_name, storage)]
    template = template_repository(template_snapshot, tmp_path / "template")
    answers = {
        "container_engine": engine_name,
        "project_slug": slug,
        "ui_port": port,
        "storage": storage,
        "dagster_version": OLD,
        "max_concurrent_runs": 8,
    }
    root = tmp_path / slug
    copier.run_copy(str(template), root, data=answers, defaults=True, quiet=True, vcs_ref="HEAD")
    for setting in ("BASE_IMAGE", "POSTGRES_IMAGE"):
        if image := env_value(root, setting):
            engine.require_image(image)
    engine.clear_leftovers(slug)
    p = Project(engine, root, slug, port)
    add_minutely_schedule(root, p.package)
    figures = {"render": f"{time.monotonic() - begun:.0f} s"}
    try:
        started = time.monotonic()
        checked(root, "up")
        p.stack.wait_loaded(timeout=120)
        assert p.dagster_version() == OLD
        figures["up"] = f"{time.monotonic() - started:.0f} s"

        assert p.stack.start_schedule("example_schedule") == "ScheduleStateResult"
        start_sensor(p.stack, "inbox_sensor")
        started = time.monotonic()
        first = p.launch_many(LAUNCHED)
        assert set(first.values()) == {"SUCCESS"}, first
        figures[f"{LAUNCHED} launched runs"] = f"{time.monotonic() - started:.0f} s"
        started = time.monotonic()
        executed = p.execute_in_process(RUNS - LAUNCHED)
        assert len(executed) == RUNS - LAUNCHED and set(executed.values()) == {"SUCCESS"}, executed
        figures[f"{RUNS - LAUNCHED} runs in one process"] = f"{time.monotonic() - started:.0f} s"
        deadline = time.monotonic() + 90
        while not p.stack.sensor_ticks("inbox_sensor"):
            assert time.monotonic() < deadline, "the sensor never ticked"
            time.sleep(2)
        asset = next(iter(sorted(p.stack.asset_keys())))
        started = time.monotonic()
        ticked = p.wait_schedule_ticks()
        figures["ticks before"] = f"{time.monotonic() - started:.0f} s"
        assert {t["status"] for t in ticked} == {"SKIPPED"}, ticked
        before = p.history(asset)
        assert len(before[0]) >= RUNS and before[1] >= RUNS and before[2], before[:3]

        started = time.monotonic()
        update_to_new(root)
        figures["update"] = f"{time.monotonic() - started:.0f} s"
        assert f"dagster=={NEW}" in (root / "platform/requirements.txt").read_text()

        if storage == "postgres":
            p.psql(REFUSE)
            failed = make(root, "upgrade", timeout=1800)
            said = failed.stdout + failed.stderr
            assert failed.returncode != 0, said[-3000:]
            assert "error: the migration failed" in said, said[-3000:]
            assert "permission denied for table secondary_indexes" in said, said[-3000:]
            restore = next(line.strip() for line in said.splitlines() if "make restore FILE=" in line)
            assert restore.endswith("CONFIRM=yes ROLLBACK=yes"), restore
            started = time.monotonic()
            back = make(root, *restore.split()[1:], timeout=600)
            assert back.returncode == 0, (back.stdout + back.stderr)[-3000:]
            figures["restore"] = f"{time.monotonic() - started:.0f} s"
            p.stack.wait_loaded(timeout=120)
            assert p.dagster_version() == OLD, "the restore must bring back the previous version"
            assert p.history(asset)[:2] == before[:2], "every run must be back, with its status"
            p.psql(ALLOW)

        started = time.monotonic()
        output = checked(root, "upgrade", timeout=1800)
        figures["upgrade"] = f"{time.monotonic() - started:.0f} s"
        assert f"upgraded: Dagster {OLD} -> {NEW}" in output, output[-3000:]
        assert "migrations applied: " in output, output[-3000:]
        p.stack.wait_loaded(timeout=120)
        assert p.dagster_version() == NEW
        runs, materializations, ticks, sensor = p.history(asset)
        assert runs == before[0], "the same runs, with the same statuses"
        assert materializations == before[1], "the asset's materialization history"
        assert ticks >= before[2] and sensor == "RUNNING", "the sensor, on, with its ticks"
        assert p.stack.schedule_status("example_schedule") == "RUNNING"
        upgraded = time.time()
        new_run = p.stack.launch()
        assert p.wait_finished([new_run]) == {new_run: "SUCCESS"}, p.stack.errors(new_run)
        # The schedules still tick: the ticks before are kept, and one comes after the upgrade.
        started = time.monotonic()
        ticks = p.wait_schedule_ticks(after=upgraded, timeout=90)
        figures["tick after"] = f"{time.monotonic() - started:.0f} s"
        assert {t["tickId"] for t in ticked} <= {t["tickId"] for t in ticks}, "schedule ticks lost"

        containers = p.container_ids()
        started = time.monotonic()
        again = checked(root, "upgrade", timeout=900)
        figures["again"] = f"{time.monotonic() - started:.0f} s"
        assert "Nothing to upgrade" in again, again[-3000:]
        assert p.container_ids() == containers, "a second make upgrade must change nothing"

        if storage == "sqlite":
            started = time.monotonic()
            # The SQLite backup that the upgrade took (a copy of the data volume) brings back
            # the previous version with the history as it was: without the new run.
            backup = re.search(r"; backup: (\S+)", output).group(1)
            assert backup.endswith(".tgz") and (root / backup).is_file(), backup
            checked(root, "restore", f"FILE={backup}", "CONFIRM=yes", "ROLLBACK=yes", timeout=600)
            p.stack.wait_loaded(timeout=120)
            assert p.dagster_version() == OLD
            assert p.history(asset)[:2] == before[:2], "the runs as they were backed up"
            figures["restore"] = f"{time.monotonic() - started:.0f} s"
    finally:
        figures["whole"] = f"{time.monotonic() - begun:.0f} s"
        note(f"upgrade tier, {engine_name}, {storage}", "; ".join(f"{k}: {v}" for k, v in figures.items()))
        remove_stack(engine, root, slug)
        for service in p.services:
            engine.run("rmi", f"localhost/{slug}-{service}:pre-upgrade")


@pytest.mark.engine("podman")
@pytest.mark.parametrize("storage", ["postgres", "sqlite"])
def test_kube_upgrade_keeps_history_and_its_rollback_brings_it_back(storage, template_snapshot, tmp_path):
    engine = ENGINES["podman"].require()
    slug = f"lp-kupgrade-{storage[0]}"
    port = KUBE_PORTS[storage]
    template = template_repository(template_snapshot, tmp_path / "template")
    answers = {"container_engine": "podman", "project_slug": slug, "ui_port": port,
               "storage": storage, "dagster_version": OLD, "max_concurrent_runs": 8}  # fmt: skip
    root = tmp_path / slug
    copier.run_copy(str(template), root, data=answers, defaults=True, quiet=True, vcs_ref="HEAD")
    for setting in ("BASE_IMAGE", "POSTGRES_IMAGE"):
        if image := env_value(root, setting):
            engine.require_image(image)
    clear_kube(engine, slug)
    p = Project(engine, root, slug, port, kube=True)
    figures = {}
    try:
        started = time.monotonic()
        checked(root, "kube-up")
        p.stack.wait_loaded(timeout=120)
        assert p.dagster_version() == OLD
        figures["kube-up"] = f"{time.monotonic() - started:.0f} s"
        first = p.launch_many(KUBE_RUNS)
        assert set(first.values()) == {"SUCCESS"}, first
        before = p.statuses()
        assert len(before) >= KUBE_RUNS, before

        started = time.monotonic()
        update_to_new(root)
        figures["update"] = f"{time.monotonic() - started:.0f} s"
        assert f"dagster=={NEW}" in (root / "platform/requirements.txt").read_text()
        started = time.monotonic()
        output = checked(root, "kube-upgrade", timeout=1800)
        figures["kube-upgrade"] = f"{time.monotonic() - started:.0f} s"
        assert f"upgraded: Dagster {OLD} -> {NEW}" in output, output[-3000:]
        assert "migrations applied: " in output, output[-3000:]
        p.stack.wait_loaded(timeout=120)
        assert p.dagster_version() == NEW
        runs = p.statuses()
        assert runs == before, "the same runs, with the same statuses"
        new_run = p.stack.launch()
        assert p.wait_finished([new_run]) == {new_run: "SUCCESS"}, p.stack.errors(new_run)

        containers = p.container_ids()
        again = checked(root, "kube-upgrade", timeout=900)
        assert "Nothing to upgrade" in again, again[-3000:]
        assert p.container_ids() == containers, "a second make kube-upgrade must change nothing"

        # The rollback that a failed migration prints, on the claims' copy the upgrade took:
        # the previous version with the history as it was (without the new run).
        backup = re.search(r"; backup: (\S+)", output).group(1)
        assert backup.endswith(".tgz") and (root / backup).is_file(), backup
        started = time.monotonic()
        checked(root, "kube-restore", f"FILE={backup}", "CONFIRM=yes", "ROLLBACK=yes", timeout=600)
        figures["kube-restore"] = f"{time.monotonic() - started:.0f} s"
        p.stack.wait_loaded(timeout=120)
        assert p.dagster_version() == OLD
        runs = p.statuses()
        assert runs == before, "the runs as they were backed up"
    finally:
        note(f"kube upgrade, {storage}", "; ".join(f"{k}: {v}" for k, v in figures.items()))
        make(root, "kube-down", timeout=300)
        clear_kube(engine, slug)
        for service in p.services:
            engine.run("rmi", f"localhost/{slug}-{service}:pre-upgrade")
