"""`platform_images=prebuilt` against images the template's own publisher made: the session's
published_platform (tests/conftest.py: launchpad_dev/publish.py to Debian's docker-registry on
127.0.0.1, signed with a key made for the session). A project renders with that registry in
.env and the session's public key as platform/images.pub, as a user mirroring the images with
their own key would.

- Per engine and code delivery: `make up` pins, pulls and checks the signatures, builds no
  webserver or daemon image (they are the pinned digests), builds the code location's image only
  when its code is baked in (mounted code with no dependency of its own: the pipes-base itself,
  no build at all), and a job reaches SUCCESS; `make verify-images` passes.
- Another image pushed under the published tag: a new project refuses it (no signature names
  its digest) and starts nothing; a pinned project's `make pin-images` refuses it and keeps its
  pins.
- The registry unreachable: `make up` stops within seconds, naming the registry and the advice
  to mirror, with nothing started.
- Re-pinning after a new publish changes the pins' digests and no other file; `copier update`
  keeps a project's pins.

Every test runs in the Podman group: the publisher builds with Podman (the Docker engine pulls
the same images from the registry)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from launchpad_dev import prom
from launchpad_dev.common import note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, make, remove_stack, render, set_env, tool_env
from launchpad_dev.local_registry import free_port

ANSWERS = {"base_image": "debian", "python_version": "3.11", "dagster_version": "1.13.27"}
PLATFORM = ("webserver", "daemon", "pipes-base")
pytestmark = pytest.mark.engine("podman")


@pytest.fixture(scope="module")
def platform(published_platform):
    """The session's published images, with Podman told that their loopback registry speaks
    plain HTTP (Docker assumes it for 127.0.0.0/8), as a user's mirror without TLS needs."""
    registry, public_key, published = published_platform
    host = registry.split("/")[0]
    conf = Path(f"/etc/containers/registries.conf.d/launchpad-test-{host.replace(':', '-')}.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    try:
        yield registry, public_key, published
    finally:
        conf.unlink(missing_ok=True)


def prebuilt_project(template_snapshot, dest: Path, engine: str, platform, **answers) -> Path:
    registry, public_key, _ = platform
    root = render(
        template_snapshot,
        dest,
        {**ANSWERS, "platform_images": "prebuilt", "container_engine": engine, "project_slug": dest.name,
         "ui_port": free_port(), **answers},
    )  # fmt: skip
    shutil.copy(public_key, root / "platform/images.pub")
    set_env(root, "PLATFORM_REGISTRY", registry)
    return root


def container_image(engine, container: str) -> str:
    field = "{{.ImageName}}" if engine.name == "podman" else "{{.Config.Image}}"
    return engine.run("inspect", "--format", field, container, check=True).stdout.strip()


def image_id(engine, ref: str) -> str:
    return engine.run("image", "inspect", "--format", "{{.Id}}", ref, check=True).stdout.strip()


def write_pins(root: Path, published: dict, tag: str) -> None:
    """The session's published digests as the project's platform/images.lock (lines NAME TAG DIGEST)."""
    lines = [f"{name} {tag} {published[name]['digest']}\n" for name in PLATFORM]
    (root / "platform/images.lock").write_text("".join(lines))


def pins(root: Path) -> dict[str, str]:
    found = {}
    for line in (root / "platform/images.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, tag, digest = line.split()
            found[name] = digest
    return found


@pytest.mark.parametrize("delivery", ["volume", "image"])
@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_prebuilt_stack_pulls_the_pinned_platform_and_runs_a_job(
    engine_name, delivery, platform, template_snapshot, tmp_path
):
    engine = ENGINES[engine_name].require()
    registry, _, published = platform
    slug = f"lp-pre-{engine_name[0]}{delivery[0]}"
    root = prebuilt_project(template_snapshot, tmp_path / slug, engine_name, platform, code_delivery=delivery)
    engine.clear_leftovers(slug)
    started = time.monotonic()
    result = make(root, "up", timeout=1200)
    took = time.monotonic() - started
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        note(f"prebuilt make up ({engine_name}, {delivery}), pins and pulls included", f"{took:.1f} s")
        pinned = pins(root)
        assert pinned == {name: published[name]["digest"] for name in PLATFORM}, pinned
        # No webserver or daemon image of the project's own: the containers run the pins.
        for name in ("webserver", "daemon"):
            assert not engine.has_image(f"localhost/{slug}-{name}:latest"), f"{name} was built"
            want = f"{registry}/launchpad-{name}@{pinned[name]}"
            assert container_image(engine, f"{slug}-{name}") == want
        location_image = f"localhost/{slug}-pipes-{slug}:latest"
        base = image_id(engine, f"{registry}/launchpad-pipes-base@{pinned['pipes-base']}")
        if delivery == "volume":
            assert "no build" in result.stdout, result.stdout[-2000:]
            assert not re.search(r"(?m)^(podman-compose|docker compose) build", result.stdout), result.stdout
            assert image_id(engine, location_image) == base, "the location's image is not the pipes-base"
        else:
            assert image_id(engine, location_image) != base, "the location's image was not built"
        port = int(re.search(r"Dagster UI ready at http://127\.0\.0\.1:(\d+)", result.stdout).group(1))
        stack = Stack(port, slug.replace("-", "_"))
        run_id = stack.launch()
        assert stack.wait_run(run_id).value == "SUCCESS", stack.errors(run_id)
        # The metrics service runs the pinned webserver image too, and reads the instance.
        want = f"{registry}/launchpad-webserver@{pinned['webserver']}"
        assert container_image(engine, f"{slug}-metrics") == want
        found = make(root, "metrics-url")
        assert found.returncode == 0, found.stdout + found.stderr
        samples = prom.scrape(prom.url_in(found.stdout))
        assert prom.value(samples, "dagster_metrics_source_up", source="storage") == 1, samples
        assert prom.total(samples, "dagster_runs_finished_total", status="SUCCESS") >= 1, samples

        verified = make(root, "verify-images", timeout=120)
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.count("signature good, stored digest") == 3, verified.stdout
    finally:
        remove_stack(engine, root, slug)


def retag(registry: str, name: str, digest: str, tag: str) -> None:
    """Put the manifest `digest` of launchpad-NAME back under `tag` (the registry's HTTP API)."""
    host, _, path = registry.partition("/")
    repo = f"{path}/launchpad-{name}" if path else f"launchpad-{name}"
    accept = (
        "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"
    )
    request = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{digest}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body, media = response.read(), response.headers["Content-Type"]
    put = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}", data=body, method="PUT", headers={"Content-Type": media}
    )
    urllib.request.urlopen(put, timeout=10).close()


