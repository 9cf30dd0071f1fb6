"""The metrics endpoint (template/platform/metrics.py, the metrics service) against a real Dagster
instance, no engine: the template's own script run on this host (the images run the same file)
over a SQLite instance that Dagster's own API fills, scraped over HTTP, checked by `promtool
check metrics` and read with prometheus-client's parser (launchpad_dev/prom.py).

- the first scrape gives the instance's totals: runs by job and status, the queue, its oldest
  run's age, a daemon's heartbeat age; a webserver that does not answer is
  dagster_metrics_source_up{source="webserver"} 0, its metrics left out;
- runs that end or start after it are counted once each, however many scrapes see them (a
  write within the look-back window is read again), and each start's launch latency observed
  once;
- a storage that cannot be read is source_up 0 with no run metric (never zeros).

The alert rules a project ships (template/config/alerts.yml, copied as it is): `promtool check
rules`, and `promtool test rules` (tests/prometheus/alerts.test.yml: each alert fires when it
should, and only then), on metric names the exporter writes.

The stacks' metrics (PostgreSQL, the webserver's code locations, a daemon stopped) are the fault
tier's (tests/test_faults.py); the scrape's time at 10,000 runs is the benchmark's
(benchmarks/metrics_bench.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launchpad_dev import prom
from launchpad_dev.common import ROOT
from launchpad_dev.local_registry import free_port
from launchpad_dev.tools import require_tool

EXPORTER = ROOT / "template" / "platform" / "metrics.py"
ALERTS = ROOT / "template" / "config" / "alerts.yml"
ALERT_TESTS = ROOT / "tests" / "prometheus" / "alerts.test.yml"


class Instance:
    """A SQLite Dagster instance in `home`, filled through Dagster's API."""

    def __init__(self, home: Path):
        from dagster import DagsterInstance
        from dagster._core.remote_origin import (
            GrpcServerCodeLocationOrigin,
            RemoteRepositoryOrigin,
        )

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home / 'data'}\n")
        self.instance = DagsterInstance.from_config(str(home))
        location = GrpcServerCodeLocationOrigin(host="pipes", port=4000, location_name="here")
        self.origin = RemoteRepositoryOrigin(location, "__repository__")

    def event(self, run_id: str, job: str, kind: str) -> None:
        from dagster import DagsterEvent, DagsterEventType

        self.instance.report_dagster_event(DagsterEvent(DagsterEventType(kind).value, job_name=job), run_id)

    def run(self, job: str, until: str) -> str:
        """A run of `job` taken to `until`: QUEUED, STARTED, SUCCESS or FAILURE."""
        from dagster._core.remote_origin import RemoteJobOrigin
        from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, make_new_run_id

        run = self.instance.add_run(
            DagsterRun(
                job_name=job, run_id=make_new_run_id(), status=DagsterRunStatus.NOT_STARTED,
                remote_job_origin=RemoteJobOrigin(self.origin, job),
            )
        )  # fmt: skip
        self.event(run.run_id, job, "PIPELINE_ENQUEUED")
        if until != "QUEUED":
            self.event(run.run_id, job, "PIPELINE_START")
        if until in ("SUCCESS", "FAILURE"):
            self.event(run.run_id, job, {"SUCCESS": "PIPELINE_SUCCESS", "FAILURE": "PIPELINE_FAILURE"}[until])
        assert self.instance.get_run_by_id(run.run_id).status.value == until
        return run.run_id

    def heartbeat(self, daemon: str, age: float) -> None:
        from dagster._daemon.types import DaemonHeartbeat

        beat = DaemonHeartbeat(timestamp=time.time() - age, daemon_type=daemon, daemon_id="d", errors=[])
        self.instance.add_daemon_heartbeat(beat)


class Exporter:
    """metrics.py serving on a free port, for the instance in `home`."""

    def __init__(self, home: Path, webserver: str):
        self.port = free_port()
        env = {"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"}
        # -B: the import of instance_ready.py writes no __pycache__ into the template.
        command = [sys.executable, "-B", str(EXPORTER), "--port", str(self.port), "--webserver", webserver]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 30
        while subprocess.run([sys.executable, "-B", str(EXPORTER), "--check", "--port", str(self.port)],
                             capture_output=True, env=env).returncode:  # fmt: skip
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the exporter did not serve within 30 s"
            time.sleep(0.2)

    def scrape(self) -> prom.Samples:
        return prom.scrape(f"http://127.0.0.1:{self.port}/metrics")

    def stop(self) -> str:
        self.process.terminate()
        return self.process.communicate(timeout=30)[0]


@pytest.fixture
def instance(tmp_path):
    made = Instance(tmp_path / "home")
    yield made
    made.instance.dispose()


