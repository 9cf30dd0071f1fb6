"""platform/instance_ready.py, which every image's command goes through: with SQLite storage the
first start creates the databases one process at a time (tests/test_run.py's SQLite stacks run
it in the images; here, with the test venv's Dagster, many starts at once, which is where it
matters).

Found in CI (a SQLite stack's webserver never came up): the webserver, the daemon and the code
server, started together on a new volume, each created the databases, and two recorded the
schema version: "Version table 'alembic_version' has more than one head present", at every
start after. Three processes opening a new SQLite instance at once did that here in two tries
of three.
"""

from __future__ import annotations

import importlib.util
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launchpad_dev.matrix import ROOT

SCRIPT = ROOT / "template" / "platform" / "instance_ready.py"
# What each started process does once the script execs it: open the instance as Dagster does.
OPEN_INSTANCE = (
    "from dagster import DagsterInstance\n"
    "with DagsterInstance.get() as instance:\n"
    "    instance.get_runs(limit=1)\n"
    "    instance.all_instigator_state()\n"
)
STARTS = 4


def instance_home(tmp_path: Path, storage: str) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(storage)
    return {"DAGSTER_HOME": str(home), "PATH": str(Path(sys.executable).parent)}


def start_together(env: dict, command: list[str]) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(STARTS)
    ]
    return [
        subprocess.CompletedProcess(p.args, p.wait(timeout=300), p.stdout.read(), p.stderr.read())
        for p in processes
    ]


def version_rows(base: Path) -> dict[str, int]:
    databases = sorted(base.rglob("*.db"))
    assert databases, f"no database under {base}"
    query = "SELECT * FROM alembic_version"
    return {str(db.relative_to(base)): len(sqlite3.connect(db).execute(query).fetchall()) for db in databases}


@pytest.mark.parametrize("attempt", range(3))
def test_sqlite_databases_are_created_once_when_every_service_starts_at_once(attempt, tmp_path):
    base = tmp_path / "history"
    env = instance_home(tmp_path, f"storage:\n  sqlite:\n    base_dir: {base}\n")
    results = start_together(env, [sys.executable, str(SCRIPT), "--", sys.executable, "-c", OPEN_INSTANCE])
    assert all(r.returncode == 0 for r in results), "\n".join(r.stderr[-2000:] for r in results)
    rows = version_rows(base)
    # run history, event log index, schedules: each with one schema version
    assert len(rows) == 3 and set(rows.values()) == {1}, rows
    assert (base / ".launchpad-instance-ready").is_file()


def test_a_ready_instance_or_other_storage_goes_straight_to_the_command(tmp_path):
    """When the marker is there, or the storage is not SQLite, nothing is created: the command
    runs at once, in place of the script (exec), with its arguments and exit status."""
    base = tmp_path / "history"
    env = instance_home(tmp_path, f"storage:\n  sqlite:\n    base_dir: {base}\n")
    base.mkdir()
    (base / ".launchpad-instance-ready").write_text("")
    probe = "import sys; print(sys.argv[1:]); sys.exit(3)"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", probe, "a b"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (3, "['a b']\n"), done
    assert not list(base.rglob("*.db")), "a database was created although the marker was there"

    other = tmp_path / "pg"
    other.mkdir()
    env = instance_home(other, "storage:\n  postgres:\n    postgres_db: {}\n")
    command = [sys.executable, str(SCRIPT), "--", sys.executable, "-c", probe]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "[]\n"), done
    assert not list(other.rglob("*.db")) and not list(other.rglob(".launchpad-*"))


def test_without_a_command_it_says_how_to_call_it(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: instance_ready.py -- COMMAND" in done.stderr


POSTGRES_FROM_ENV = """storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: dagster
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: dagster
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_postgresql_storage_waits_until_the_server_accepts_connections(tmp_path):
    """The stack starts at once (`make up`, a Quadlet pod): the webserver and the daemon wait for
    PostgreSQL (host and port read from dagster.yaml, {env: ...} resolved), then start; nothing
    is created. Here the "server" opens its port 2 s after the start; the command must run after
    that, not before (and without the wait it runs at once: the check can fail)."""
    port = free_port()
    env = instance_home(tmp_path, POSTGRES_FROM_ENV)
    env.update(DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(port), DAGSTER_PG_PASSWORD="x")
    stamp = "import time; print(time.time())"
    started = time.time()
    waiting = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", stamp],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2)
    with socket.create_server(("127.0.0.1", port)) as server:
        opened = time.time()
        out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    ran = float(out)
    assert ran >= opened, f"the command ran {opened - ran:.2f} s before PostgreSQL's port opened"
    assert ran - opened < 2, f"the command ran {ran - opened:.2f} s after the port opened"
    assert opened - started >= 2 and server is not None
    assert not list((tmp_path / "home").glob(".launchpad-*"))


def test_the_postgresql_address_is_read_as_dagster_reads_it(monkeypatch):
    """Literal values, {env: NAME}, postgres_url; None where there is nothing to wait for."""
    spec = importlib.util.spec_from_file_location("instance_ready", SCRIPT)
    instance_ready = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(instance_ready)
    monkeypatch.setenv("PGH", "db.example")
    monkeypatch.setenv("PGURL", "postgresql://u:p@pg.internal:6543/dagster")
    address = instance_ready.postgres_address
    from_env = {"postgres": {"postgres_db": {"hostname": {"env": "PGH"}, "port": 5433}}}
    assert address(from_env) == ("db.example", 5433)
    assert address({"postgres": {"postgres_db": {"hostname": "h"}}}) == ("h", 5432)
    assert address({"postgres": {"postgres_url": {"env": "PGURL"}}}) == ("pg.internal", 6543)
    assert address({"postgres": {"postgres_db": {"hostname": {"env": "UNSET_ANYWHERE"}}}}) is None
    assert address({"sqlite": {"base_dir": "/x"}}) is None
    port = free_port()  # nothing listens: gives up after its timeout, and says so
    began = time.monotonic()
    assert instance_ready.wait_for_postgres("127.0.0.1", port, timeout=1) is False
    assert 1 <= time.monotonic() - began < 5
