"""Benchmark: a generated project against two common Dagster layouts, side by side.

    .venv/bin/python benchmarks/run.py          # full: every engine, cold builds, 5 launches, whole matrix
    .venv/bin/python benchmarks/run.py --quick  # CI: first engine, cached builds, 1 launch, matrix slice

For each available engine it renders the default answers (the "launchpad" layout) and builds
the two baseline layouts in benchmarks/baselines/ on the same stand-in base with the same
pinned Dagster versions, then measures each one the same way, from the host, through the real
engines, compose tools and Dagster's GraphQL API. It prints a table per engine (every figure
also as a ratio to the best baseline, and against the targets of docs/benchmarks.md) and
writes JSON (snake_case keys; seconds, bytes, MiB). Slow figures never fail it. A layout that
fails is recorded (in its JSON entry and the table, with its error) and the run goes on with the
next layout and engine; only a failure of the generated project itself exits 1
(launchpad_dev/bench_failures.py). The JSON is written either way. The layouts and the host's
measurements that the other modes use too are in launchpad_dev/bench.py.

Other modes, not in CI (docs/benchmarks.md): --soak [N] and --burst [N] (benchmarks/stress.py),
--fuzz-long [N] (benchmarks/fuzz_long.py); each writes benchmarks/results-MODE.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import posixpath
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from launchpad_dev import matrix
from launchpad_dev.bench import (
    Launchpad,
    Layout,
    Track,
    container_rss_mib,
    launch_to_success,
    remove_layout,
    run,
    seconds,
    start_warm,
    write_report,
)
from launchpad_dev.bench_failures import (
    PROJECT_LAYOUTS,
    BenchError,
    break_code,
    broken_layouts,
    failed_entry,
)
from launchpad_dev.common import ROOT, snapshot_template
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, Engine, env_value, tool_env

BASELINES = ROOT / "benchmarks" / "baselines"
LAYOUTS = (
    "launchpad",
    "launchpad-pip",
    "three-images",
    "shared-platform",
    "launchpad-locations",
    "launchpad-prebuilt",
    "launchpad-login",
    "launchpad-upgrade",
    "launchpad-logs",
)
# The numbers of code locations that launchpad-locations builds (issue 13).
LOCATION_COUNTS = (1, 2, 3)
# Targets for the default render (issue 6, tightened by issue 17); lower is better for every
# figure. Issue 17 also asks every ratio to the best baseline to be at or below 1.0.
# Restarts measured for the spread of up -> LOADED (launchpad layouts).
RESTARTS = 10
TARGETS = {
    "copy_to_first_success_s": 30,
    "first_up_to_loaded_s": 10,
    "up_to_loaded_s": 5,
    "launch_to_success_s": 2.5,
    "reload_s": 1,
    "rebuild_code_change_s": 1,
    "idle_rss_mib_total": 450,
}
# copy -> first SUCCESS with the published platform images (issue 35), code in the image.
PREBUILT_COPY_TO_FIRST_SUCCESS = 15
# The login proxy's cost (issue 31): launch -> SUCCESS through it at most 5 % slower than
# without it, and its idle RSS under 30 MiB. Its GraphQL latency is reported, with no target.
LOGIN_LAUNCH_OVERHEAD = 0.05
LOGIN_PROXY_RSS_MIB = 30
# `make upgrade` on the default stack with 1,000 runs of history (issue 32): the UI unreachable
# for at most this long (benchmarks/upgrade_bench.py).
UPGRADE_DOWNTIME = 30
# Step logs in S3 (issue 33): launch -> SUCCESS with compute_logs=s3 at most 10 % slower than
# with the volume (benchmarks/logs_bench.py, LOGS_LAUNCHES launches each, in turns).
LOGS_S3_LAUNCH_OVERHEAD = 0.10
# Queries timed for the GraphQL latency (the median is reported) and launches for the median
# of launch -> SUCCESS, with and without the proxy.
LOGIN_QUERIES = 20
LOGIN_LAUNCHES = 10
LOGS_LAUNCHES = LOGIN_LAUNCHES
UNIQUE_BYTES_TARGET = 0.5  # x the first baseline's unique_bytes
COLD_BUILD_VS_PIP = 0.6  # x the best baseline's cold build (they install with pip)


# --- what the host sees of a running stack (the rest: launchpad_dev/bench.py) ----------------


def image_sizes(engine: Engine, refs: list[str]) -> tuple[dict[str, int], int]:
    """(bytes per image, unique bytes of the set): one archive of all images, each layer once."""
    sizes = {ref: int(engine.inspect(ref)["Size"]) for ref in refs}
    save = ["save", "--multi-image-archive"] if engine.name == "podman" else ["save"]
    proc = subprocess.Popen([engine.name, *save, *refs], stdout=subprocess.PIPE, env=tool_env())
    members: dict[str, int] = {}
    links: dict[str, str] = {}  # Docker stores a layer met twice once, and links to it
    manifest: list[dict] = []
    with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
        for member in archive:
            if member.name == "manifest.json":
                manifest = json.load(archive.extractfile(member))
            elif member.isfile():
                members[member.name] = member.size
            elif member.issym():
                links[member.name] = posixpath.normpath(
                    posixpath.join(posixpath.dirname(member.name), member.linkname)
                )
    if proc.wait() != 0 or not manifest:
        raise BenchError(f"{engine.name} save {' '.join(refs)} failed")
    layers = {links.get(layer, layer) for image in manifest for layer in image["Layers"]}
    return sizes, sum(members[layer] for layer in layers)


# --- the layouts ------------------------------------------------------------------------------


class LaunchpadPip(Launchpad):
    """The template's default answers with pip in place of uv: the same image definitions, the
    same exported lock (hashes required), the same build cache mount for the downloads; only
    the installer differs (pip in the virtualenv, as before v0.2.0). Measured for its cold
    build and size only: issue 12 compares uv's cold build with pip's."""

    build_only = True
    INSTALL = re.compile(r"python3 /opt/dagster/install_locked\.py install (\S+)")
    PIP = (
        "{ [ -x /opt/venv/bin/pip ] || python3 -m venv /opt/venv; } "
        "&& PIP_CACHE_DIR=/var/cache/launchpad/pip /opt/venv/bin/pip install --disable-pip-version-check "
        "--no-deps --require-hashes -r \\1"
    )

    def __init__(self, engine: Engine, work: Path, template: Path):
        super().__init__(engine, work, template, name="launchpad-pip")

    def copy(self) -> None:
        super().copy()
        # Every code location's image is built from pipes/launchpad_pipes/'s definition.
        for image in ("platform/webserver", "platform/daemon", "pipes/launchpad_pipes"):
            (path,) = [p for p in (self.root / image).iterdir() if p.name in ("Containerfile", "Dockerfile")]
            text, count = self.INSTALL.subn(self.PIP, path.read_text())
            if not count:
                raise BenchError(f"{path}: no install_locked.py step to replace with pip")
            path.write_text(text)


class Baseline(Layout):
    """A fixture of benchmarks/baselines/, driven with the engine's compose tool."""

    services = ("webserver", "daemon", "user_code")
    IMAGE_NAMES = {"three-images": services, "shared-platform": ("dagster", "user_code")}

    def __init__(self, name: str, engine: Engine, work: Path, rendered: Path, package: str):
        super().__init__(name, engine, work)
        self.rendered, self.package = rendered, package
        self.location = "example"
        self.image_names = self.IMAGE_NAMES[name]
        self.code_file = self.root / "code/example/assets.py"
        self.config_file = self.root / "dagster.yaml"
        self.env = {
            "BENCH_NAME": self.slug,
            "BENCH_PORT": str(self.port),
            "BASE_IMAGE": env_value(rendered, "BASE_IMAGE"),
            "POSTGRES_IMAGE": env_value(rendered, "POSTGRES_IMAGE"),
        }

    def compose(self, *args: str) -> None:
        run(
            [*self.engine.compose, "-p", self.slug, "-f", str(self.root / "compose.yaml"), *args],
            env={**self.env, **({"BASE_IMAGE": self.base} if self.base else {})},
        )

    def copy(self) -> None:
        shutil.copytree(BASELINES / self.name, self.root)
        # The same pins and the same example code as the rendered project.
        shutil.copy2(self.rendered / "platform/requirements.txt", self.root / "requirements.txt")
        code = self.root / "code"
        location = self.rendered / "pipes" / self.package
        # The location's build step first, as `make build` runs it: the example assets read the
        # build_info.json it writes (their code version).
        run(["sh", "-c", f"cd '{location}' && sh build.sh"])
        shutil.copytree(location / "src" / self.package, code / "example")
        # The package every code location uses (its defaults and IO manager), beside it.
        shared = self.rendered / "pipes/launchpad_pipes/src/launchpad_pipes"
        shutil.copytree(shared, code / "launchpad_pipes")
        shutil.copy2(location / "requirements.txt", code / "requirements.txt")

    def build(self) -> None:
        self.compose("build")

    def start(self) -> None:
        self.compose("up", "-d")

    def stop(self) -> None:
        self.compose("down")

    def tear_down(self) -> None:
        self.compose("down", "-v")

    def deliver_code_change(self) -> None:
        # Code is baked in: rebuild the user-code image and recreate its container.
        self.compose("build", "user_code")
        self.compose("up", "-d", "--force-recreate", "--no-deps", "user_code")

    def container(self, service: str) -> str:
        """The container compose made for the service, found by compose's labels."""
        labels = {"com.docker.compose.project": self.slug, "com.docker.compose.service": service}
        if self.engine.name == "podman":
            listed = json.loads(self.engine.run("ps", "-a", "--format", "json", check=True).stdout or "[]")
            names = [c["Names"][0] for c in listed if labels.items() <= (c.get("Labels") or {}).items()]
        else:
            filters = [arg for k, v in labels.items() for arg in ("--filter", f"label={k}={v}")]
            names = self.engine.run("ps", "-q", *filters, check=True).stdout.split()
        if not names:
            raise BenchError(f"no container for {service} in {self.slug}")
        return names[0]


