"""benchmarks/run.py survives a failing layout (issue 17): its own control flow, engine-free.

The layouts here are fakes (no engine, no Dagster): one whose run after down/up ends FAILURE
with the events Dagster's daemon writes when it cannot dequeue a run (the shared-platform
baseline's failure on a fresh machine), one that fails to build, one broken on purpose with
LAUNCHPAD_BENCH_BREAK. The benchmark must record each failure (in the JSON and the table, with
the run's error message and the step), tear the layout down, go on with the next layout and
engine, always write the JSON, and exit 1 only when the generated project itself failed.
The default answers are still rendered for real (the baselines take their code from them).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess

import pytest

from launchpad_dev.bench_failures import break_code
from launchpad_dev.common import ROOT
from launchpad_dev.engines import render

DEQUEUE_ERROR = (
    "Caught an unrecoverable error while dequeuing the run. Marking the run as failed and dropping it "
    "from the queue"
)
CAUSE = "DagsterUserCodeUnreachableError: Could not reach user code server. gRPC Error code: UNAVAILABLE"
OUTSIDE = "This run has been marked as failed from outside the execution context."
ASSET = '''import dagster as dg


@dg.asset
def raw_orders() -> list[dict]:
    """A batch of orders (stands in for an extract from a source system)."""
    return []
'''


def load(name: str):
    """A script of benchmarks/ (not a package: run as `python benchmarks/run.py`), loaded from
    its file as a module of its own, fresh for each test."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__file__ == str(path)
    return module


@pytest.fixture
def bench():
    return load("run")


