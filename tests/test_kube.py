"""Kube tier: the Podman project's Kubernetes YAML (kube/<slug>.yaml) and Quadlet unit.

Static part (no engine): every distinct kube YAML a Podman project can get (one per
combination of the answers that shape it) validates against Kubernetes' own schema, offline
and strict (kubernetes-validate, pinned Kubernetes version), and says what compose.yaml says:
the same images, confinement, published address and instance configuration. Docker projects
have none of it. The Quadlet unit goes through Podman's own generator (Podman 5.4 of a Debian
trixie root, tests/quadlet/make-quadlet-root.sh: this host's Podman 4.3 has no Quadlet).

Engine part: a two-location project played by this host's `podman kube play` with the
project's own `make kube-up` / `make kube-down`: every location LOADED, a job SUCCESS in each,
the pods reach each other by name, the containers are confined as promised, history survives
kube-down and kube-up (the claims keep it), `make kube-recycle` restarts the webserver and the
daemon alone under runs in flight and loses none, and teardown leaves no pod, container, secret or
volume beyond the claims.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml

from launchpad_dev import matrix, prom
from launchpad_dev.common import computed, note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, env_value, make, render
from launchpad_dev.local_registry import get_json, running_registry
from launchpad_dev.tools import missing, require_tool

# The Kubernetes version the YAML is validated against (kubernetes-validate ships its schema).
KUBERNETES_VERSION = "1.37.0"
QUADLET_ROOT = Path(os.environ.get("QUADLET_ROOT", "/var/cache/launchpad/quadlet-trixie"))
HERE = Path(__file__).resolve().parent

# The answers that shape kube/<slug>.yaml; every combination of them is one distinct YAML.
SHAPING = ("storage", "run_launcher", "code_delivery")
PODMAN_SET = [
    {"container_engine": "podman", **dict(zip(SHAPING, values, strict=True))}
    for values in sorted(
        {tuple(a[f] for f in SHAPING) for a in matrix.combinations() if a["container_engine"] == "podman"}
    )
]
# And the login proxy's stack (ui_access=login: the proxy and the read-only webserver's pods,
# only the proxy published), on the combination with the most mounts.
PODMAN_SET.append(
    {
        "container_engine": "podman",
        "storage": "postgres",
        "run_launcher": "container",
        "code_delivery": "volume",
        "ui_access": "login",
    }
)
# Two code locations in each, as the run tier has.
SECOND = "second"
# The job of each location, and the materializations it records: the first location's example
# job; a location after the first has a first asset and its job.
JOBS = {"first": ("example_job", 2), SECOND: ("hello_job", 1)}


def _render(args: tuple[str, str, dict]) -> str:
    template, dest, answers = args
    render(Path(template), Path(dest), answers)
    return dest


@pytest.fixture(scope="module")
def podman_projects(template_snapshot, tmp_path_factory) -> dict[str, Path]:
    """Every distinct Podman kube YAML's project, rendered once (two at a time)."""
    base = tmp_path_factory.mktemp("kube")
    jobs = []
    for index, answers in enumerate(PODMAN_SET):
        slug = f"lp-kube-s{index}"
        data = {**answers, "project_slug": slug, "code_locations": [slug.replace("-", "_"), SECOND]}
        jobs.append((str(template_snapshot), str(base / slug), data))
    with ProcessPoolExecutor(max_workers=2) as pool:
        roots = list(pool.map(_render, jobs))
    return {matrix.combo_id(a): Path(r) for a, r in zip(PODMAN_SET, roots, strict=True)}


def kube_documents(root: Path) -> list[dict]:
    slug = yaml.safe_load((root / ".copier-answers.yml").read_text())["project_slug"]
    return [d for d in yaml.safe_load_all((root / "kube" / f"{slug}.yaml").read_text()) if d]


def pods(documents: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "Pod"}


# ------------------------------------------------------------------------- static part