# --- one layout, measured ---------------------------------------------------------------------


def measure(
    layout: Layout, launches: int, volume: Launchpad | None, quick: bool, stand_in: str, track: Track
) -> dict:
    figures, step = track.figures, track.step
    try:
        step("fresh base and copy", say=False)
        if not quick:  # a cold build: no build cache matches a fresh base (one tiny layer more)
            layout.base = layout.engine.fresh_base(stand_in, layout.slug)
        began = time.monotonic()
        layout.copy()
        if layout.name in broken_layouts():
            break_code(layout.code_file)
            figures["broken_on_purpose"] = True
        figures["copy_s"] = round(time.monotonic() - began, 2)
        stack = layout.stack
        step("build (cache allowed)" if quick else "cold build")
        figures["cold_build_s" if not quick else "cached_build_s"] = round(seconds(layout.build), 1)
        if layout.build_only:
            step("image sizes", say=False)
            figures["image_bytes"], figures["unique_bytes"] = image_sizes(layout.engine, layout.images())
            return figures
        step("first up -> location LOADED")
        figures["first_up_to_loaded_s"] = round(seconds(layout.up), 1)
        step("first launch -> SUCCESS", say=False)
        launch_to_success(stack)
        key = "copy_to_first_success_s" if not quick else "copy_to_first_success_cached_s"
        figures[key] = round(time.monotonic() - began, 1)

        step(f"{launches} launches -> SUCCESS")
        times = [launch_to_success(stack) for _ in range(launches)]
        figures["launch_to_success_s"] = round(statistics.median(times), 2)
        figures["launch_to_success_all_s"] = [round(t, 2) for t in times]
        step("idle memory, image sizes")
        time.sleep(5)  # idle: the run worker has exited, the daemon is between ticks
        rss = {s: container_rss_mib(layout.engine, c) for s, c in layout.containers().items()}
        figures["idle_rss_mib"] = rss
        figures["idle_rss_mib_total"] = round(sum(rss.values()), 1)
        sizes, unique = image_sizes(layout.engine, layout.images())
        figures["image_bytes"] = sizes
        figures["unique_bytes"] = unique

        step("rebuild after a code change")
        layout.change_code()
        figures["rebuild_code_change_s"] = round(seconds(layout.build), 2)
        if not (quick and isinstance(layout, Baseline)):  # a full reinstall in baseline 1
            step("rebuild after a dagster.yaml change")
            layout.change_config()
            figures["rebuild_config_change_s"] = round(seconds(layout.build), 2)

        if isinstance(layout, Launchpad):
            step("a dependency added, locked, built")
            figures.update(layout.add_dependency())

        step("down, up -> location LOADED")
        layout.note_anonymous_volumes()
        layout.stop()
        figures["up_to_loaded_s"] = round(seconds(layout.up), 2)
        step("launch after down/up -> SUCCESS", say=False)
        launch_to_success(stack)
        if isinstance(layout, Launchpad):
            # The spread of a start (issue 28: Podman 4.x's DNS server stalled some starts for
            # 25-60 s): RESTARTS more of them; the maximum should stay within twice the median.
            step(f"{RESTARTS} x down, up -> location LOADED")
            spread = []
            for _ in range(RESTARTS):
                layout.stop()
                spread.append(round(seconds(layout.up), 2))
            figures["up_to_loaded_restarts_s"] = spread
            figures["up_to_loaded_median_s"] = round(statistics.median(spread), 2)
            figures["up_to_loaded_max_s"] = max(spread)

        if volume is None:
            # Code baked into the image: a code change goes live by rebuild + recreate.
            step("reload: rebuild the user-code image, recreate its container")
            figures["reload_s"] = round(layout.code_change_live(), 2)
            figures["reload_how"] = "rebuild the user-code image, recreate its container"
    finally:
        remove_layout(layout, track)
    if volume is not None:
        step("reload: volume delivery, make reload")
        figures["reload_s"] = measure_reload(volume, track)
        figures["reload_how"] = "volume delivery: make reload"
    return figures


