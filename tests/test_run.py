"""Run tier: a covering set of combinations, started and used end to end.

Each combination is rendered with Copier, started with the generated project's own
`make up`, and driven from the host with Dagster's GraphQL client: the code location
loads, the example job succeeds and records materializations, the daemon is alive and the
sensor requests a run, code changes reload (volume delivery), runs get their own container
(container launcher), and history survives `make down` / `make up`. Readiness is polled for
real (UI and location status), never inferred from container health.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

import matrix
from conftest import note
from dagster_api import Stack
from engines import ENGINES, env_value, make, missing, remove_stack, render, unbuildable_reason

FACTORS = [
    "container_engine",
    "python_version",
    "code_delivery",
    "storage",
    "run_launcher",
    "dagster_version",
]
CANDIDATES = [a for a in matrix.combinations() if unbuildable_reason(a) is None]
RUN_SET = matrix.covering_set(CANDIDATES, FACTORS)
FIGURES: dict[str, list[str]] = {}

# A PostgreSQL that the stack reaches only through DAGSTER_PG_HOST, as it would a server of
# its own; compose loads compose.override.yaml by itself (both tools).
EXTERNAL_DB = """\
services:
  extdb:
    image: docker.io/library/postgres:17-trixie
    container_name: {slug}-extdb
    environment:
      POSTGRES_USER: ext_user
      POSTGRES_PASSWORD: ext-secret
      POSTGRES_DB: ext_db
    volumes: [extdb-data:/var/lib/postgresql/data]
    networks: [dagster]
volumes:
  extdb-data: {}
