"""What benchmarks/run.py and its other modes (benchmarks/stress.py: --soak, --burst) share.

- a layout, one way to containerise Dagster driven through its own commands (Layout), and the
  template's own (Launchpad: the default answers through the generated Makefile);
- what the host sees of a running stack: a launch timed to SUCCESS, a container's processes and
  their resident memory, read from /proc;
- what a measurement has done so far (Track), a layout torn down without hiding the failure that
  led there (remove_layout), the JSON report (write_report).

A failing layout is recorded, not fatal: launchpad_dev/bench_failures.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from launchpad_dev.bench_failures import BenchError, describe, run_failure
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import UPSTREAM, Engine, env_value, render, tool_env, use_base

PORTS = {
    "launchpad": 3301,
    "launchpad-vol": 3302,  # (<slug>-pipes-<location> fits a DNS label: 63 characters at most)
    "three-images": 3303,
    "shared-platform": 3304,
    "launchpad-pip": 3305,
    # launchpad-locations: the default project with 1, 2 and 3 code locations
    "lp-1loc": 3306,
    "lp-2loc": 3307,
    "lp-3loc": 3308,
    # launchpad-prebuilt (issue 35): the published platform images, code in the image or mounted,
    # and the 3-location projects whose bytes each mode stores
    "lp-pre": 3309,
    "lp-pre-vol": 3310,
    "lp-pre-3loc": 3311,
    "lp-bld-3loc": 3312,
    # launchpad-login (issue 31): the default answers with and without the login proxy (its
    # plain-HTTP redirect on the next port)
    "lp-local": 3313,
    "lp-login": 3314,
    # launchpad-upgrade (issue 32): make upgrade and make purge on a history of runs
    "lp-upgrade": 3315,
    # launchpad-logs (issue 33): step logs on the volume and in S3, with a tag limit
    "lp-logs-vol": 3316,
    "lp-logs-s3": 3317,
}
# Added per engine, so that two modes can run at once, one on each engine (--soak on one,
# --burst on the other) without their UIs claiming the same host port.
PORT_OFFSET = {"podman": 0, "docker": 100}
# Added to the code location to time `make lock` (lock_s): small, pure Python, no dependencies.
DEPENDENCY = "tomli-w>=1.0"


def run(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> None:
    """Run a command (the test venv's tools on PATH), or raise with its output."""
    result = subprocess.run(
        cmd, env={**tool_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


# --- what the host sees of a running stack ----------------------------------------------------


def launch_to_success(stack: Stack, timeout: float = 300) -> float:
    started = time.monotonic()
    run_id = stack.launch()
    while time.monotonic() - started < timeout:
        status = stack.run(run_id)["status"]
        if status == "SUCCESS":
            return time.monotonic() - started
        if status in ("FAILURE", "CANCELED"):
            raise BenchError(f"run {run_id} ended {status}: {run_failure(stack, run_id)}")
        time.sleep(0.1)
    raise BenchError(f"run {run_id} did not finish within {timeout} s")


def start_warm(layouts: dict, step) -> dict:
    """Copy, build and start each layout ({key: layout}, `step(text)` told each time), then
    one run on each to SUCCESS (it warms the code server's imports): {key: its Stack}."""
    for key, layout in layouts.items():
        step(f"{key}: copy, build, up")
        layout.copy()
        layout.build()
        layout.up()
    stacks = {key: layout.stack for key, layout in layouts.items()}
    for stack in stacks.values():
        launch_to_success(stack)
    return stacks


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, read from the host's /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def container_processes(engine: Engine, container: str) -> list[int]:
    """The host PIDs of a container's own processes: its main process and its descendants
    (a code server's runs, for one). Processes the engine starts in it with `exec` are not
    among them: health checks (Docker runs one per service every 10 s, each a Python process
    that lives a second or two) and commands such as `make shell`'s."""
    pid = engine.run("inspect", "--format", "{{.State.Pid}}", container, check=True).stdout.strip()
    return process_tree(int(pid))


def container_rss_mib(engine: Engine, container: str, field: str = "VmRSS") -> float:
    """Resident memory of a container's own processes (container_processes; VmRSS summed, read
    on the host). Counting every process of its cgroup instead counted a health check whenever
    a sample met one: a daemon at idle read 136 MiB, then 249. With field="RssAnon", only the
    anonymous part (the processes' own memory, not the pages of their executables and files,
    which the page cache shares)."""
    total_kib = 0
    for each in container_processes(engine, container):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        total_kib += next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith(f"{field}:")), 0)
    return round(total_kib / 1024, 1)


# --- the layouts ------------------------------------------------------------------------------


def append_change(path: Path) -> None:
    """A one-line change to a file (a comment: it changes the file, not what it does)."""
    path.write_text(path.read_text() + f"# benchmark: a one-line change at {time.time()}\n")


def seconds(step: Callable[[], object]) -> float:
    """Wall time of one step."""
    started = time.monotonic()
    step()
    return time.monotonic() - started


class Layout:
    """One way to containerise Dagster, driven through its own commands.

    A subclass says how its stack is copied, built, started, stopped, torn down and given a code
    change, where its code and dagster.yaml are, and what its containers and images are called;
    the steps made of those are here, the same for every layout."""

    services: tuple[str, ...]  # the Dagster services, by the layout's own names
    image_names: tuple[str, ...]  # its images: localhost/<slug>-<name>:latest
    location: str  # the code location's name
    code_file: Path  # a one-line change here is a code change
    config_file: Path  # and here a dagster.yaml change
    build_only = False  # True: only the cold build and the image sizes are measured

    def __init__(self, name: str, engine: Engine, work: Path):
        self.name, self.engine = name, engine
        self.slug = f"lpbench-{name}-{engine.name}"
        self.root = work / self.slug
        self.port = PORTS[name] + PORT_OFFSET.get(engine.name, 0)
        self.base: str | None = None  # set: build from this base instead of the configured one
        self.anonymous: set[str] = set()  # anonymous volumes seen, removed with the stack

    @cached_property
    def stack(self) -> Stack:
        return Stack(self.port, self.location)

    # implemented per layout
    def copy(self) -> None: ...
    def build(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def tear_down(self) -> None: ...  # containers, volumes, network; may fail if never started
    def deliver_code_change(self) -> None: ...
    def container(self, service: str) -> str: ...

    # the same for every layout
    def up(self) -> None:
        """Start the stack and wait until its code location is loaded."""
        self.start()
        self.wait_loaded()

    def wait_loaded(self, after: float = 0.0) -> None:
        """Until the location is LOADED (with `after`, loaded again since then), polled finely."""
        self.stack.wait_loaded(timeout=300, after=after, poll=0.1)

    def code_change_live(self) -> float:
        """Seconds from delivering a code change to the location loaded again (reload_s)."""
        self.change_code()
        started = time.monotonic()
        changed_at = time.time()
        self.deliver_code_change()
        self.wait_loaded(after=changed_at)
        return time.monotonic() - started

    def change_code(self) -> None:
        append_change(self.code_file)

    def change_config(self) -> None:
        append_change(self.config_file)

    def containers(self) -> dict[str, str]:
        return {s: self.container(s) for s in self.services}

    def images(self) -> list[str]:
        return [f"localhost/{self.slug}-{n}:latest" for n in self.image_names]

    def note_anonymous_volumes(self) -> None:
        """Remember the anonymous volumes of the stack's containers (an image's VOLUME with no
        named volume over it, as PostgreSQL's data in the baselines): neither a recreated
        container nor podman-compose's `down -v` removes them, so remove() does."""
        if names := self.engine.containers(self.slug):
            inspected = self.engine.run("container", "inspect", *names)
            for container in json.loads(inspected.stdout or "[]"):
                for mount in container.get("Mounts") or []:
                    if mount.get("Type") == "volume" and re.fullmatch(r"[0-9a-f]{64}", mount.get("Name", "")):
                        self.anonymous.add(mount["Name"])

    def remove(self) -> None:
        """The stack with everything it made, its images and its fresh base, and the
        anonymous volumes its containers ever had (see note_anonymous_volumes)."""
        self.note_anonymous_volumes()
        try:
            self.tear_down()
        except BenchError:  # a stack that never started
            pass
        if self.engine.name == "podman":
            self.engine.run("pod", "rm", "-f", f"pod_{self.slug}")
        if self.anonymous:
            self.engine.run("volume", "rm", "-f", *sorted(self.anonymous))
        self.engine.run("rmi", "-f", *self.images(), *([self.base] if self.base else []))


class Launchpad(Layout):
    """The template's default answers, through the generated project's Makefile (with
    `locations` > 1, as many code locations: the default one, then extra_1, extra_2, ...)."""

    def __init__(
        self,
        engine: Engine,
        work: Path,
        template: Path,
        delivery: str = "image",
        name: str | None = None,
        locations: int = 1,
    ):
        super().__init__(name or ("launchpad" if delivery == "image" else "launchpad-vol"), engine, work)
        self.template, self.delivery = template, delivery
        self.location = self.package = self.slug.replace("-", "_")
        self.locations = [self.package, *(f"extra_{i}" for i in range(1, locations))]
        pipes = tuple(f"pipes-{name.replace('_', '-')}" for name in self.locations)
        self.services = self.image_names = ("webserver", "daemon", *pipes)
        self.code_file = self.root / "pipes" / self.package / "src" / self.package / "assets.py"
        self.config_file = self.root / "config/dagster.yaml"

    def make(self, *targets: str, timeout: float = 1800, env: dict | None = None) -> None:
        run(["make", "-C", str(self.root), *targets], env=env, timeout=timeout)

    def answers(self) -> dict:
        """The answers it renders with: the defaults but for these."""
        return {
            "container_engine": self.engine.name,
            "code_delivery": self.delivery,
            "project_slug": self.slug,
            "ui_port": self.port,
            "code_locations": self.locations,
        }

    def render(self) -> None:
        render(self.template, self.root, self.answers())

    def copy(self) -> None:
        self.render()
        for setting in ("BASE_IMAGE", "POSTGRES_IMAGE"):
            image = env_value(self.root, setting)
            if not self.engine.has_image(image) and UPSTREAM:  # LAUNCHPAD_IMAGES=upstream: pull it
                pulled = self.engine.run("pull", image, timeout=1200)
                if pulled.returncode != 0:
                    raise BenchError(f"{self.engine.name} pull {image} failed: {pulled.stderr.strip()}")
            if not self.engine.has_image(image):
                raise BenchError(
                    f"{env_value(self.root, setting)} is not in {self.engine.name}'s store "
                    "(bash tests/standins/make-standins.sh)"
                )
        if self.base:
            use_base(self.root, self.base)

    def build(self) -> None:
        self.make("build")

    def start(self) -> None:
        self.make("-o", "build", "up")

    def stop(self) -> None:
        self.make("down")

    def tear_down(self) -> None:
        self.make("clean", "CONFIRM=yes", timeout=300)

    def deliver_code_change(self) -> None:
        self.make("reload")

    def container(self, service: str) -> str:
        return f"{self.slug}-{service}"  # the container_name the project gives it

    def add_dependency(self) -> dict:
        """Declare one dependency of the code location, `make lock`, `make build`: the lock time
        (uv against the package index), the rebuild, and which images were rebuilt."""
        pyproject = self.root / "pipes" / self.package / "pyproject.toml"
        anchor = '    "dagster-core",\n'
        text = pyproject.read_text()
        if anchor not in text:
            raise BenchError(f"{pyproject} has no dependencies list to add to")
        pyproject.write_text(text.replace(anchor, f'{anchor}    "{DEPENDENCY}",\n', 1))
        stamps = {i: (self.root / ".build" / i).stat().st_mtime_ns for i in self.image_names}
        figures = {
            "lock_s": round(seconds(lambda: self.make("lock")), 2),
            "rebuild_dependency_added_s": round(seconds(self.build), 2),
        }
        figures["rebuilt_on_dependency_added"] = [
            i for i in self.image_names if (self.root / ".build" / i).stat().st_mtime_ns != stamps[i]
        ]
        return figures


# --- a measurement, recorded ------------------------------------------------------------------


class Track:
    """What a layout has measured so far and what it is measuring now: a failure is recorded
    with both (bench_failures.failed_entry), and the figures measured before it are kept."""

    def __init__(self, name: str, log: Callable[[str], None]):
        self.name, self.log = name, log
        self.figures: dict = {}
        self.now = "start"

    def step(self, what: str, say: bool = True) -> None:
        self.now = what
        if say:
            self.log(f"{self.name}: {what}")


def remove_layout(layout: Layout, track: Track) -> None:
    """Tear a layout down with everything it made; a failure to do so is noted, not raised (it
    would hide the failure that led here, and the next layout has its own names)."""
    try:
        layout.remove()
    except Exception as exc:  # noted in the JSON, the run goes on
        track.figures.setdefault("teardown_errors", []).append(describe(exc))
        track.log(f"{layout.name}: tear-down failed: {describe(exc)}")


def write_report(report: dict, path: Path, log) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"JSON written to {path}")