@pytest.mark.parametrize("combo", [matrix.combo_id(a) for a in PODMAN_SET])
def test_kube_yaml_validates_strictly(combo, podman_projects):
    root = podman_projects[combo]
    validator = require_tool("kubernetes-validate", beside=Path(sys.executable).parent)
    (yaml_file,) = (root / "kube").glob("*.yaml")
    result = subprocess.run(
        [validator, "--strict", "--no-warn", "-k", KUBERNETES_VERSION, str(yaml_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = [d["kind"] for d in kube_documents(root)]
    assert kinds.count("ConfigMap") == 1 and "Secret" not in kinds, kinds
    note(
        "kube tier, YAML validated",
        f"{len(PODMAN_SET)} (kubernetes-validate --strict, Kubernetes {KUBERNETES_VERSION})",
    )


@pytest.mark.parametrize("combo", [matrix.combo_id(a) for a in PODMAN_SET])
def test_kube_yaml_is_the_compose_stack(combo, podman_projects):
    """The same services, images, confinement, address, instance and storage as compose."""
    root = podman_projects[combo]
    facts, documents = computed(root), kube_documents(root)
    slug = yaml.safe_load((root / ".copier-answers.yml").read_text())["project_slug"]
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    services = set(compose["services"])
    by_name = pods(documents)
    # One pod per compose service, named <slug>-<service> (facts["kube_pods"]).
    assert facts["kube_pods"] == {s: f"{slug}-{s}" for s in services}
    assert set(by_name) == set(facts["kube_pods"].values())
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {f"{slug}-{v}" for v in compose["volumes"]}
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    login = answers.get("ui_access") == "login"
    for service, pod_name in facts["kube_pods"].items():
        spec = by_name[pod_name]["spec"]
        (container,) = spec["containers"]
        described = facts["services"][service]
        # The read-only webserver runs the webserver's image; the proxy and PostgreSQL others'.
        built = described.get("image_of") or service
        others = {"postgres": facts["postgres_image"], "proxy": facts.get("proxy_image")}
        expected_image = others[service] if service in others else facts["kube_images"][built]
        assert container["image"] == expected_image
        if service == "proxy":
            assert compose["services"][service]["image"] == f"${{PROXY_IMAGE:-{expected_image}}}"
        elif service != "postgres":
            assert compose["services"][service]["image"] == expected_image.replace(
                ":latest", ":${IMAGE_TAG:-latest}"
            )
        uid = {"postgres": facts["postgres_uid"], "proxy": 0}.get(service, facts["service_uid"])
        context = container["securityContext"]
        # (The container's, not the pod's: Podman 4.3 ignores a pod's runAsUser/runAsGroup.)
        assert context["runAsUser"] == uid and context["runAsGroup"] == uid, service
        kept = compose["services"][service].get("cap_add")
        assert compose["services"][service]["cap_drop"] == ["ALL"], service
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"], **({"add": kept} if kept else {})}, service
        # Its command is compose's (the read-only webserver's --read-only).
        assert container.get("args") == compose["services"][service].get("command"), service
        assert context["readOnlyRootFilesystem"] is bool(compose["services"][service].get("read_only")), (
            service
        )
        # As the Helm values: the runtime's seccomp profile, requests within the limits, and
        # probes that run the image's own health check (copier.yml, health_checks), which the
        # Containerfile's HEALTHCHECK (or compose's, for PostgreSQL) runs too.
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, service
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"} and set(resources["requests"]) == {"cpu", "memory"}
        check = facts["health_checks"][described["health"]]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["exec"]["command"] == check["command"], (service, probe)
            assert container[probe]["periodSeconds"] == check["interval"], (service, probe)
        assert container["livenessProbe"]["initialDelaySeconds"] == check["start"], service
        if service not in others and described["health"] == facts["services"][built]["health"]:
            # The code locations' images: their one definition, pipes/launchpad_pipes/.
            platform = built in ("webserver", "daemon")
            folder = root / (f"platform/{built}" if platform else "pipes/launchpad_pipes")
            text = (folder / facts["containerfile"]).read_text()
            quoted = ", ".join(f'"{part}"' for part in check["command"])
            assert f"CMD [{quoted}]" in text, f"{service}'s image runs another health check"
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        # As compose: the UI's port, or with the login proxy the proxy's two ports alone (the
        # webservers are reached through it, on the project network only).
        published = container.get("ports", [])
        bind, port = answers["ui_bind_address"], answers["ui_port"]
        if service == ("proxy" if login else "webserver"):
            ports = [(3000, port)]
            if login:
                inside = facts["proxy_ports"]
                ports = [(inside["https"], port), (inside["http"], facts["ui_http_port"])]
            # (Every address: no hostIP, which Podman 4.3 would take for the one address 0.0.0.0.)
            address = {"hostIP": bind} if bind != "0.0.0.0" else {}
            assert published == [{"containerPort": c, "hostPort": h, **address} for c, h in ports]
            # (compose's: ${DAGSTER_UI_BIND:-BIND}:${...PORT:-PORT}:CONTAINER_PORT)
            spec_ports = compose["services"][service]["ports"]
            defaults = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", p) for p in spec_ports]
            assert defaults == [f"{bind}:{h}:{c}" for c, h in ports], service
        elif service == "metrics":
            # compose's empty host port (one the engine picks) has no kube equivalent, and kube play
            # publishes a containerPort without hostPort on every address (seen: 0.0.0.0:9464): no
            # port listed; this host reaches the pod at its fixed address.
            assert published == [], published
        else:
            assert published == [], f"{service} is published"
            assert not compose["services"][service].get("ports"), service
    if login:
        # The proxy's users file: the project's directory that make creates (a hostPath), its
        # CA in a claim (kept across kube-down), its Caddyfile config/Caddyfile.
        volumes = {v["name"]: v for v in by_name[f"{slug}-proxy"]["spec"]["volumes"]}
        users = volumes["ui-users"]["hostPath"]
        assert users == {"path": f"@PROJECT_DIR@/{facts['ui_users_dir']}", "type": "Directory"}
        assert volumes["proxy-data"]["persistentVolumeClaim"]["claimName"] == f"{slug}-proxy-data"
        assert volumes["config"]["configMap"]["items"] == [{"key": "Caddyfile", "path": "Caddyfile"}]
    # The ConfigMap holds no copy of the instance: `make kube-yaml` puts config/dagster.yaml and
    # config/workspace.yaml themselves there (test_kube_yaml_points_at_registry_images), and
    # every pod finds each service by its compose name too, so that workspace.yaml's hosts and
    # DAGSTER_PG_HOST serve both stacks.
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    configs = ("dagster.yaml", "workspace.yaml", *(["Caddyfile"] if login else []))
    assert config_map["data"] == {name: f"@CONFIG:{name}@" for name in configs}
    workspace = yaml.safe_load((root / "config" / "workspace.yaml").read_text())
    hosts = {entry["grpc_server"]["host"] for entry in workspace["load_from"]}
    for pod in by_name.values():
        names = {n for alias in pod["spec"]["hostAliases"] for n in alias["hostnames"]}
        assert hosts <= names and set(services) <= names, pod["metadata"]["name"]


def test_docker_projects_have_no_kube(template_snapshot, tmp_path):
    root = render(
        template_snapshot,
        tmp_path / "lp-kube-docker",
        {"container_engine": "docker", "project_slug": "lp-kube-docker"},
    )
    assert not (root / "kube").exists()
    assert not list((root / "scripts").glob("*quadlet*")) and not list((root / "scripts").glob("kube_*"))
    makefile = (root / "Makefile").read_text()
    assert "kube-up" not in makefile and "quadlet-install" not in makefile


@pytest.mark.parametrize("combo", [matrix.combo_id(a) for a in PODMAN_SET])
def test_kube_yaml_points_at_registry_images(combo, podman_projects):
    """`make kube-yaml` writes what kube-up and quadlet-install play: without REGISTRY the YAML
    as it is (IMAGE_TAG latest), with REGISTRY each project image (and only those) as
    REGISTRY/<slug>-NAME:IMAGE_TAG, where `make push` puts it; a bad REGISTRY fails with one
    line and writes nothing."""
    root = podman_projects[combo]
    facts = computed(root)
    slug = yaml.safe_load((root / ".copier-answers.yml").read_text())["project_slug"]
    original = (root / "kube" / f"{slug}.yaml").read_text()
    played = root / ".build" / "kube" / f"{slug}.yaml"
    played.unlink(missing_ok=True)
    for bad, says in (
        ("myhost/team", "is not a registry reference"),
        ("127.0.0.1:1/team", "does not answer"),
    ):
        result = make(root, "kube-yaml", f"REGISTRY={bad}", timeout=120)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode != 0 and len(errors) == 1, result.stderr
        assert errors[0].startswith("error: make kube-yaml: ") and says in errors[0], errors
        assert not played.exists()

    # The played YAML has the project's directory where the kube YAML says @PROJECT_DIR@ (the
    # external PostgreSQL's CA directory, the code with code delivery "volume": hostPaths), and
    # config/dagster.yaml and config/workspace.yaml, exactly, in its ConfigMap. An edit to
    # config/ reaches it (no copy by hand): a line appended to the instance is played.
    instance = root / "config" / "dagster.yaml"
    instance.write_text(instance.read_text() + "# a note: 'quoted', \\ and \"double\"\n")
    names = re.findall(r'"@CONFIG:(.*)@"', original)
    assert {"dagster.yaml", "workspace.yaml"} <= set(names), names
    configs = {name: (root / "config" / name).read_text() for name in names}
    original = original.replace("@PROJECT_DIR@", str(root.resolve()))
    for name, text in configs.items():
        original = original.replace(f'"@CONFIG:{name}@"', json.dumps(text, ensure_ascii=False))
    result = make(root, "kube-yaml", timeout=120)
    assert result.returncode == 0, result.stderr
    assert played.read_text() == original
    (config_map,) = [d for d in yaml.safe_load_all(played.read_text()) if d and d["kind"] == "ConfigMap"]
    assert config_map["data"] == configs

    # Something must answer on the registry's port (the check that `make push` makes).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        registry = f"127.0.0.1:{listener.getsockname()[1]}/team"
        result = make(root, "kube-yaml", f"REGISTRY={registry}", "IMAGE_TAG=1.4.0", timeout=120)
    assert result.returncode == 0, result.stderr
    text = played.read_text()
    assert "localhost/" not in text
    for service, image in facts["kube_images"].items():
        remote = f"{registry}/{slug}-{service}:1.4.0"
        assert f"image: {remote}\n" in text, service
        text = text.replace(remote, image)
    assert text == original  # nothing else changed


def quadlet_generator(wait_s: float = 1200) -> Path:
    """The trixie root with Podman 5.4's Quadlet generator (tests/quadlet/make-quadlet-root.sh).
    A build in progress (.ci/run starts it in the background) holds ROOT.lock: wait for it."""
    lock = QUADLET_ROOT.parent / f"{QUADLET_ROOT.name}.lock"
    if not (QUADLET_ROOT / ".launchpad-quadlet-ready").exists() and lock.exists():
        with lock.open("a") as held:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        missing(f"the Quadlet root's build (holding {lock}) took over {wait_s:.0f} s")
                    time.sleep(2)
            fcntl.flock(held, fcntl.LOCK_UN)
    if not (QUADLET_ROOT / ".launchpad-quadlet-ready").exists():
        missing(f"no Quadlet root at {QUADLET_ROOT} (bash tests/quadlet/make-quadlet-root.sh builds it)")
    if os.geteuid() != 0:
        missing("the Quadlet generator runs in a chroot, which needs root")
    return QUADLET_ROOT


@pytest.mark.parametrize("combo", [matrix.combo_id(a) for a in PODMAN_SET])
def test_quadlet_generator_accepts_the_unit(combo, podman_projects):
    """Podman's own generator turns kube/<slug>.kube into a service that plays the YAML
    beside it on the project network, and reports no error."""
    root = podman_projects[combo]
    chroot_root = quadlet_generator()
    slug = yaml.safe_load((root / ".copier-answers.yml").read_text())["project_slug"]
    units = Path("/tmp") / f"launchpad-quadlet-{slug}-{os.getpid()}"
    inside = chroot_root / units.relative_to("/")
    shutil.rmtree(inside, ignore_errors=True)
    inside.mkdir(parents=True)
    try:
        for name in (f"{slug}.kube", f"{slug}.yaml"):
            shutil.copy(root / "kube" / name, inside / name)
        result = subprocess.run(
            [
                "chroot",
                str(chroot_root),
                "env",
                f"QUADLET_UNIT_DIRS={units}",
                "/usr/libexec/podman/quadlet",
                "-dryrun",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(inside, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"(?i)error|unsupported|invalid", result.stderr), result.stderr
    assert f"---{slug}.service---" in result.stdout, result.stdout
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", result.stdout, re.M)
    assert exec_start.split()[1:4] == ["kube", "play", "--replace"], exec_start
    assert f"--network {slug}_dagster" in exec_start and exec_start.endswith(f" {units}/{slug}.yaml"), (
        exec_start
    )
    stops = re.findall(r"^ExecStopPost=(.*)$", result.stdout, re.M)
    assert any(stop.endswith(f"kube down {units}/{slug}.yaml") for stop in stops), stops
    # The ConfigMap's volume goes around each run (Podman would reuse it as it was).
    assert f"ExecStartPre=-/usr/bin/podman volume rm -f {slug}-config" in result.stdout
    # The YAML it plays names the project's images and publishes the UI where compose does.
    facts = computed(root)
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    text = (root / "kube" / f"{slug}.yaml").read_text()
    for image in facts["kube_images"].values():
        assert f"image: {image}\n" in text
    bind = answers["ui_bind_address"]
    assert f"hostPort: {answers['ui_port']}" + ("}" if bind == "0.0.0.0" else f", hostIP: {bind}}}") in text
    generator = (chroot_root / ".launchpad-quadlet-ready").read_text().strip()
    note("kube tier, Quadlet", f"{len(PODMAN_SET)} units accepted by {generator}'s generator")


# ------------------------------------------------------------------------- engine part

SLUG, PORT = "lp-kube-e2e", 3350
# The tag that the end-to-end test pushes and plays: its own, so that removing its images from
# the local store leaves the project's `make build` images (:latest) as the next run's cache.
E2E_TAG = "kube-e2e"


def kube_leftovers(engine, slug: str) -> dict[str, list[str]]:
    """What of the kube stack `slug` exists: pods, containers, volumes, secrets, networks."""

    def names(*args: str) -> list[str]:
        listed = engine.run(*args, "--format", "{{.Name}}", check=True).stdout.split()
        return [n for n in listed if n.startswith(f"{slug}-") or n.startswith(f"{slug}_")]

    return {
        "pods": names("pod", "ps"),
        "containers": [
            n
            for n in engine.run("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()
            if n.startswith(f"{slug}-")
        ],
        "volumes": names("volume", "ls"),
        "secrets": names("secret", "ls"),
        "networks": names("network", "ls"),
    }


def clear(engine, slug: str) -> None:
    left = kube_leftovers(engine, slug)
    for pod in left["pods"]:
        engine.run("pod", "rm", "-f", pod, timeout=300)
    if left["containers"]:
        engine.run("rm", "-f", *left["containers"], timeout=300)
    for kind in ("volume", "secret", "network"):
        for name in left[kind + "s"]:
            engine.run(kind, "rm", *(["-f"] if kind == "volume" else []), name, timeout=120)


def keep_build_cache(engine, local: str, cache: str) -> None:
    """Name the image `local` also `cache` (the project's `make build` name), so that removing
    `local` keeps the image and its build layers for the next run's build; an older image that
    `cache` named, now nameless, goes."""
    before = engine.run("image", "inspect", "--format", "{{.Id}}", cache).stdout.strip()
    engine.run("tag", local, cache, check=True)
    if before and before != engine.inspect(cache)["Id"]:
        engine.run("rmi", before)  # refused (and kept) if something still names or uses it


@pytest.mark.engine("podman")
def test_kube_play_end_to_end(template_snapshot, tmp_path_factory):
    """One stack from the registry's images: pushed by `make push`, removed from the local
    store, pulled by kube play (`make kube-up REGISTRY=...`); started once and replayed once."""
    engine = ENGINES["podman"].require()
    base = tmp_path_factory.mktemp("kube-e2e")
    root = base / SLUG
    locations = [SLUG.replace("-", "_"), SECOND]
    render(
        template_snapshot,
        root,
        {"container_engine": "podman", "project_slug": SLUG, "ui_port": PORT, "code_locations": locations},
    )
    facts = computed(root)
    for image in (facts["postgres_image"], facts["python_image"]):
        engine.require_image(image)
    clear(engine, SLUG)
    figures = []
    claims = sorted(f"{SLUG}-{v}" for v in ("dagster-data", "postgres-data"))
    services = list(facts["kube_images"])
    # Each service's container, as kube play names it: <pod>-<container>.
    containers = {service: f"{pod}-{service}" for service, pod in facts["kube_pods"].items()}
    (base / "registry").mkdir()
    with running_registry(base / "registry") as address:
        target = f"{address}/team"
        local = {s: f"localhost/{SLUG}-{s}:{E2E_TAG}" for s in services}
        remote = {s: f"{target}/{SLUG}-{s}:{E2E_TAG}" for s in services}
        from_registry = (f"REGISTRY={target}", f"IMAGE_TAG={E2E_TAG}", "KUBE_FLAGS=--tls-verify=false")
        try:
            # Built (from the build cache of earlier runs where it holds) and pushed.
            started = time.monotonic()
            push = make(
                root, "push", f"REGISTRY={target}", f"IMAGE_TAG={E2E_TAG}", "PUSH_FLAGS=--tls-verify=false"
            )
            assert push.returncode == 0, push.stdout[-3000:] + push.stderr[-3000:]
            catalog = get_json(f"http://{address}/v2/_catalog")["repositories"]
            assert sorted(catalog) == sorted(f"team/{SLUG}-{s}" for s in services), catalog
            figures.append(f"make push {time.monotonic() - started:.0f} s (build included)")

            # No image of the local store is named as the stack's: kube play has to pull them.
            for service in services:
                keep_build_cache(engine, local[service], f"localhost/{SLUG}-{service}:latest")
            engine.run("rmi", *local.values(), *remote.values(), check=True)
            assert not [ref for ref in [*local.values(), *remote.values()] if engine.has_image(ref)]

            # A bad REGISTRY: one line, nothing started.
            bad = make(root, "kube-up", "REGISTRY=Not A Registry!", timeout=120)
            errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
            assert bad.returncode != 0 and len(errors) == 1, bad.stderr
            assert "make kube-up: REGISTRY='Not A Registry!' is not a registry reference" in errors[0]
            assert kube_leftovers(engine, SLUG)["pods"] == []

            volumes_before = set(engine.run("volume", "ls", "-q", check=True).stdout.split())
            started = time.monotonic()
            up = make(root, "kube-up", *from_registry)
            assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
            assert f"Dagster UI ready at http://127.0.0.1:{PORT}" in up.stdout, up.stdout[-2000:]
            figures.append(f"kube-up from the registry {time.monotonic() - started:.0f} s (pulls included)")
            # Each container runs the registry's image, pulled; nothing was built for it.
            for service, container in containers.items():
                if service in remote:
                    name = engine.run(
                        "container", "inspect", "--format", "{{.ImageName}}", container, check=True
                    ).stdout.strip()
                    assert name == remote[service], (service, name)
                    assert not engine.has_image(local[service]), f"{local[service]} was built"

            # Every location LOADED, a job SUCCESS in each.
            runs = {}
            for location in locations:
                stack = Stack(PORT, location)
                stack.wait_loaded(timeout=60)
                job, materializations = JOBS[SECOND if location == SECOND else "first"]
                run_id = stack.launch(job)
                assert stack.wait_run(run_id).value == "SUCCESS", stack.errors(run_id)
                assert stack.run(run_id)["stats"]["materializations"] == materializations
                runs[location] = run_id

            # The pods reach each other by pod name on the project network (the locations loading
            # proves webserver -> pipes; here daemon -> postgres and pipes -> webserver too).
            for container, host in (
                (f"{SLUG}-daemon-daemon", f"{SLUG}-postgres"),
                (f"{SLUG}-pipes-{SECOND}-pipes-{SECOND}", f"{SLUG}-webserver"),
            ):
                probe = engine.run(
                    "exec",
                    container,
                    "python3",
                    "-c",
                    f"import socket; print(socket.getaddrinfo('{host}', None)[0][4][0])",
                )
                assert probe.returncode == 0, probe.stderr

            # Confinement as compose promises it.
            for service, container in containers.items():
                status = dict(
                    line.split(":\t", 1)
                    for line in engine.run(
                        "exec", container, "cat", "/proc/1/status", check=True
                    ).stdout.splitlines()
                    if ":\t" in line
                )
                uid = str(facts["postgres_uid"] if service == "postgres" else facts["service_uid"])
                assert status["Uid"].split()[0] == uid, service
                assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, service
                assert status["NoNewPrivs"].strip() == "1", service
                read_only = service in ("webserver", "daemon", "postgres", "metrics")
                probe = "/var/lib/postgresql/probe" if service == "postgres" else "/home/dagster/probe"
                writes = engine.run("exec", container, "touch", probe).returncode == 0
                assert writes != read_only, f"{service}: root filesystem writable={writes}"
            ports = engine.run("port", f"{SLUG}-webserver-webserver", check=True).stdout.split()
            assert ports and all(p.startswith("127.0.0.1:") for p in ports if ":" in p), ports
            # The metrics pod, not published: this host reaches it at its fixed address. It read
            # the storage and the webserver: each location loaded, the runs above counted.
            prefix = env_value(root, "DAGSTER_NETWORK_PREFIX") or facts["network_prefix"]
            metrics = f"http://{prefix}.{facts['network_hosts']['metrics']}:{facts['metrics_port']}/metrics"
            samples = prom.scrape(metrics)
            said = engine.run("logs", f"{SLUG}-metrics-metrics").stdout[-3000:]
            shown = {k: v for k, v in samples.items() if k.startswith("dagster_")}
            assert prom.value(samples, "dagster_metrics_source_up", source="storage") == 1, (shown, said)
            assert prom.value(samples, "dagster_metrics_source_up", source="webserver") == 1, (shown, said)
            for location in locations:
                assert prom.value(samples, "dagster_code_location_loaded", location=location) == 1, shown
            assert prom.total(samples, "dagster_runs_finished_total", status="SUCCESS") >= len(runs), (
                shown,
                said,
            )
            assert engine.run("port", f"{SLUG}-metrics-metrics").stdout.strip() == "", "metrics is published"

            # kube-down: no pod or container left, and no volume but the claims.
            down = make(root, "kube-down")
            assert down.returncode == 0, down.stdout + down.stderr
            left = kube_leftovers(engine, SLUG)
            assert left == {"pods": [], "containers": [], "volumes": claims, "secrets": [], "networks": []}, (
                left
            )
            # Nor any anonymous one (the emptyDir scratch volumes go with their pods).
            volumes = set(engine.run("volume", "ls", "-q", check=True).stdout.split())
            assert sorted(volumes - volumes_before) == claims, volumes - volumes_before

            # History survives: the claims keep it.
            started = time.monotonic()
            up = make(root, "kube-up", *from_registry)
            assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
            figures.append(f"kube-up again {time.monotonic() - started:.0f} s")
            stack = Stack(PORT, locations[0])
            stack.wait_loaded(timeout=60)
            assert set(runs.values()) <= stack.run_ids()

            # make kube-recycle (the memory mitigation, as make recycle for compose), with runs in
            # flight: the webserver's and the daemon's containers restart, nothing else does, no
            # pod stops, and every run ends SUCCESS.
            def start_time(container: str) -> str:
                return engine.run(
                    "container", "inspect", "--format", "{{.State.StartedAt}}", container, check=True
                ).stdout.strip()

            def started_at() -> dict:
                return {service: start_time(name) for service, name in containers.items()}

            def pods_started_at() -> dict:
                # A pod's start is its infra container's: it holds the pod's network namespace.
                infra = {
                    pod: engine.run(
                        "pod", "inspect", "--format", "{{.InfraContainerID}}", pod, check=True
                    ).stdout.strip()
                    for pod in facts["kube_pods"].values()
                }
                return {pod: start_time(container) for pod, container in infra.items()}

            before, pods_before = started_at(), pods_started_at()
            in_flight = [stack.launch() for _ in range(3)]
            started = time.monotonic()
            recycle = make(root, "kube-recycle")
            assert recycle.returncode == 0, recycle.stdout[-3000:] + recycle.stderr[-3000:]
            assert f"Dagster UI ready at http://127.0.0.1:{PORT}" in recycle.stdout, recycle.stdout[-2000:]
            figures.append(f"kube-recycle {time.monotonic() - started:.0f} s")
            after = started_at()
            restarted = sorted(service for service in containers if after[service] != before[service])
            assert restarted == ["daemon", "webserver"], (before, after)
            # In their running pods: no pod left the network (on Podman 4.3 that makes the DNS
            # miss names for 20-40 s, and the daemon then left runs STARTING).
            assert pods_started_at() == pods_before
            statuses = [stack.wait_run(run_id).value for run_id in in_flight]
            assert statuses == ["SUCCESS"] * 3, [(r, stack.errors(r)) for r in in_flight]

            down = make(root, "kube-down")
            assert down.returncode == 0, down.stdout + down.stderr
            clean = make(root, "kube-clean", extra_env={"CONFIRM": "yes"})
            assert clean.returncode == 0, clean.stdout + clean.stderr
            assert kube_leftovers(engine, SLUG) == {
                k: [] for k in ("pods", "containers", "volumes", "secrets", "networks")
            }
        finally:
            clear(engine, SLUG)
            # The pulled images' names (their layers stay under the build cache's names).
            if pulled := [ref for ref in remote.values() if engine.has_image(ref)]:
                engine.run("rmi", *pulled)
    note("kube tier, podman kube play", ", ".join(figures))