"""
EXTERNAL_ENV = {
    "DAGSTER_PG_HOST": "extdb",
    "DAGSTER_PG_USER": "ext_user",
    "DAGSTER_PG_PASSWORD": "ext-secret",
    "DAGSTER_PG_DB": "ext_db",
}

RELOAD_ASSET = '''

@dg.asset(group_name="example")
def reload_check(order_summary: dict) -> int:
    """Added while the stack runs, to prove that reload picks up new code."""
    return order_summary["orders"]


defs = dg.Definitions(
    assets=[raw_orders, order_summary, reload_check],
    jobs=[example_job],
    schedules=[example_schedule],
    sensors=[inbox_sensor],
)
'''


def set_env(root: Path, values: dict[str, str]) -> None:
    """Write .env from .env.example with some values replaced (as a user would edit it)."""
    text = (root / ".env.example").read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert count == 1, key
    (root / ".env").write_text(text)


def started_at(engine, names: list[str]) -> dict[str, str]:
    return {
        n: engine.run("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", n, check=True).stdout.strip()
        for n in names
    }


def start_external_db(engine, root: Path, slug: str) -> None:
    """An external database is up before the stack starts, as it would be in real life."""
    result = subprocess.run([*engine.compose, "up", "-d", "extdb"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    engine.wait_pg_ready(f"{slug}-extdb", "ext_user", "ext_db", "the external PostgreSQL")


def up(engine, root: Path, port: int) -> float:
    if (root / "compose.override.yaml").exists():
        start_external_db(engine, root, root.name)
    started = time.monotonic()
    result = make(root, "up")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"Dagster UI ready at http://127.0.0.1:{port}" in result.stdout, result.stdout[-2000:]
    return time.monotonic() - started


def down_and_check(engine, root: Path, slug: str) -> None:
    result = make(root, "down")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert engine.containers(slug) == [], f"containers left after make down: {engine.containers(slug)}"
    assert f"{slug}_dagster" not in engine.networks(), "make down left the network behind"


def start_sensor(stack: Stack, name: str) -> None:
    """Switch the sensor on; while the location is (re)loading it can be briefly not found."""
    deadline = time.monotonic() + 60
    while (result := stack.start_sensor(name)) != "Sensor":
        assert time.monotonic() < deadline, f"could not start {name}: {result}"
        stack.wait_loaded(timeout=60)
        time.sleep(2)


def proc_status(engine, container: str) -> dict[str, str]:
    status = engine.run("exec", container, "cat", "/proc/1/status", check=True).stdout
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


def check_confinement(engine, root: Path, slug: str, answers: dict) -> None:
    """What compose.yaml promises, as the running containers really are."""
    for service in ("webserver", "daemon", "pipes"):
        container = f"{slug}-{service}"
        status = proc_status(engine, container)
        assert status["Uid"].split()[0] == "10001" and status["Gid"].split()[0] == "10001", service
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, (
            f"{service} has capabilities"
        )
        assert status["NoNewPrivs"].strip() == "1", f"{service} may gain privileges"
        # $HOME belongs to the service user: only a read-only root filesystem refuses it.
        writes_root = engine.run("exec", container, "touch", "/home/dagster/probe").returncode == 0
        assert writes_root == (service == "pipes"), f"{service}: root filesystem writable={writes_root}"
        assert engine.run("exec", container, "touch", "/tmp/probe").returncode == 0, f"{service}: no /tmp"
    # What the services wrote on the shared volume belongs to the service user.
    foreign = engine.run(
        "exec", f"{slug}-pipes", "find", "/var/lib/dagster", "!", "-user", "10001", check=True
    )
    assert foreign.stdout.strip() == "", f"files on dagster-data not owned by 10001: {foreign.stdout[:500]}"
    # The UI is published on 127.0.0.1 only; PostgreSQL is not published at all.
    ports = engine.run("port", f"{slug}-webserver", check=True).stdout.split()
    assert ports and all(p.startswith("127.0.0.1:") for p in ports if ":" in p), ports
    if answers["storage"] == "postgres":
        assert engine.run("port", f"{slug}-postgres").stdout.strip() == "", "PostgreSQL is published"
        status = proc_status(engine, f"{slug}-postgres")
        assert status["Uid"].split()[0] == "999" and int(status["CapEff"], 16) == 0
    # The database password (from .env) is in no image's history or metadata.
    password = re.search(r"^DAGSTER_PG_PASSWORD=(.*)$", (root / ".env").read_text(), re.M)
    if password:
        for service in ("webserver", "daemon", "pipes"):
            ref = f"localhost/{slug}-{service}:latest"
            assert password.group(1) not in engine.image_text(ref), f"the PostgreSQL password is in {ref}"


def exercise(engine, root: Path, answers: dict, port: int, slug: str, figures: list[str]) -> None:
    package = slug.replace("-", "_")
    stack = Stack(port, package)
    stack.wait_loaded(timeout=60)
    repo = stack.repository()
    assert {j["name"] for j in repo["jobs"]} >= {"example_job"}
    assert {s["name"] for s in repo["schedules"]} == {"example_schedule"}
    assert {s["name"] for s in repo["sensors"]} == {"inbox_sensor"}
    assert stack.asset_keys() >= {"raw_orders", "order_summary"}

    # The example job succeeds and records both materializations.
    seen_run_containers: set[str] = set()

    def watch_run_containers():
        if answers["run_launcher"] == "container":
            ps = engine.run("ps", "-a", "--filter", "label=dagster/run_id", "--format", "{{.Image}}")
            seen_run_containers.update(ps.stdout.split())

    started = time.monotonic()
    run_id = stack.launch()
    status = stack.wait_run(run_id, on_poll=watch_run_containers)
    launch_s = time.monotonic() - started
    run = stack.run(run_id)
    if status.value != "SUCCESS":
        daemon_log = engine.run("logs", "--tail", "60", f"{slug}-daemon")
        pytest.fail(
            f"run {run_id} ended {status.value}: {stack.errors(run_id)}\n"
            f"daemon log:\n{daemon_log.stdout[-3000:]}{daemon_log.stderr[-3000:]}"
        )
    assert run["stats"]["materializations"] == 2, run["stats"]
    figures.append(f"launch->SUCCESS {launch_s:.1f} s")

    tags = {t["key"]: t["value"] for t in run["tags"]}
    if answers["run_launcher"] == "container":
        pipes_image = f"localhost/{slug}-pipes:latest"
        assert tags.get("dagster/image") == pipes_image, tags
        container = tags["docker/container_id"]
        # The run is SUCCESS a moment before its process exits and the engine removes it.
        deadline = time.monotonic() + 60
        while engine.run("inspect", container).returncode == 0:
            assert time.monotonic() < deadline, "the finished run's container was not removed"
            time.sleep(0.5)
        # (The dagster/image tag above is what the launcher started; any container we
        # happened to see while polling must be that image.)
        assert seen_run_containers <= {pipes_image}, f"run containers seen: {seen_run_containers}"
    else:
        assert "docker/container_id" not in tags

    check_confinement(engine, root, slug, answers)

    # The project's own status and log targets show the stack.
    ps = make(root, "ps")
    assert ps.returncode == 0 and all(f"{slug}-{s}" in ps.stdout for s in ("pipes", "webserver", "daemon")), (
        ps
    )
    logs = make(root, "logs", "SERVICE=webserver", "LOGS_FLAGS=--tail=100", timeout=60)
    assert logs.returncode == 0 and "Serving dagster-webserver" in logs.stdout + logs.stderr, logs

    # The daemon is alive, by its own check and by the instance's account.
    assert engine.run("exec", f"{slug}-daemon", "dagster-daemon", "liveness-check").returncode == 0
    daemons = stack.daemons()
    assert all(daemons.get(d) for d in ("SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR")), daemons

    # The sensor, switched on, sees a file in its inbox and requests a run that succeeds.
    engine.run(
        "exec",
        f"{slug}-pipes",
        "sh",
        "-c",
        "mkdir -p /var/lib/dagster/inbox && echo id > /var/lib/dagster/inbox/orders-1.csv",
        check=True,
    )
    start_sensor(stack, "inbox_sensor")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ticks = [t for t in stack.sensor_ticks("inbox_sensor") if t["runIds"]]
        if ticks:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the sensor requested no run: {stack.sensor_ticks('inbox_sensor')}")
    sensor_run = ticks[0]["runIds"][0]
    assert stack.wait_run(sensor_run).value == "SUCCESS"

    # Volume delivery: new code appears on reload, and no container restarts.
    if answers["code_delivery"] == "volume":
        names = [f"{slug}-{s}" for s in ("pipes", "webserver", "daemon")]
        before = started_at(engine, names)
        definitions = root / "pipes/src" / package / "definitions.py"
        definitions.write_text(definitions.read_text() + RELOAD_ASSET)
        started = time.monotonic()
        reloaded = make(root, "reload")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert "reload_check" in stack.asset_keys()
        figures.append(f"reload {time.monotonic() - started:.1f} s")
        assert started_at(engine, names) == before, "a container restarted during reload"

    # History, schedule state and materializations survive make down / make up, on
    # PostgreSQL and SQLite alike, and (image delivery) a rebuild with new code.
    assert stack.start_schedule("example_schedule") == "ScheduleStateResult"
    materialized = stack.materializations("order_summary")
    assert materialized >= 2, materialized  # the job's run and the sensor's
    down_and_check(engine, root, slug)
    if answers["code_delivery"] == "image":
        assets = root / "pipes/src" / package / "assets.py"
        assets.write_text(assets.read_text() + "\n# changed while the stack was down\n")
    figures.append(f"up->LOADED {up(engine, root, port):.1f} s (images built, volumes kept)")
    stack.wait_loaded(timeout=60)
    assert {run_id, sensor_run} <= stack.run_ids()
    assert stack.run(run_id)["stats"]["materializations"] == 2
    assert stack.schedule_status("example_schedule") == "RUNNING"
    assert stack.materializations("order_summary") == materialized
    if answers["code_delivery"] == "image":
        baked = engine.run("exec", f"{slug}-pipes", "cat", f"/opt/dagster/app/{package}/assets.py")
        assert "changed while the stack was down" in baked.stdout, "make up did not rebuild pipes"


@pytest.mark.parametrize("answers", RUN_SET, ids=[matrix.combo_id(a) for a in RUN_SET])
def test_stack_runs_end_to_end(answers, template_snapshot, tmp_path_factory):
    engine = ENGINES[answers["container_engine"]].require()
    index = RUN_SET.index(answers)
    slug, port = f"lp-run-{index}", 3101 + index
    root = tmp_path_factory.mktemp("run") / slug
    render(template_snapshot, root, {**answers, "project_slug": slug, "ui_port": port})
    for setting in ("BASE_IMAGE", "POSTGRES_IMAGE"):
        image = env_value(root, setting)
        if image and not engine.has_image(image):
            missing(f"the stand-in {image} is not in {engine.name}'s store")
    if answers["storage"] == "external-postgres":
        (root / "compose.override.yaml").write_text(EXTERNAL_DB.replace("{slug}", slug))
        set_env(root, EXTERNAL_ENV)
        if not engine.has_image("docker.io/library/postgres:17-trixie"):
            missing(f"the PostgreSQL stand-in is not in {engine.name}'s store")
    if answers["run_launcher"] == "container":
        socket = "/run/podman/podman.sock" if engine.name == "podman" else "/var/run/docker.sock"
        if not Path(socket).is_socket():
            missing(f"the {engine.name} API socket {socket} is not there (.ci/install-engines.sh starts it)")

    figures = [matrix.combo_id(answers)]
    try:
        figures.append(f"first make up {up(engine, root, port):.0f} s (build included)")
        exercise(engine, root, answers, port, slug, figures)
        down_and_check(engine, root, slug)
    finally:
        remove_stack(engine, root, slug)
    FIGURES.setdefault(engine.name, []).append(", ".join(figures))
    note(f"run tier, {engine.name}", " | ".join(FIGURES[engine.name]))


def test_covering_set_covers_every_value_on_both_engines():
    for factor in FACTORS:
        values = {a[factor] for a in CANDIDATES}
        assert values == {a[factor] for a in RUN_SET}, factor
    assert {a["container_engine"] for a in RUN_SET} == {"podman", "docker"}
    note("run tier combinations", f"{len(RUN_SET)} (all pairs of {', '.join(FACTORS)})")


def test_no_stray_run_containers_left():
    for name in ("podman", "docker"):
        engine = ENGINES[name]
        if engine.problem():
            continue
        left = engine.run("ps", "-a", "--filter", "label=dagster/run_id", "--format", "{{.Names}}")
        assert left.stdout.strip() == "", f"{name}: {left.stdout}"