def measure_reload(layout: Launchpad, track: Track) -> float:
    """reload_s of the template: code mounted from the host (volume delivery), `make reload`."""
    try:
        layout.copy()
        layout.build()
        layout.up()
        return round(layout.code_change_live(), 2)
    finally:
        remove_layout(layout, track)


def measure_locations(
    engine: Engine, work: Path, template: Path, stand_in: str, quick: bool, track: Track
) -> dict:
    """The default project with 1, 2 and 3 code locations (the examples in the first, a first
    asset and its job in the others; no extra dependencies in any): its cold build and its
    images' unique bytes; for 1 and 3, the time
    from `make up` (images built, stack down) to every location LOADED. Each extra location
    should cost only its own dependencies and code: a few MB."""
    figures = track.figures
    for count in LOCATION_COUNTS:
        layout = Launchpad(engine, work, template, name=f"lp-{count}loc", locations=count)
        try:
            track.step(f"{count} location(s): {'build (cache allowed)' if quick else 'cold build'}")
            if not quick:
                layout.base = engine.fresh_base(stand_in, layout.slug)
            layout.copy()
            figures[f"locations_{count}_cold_build_s"] = round(seconds(layout.build), 1)
            _, figures[f"locations_{count}_unique_bytes"] = image_sizes(engine, layout.images())
            if count in (1, LOCATION_COUNTS[-1]):
                track.step(f"{count} location(s): up, launch, down, up -> every location LOADED")
                layout.up()
                launch_to_success(layout.stack)
                layout.note_anonymous_volumes()
                layout.stop()
                figures[f"locations_{count}_up_to_loaded_s"] = round(seconds(layout.up), 2)
        finally:
            remove_layout(layout, track)
    first, last = LOCATION_COUNTS[0], LOCATION_COUNTS[-1]
    extra = figures[f"locations_{last}_unique_bytes"] - figures[f"locations_{first}_unique_bytes"]
    figures["locations_bytes_per_extra_location"] = round(extra / (last - first))
    return figures


_PLATFORM: dict = {}


