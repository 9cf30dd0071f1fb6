"""`make push` against a real registry on 127.0.0.1: Debian's `docker-registry` (the CNCF
Distribution registry), started by the test. Per engine: a bad REGISTRY or an unreachable
one fails with one clear line and changes nothing in the engine's store; a good one receives
every image of the project under IMAGE_TAG, and the images pulled back from it, after the local
ones are removed, are the ones that were built."""

from __future__ import annotations

import time

import pytest

from launchpad_dev.common import note
from launchpad_dev.engines import ENGINES, env_value, make, render
from launchpad_dev.local_registry import get_json, running_registry

TAG = "push-test-1"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry on 127.0.0.1, plain HTTP (launchpad_dev/local_registry.py)."""
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def store(engine) -> list[str]:
    """Every name:tag in the engine's image store."""
    result = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", check=True)
    return sorted(set(result.stdout.split()))


@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_push_sends_every_image_and_refuses_bad_registries_changing_nothing(
    engine_name, registry, template_snapshot, tmp_path
):
    engine = ENGINES[engine_name].require()
    slug = f"lp-push-{engine_name}"
    root = render(
        template_snapshot,
        tmp_path / slug,
        {"container_engine": engine_name, "project_slug": slug, "code_locations": ["lp_push", "second"]},
    )
    base = env_value(root, "BASE_IMAGE")
    if base:
        engine.require_image(base)
    flags = "--tls-verify=false" if engine_name == "podman" else ""
    services = ["webserver", "daemon", "pipes-lp-push", "pipes-second"]

    # Bad input first, on a project that was never built: nothing may be built or tagged.
    before = store(engine)
    for bad, says in (
        ("Not A Registry!", "is not a registry reference"),
        ("myhost/team", "is not a registry reference"),  # no dot, port or localhost: Docker Hub
        ("127.0.0.1:1/team", "does not answer"),
    ):
        result = make(root, "push", f"REGISTRY={bad}", f"PUSH_FLAGS={flags}", timeout=120)
        assert result.returncode != 0, f"make push REGISTRY={bad!r} succeeded"
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and says in errors[0], result.stderr
        assert "make: ***" in result.stderr  # make's own line, nothing more
        assert store(engine) == before, f"make push REGISTRY={bad!r} changed the image store"
    result = make(root, "push", f"REGISTRY={registry}", "IMAGE_TAG=-bad", f"PUSH_FLAGS={flags}")
    assert result.returncode != 0 and "is not a tag" in result.stderr, result.stderr
    assert store(engine) == before

    # The real push: built first (make push builds what is missing), then every image sent.
    target = f"{registry}/team"
    started = time.monotonic()
    # Variables on make's command line: .env (which sets IMAGE_TAG) would override the environment.
    result = make(root, "push", f"REGISTRY={target}", f"IMAGE_TAG={TAG}", f"PUSH_FLAGS={flags}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seconds = time.monotonic() - started
    catalog = get_json(f"http://{registry}/v2/_catalog")["repositories"]
    for service in services:
        name = f"team/{slug}-{service}"
        assert name in catalog, catalog
        assert TAG in get_json(f"http://{registry}/v2/{name}/tags/list")["tags"]
        assert f"pushed {target}/{slug}-{service}:{TAG}" in result.stdout

    # Pulled back after the local copies are gone: the same image (same config digest).
    built = {s: engine.inspect(f"localhost/{slug}-{s}:{TAG}")["Id"] for s in services}
    remote = [f"{target}/{slug}-{s}:{TAG}" for s in services]
    engine.run("rmi", "-f", *remote, *(f"localhost/{slug}-{s}:{TAG}" for s in services), check=True)
    for service, ref in zip(services, remote, strict=True):
        assert not engine.has_image(ref)
        pull = ["pull", *([flags] if flags else []), ref]
        engine.run(*pull, timeout=300, check=True)
        assert engine.inspect(ref)["Id"] == built[service], f"{ref} pulled back is not the image built"
    engine.run("rmi", "-f", *remote)
    note(
        f"make push, {engine_name}",
        f"4 images to a local registry in {seconds:.0f} s (build included), pulled back identical",
    )