def test_another_image_under_the_published_tag_is_refused(platform, template_snapshot, tmp_path):
    engine = ENGINES["podman"].require()
    registry, _, published = platform
    pinned_root = prebuilt_project(template_snapshot, tmp_path / "lp-pre-pinned", "podman", platform)
    assert (done := make(pinned_root, "pin-images", timeout=120)).returncode == 0, done.stderr
    lock = (pinned_root / "platform/images.lock").read_text()

    tag = published["webserver"]["ref"].rsplit(":", 1)[1]
    original = published["webserver"]["digest"]
    target = f"{registry}/launchpad-webserver:{tag}"
    other = f"{registry}/launchpad-pipes-base@{published['pipes-base']['digest']}"
    engine.run("pull", "-q", other, check=True, timeout=300)
    engine.run("tag", other, target, check=True)
    engine.run("push", "-q", target, check=True, timeout=300)
    try:
        slug = "lp-pre-tampered"
        root = prebuilt_project(template_snapshot, tmp_path / slug, "podman", platform)
        engine.clear_leftovers(slug)
        result = make(root, "up", timeout=600)
        assert result.returncode != 0, "make up started an unsigned image"
        assert "has no signature" in result.stderr or "no signature by" in result.stderr, result.stderr
        assert not (root / "platform/images.lock").exists()
        assert engine.containers(slug) == [], "something started"

        repin = make(pinned_root, "pin-images", timeout=120)
        assert repin.returncode != 0 and "signature" in repin.stderr, repin.stdout + repin.stderr
        assert (pinned_root / "platform/images.lock").read_text() == lock, "the pins changed"
    finally:
        engine.run("rmi", target)
        retag(registry, "webserver", original, tag)


def test_an_unreachable_registry_stops_make_up_at_once_with_advice(platform, template_snapshot, tmp_path):
    engine = ENGINES["podman"].require()
    _, _, published = platform
    slug = "lp-pre-down"
    root = prebuilt_project(template_snapshot, tmp_path / slug, "podman", platform)
    down = f"127.0.0.1:{free_port()}/launchpad"
    set_env(root, "PLATFORM_REGISTRY", down)
    tag = published["webserver"]["ref"].rsplit(":", 1)[1]
    write_pins(root, published, tag)
    engine.clear_leftovers(slug)
    started = time.monotonic()
    result = make(root, "up", timeout=300)
    took = time.monotonic() - started
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and down.split("/")[0] in errors[0] and "mirror" in errors[0], result.stderr
    assert took < 30, f"make up took {took:.0f} s to give up"
    assert engine.containers(slug) == [], "something started"
    note("prebuilt make up, registry down: gave up after", f"{took:.1f} s")