class FakeEngine:
    def __init__(self, name: str):
        self.name = name

    def problem(self) -> None:
        return None

    def run(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(args, 0, stdout=f"{self.name} version 0 (fake)\n", stderr="")

    def has_image(self, ref: str) -> bool:
        return True

    def containers(self, project: str) -> list[str]:
        return []

    def fresh_base(self, base: str, name: str) -> str:
        return f"localhost/fake-fresh-{name}"


class FakeStack:
    """A stack whose runs succeed, or fail as the layout's scenario says, with Dagster's events."""

    def __init__(self, layout):
        self.layout, self.runs = layout, {}

    def launch(self, *args, **kwargs) -> str:
        run_id = f"run-{len(self.runs)}"
        layout = self.layout
        if layout.broken():
            self.runs[run_id] = ("FAILURE", "step")
        elif layout.fail_after_restart and layout.starts > 1:
            self.runs[run_id] = ("FAILURE", "dequeue")
        else:
            self.runs[run_id] = ("SUCCESS", None)
        return run_id

    def run(self, run_id: str) -> dict:
        return {"status": self.runs[run_id][0]}

    def gql(self, query: str, **variables) -> dict:
        assert "logsForRun" in query
        how = self.runs[variables["id"]][1]
        if how == "dequeue":  # as Dagster's queued run coordinator daemon reports it
            events = [
                {
                    "__typename": "EngineEvent",
                    "message": DEQUEUE_ERROR,
                    "level": "INFO",
                    "error": {"message": CAUSE},
                },
                {"__typename": "RunFailureEvent", "message": OUTSIDE, "level": "ERROR", "error": None},
            ]
        else:
            events = [
                {
                    "__typename": "ExecutionStepFailureEvent",
                    "message": 'Execution of step "raw_orders" failed.',
                    "level": "ERROR",
                    "error": {"message": "RuntimeError: broken on purpose by LAUNCHPAD_BENCH_BREAK\n"},
                },
            ]
        return {"logsForRun": {"__typename": "EventConnection", "events": events}}


@pytest.fixture
def fakes(bench, monkeypatch):
    """Fake engines and layouts in run.py; returns {(engine, layout): the fake layout}, and the
    scenarios to set: {layout name: "fail after restart" | "fail to build"}."""
    made: dict = {}
    scenarios: dict[str, str] = {}

    class FakeLayout(bench.Layout):
        services = ("webserver", "daemon", "user_code")
        image_names = ("webserver", "daemon", "user_code")
        location = "example"

        def __init__(self, name, engine, work):
            super().__init__(name, engine, work)
            self.code_file, self.config_file = self.root / "assets.py", self.root / "dagster.yaml"
            self.scenario = scenarios.get(name)
            self.fail_after_restart = self.scenario == "fail after restart"
            self.starts, self.calls = 0, []
            self.fake_stack = FakeStack(self)

        @property
        def stack(self):
            return self.fake_stack

        def broken(self) -> bool:
            return "LAUNCHPAD_BENCH_BREAK" in self.code_file.read_text()

        def copy(self):
            self.root.mkdir(parents=True)
            self.code_file.write_text(ASSET)
            self.config_file.write_text("run_coordinator: {}\n")

        def build(self):
            self.calls.append("build")
            if self.scenario == "fail to build":
                raise bench.BenchError("make -C ... build failed (2):\nERROR: no such base image")

        def start(self):
            self.starts += 1

        def wait_loaded(self, after: float = 0.0) -> None:
            pass

        def stop(self):
            self.calls.append("stop")

        def deliver_code_change(self):
            pass

        def container(self, service):
            return f"{self.slug}-{service}"

        def remove(self):
            self.calls.append("remove")

    def layouts_for(name, engine, work, template, default):
        made[engine.name, name] = FakeLayout(name, engine, work)
        return made[engine.name, name], None

    monkeypatch.setattr(bench, "ENGINES", {n: FakeEngine(n) for n in ("podman", "docker")})
    monkeypatch.setattr(bench, "layouts_for", layouts_for)
    monkeypatch.setattr(bench, "container_rss_mib", lambda engine, container: 100.0)
    monkeypatch.setattr(bench, "image_sizes", lambda engine, refs: ({r: 1_000_000 for r in refs}, 2_000_000))
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    return made, scenarios


ARGS = ["--engine", "podman", "--engine", "docker", "--quick", "--matrix-step", "0"]
LAYOUTS = ["--layout", "shared-platform", "--layout", "launchpad", "--layout", "three-images"]


def test_a_failed_baseline_run_is_recorded_with_its_error_and_the_run_goes_on(bench, fakes, tmp_path, capsys):
    made, scenarios = fakes
    scenarios["shared-platform"] = "fail after restart"
    out = tmp_path / "results.json"
    code = bench.main([*ARGS, *LAYOUTS, "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, f"a baseline's failure is a finding, not a failure of the benchmark:\n{printed}"
    report = json.loads(out.read_text())
    assert set(report["engines"]) == {"podman", "docker"}, "the second engine was not measured"
    for engine in ("podman", "docker"):
        result = report["engines"][engine]
        failed = result["shared-platform"]
        assert failed["failed"] is True
        assert failed["step"] == "launch after down/up -> SUCCESS"
        # The run's own error, from its events: the daemon's message, its cause, the failure event.
        assert "ended FAILURE" in failed["error"]
        assert DEQUEUE_ERROR in failed["error"] and CAUSE in failed["error"] and OUTSIDE in failed["error"]
        assert "\n" not in failed["error"]
        # What it measured before the failure is kept; what came after is not invented.
        assert failed["up_to_loaded_s"] >= 0 and "reload_s" not in failed
        # The layouts after it were measured; the stacks were torn down, the failed one too.
        assert "failed" not in result["launchpad"] and "reload_s" in result["launchpad"]
        assert "failed" not in result["three-images"]
        for name in ("shared-platform", "launchpad", "three-images"):
            assert made[engine, name].calls[-1] == "remove", (name, made[engine, name].calls)
        assert result["ratios"]["unique_bytes"] == 1.0 and result["ratios"]["idle_rss_mib_total"] == 1.0
        assert result["targets"]["unique_bytes"]["target"] == 1_000_000  # half of three-images'
    assert "FAILED: shared-platform, at 'launch after down/up -> SUCCESS': run run-" in printed
    assert "measured" in printed  # the row that says which layouts failed


def test_a_failure_of_the_generated_project_exits_1_after_measuring_everything(
    bench, fakes, tmp_path, capsys
):
    made, scenarios = fakes
    scenarios["launchpad"] = "fail to build"
    out = tmp_path / "results.json"
    code = bench.main([*ARGS, *LAYOUTS, "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    report = json.loads(out.read_text())
    for engine in ("podman", "docker"):
        result = report["engines"][engine]
        assert result["launchpad"]["failed"] is True
        assert result["launchpad"]["step"] == "build (cache allowed)"
        assert result["launchpad"]["error"].startswith(
            "make -C ... build failed (2): ERROR: no such base image"
        )
        assert made[engine, "launchpad"].calls == ["build", "remove"]
        assert "failed" not in result["three-images"] and "cached_build_s" in result["three-images"]
        assert result["ratios"] == {}, "no ratio without the launchpad's figures"
    assert "the generated project failed: podman/launchpad, docker/launchpad (exit 1)" in printed


def test_launchpad_bench_break_makes_a_layouts_first_run_fail_for_real(bench, fakes, tmp_path, monkeypatch):
    made, _ = fakes
    monkeypatch.setenv("LAUNCHPAD_BENCH_BREAK", "three-images")
    out = tmp_path / "results.json"
    assert bench.main([*ARGS[:2], *ARGS[4:], *LAYOUTS, "--json", str(out)]) == 0
    failed = json.loads(out.read_text())["engines"]["podman"]["three-images"]
    assert failed["broken_on_purpose"] is True and failed["step"] == "first launch -> SUCCESS"
    assert "RuntimeError: broken on purpose by LAUNCHPAD_BENCH_BREAK" in failed["error"]
    assert made["podman", "three-images"].calls[-1] == "remove"


def test_the_break_goes_into_the_rendered_example_asset(template_snapshot, tmp_path):
    """The anchor break_code looks for is in the asset the template renders (the baselines copy it)."""
    root = render(template_snapshot, tmp_path / "project", {"container_engine": "docker"})
    (asset,) = root.glob("pipes/*/src/*/assets.py")
    break_code(asset)
    function = next(n for n in ast.parse(asset.read_text()).body if getattr(n, "name", "") == "raw_orders")
    assert isinstance(function.body[0], ast.Raise), ast.unparse(function.body[0])


def test_ratios_verdicts_and_table_cope_with_a_baseline_that_measured_nothing(bench):
    result = {
        "launchpad": {"cold_build_s": 20.0, "unique_bytes": 300_000_000, "up_to_loaded_s": 7.0},
        "three-images": {"failed": True, "error": "x", "step": "cold build"},
        "shared-platform": {"cold_build_s": 25.0, "up_to_loaded_s": 5.0},
    }
    result["ratios"] = bench.ratios(result)
    result["targets"] = bench.verdicts(result)
    assert result["ratios"] == {"cold_build_s": 0.8, "up_to_loaded_s": 1.4}
    assert "unique_bytes" not in result["targets"] and result["targets"]["cold_build_s"]["target"] == 15.0
    text = bench.table("podman", result)
    assert "FAILED: three-images, at 'cold build': x" in text


def test_soak_growth_is_the_slope_after_the_warm_up():
    stress = load("stress")
    samples = [
        {"run": i, "rss_mib": {"webserver": 100 + (50 if i == 0 else 0) + 0.2 * i, "daemon": 80.0}}
        for i in range(0, 101, 5)
    ]
    assert stress.growth_per_100_runs(samples, warm_up=10) == {"webserver": 20.0, "daemon": 0.0}
    assert stress.growth_per_100_runs(samples[:3], warm_up=10) == {"webserver": None, "daemon": None}


def test_the_upgrade_layouts_downtime_has_a_verdict_and_a_line_in_the_table(bench):
    """launchpad-upgrade (issue 32): upgrade_downtime_s against its 30 s target, and the purge's
    figures, in the table."""
    upgrade = {
        "upgrade_wall_s": 80.2, "upgrade_downtime_s": 31.4, "upgrade_reported_downtime_s": 29,
        "upgrade_runs_before": 1003, "upgrade_runs_after": 1003, "purge_runs_before": 10_004,
        "purge_dry_run_s": 40.0, "purge_s": 90.0, "purge_event_rows_before": 50_100,
        "purge_event_rows_after": 100, "purge_db_bytes_before": 40_000_000,
        "purge_db_bytes_after": 40_000_000, "purge_db_bytes_after_vacuum": 39_000_000,
        "purge_db_bytes_after_vacuum_full": 9_000_000,
    }  # fmt: skip
    result = {"launchpad-upgrade": upgrade}
    result["targets"] = bench.verdicts(result)
    assert result["targets"]["upgrade_downtime_s"] == {"target": 30, "value": 31.4, "met": False}
    text = bench.table("docker", result)
    assert "make upgrade 80.2 s wall, the UI unreachable 31.4 s at most (MISS <= 30 s" in text
    assert "database 40.0 MB -> 40.0 MB, 39.0 MB after VACUUM, 9.0 MB after VACUUM FULL" in text
    assert "launchpad-upgrade" in bench.PROJECT_LAYOUTS, "the generated project: its failure exits 1"


def test_the_ui_poller_reports_the_longest_unreachable_span(monkeypatch):
    """upgrade_downtime_s: the longest run of failed polls, from the first failure's start to the
    next answer; a span still open at the end counts to the end."""
    upgrade_bench = load("upgrade_bench")
    clock = {"now": 0.0}
    answers = iter([True, False, False, True, False, True, True, False, False])

    class Answer:
        def __init__(self, ok: bool):
            self.status_code = 200 if ok else 503

    def get(url, timeout):
        clock["now"] += 0.2
        try:
            return Answer(next(answers))
        except StopIteration:
            poller.stopping.set()
            return Answer(False)

    monkeypatch.setattr(upgrade_bench.requests, "get", get)
    monkeypatch.setattr(upgrade_bench.time, "monotonic", lambda: clock["now"])
    poller = upgrade_bench.Unreachable("http://127.0.0.1:1/server_info")
    poller.stopping.wait = lambda seconds: None
    poller.loop()
    # Polls at 0.2 .. 1.8: failed from 0.2 (the second poll began) to 0.8; 0.8 to 1.2; 1.4 on.
    assert poller.polls == 10 and poller.failures == 6
    assert round(poller.longest, 1) == 0.6


def test_the_logs_layouts_overhead_has_a_verdict_and_lines_in_the_table(bench):
    """launchpad-logs (issue 33): s3_launch_overhead against its 10 % target, and the drains with
    the most runs started at once, in the table."""
    logs = {
        "volume_launch_to_success_s": 3.2, "s3_launch_to_success_s": 3.6, "s3_launch_overhead": 0.125,
        "volume_drain_20_s": 61.0, "s3_drain_20_s": 66.5, "tag_limit": 2, "max_started_at_once": 2,
    }  # fmt: skip
    result = {"launchpad-logs": logs}
    result["targets"] = bench.verdicts(result)
    assert result["targets"]["s3_launch_overhead"] == {"target": 0.1, "value": 0.125, "met": False}
    text = bench.table("podman", result)
    assert "3.2 s with the volume, 3.6 s with S3 (+12.5%: MISS <= 10%" in text
    assert "61.0 s with the volume, 66.5 s with S3; at most 2 started at once (ok)" in text
    assert "launchpad-logs" in bench.PROJECT_LAYOUTS, "the generated project: its failure exits 1"


def test_the_most_runs_at_once_come_from_their_start_and_end_times():
    """max_started_at_once: overlapping spans counted; a run ending as the next starts is one."""
    logs_bench = load("logs_bench")
    spans = [(0, 5), (1, 4), (4, 9), (5, 6), (9, 10)]
    runs = [{"startTime": start, "endTime": end} for start, end in spans]
    assert logs_bench.max_at_once(runs) == 2
    assert logs_bench.max_at_once([*runs, {"startTime": 4.5, "endTime": 5.5}]) == 3
