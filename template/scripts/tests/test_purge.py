"""scripts/purge.py (`make purge`, the daily purge): DAYS and DRY_RUN checks, and the batches
against a real Dagster instance (SQLite in a temporary directory, its local compute logs)."""

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import purge  # noqa: E402


@pytest.mark.parametrize("text", ["0", "1", "30", "+7", " 90 ", "3650"])
def test_days_are_whole_numbers_from_0(text):
    assert purge.parse_days(text) == int(text)


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "DAYS is missing"),
        ("", "DAYS is missing"),
        ("-1", "whole number of days, 0 or more (got '-1')"),
        ("7.5", "whole number of days"),
        ("thirty", "whole number of days"),
        ("3651", "at most 3650"),
    ],
)
def test_bad_days_are_refused_with_one_line(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        purge.parse_days(text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--days="], "error: DAYS is missing"),
        (["--days=-3"], "error: DAYS must be a whole number"),
        (["--days=x1"], "error: DAYS must be a whole number"),
        (["--days=3", "--dry-run=yes"], "error: DRY_RUN must be 1 or empty"),
    ],
)
def test_the_host_refuses_before_it_looks_for_the_daemon(argv, message, capsys):
    # No engine named at all: a refusal must come before any container is looked at.
    assert purge.main([*argv, "--engine=/nonexistent/engine", "--container=c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_the_command_runs_the_script_inside_the_container():
    assert purge.command("podman", "p-daemon", 30, True) == [
        "podman", "exec", "-i", "p-daemon", "python3", "-", "--inside", "--days", "30", "--dry-run",
    ]  # fmt: skip
    assert "--dry-run" not in purge.command("docker", "p-daemon", 0, False)


def test_the_daily_purge_runs_beside_the_daemon_and_becomes_it(monkeypatch):
    calls = []
    monkeypatch.setattr(purge.os, "fork", lambda: calls.append("fork") or 1234)
    monkeypatch.setattr(purge.os, "execvp", lambda file, argv: calls.append(argv))
    purge.daily(30, ["dagster-daemon", "run"])
    assert calls == ["fork", ["dagster-daemon", "run"]]


def test_the_daily_purge_needs_the_daemons_command(capsys):
    assert purge.daily(30, []) == 2
    assert capsys.readouterr().err.startswith("error: --daily needs the command")


def test_the_loop_purges_after_the_start_then_daily_and_survives_a_failure(monkeypatch, capsys):
    slept, ran = [], []
    monkeypatch.setattr(purge.time, "sleep", slept.append)

    def run(command):
        ran.append(command)
        if len(ran) == 3:
            raise KeyboardInterrupt  # the end of the test's days
        return purge.subprocess.CompletedProcess(command, 1 if len(ran) == 1 else 0)

    monkeypatch.setattr(purge.subprocess, "run", run)
    with pytest.raises(KeyboardInterrupt):
        purge.loop(7)
    assert slept == [600, 86400, 86400]
    assert [command[2:] for command in ran] == [["--inside", "--days", "7"]] * 3
    out = capsys.readouterr().out
    assert "older than 7 days" in out and out.count("error: the daily purge failed (exit 1)") == 1


def test_main_splits_the_daemons_command_off(monkeypatch):
    seen = []
    monkeypatch.setattr(purge, "daily", lambda days, command: seen.append((days, command)) or 0)
    assert purge.main(["--inside", "--daily", "30", "--", "python3", "-m", "x", "--", "y"]) == 0
    assert seen == [(30, ["python3", "-m", "x", "--", "y"])]


# ------------------------------------------------------------ a real instance, real runs
dagster = pytest.importorskip("dagster")
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus  # noqa: E402
from dagster._core.remote_origin import (  # noqa: E402
    RegisteredCodeLocationOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.compute_log_manager import ComputeIOType  # noqa: E402
from dagster._core.storage.dagster_run import DagsterRun  # noqa: E402

# Where the runs come from (a queued run names its code location, as the UI's do).
ORIGIN = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("loc"), "repo").get_job_origin("job")

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


# The event that puts a run into each status, as the daemon and the run worker report it.
STATUS_EVENTS = {
    DagsterRunStatus.QUEUED: DagsterEventType.RUN_ENQUEUED,
    DagsterRunStatus.STARTING: DagsterEventType.RUN_STARTING,
    DagsterRunStatus.STARTED: DagsterEventType.RUN_START,
    DagsterRunStatus.CANCELING: DagsterEventType.RUN_CANCELING,
    DagsterRunStatus.SUCCESS: DagsterEventType.RUN_SUCCESS,
    DagsterRunStatus.FAILURE: DagsterEventType.RUN_FAILURE,
    DagsterRunStatus.CANCELED: DagsterEventType.RUN_CANCELED,
}


def add_run(instance, status, events=3):
    run = DagsterRun(job_name="job", status=DagsterRunStatus.NOT_STARTED, remote_job_origin=ORIGIN)
    run = instance.add_run(run)
    if status in STATUS_EVENTS:
        event = DagsterEvent(STATUS_EVENTS[status].value, job_name="job")
        instance.report_dagster_event(event, run.run_id)
    assert instance.get_run_by_id(run.run_id).status == status
    for n in range(events):
        instance.report_engine_event(f"event {n} of {status.value}", run)
    log_key = [run.run_id, "compute_logs", "step"]
    for io_type in (ComputeIOType.STDOUT, ComputeIOType.STDERR):
        with instance.compute_log_manager.open_log_stream(log_key, io_type) as stream:
            stream.write("x" * 100)
    return run.run_id


def log_files(instance, run_id):
    return sorted(purge.compute_log_files(instance.compute_log_manager, run_id))


@pytest.fixture(scope="module")
def empty_instance(tmp_path_factory):
    """A new instance's directory, made once (its databases take seconds to create)."""
    path = tmp_path_factory.mktemp("empty")
    with DagsterInstance.local_temp(str(path)) as instance:
        instance.get_run_records()
    return path


@pytest.fixture
def instance(empty_instance, tmp_path):
    shutil.copytree(empty_instance, tmp_path / "instance")
    with DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        yield instance


@pytest.fixture
def runs(instance):
    return {
        "finished": [add_run(instance, status) for status in FINISHED],
        "in_flight": [add_run(instance, status) for status in IN_FLIGHT],
    }


def remaining(instance):
    return {record.dagster_run.run_id for record in instance.get_run_records()}


def test_days_0_deletes_every_finished_run_with_its_events_and_compute_logs(instance, runs):
    lines = []
    for run_id in runs["finished"]:
        assert len(log_files(instance, run_id)) == 2
    totals = purge.purge(instance, 0, dry_run=False, now=time.time() + 1, out=lines.append)
    assert remaining(instance) == set(runs["in_flight"])
    assert totals["runs"] == 3 and totals["log_files"] == 6 and totals["log_bytes"] == 600
    assert totals["events"] >= 3 * 3 and totals["event_bytes"] > 0
    for run_id in runs["finished"]:
        assert not instance.get_records_for_run(run_id).records
        assert log_files(instance, run_id) == []
    for run_id in runs["in_flight"]:
        assert len(instance.get_records_for_run(run_id).records) >= 3
        assert len(log_files(instance, run_id)) == 2
    assert lines[-1].startswith("deleted 3 runs, ")


def test_a_dry_run_deletes_nothing_and_says_what_would_go(instance, runs):
    lines = []
    before = remaining(instance)
    totals = purge.purge(instance, 0, dry_run=True, now=time.time() + 1, out=lines.append)
    assert remaining(instance) == before
    assert totals["runs"] == 3 and totals["log_bytes"] == 600
    for run_id in runs["finished"]:
        assert len(instance.get_records_for_run(run_id).records) >= 3
        assert len(log_files(instance, run_id)) == 2
    assert lines[0].startswith("dry run: ") and lines[-1].startswith("would delete 3 runs, ")
    assert "6 compute log files (600 B)" in lines[-1]


def test_only_runs_older_than_days_go(instance, runs):
    # The test's clock: two days from now, a run of today is two days old.
    later = time.time() + 2 * 86400
    assert purge.purge(instance, 3, dry_run=False, now=later, out=lambda _: None)["runs"] == 0
    assert remaining(instance) == set(runs["finished"] + runs["in_flight"])
    assert purge.purge(instance, 1, dry_run=False, now=later, out=lambda _: None)["runs"] == 3
    assert remaining(instance) == set(runs["in_flight"])


def test_batches_page_through_a_history_longer_than_one(instance, monkeypatch):
    monkeypatch.setattr(purge, "BATCH", 2)
    finished = {add_run(instance, DagsterRunStatus.SUCCESS, events=1) for _ in range(5)}
    queued = add_run(instance, DagsterRunStatus.QUEUED, events=1)
    later = time.time() + 1
    dry = purge.purge(instance, 0, dry_run=True, now=later, out=lambda _: None)
    assert dry["runs"] == 5 and remaining(instance) == finished | {queued}
    lines = []
    assert purge.purge(instance, 0, dry_run=False, now=later, out=lines.append)["runs"] == 5
    assert remaining(instance) == {queued}
    assert [line for line in lines if "so far" in line] == [
        "  deleted 2 runs so far",
        "  deleted 4 runs so far",
        "  deleted 5 runs so far",
    ]