def published_platform(default: Launchpad, log) -> dict:
    """The platform images of the default answers (Dagster, Debian, Python), published once per
    run with the template's own publisher (launchpad_dev/publish.py, as the release workflow
    does, signed with a key made here) to a registry on 127.0.0.1 that lives until the run ends;
    Podman is told that it speaks plain HTTP."""
    if _PLATFORM:
        return _PLATFORM
    import atexit
    import contextlib
    import secrets

    import yaml

    from launchpad_dev import publish, signing
    from launchpad_dev.local_registry import running_registry

    answers = yaml.safe_load((default.root / ".copier-answers.yml").read_text())
    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lpbench-platform-")))
    address = stack.enter_context(running_registry(work))
    conf = Path(f"/etc/containers/registries.conf.d/launchpad-bench-{address.replace(':', '-')}.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[[registry]]\nlocation = "{address}"\ninsecure = true\n')
    stack.callback(conf.unlink, missing_ok=True)
    password = secrets.token_urlsafe(16)
    (work / "key").mkdir()
    private, public = signing.keygen(work / "key", password)
    registry = f"{address}/launchpad"
    began = time.monotonic()
    result = publish.publish(
        registry,
        dagster=answers["dagster_version"],
        base=answers["base_image"],
        python=answers["python_version"],
        key_path=private,
        password=password,
        expect_pub=public,
        workdir=work,
        say=log,
    )
    took = round(time.monotonic() - began, 1)
    _PLATFORM.update(registry=registry, pub=public, result=result, publish_s=took)
    return _PLATFORM


class PrebuiltLaunchpad(Launchpad):
    """The default answers with platform_images=prebuilt against the run's published images
    (their registry in .env, the run's public key as platform/images.pub); `make up` does it all:
    pins, pulls, checks the signatures, builds the locations' images where they need one."""

    def __init__(self, engine: Engine, work: Path, template: Path, platform: dict, **kwargs):
        super().__init__(engine, work, template, **kwargs)
        self.platform = platform

    def answers(self) -> dict:
        return {**super().answers(), "platform_images": "prebuilt"}

    def copy(self) -> None:
        super().copy()
        shutil.copy(self.platform["pub"], self.root / "platform/images.pub")
        self.make(".env")
        env = self.root / ".env"
        lines = [line for line in env.read_text().splitlines() if not line.startswith("PLATFORM_REGISTRY=")]
        env.write_text("\n".join([*lines, f"PLATFORM_REGISTRY={self.platform['registry']}"]) + "\n")

    def start(self) -> None:
        self.make("up")  # not -o build: the pins, the pulls and the locations' builds are its work

    def pinned(self) -> list[str]:
        registry = self.platform["registry"]
        return [f"{registry}/launchpad-{n}@{r['digest']}" for n, r in self.platform["result"].items()]

    def forget_platform(self) -> None:
        """A cold store: the published images out of the engine's store (pulled again)."""
        self.engine.run("rmi", "-f", *self.pinned())

    def images(self) -> list[str]:
        pipes = [f"localhost/{self.slug}-{n}:latest" for n in self.image_names if n.startswith("pipes-")]
        return [r for r in self.pinned() if "pipes-base@" not in r] + pipes


def measure_prebuilt(engine: Engine, work: Path, template: Path, default: Launchpad, track: Track) -> dict:
    """Issue 35: copy -> first SUCCESS with the published platform images pulled into a cold
    store (code in the image: the location's image built FROM pipes-base; code mounted: nothing
    built), and the bytes a 3-location project stores in each mode (the unique bytes of its
    images: the pulled webserver and daemon and its own pipes images, or its five built ones)."""
    figures = track.figures
    track.step("publish the platform images (once per run)")
    platform = published_platform(default, track.log)
    figures["publish_s"] = platform["publish_s"]
    for delivery, name in (("image", "lp-pre"), ("volume", "lp-pre-vol")):
        layout = PrebuiltLaunchpad(engine, work, template, platform, delivery=delivery, name=name)
        try:
            track.step(f"prebuilt, {delivery} delivery: cold store, copy -> first SUCCESS")
            layout.forget_platform()
            began = time.monotonic()
            layout.copy()
            layout.up()
            launch_to_success(layout.stack)
            figures[f"prebuilt_{delivery}_copy_to_first_success_s"] = round(time.monotonic() - began, 1)
        finally:
            remove_layout(layout, track)
    count = LOCATION_COUNTS[-1]
    for mode in ("build", "prebuilt"):
        name = f"lp-{'bld' if mode == 'build' else 'pre'}-{count}loc"
        if mode == "prebuilt":
            layout = PrebuiltLaunchpad(engine, work, template, platform, name=name, locations=count)
        else:
            layout = Launchpad(engine, work, template, name=name, locations=count)
        try:
            track.step(f"{mode}: {count} locations built, their images' bytes")
            layout.copy()
            layout.make("build")
            _, figures[f"{mode}_{count}_locations_unique_bytes"] = image_sizes(engine, layout.images())
        finally:
            remove_layout(layout, track)
    return figures


class LoginLaunchpad(Launchpad):
    """The default answers with ui_access=login: an editor added with `make user-add` (the
    password from the environment), the proxy's CA from `make ca-cert`, driven through the
    proxy over HTTPS with basic authentication."""

    USER = ("bench", "bench-Pass#31")

    def answers(self) -> dict:
        return {**super().answers(), "ui_access": "login"}

    @property
    def stack(self) -> Stack:  # a new Stack once the CA exists (after make up)
        return Stack(
            self.port,
            self.location,
            url=f"https://127.0.0.1:{self.port}",
            auth=self.USER,
            verify=str(self.root / ".build/proxy-ca.crt"),
        )

    def start(self) -> None:
        self.make("-o", "build", "up")
        name, password = self.USER
        self.make("user-add", f"NAME={name}", "ROLE=editor", env={"PASSWORD": password})
        self.make("ca-cert")


def graphql_s(stack) -> float:
    """Wall time of a small GraphQL query (the code locations' load status)."""
    started = time.monotonic()
    stack.gql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
    return time.monotonic() - started


def measure_login(engine: Engine, work: Path, template: Path, track: Track) -> dict:
    """Issue 31: the login proxy's cost. The default answers without it (lp-local) and with it
    (lp-login), both up at once on the same engine and images, measured in turns so that the
    machine's load weighs on both alike: launch -> SUCCESS (median of LOGIN_LAUNCHES each) and
    a GraphQL query's latency (median of LOGIN_QUERIES each), the login stack's through the
    proxy's HTTPS and basic authentication; then the proxy's idle RSS."""
    figures = track.figures
    layouts = {
        "local": Launchpad(engine, work, template, name="lp-local"),
        "login": LoginLaunchpad(engine, work, template, name="lp-login"),
    }
    try:
        stacks = start_warm(layouts, track.step)
        track.step(f"{LOGIN_LAUNCHES} launches and {LOGIN_QUERIES} GraphQL queries each, in turns")
        launches: dict[str, list[float]] = {key: [] for key in stacks}
        for _ in range(LOGIN_LAUNCHES):
            for key, stack in stacks.items():
                launches[key].append(launch_to_success(stack))
        queries: dict[str, list[float]] = {key: [] for key in stacks}
        for _ in range(LOGIN_QUERIES):
            for key, stack in stacks.items():
                queries[key].append(graphql_s(stack))
        for key in stacks:
            figures[f"{key}_launch_to_success_s"] = round(statistics.median(launches[key]), 3)
            figures[f"{key}_graphql_median_ms"] = round(1000 * statistics.median(queries[key]), 1)
        time.sleep(5)  # idle: no request in flight
        proxy = layouts["login"].container("proxy")
        figures["proxy_idle_rss_mib"] = container_rss_mib(engine, proxy)
        figures["proxy_idle_rss_anon_mib"] = container_rss_mib(engine, proxy, "RssAnon")
    finally:
        for layout in layouts.values():
            remove_layout(layout, track)
    local, login = figures["local_launch_to_success_s"], figures["login_launch_to_success_s"]
    figures["login_launch_overhead"] = round(login / local - 1, 3)
    figures["login_graphql_ratio"] = round(
        figures["login_graphql_median_ms"] / figures["local_graphql_median_ms"], 2
    )
    return figures


def render_matrix(template: Path, work: Path, step: int) -> dict:
    """render_s per combination (every `step`-th of the matrix) and in all."""
    import copier

    combos = matrix.combinations()[::step]
    per: dict[str, float] = {}
    began = time.monotonic()
    for answers in combos:
        dest = work / "matrix" / matrix.combo_id(answers)
        started = time.monotonic()
        copier.run_copy(str(template), dest, data=answers, defaults=True, quiet=True, unsafe=False)
        per[matrix.combo_id(answers)] = round(time.monotonic() - started, 3)
        shutil.rmtree(dest)
    return {
        "combinations": len(combos),
        "of": len(matrix.combinations()),
        "matrix_s": round(time.monotonic() - began, 1),
        "median_s": round(statistics.median(per.values()), 3),
        "max_s": max(per.values()),
        "per_combination_s": per,
    }


# --- reporting --------------------------------------------------------------------------------

ROWS = [
    ("copy_to_first_success_s", "copy -> first SUCCESS (cold)", "s"),
    ("copy_to_first_success_cached_s", "copy -> first SUCCESS (cached)", "s"),
    ("cold_build_s", "cold build", "s"),
    ("cached_build_s", "build (cache allowed)", "s"),
    ("rebuild_code_change_s", "rebuild, code change", "s"),
    ("rebuild_config_change_s", "rebuild, dagster.yaml change", "s"),
    ("up_to_loaded_s", "up -> location LOADED", "s"),
    ("up_to_loaded_median_s", "up -> LOADED, median of 10 restarts", "s"),
    ("up_to_loaded_max_s", "up -> LOADED, max of 10 restarts", "s"),
    ("launch_to_success_s", "launch -> SUCCESS (median)", "s"),
    ("reload_s", "code change live (reload)", "s"),
    ("unique_bytes", "image bytes, set (shared once)", "MB"),
    ("idle_rss_mib_total", "idle RSS, 3 Dagster services", "MiB"),
    ("lock_s", "make lock, one dependency added", "s"),
    ("rebuild_dependency_added_s", "rebuild, one dependency added", "s"),
]


def ratios(result: dict) -> dict:
    """Every launchpad figure over the best (lowest) baseline's."""
    out = {}
    for key, _, _ in ROWS:
        base = [
            result[b][key] for b in ("three-images", "shared-platform") if b in result and key in result[b]
        ]
        if key in result.get("launchpad", {}) and base and min(base) > 0:
            out[key] = round(result["launchpad"][key] / min(base), 2)
    return out


def verdicts(result: dict) -> dict:
    lp = result.get("launchpad", {})
    out = {k: {"target": t, "value": lp[k], "met": lp[k] <= t} for k, t in TARGETS.items() if k in lp}
    # uv against pip (issue 12): the same default set built with pip (launchpad-pip) when it was
    # measured, else the best baseline layout (they install the same exported lock with pip).
    if "cold_build_s" in result.get("launchpad-pip", {}):
        pip, against = [result["launchpad-pip"]["cold_build_s"]], "launchpad-pip"
    else:
        against = "best pip baseline"
        pip = [
            result[b]["cold_build_s"]
            for b in ("three-images", "shared-platform")
            if "cold_build_s" in result.get(b, {})
        ]
    if pip and "cold_build_s" in lp:
        limit = round(COLD_BUILD_VS_PIP * min(pip), 1)
        out["cold_build_s"] = {
            "target": limit,
            "value": lp["cold_build_s"],
            "met": lp["cold_build_s"] <= limit,
            "against": against,
        }
    if "up_to_loaded_max_s" in lp and "up_to_loaded_median_s" in lp:
        limit = round(2 * lp["up_to_loaded_median_s"], 2)
        out["up_to_loaded_max_s"] = {
            "target": limit,
            "value": lp["up_to_loaded_max_s"],
            "met": lp["up_to_loaded_max_s"] <= limit,
            "against": "twice the median",
        }
    login = result.get("launchpad-login", {})
    if "login_launch_overhead" in login:
        out["login_launch_overhead"] = {
            "target": LOGIN_LAUNCH_OVERHEAD,
            "value": login["login_launch_overhead"],
            "met": login["login_launch_overhead"] <= LOGIN_LAUNCH_OVERHEAD,
        }
    if "proxy_idle_rss_mib" in login:
        out["proxy_idle_rss_mib"] = {
            "target": LOGIN_PROXY_RSS_MIB,
            "value": login["proxy_idle_rss_mib"],
            "met": login["proxy_idle_rss_mib"] <= LOGIN_PROXY_RSS_MIB,
        }
    upgrade = result.get("launchpad-upgrade", {})
    if "upgrade_downtime_s" in upgrade:
        out["upgrade_downtime_s"] = {
            "target": UPGRADE_DOWNTIME,
            "value": upgrade["upgrade_downtime_s"],
            "met": upgrade["upgrade_downtime_s"] <= UPGRADE_DOWNTIME,
        }
    logs = result.get("launchpad-logs", {})
    if "s3_launch_overhead" in logs:
        out["s3_launch_overhead"] = {
            "target": LOGS_S3_LAUNCH_OVERHEAD,
            "value": logs["s3_launch_overhead"],
            "met": logs["s3_launch_overhead"] <= LOGS_S3_LAUNCH_OVERHEAD,
        }
    prebuilt = result.get("launchpad-prebuilt", {}).get("prebuilt_image_copy_to_first_success_s")
    if prebuilt is not None:
        out["prebuilt_image_copy_to_first_success_s"] = {
            "target": PREBUILT_COPY_TO_FIRST_SUCCESS,
            "value": prebuilt,
            "met": prebuilt <= PREBUILT_COPY_TO_FIRST_SUCCESS,
        }
    if "unique_bytes" in result.get("three-images", {}) and "unique_bytes" in lp:
        limit = UNIQUE_BYTES_TARGET * result["three-images"]["unique_bytes"]
        out["unique_bytes"] = {
            "target": int(limit),
            "value": lp["unique_bytes"],
            "met": lp["unique_bytes"] <= limit,
        }
    return out


def table(engine: str, result: dict) -> str:
    def cell(layout: str, key: str, unit: str) -> str:
        value = result.get(layout, {}).get(key)
        if value is None:
            return "-"
        return f"{value / 1e6:.0f}" if unit == "MB" else f"{value:g}"

    def status(layout: str) -> str:
        entry = result.get(layout)
        return "-" if not isinstance(entry, dict) else ("FAILED" if entry.get("failed") else "ok")

    head = f"{'':34}{'launchpad':>11}{'lp-pip':>8}{'three-imgs':>11}{'shared-plat':>12}{'ratio':>7}  target"
    lines = [f"== {engine} ==", head]
    if any(isinstance(v, dict) and v.get("failed") for v in result.values()):
        lines.append(
            f"{'measured':34}{status('launchpad'):>11}{status('launchpad-pip'):>8}"
            f"{status('three-images'):>11}{status('shared-platform'):>12}"
        )
    ratio, verdict = result.get("ratios", {}), result.get("targets", {})
    for key, label, unit in ROWS:
        goal = verdict.get(key)
        mark = (
            ""
            if goal is None
            else ("ok " if goal["met"] else "MISS ")
            + (f"<= {goal['target'] / 1e6:.0f} MB" if unit == "MB" else f"<= {goal['target']} {unit}")
            + (f" (0.6x {goal['against']})" if "against" in goal else "")
        )
        lines.append(
            f"{label + ' (' + unit + ')':34}{cell('launchpad', key, unit):>11}"
            f"{cell('launchpad-pip', key, unit):>8}"
            f"{cell('three-images', key, unit):>11}{cell('shared-platform', key, unit):>12}"
            f"{ratio.get(key, '-'):>7}  {mark}"
        )
    if ratio:  # issue 17: every ratio to the best baseline at or below 1.0
        behind = [f"{key} {value}" for key, value in ratio.items() if value > 1.0]
        lines.append("  ratios above 1.0: " + ", ".join(behind) if behind else "  every ratio <= 1.0")
    locations = result.get("launchpad-locations", {})
    if "locations_bytes_per_extra_location" in locations:
        lines.append(
            "  launchpad, code locations: "
            + ", ".join(
                f"{n}: cold build {locations[f'locations_{n}_cold_build_s']} s, "
                f"{locations[f'locations_{n}_unique_bytes'] / 1e6:.0f} MB"
                + (
                    f", up -> LOADED {locations[f'locations_{n}_up_to_loaded_s']} s"
                    if f"locations_{n}_up_to_loaded_s" in locations
                    else ""
                )
                for n in LOCATION_COUNTS
            )
            + f"; {locations['locations_bytes_per_extra_location'] / 1e3:,.1f} kB per extra location"
        )
    lg = result.get("launchpad-login", {})
    if "login_launch_overhead" in lg:
        lines.append(
            "  launchpad-login (the login proxy's cost): launch -> SUCCESS "
            f"{lg['local_launch_to_success_s']} s without, {lg['login_launch_to_success_s']} s through it "
            f"({lg['login_launch_overhead']:+.1%}); GraphQL query {lg['local_graphql_median_ms']} ms "
            f"without, {lg['login_graphql_median_ms']} ms through it (medians); "
            f"the proxy's idle RSS {lg.get('proxy_idle_rss_mib', '-')} MiB "
            f"({lg.get('proxy_idle_rss_anon_mib', '-')} MiB of it anonymous, the rest its binary's pages)"
        )
    up = result.get("launchpad-upgrade", {})
    if "upgrade_downtime_s" in up:
        goal = result.get("targets", {}).get("upgrade_downtime_s", {})
        lines.append(
            f"  launchpad-upgrade ({up.get('upgrade_runs_before')} runs): make upgrade"
            f" {up['upgrade_wall_s']} s wall, the UI unreachable {up['upgrade_downtime_s']} s at most"
            f" ({'ok' if goal.get('met') else 'MISS'} <= {UPGRADE_DOWNTIME} s; it says downtime"
            f" {up.get('upgrade_reported_downtime_s')} s); runs {up.get('upgrade_runs_before')} before,"
            f" {up.get('upgrade_runs_after')} after"
        )
    logs = result.get("launchpad-logs", {})
    if "s3_launch_overhead" in logs:
        goal = result.get("targets", {}).get("s3_launch_overhead", {})
        lines.append(
            "  launchpad-logs (step logs in S3 against the volume): launch -> SUCCESS "
            f"{logs['volume_launch_to_success_s']} s with the volume, {logs['s3_launch_to_success_s']} s "
            f"with S3 ({logs['s3_launch_overhead']:+.1%}: {'ok' if goal.get('met') else 'MISS'} "
            f"<= {LOGS_S3_LAUNCH_OVERHEAD:.0%}; medians, in turns)"
        )
    if "max_started_at_once" in logs:
        lines.append(
            f"  launchpad-logs drain (20 runs at once, tag limit {logs['tag_limit']}): "
            f"{logs['volume_drain_20_s']} s with the volume, {logs['s3_drain_20_s']} s with S3; "
            f"at most {logs['max_started_at_once']} started at once "
            f"({'ok' if logs['max_started_at_once'] <= logs['tag_limit'] else 'ABOVE THE LIMIT'})"
        )
    if "purge_s" in up:
        lines.append(
            f"  launchpad-upgrade purge ({up['purge_runs_before']} runs): dry run {up['purge_dry_run_s']} s,"
            f" purge {up['purge_s']} s; event rows {up['purge_event_rows_before']} ->"
            f" {up['purge_event_rows_after']}; database {up['purge_db_bytes_before'] / 1e6:.1f} MB ->"
            f" {up['purge_db_bytes_after'] / 1e6:.1f} MB, {up['purge_db_bytes_after_vacuum'] / 1e6:.1f} MB"
            f" after VACUUM, {up['purge_db_bytes_after_vacuum_full'] / 1e6:.1f} MB after VACUUM FULL"
        )
    prebuilt = result.get("launchpad-prebuilt", {})
    if "prebuilt_image_copy_to_first_success_s" in prebuilt:
        goal = result.get("targets", {}).get("prebuilt_image_copy_to_first_success_s", {})
        lines.append(
            "  launchpad-prebuilt (published platform images, cold store): copy -> first SUCCESS "
            f"{prebuilt['prebuilt_image_copy_to_first_success_s']} s with code in the image"
            f" ({'ok' if goal.get('met') else 'MISS'} <= {PREBUILT_COPY_TO_FIRST_SUCCESS} s), "
            f"{prebuilt.get('prebuilt_volume_copy_to_first_success_s', '-')} s with mounted code; "
            f"{LOCATION_COUNTS[-1]} locations store "
            + ", ".join(
                f"{prebuilt[k] / 1e6:.0f} MB ({m})"
                for m in ("build", "prebuilt")
                if (k := f"{m}_{LOCATION_COUNTS[-1]}_locations_unique_bytes") in prebuilt
            )
        )
    for layout in LAYOUTS:
        if layout in result and "image_bytes" in result[layout]:
            sizes = ", ".join(
                f"{r.split('/')[-1]} {b / 1e6:.0f} MB" for r, b in result[layout]["image_bytes"].items()
            )
            rss = ", ".join(f"{s} {m:g}" for s, m in result[layout].get("idle_rss_mib", {}).items())
            lines.append(f"  {layout}: images {sizes}" + (f"; idle RSS MiB {rss}" if rss else ""))
            if "rebuilt_on_dependency_added" in result[layout]:
                rebuilt = ", ".join(result[layout]["rebuilt_on_dependency_added"]) or "none"
                lines.append(f"  {layout}: rebuilt after a dependency was added: {rebuilt}")
    lines += failure_lines(result)
    return "\n".join(lines)


def failure_lines(result: dict, width: int = 400) -> list[str]:
    """One line per failed layout of an engine's result: where it failed, and why."""
    lines = []
    for name, entry in result.items():
        if isinstance(entry, dict) and entry.get("failed"):
            error = entry["error"] if len(entry["error"]) <= width else entry["error"][: width - 3] + "..."
            lines.append(f"  FAILED: {name}, at '{entry['step']}': {error}")
    return lines


MODES = {
    "soak": "a fixed number of runs through the running default stack, each service's RSS sampled",
    "burst": "queued runs of a few seconds each drain: nothing lost, the queue limit reached and held",
    "fuzz_long": "the answer fuzzer (tests/test_fuzz.py) with many more answer sets than CI's",
}
MODE_DEFAULTS = {"soak": 500, "burst": 1000, "fuzz_long": 10_000}


def layouts_for(
    name: str, engine: Engine, work: Path, template: Path, default: Launchpad
) -> tuple[Layout, Launchpad | None]:
    """The layout to measure, and (launchpad only) its volume-delivery twin for reload_s."""
    if name == "launchpad":
        return Launchpad(engine, work, template), Launchpad(engine, work, template, delivery="volume")
    if name == "launchpad-pip":
        return LaunchpadPip(engine, work, template), None
    return Baseline(name, engine, work, default.root, default.package), None


def measure_engine(engine: Engine, layouts: list[str], work: Path, template: Path, args, launches: int, log):
    """Every layout on one engine: {layout: figures, or a failed entry}, ratios and targets."""
    result: dict = {}
    track = Track("defaults", log)
    try:
        # The defaults as rendered: the baselines' pins, code and base image come from here.
        track.step("render the default answers", say=False)
        default = Launchpad(engine, work / "defaults", template)
        default.copy()
        stand_in = env_value(default.root, "BASE_IMAGE")
    except Exception as exc:  # recorded; the generated project failed
        result["defaults"] = failed_entry(exc, track.now)
        log(f"{engine.name}: the default answers failed to render: {result['defaults']['error']}")
        return result
    for name in layouts:
        log(f"{engine.name}: {name}")
        track = Track(name, log)
        try:
            if name == "launchpad-locations":
                measure_locations(engine, work, template, stand_in, args.quick, track)
            elif name == "launchpad-prebuilt":
                measure_prebuilt(engine, work, template, default, track)
            elif name == "launchpad-login":
                measure_login(engine, work, template, track)
            elif name == "launchpad-upgrade":
                import upgrade_bench

                upgrade_bench.measure_upgrade(engine, work, template, track)
            elif name == "launchpad-logs":
                import logs_bench

                logs_bench.measure_logs(engine, work, template, track, LOGS_LAUNCHES)
            else:
                layout, volume = layouts_for(name, engine, work, template, default)
                measure(layout, launches, volume, args.quick, stand_in, track)
            result[name] = track.figures
        except Exception as exc:  # a failing layout is a finding; the run goes on
            result[name] = failed_entry(exc, track.now, track.figures)
            log(f"{engine.name}: {name} FAILED at '{track.now}': {result[name]['error'][:1000]}")
    result["ratios"] = ratios(result)
    result["targets"] = verdicts(result)
    return result


def project_failures(report: dict) -> list[str]:
    """engine/layout of every failure of the generated project itself (exit 1)."""
    return [
        f"{engine}/{name}"
        for engine, result in report.get("engines", {}).items()
        for name, entry in result.items()
        if (name in PROJECT_LAYOUTS or name == "defaults") and isinstance(entry, dict) and entry.get("failed")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the first engine only, builds may use the cache, one launch, every 40th combination, "
        "no config-change rebuild of the baselines",
    )
    parser.add_argument(
        "--engine", action="append", choices=sorted(ENGINES), help="only this engine (repeatable)"
    )
    parser.add_argument("--layout", action="append", choices=LAYOUTS, help="only this layout (repeatable)")
    parser.add_argument("--launches", type=int, help="launches for the median (default 5; 1 with --quick)")
    parser.add_argument(
        "--matrix-step",
        type=int,
        help="render every N-th combination of the matrix (default 1; 40 with --quick; 0: none)",
    )
    modes = parser.add_mutually_exclusive_group()
    for mode, what in MODES.items():
        modes.add_argument(
            f"--{mode.replace('_', '-')}",
            type=int,
            nargs="?",
            const=MODE_DEFAULTS[mode],
            metavar="N",
            help=f"another mode, not in CI: {what} (N, default {MODE_DEFAULTS[mode]:,})",
        )
    parser.add_argument(
        "--burst-seconds",
        type=int,
        default=4,
        help="--burst: the seconds each run sleeps (default 4: enough for 4 at once now that the queue "
        "launches up to 4 at once, docs/benchmarks.md)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the JSON (default benchmarks/results.json; a mode's: "
        "benchmarks/results-MODE.json)",
    )
    args = parser.parse_args(argv)
    mode = next((m for m in MODES if getattr(args, m) is not None), None)
    if args.json is None:
        name = "results.json" if mode is None else f"results-{mode.replace('_', '-')}.json"
        args.json = ROOT / "benchmarks" / name
    launches = args.launches or (1 if args.quick else 5)
    layouts = args.layout or list(LAYOUTS)

    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    if mode == "fuzz_long":  # no engine needed
        import fuzz_long

        return fuzz_long.main(getattr(args, mode), args.json, log)

    engines = []
    for name in args.engine or sorted(ENGINES, key=lambda n: n != "podman"):
        problem = ENGINES[name].problem()
        if problem:
            log(f"{name}: not measured: {problem}")
        elif (args.quick or mode) and engines and not args.engine:
            log(f"{name}: not measured (--quick and the other modes measure the first usable engine only)")
        else:
            engines.append(ENGINES[name])
    if not engines:
        log("no container engine is usable here; nothing to measure")
        return 1
    if mode is not None:
        import stress

        return stress.main(mode, getattr(args, mode), engines, args, log)

    report: dict = {
        "mode": "quick" if args.quick else "full",
        "launches": launches,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "engines": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="lpbench-") as tmp:
            work = Path(tmp)
            template = snapshot_template(work / "template")
            step = args.matrix_step if args.matrix_step is not None else (40 if args.quick else 1)
            if step > 0:
                log("rendering the matrix" + (f" (every {step}th combination)" if step > 1 else ""))
                try:
                    report["render"] = render_matrix(template, work, step)
                except Exception as exc:  # the project failed; the engines still run
                    report["render"] = failed_entry(exc, "render the matrix")
                    log(f"rendering the matrix FAILED: {report['render']['error']}")
            elif args.json.is_file() and "render" in (previous := json.loads(args.json.read_text())):
                # Not measured this time: the JSON keeps the last measurement, marked as such.
                report["render"] = {**previous["render"], "carried_over": True}
            for engine in engines:
                report["machine"][f"{engine.name}_version"] = engine.run("--version").stdout.strip()
                result = measure_engine(engine, layouts, work, template, args, launches, log)
                report["engines"][engine.name] = result
                print(table(engine.name, result), flush=True)
    except KeyboardInterrupt:
        report["interrupted"] = True
        log("interrupted: the JSON keeps what was measured")
    finally:
        write_report(report, args.json, log)

    r = report.get("render")
    if r and r.get("failed"):
        log(f"render: FAILED: {r['error']}")
    elif r and not r.get("carried_over"):
        print(
            f"render: {r['combinations']} of {r['of']} combinations in {r['matrix_s']} s "
            f"(median {r['median_s']} s, max {r['max_s']} s per combination)"
        )
    else:
        log("render: not measured (--matrix-step 0)" + (": the JSON keeps the last figures" if r else ""))
    failed = project_failures(report) + (["render"] if r and r.get("failed") else [])
    if failed:
        log(f"the generated project failed: {', '.join(failed)} (exit 1)")
        return 1
    if report.get("interrupted"):
        return 130
    baselines = [
        f"{e}/{n}"
        for e, res in report["engines"].items()
        for n, v in res.items()
        if n not in PROJECT_LAYOUTS and isinstance(v, dict) and v.get("failed")
    ]
    if baselines:
        log(f"failed, recorded in the JSON: {', '.join(baselines)} (not the generated project: exit 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