def test_the_totals_then_each_change_once(instance):
    # Started before the history is written, as in a stack: its first scrape, not its start,
    # reads the totals (an early version read them as the collector was registered).
    instance.run("a", "SUCCESS")
    exporter = Exporter(instance.home, webserver="http://127.0.0.1:9")  # nothing listens there
    seeded = {("a", "SUCCESS"): 3, ("a", "FAILURE"): 2, ("b", "SUCCESS"): 1}
    instance.run("a", "SUCCESS")
    instance.run("a", "SUCCESS")
    seeded_now = {("a", "FAILURE"): 2, ("b", "SUCCESS"): 1}
    for (job, status), count in seeded_now.items():
        for _ in range(count):
            instance.run(job, status)
    queued = [instance.run("a", "QUEUED"), instance.run("b", "QUEUED")]
    instance.run("b", "STARTED")
    instance.heartbeat("SCHEDULER", age=30)
    try:
        first = exporter.scrape()
        for (job, status), count in seeded.items():
            assert prom.value(first, "dagster_runs_finished_total", job=job, status=status) == count, first
        assert prom.value(first, "dagster_runs", job="a", status="QUEUED") == 1
        assert prom.value(first, "dagster_runs", job="b", status="STARTED") == 1
        assert prom.value(first, "dagster_run_queue_length") == len(queued)
        assert 0 < prom.value(first, "dagster_run_queue_oldest_age_seconds") < 600
        assert 29 <= prom.value(first, "dagster_daemon_heartbeat_age_seconds", daemon="SCHEDULER") < 120
        # Latencies are observed for runs seen starting from now on, not the history's.
        assert prom.value(first, "dagster_run_launch_latency_seconds_count") == 0
        assert prom.value(first, "dagster_metrics_source_up", source="storage") == 1
        assert prom.value(first, "dagster_metrics_source_up", source="webserver") == 0
        assert "dagster_code_location_loaded" not in first  # left out, not zero

        # New runs: each counted once, however many scrapes (all within the look-back window).
        instance.run("a", "FAILURE")
        instance.run("c", "SUCCESS")
        instance.run("c", "STARTED")
        # A job and status new since the first scrape shows 0 once (Prometheus' increase()
        # then sees its first count), its count from the next scrape on.
        new = exporter.scrape()
        assert prom.value(new, "dagster_runs_finished_total", job="c", status="SUCCESS") == 0, new
        assert prom.value(new, "dagster_runs_finished_total", job="a", status="FAILURE") == 3, new
        for _ in range(3):
            again = exporter.scrape()
            assert prom.value(again, "dagster_runs_finished_total", job="a", status="FAILURE") == 3, again
            assert prom.value(again, "dagster_runs_finished_total", job="c", status="SUCCESS") == 1
            assert prom.value(again, "dagster_runs_finished_total", job="a", status="SUCCESS") == 3
            assert prom.value(again, "dagster_runs", job="c", status="STARTED") == 1
            # Three starts seen (the two finished runs' and the running one's), once each.
            assert prom.value(again, "dagster_run_launch_latency_seconds_count") == 3
            assert prom.value(again, "dagster_run_launch_latency_seconds_bucket", le="+Inf") == 3
        # The running one ends: counted, and its start is not observed again.
        run_c = [r for r in instance.instance.get_run_records() if r.dagster_run.job_name == "c"]
        running = next(r.dagster_run.run_id for r in run_c if r.dagster_run.status.value == "STARTED")
        instance.event(running, "c", "PIPELINE_SUCCESS")
        last = exporter.scrape()
        assert prom.value(last, "dagster_runs_finished_total", job="c", status="SUCCESS") == 2
        assert prom.value(last, "dagster_runs", job="c", status="STARTED") is None
        assert prom.value(last, "dagster_run_launch_latency_seconds_count") == 3
    finally:
        output = exporter.stop()
    assert "reading the webserver failed" in output, output


def test_a_storage_that_cannot_be_read_is_down_not_zero(tmp_path):
    home = tmp_path / "home"
    (home / "data" / "history").mkdir(parents=True)
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home / 'data'}\n")
    (home / "data" / "history" / "runs.db").write_bytes(b"not a database" * 100)
    exporter = Exporter(home, webserver="http://127.0.0.1:9")
    try:
        samples = exporter.scrape()
    finally:
        output = exporter.stop()
    assert prom.value(samples, "dagster_metrics_source_up", source="storage") == 0, samples
    assert not [name for name in samples if name.startswith("dagster_run")], samples
    assert "reading the storage failed" in output, output


def test_the_alert_rules_fire_when_they_should_on_the_exporters_metrics():
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout, checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every metric the rules read is one the exporter writes (a family name in metrics.py).
    import yaml

    rules = [r for group in yaml.safe_load(ALERTS.read_text())["groups"] for r in group["rules"]]
    names = {n for r in rules for n in re.findall(r"dagster_[a-z_]+", r["expr"])}
    exporter = EXPORTER.read_text()
    unknown = {n for n in names if f'"{n.removesuffix("_total")}"' not in exporter}
    assert not unknown, unknown
    # Every alert is tested.
    tests = ALERT_TESTS.read_text()
    assert not [r["alert"] for r in rules if f"alertname: {r['alert']}" not in tests]