def test_update_keeps_the_pins(platform, template_snapshot, tmp_path):
    """A project's platform/images.lock is its own: copier update never touches it."""
    template = tmp_path / "template"
    shutil.copytree(template_snapshot, template, symlinks=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=template, check=True)
    subprocess.run([*git, "add", "-A"], cwd=template, check=True)
    subprocess.run([*git, "commit", "-qm", "release"], cwd=template, check=True)
    subprocess.run([*git, "tag", "v9.0.0"], cwd=template, check=True)
    root = tmp_path / "lp-pre-update"
    copier = [str(Path(shutil.which("copier") or "copier"))]
    answers = {**ANSWERS, "platform_images": "prebuilt", "project_slug": root.name}
    data = [f"--data={k}={v}" for k, v in answers.items()]
    subprocess.run(
        [*copier, "copy", "--defaults", "-q", *data, str(template), str(root)], check=True, env=tool_env()
    )
    lock = "".join(f"{n} t sha256:{'0' * 63}{i}\n" for i, n in enumerate(PLATFORM))
    (root / "platform/images.lock").write_text(lock)
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "project"], cwd=root, check=True)
    readme = template / "template/README.md.jinja"
    readme.write_text(readme.read_text() + "\nA line of the next release.\n")
    subprocess.run([*git, "commit", "-qam", "next"], cwd=template, check=True)
    subprocess.run([*git, "tag", "v9.0.1"], cwd=template, check=True)
    updated = subprocess.run(
        [*copier, "update", "--defaults", "-q", str(root)], capture_output=True, text=True, env=tool_env()
    )
    assert updated.returncode == 0, updated.stderr
    assert "A line of the next release." in (root / "README.md").read_text(), "the update did not apply"
    assert (root / "platform/images.lock").read_text() == lock


def test_the_kube_yaml_and_the_helm_values_run_the_pins(platform, template_snapshot, tmp_path):
    """make kube-yaml (podman kube play, Quadlet) and make helm-values name the pinned digests
    of webserver and daemon, never a tag; the code locations keep the project's own images."""
    registry, _, published = platform
    root = prebuilt_project(template_snapshot, tmp_path / "lp-pre-kube", "podman", platform)
    tag = published["webserver"]["ref"].rsplit(":", 1)[1]
    write_pins(root, published, tag)
    assert (done := make(root, "kube-yaml", timeout=120)).returncode == 0, done.stderr
    played = (root / ".build/kube/lp-pre-kube.yaml").read_text()
    for name in ("webserver", "daemon"):
        assert f"image: {registry}/launchpad-{name}@{published[name]['digest']}" in played, played
    assert "image: localhost/lp-pre-kube-pipes-lp-pre-kube:latest" in played

    assert (done := make(root, "helm-values", timeout=120)).returncode == 0, done.stderr
    values = (root / ".build/helm/values.yaml").read_text()
    for name in ("webserver", "daemon"):
        assert f'repository: "{registry}/launchpad-{name}"' in values
        assert f'tag: "{tag}@{published[name]["digest"]}"' in values
    assert "@PLATFORM_REGISTRY@" not in values and "_PIN@" not in values


def test_repinning_after_a_new_publish_changes_the_digests_and_nothing_else(
    platform, platform_signing_key, template_snapshot, tmp_path
):
    """A new release of the images under the same tag (each with one label more, signed with the
    publisher's key): `make pin-images` moves the project to it, and its pins' digests are the
    only change in the project's tree."""
    from launchpad_dev import signing
    from launchpad_dev.oci_registry import Registry, split_reference

    engine = ENGINES["podman"].require()
    registry, _, published = platform
    private, _, password = platform_signing_key
    root = prebuilt_project(template_snapshot, tmp_path / "lp-pre-repin", "podman", platform)
    assert (done := make(root, "pin-images", timeout=120)).returncode == 0, done.stderr
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "pinned"]):
        subprocess.run([*git, *step], cwd=root, check=True)
    before = (root / "platform/images.lock").read_text()

    key = signing.load_private_key(private.read_text(), password)
    client = Registry(registry.split("/")[0])
    tag = published["webserver"]["ref"].rsplit(":", 1)[1]
    context = tmp_path / "release-2"
    context.mkdir()
    released = {}
    try:
        for name in PLATFORM:
            ref = f"{registry}/launchpad-{name}"
            (context / "Containerfile").write_text(
                f"FROM {ref}@{published[name]['digest']}\nLABEL org.example.release=2\n"
            )
            engine.run("build", "-q", "-t", f"{ref}:{tag}", str(context), check=True, timeout=600)
            digest_file = tmp_path / f"{name}.digest"
            engine.run(
                "push", "-q", "--digestfile", str(digest_file), f"{ref}:{tag}", check=True, timeout=300
            )
            released[name] = digest_file.read_text().strip()
            signing.attach_signature(client, split_reference(ref)[1], ref, released[name], key)

        repinned = make(root, "pin-images", timeout=120)
        assert repinned.returncode == 0, repinned.stderr
        assert pins(root) == released
        assert not set(released.values()) & {published[n]["digest"] for n in PLATFORM}
        changed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert changed == [" M platform/images.lock"], changed
        after = (root / "platform/images.lock").read_text()
        digest = re.compile(r"sha256:[0-9a-f]{64}")
        assert digest.sub("D", after) == digest.sub("D", before), "more than the digests changed"
    finally:
        for name in PLATFORM:
            retag(registry, name, published[name]["digest"], tag)
            engine.run("rmi", f"{registry}/launchpad-{name}:{tag}")
