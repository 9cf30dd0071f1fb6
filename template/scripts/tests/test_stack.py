"""scripts/stack.py (`make build`, `up`, `reload`, `recycle`, `clean`): the checks made before
anything starts, and what a failed start says."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import stack  # noqa: E402

DEFAULTS = "1,2g,1024"


@pytest.mark.parametrize(
    ("cpus", "memory", "pids", "says"),
    [
        ("1", "2g", "1024", None),
        ("0.5", "512m", "1", None),
        (".25", "1048576", "300", None),
        ("0", "2g", "1024", "RUN_CPUS (.env) is not a positive number of CPUs: '0'"),
        ("one", "2g", "1024", "RUN_CPUS"),
        ("1", "2 GB", "1024", "RUN_MEMORY_LIMIT (.env) is not an amount of memory"),
        ("1", "2g", "0", "RUN_PIDS_LIMIT (.env) is not a positive whole number"),
        ("1", "2g", "-1", "RUN_PIDS_LIMIT"),
    ],
)
def test_run_ceilings(cpus, memory, pids, says):
    error = stack.run_limits(cpus, memory, pids)
    assert error == says if says is None else error.startswith(says)


def test_unset_or_empty_ceilings_take_the_defaults():
    env = {"RUN_CPUS": "", "RUN_PIDS_LIMIT": "300"}
    assert stack.given(DEFAULTS, env) == ["1", "2g", "300"]


def test_a_quote_in_run_cpus_is_not_repeated_in_the_message():
    assert stack.run_limits("1'2", "2g", "1") == (
        "RUN_CPUS (.env) is not a positive number of CPUs: '12'"
    )


@pytest.mark.parametrize("postgres", ["bundled", "external"])
def test_a_refused_password_gets_its_hint(postgres):
    log = 'FATAL:  password authentication failed for user "dagster"'
    hint = stack.password_hint(log, postgres, "proj")
    assert hint.startswith("hint: ")
    assert ("proj_postgres-data" in hint) is (postgres == "bundled")
    assert stack.password_hint("all well", postgres, "proj") is None
    assert stack.password_hint(log, "none", "proj") is None


def test_the_up_report_shows_each_services_errors(capfd):
    log = "Traceback\nsqlalchemy.exc.OperationalError: could not connect\n"
    stack.report(
        ["true"],
        lambda service: ["printf", log if service == "webserver" else "all well\n"],
        ["webserver", "daemon"],
        "whole logs: make logs",
    )
    err = capfd.readouterr().err
    assert "the lines of webserver's log that name an error:" in err
    assert "sqlalchemy.exc.OperationalError: could not connect" in err
    assert "the lines of daemon's log that name an error:\n  none\n" in err
    assert err.endswith("whole logs: make logs\n")


def test_up_refuses_a_missing_socket_before_anything_runs(tmp_path, capsys):
    argv = ["up", "--engine=false", "--project=p", f"--socket={tmp_path / 'none.sock'}"]
    assert stack.main([*argv, "--socket-hint=Start it."]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: no engine API socket at ") and err[1] == "Start it."


def test_build_drops_the_stamps_of_images_to_build_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".build").mkdir()
    for image in ("webserver", "daemon"):
        (tmp_path / ".build" / image).touch()
    # `true` as the engine: every image is in the store; --rebuild (BUILD_FLAGS) drops all.
    argv = ["build", "--engine=true", "--project=p", "--image=webserver", "--image=daemon"]
    assert stack.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / ".build").iterdir()) == ["daemon", "webserver"]
    assert stack.main([*argv, "--rebuild"]) == 0
    assert list((tmp_path / ".build").iterdir()) == []


def test_clean_asks_for_confirmation(capsys):
    assert stack.main(["clean", "--engine=false", "--compose=false", "--project=p"]) == 1
    assert "Run: make clean CONFIRM=yes" in capsys.readouterr().err


def test_behind_the_login_proxy_the_wait_runs_in_the_webservers_container(monkeypatch):
    """--inside: wait_ready.py goes to the webserver's container on its standard input, against
    the webserver's own port there, and prints the proxy's address (the host's)."""
    calls = []

    def fake_run(*args, **kwargs):
        calls.append((args, kwargs["stdin"].read(30)))
        return stack.subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(stack, "run", fake_run)
    args = stack.argparse.Namespace(engine="podman", inside="proj-webserver", url="https://h:3000")
    assert stack.wait_ready(args, "--location=a") == 0
    ((command, source),) = calls
    assert command[:6] == ("podman", "exec", "-i", "proj-webserver", "python3", "-")
    assert command[6:] == ("--url", stack.LOCAL_UI, "--shown-url", "https://h:3000", "--location=a")
    assert source.startswith(b"#!/usr/bin/env python3")


def test_the_proxy_counts_as_ready_when_it_refuses_a_login(monkeypatch):
    def refused(url, **kwargs):
        raise stack.urllib.error.HTTPError(url, 401, "Unauthorized", {}, None)

    monkeypatch.setattr(stack.urllib.request, "urlopen", refused)
    assert stack.proxy_ready("https://127.0.0.1:1", "proj-proxy")


def test_a_proxy_that_never_answers_is_reported(monkeypatch, capsys):
    def unreachable(url, **kwargs):
        raise stack.urllib.error.URLError("connection refused")

    monkeypatch.setattr(stack.urllib.request, "urlopen", unreachable)
    assert not stack.proxy_ready("https://127.0.0.1:1", "proj-proxy", seconds=0)
    assert "the login proxy (proj-proxy) did not answer" in capsys.readouterr().err
