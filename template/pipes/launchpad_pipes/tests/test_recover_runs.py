"""The image's process: what it does without a code server or a Dagster instance (the stack's
own tests show the rest: a killed container's runs failed, a run over its memory ceiling)."""

import json
import socket
import sys

import pytest

from launchpad_pipes import recover_runs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_health_check_fails_where_no_server_serves(monkeypatch):
    argv = ["recover_runs", "--check-serving", "--port", str(free_port())]
    monkeypatch.setattr(sys, "argv", argv)
    assert recover_runs.main() == 1


def test_a_run_id_is_read_from_the_runs_arguments():
    args = json.dumps({"__class__": "ExecuteRunArgs", "pipeline_run_id": "0123abcd"})
    assert recover_runs.run_id_of(["dagster", "api", "execute_run", args]) == "0123abcd"
    assert recover_runs.run_id_of(["dagster", "api", "execute_run"]) is None


def test_out_of_memory_kills_and_the_ceiling_are_read_from_the_cgroup(tmp_path, monkeypatch):
    events, ceiling = tmp_path / "memory.events", tmp_path / "memory.max"
    events.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    ceiling.write_text(f"{2 * 2**30}\n")
    cgroups = [(tmp_path / "missing", ceiling), (events, ceiling)]
    monkeypatch.setattr(recover_runs, "CGROUPS", cgroups)
    assert recover_runs.out_of_memory_kills() == (2, "2048 MiB")
    ceiling.write_text("max\n")
    assert recover_runs.out_of_memory_kills() == (2, "max")


def test_a_run_that_ends_by_itself_keeps_its_exit_code(tmp_path, monkeypatch):
    monkeypatch.setattr(recover_runs, "CGROUPS", [(tmp_path / "none", tmp_path / "none")])
    assert recover_runs.guard_run([sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_serving_needs_the_location_name(monkeypatch):
    monkeypatch.delenv("DAGSTER_LOCATION_NAME", raising=False)
    monkeypatch.setattr(sys, "argv", ["recover_runs", "--", "dagster", "api", "grpc"])
    with pytest.raises(SystemExit) as refused:
        recover_runs.main()
    assert refused.value.code == 2
