"""Build tier: every distinct image set of the answer matrix builds, on its own engine.

An image set is what `matrix.IMAGE_KEYS` select (engine, base, package manager, Python,
code delivery, Dagster version); test_static checks that exactly these answers change the
images. Each buildable set is rendered with Copier and built with the generated project's
own `make build`; bases that cannot exist here are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
import zipfile
from pathlib import Path

import pytest

from launchpad_dev import matrix
from launchpad_dev.common import computed, note
from launchpad_dev.engines import (
    ENGINES,
    env_value,
    make,
    render,
    unbuildable_reason,
    use_base,
    uv_wheel_hashes,
)

IMAGE_SETS = matrix.image_sets()
FIGURES: dict[str, dict] = {}
# Every build gets this private-index "credential" as its build secret (secrets/pip.conf);
# no image may contain it, in a layer, its history or its metadata. One fixed value, so
# that layers reused from the build cache were built with it too.
SECRET = "lp-build-secret-3f9c1e7a"
PIP_CONF = f"""[global]
# a private index token, which must never reach an image: {SECRET}
trusted-host = {SECRET}.invalid
"""
# A pip.conf that points at a closed port: a build that honours the secret must fail.
BROKEN_PIP_CONF = "[global]\nindex-url = http://127.0.0.1:9/simple\nretries = 0\ntimeout = 5\n"


def write_pip_conf(root, text: str) -> None:
    (root / "secrets").mkdir(exist_ok=True)
    (root / "secrets/pip.conf").write_text(text)


def assert_no_secret(engine, ref: str, scan_layers: bool, tmp_dir) -> None:
    assert SECRET not in engine.image_text(ref), f"the build secret is in the history or metadata of {ref}"
    if scan_layers:
        assert not engine.image_bytes_contain(ref, SECRET.encode(), tmp_dir), (
            f"the build secret is in a layer of {ref}"
        )


# Prints every build leftover in an image, one per line (nothing when the image is clean).
LEFTOVERS = (
    "find /opt/venv /opt/dagster \\( -path /opt/dagster/build"
    " -o -path '/opt/dagster/app/*/__pycache__' \\) -print 2>/dev/null;"
    " for tool in gcc cc c++ make; do command -v $tool || true; done"
)


def shared_prefix(a: list, b: list) -> int:
    return sum(1 for _ in itertools.takewhile(lambda pair: pair[0] == pair[1], zip(a, b, strict=False)))


def check_image(engine, ref: str, image: str, slug: str, answers: dict, uid: int) -> dict:
    """One built image: runs as the service user (`uid`, Copier's service_uid), kept its
    HEALTHCHECK and labels, has the pinned Dagster and no build leftovers."""
    info = engine.inspect(ref)
    config = info["Config"]
    assert config.get("User") == f"{uid}:{uid}", f"{ref} runs as {config.get('User')!r}"
    # Docker keeps it in Config.Healthcheck, Podman's JSON at the top level.
    health = config.get("Healthcheck") or info.get("Healthcheck") or {}
    assert health.get("Test"), f"{ref} lost its HEALTHCHECK"
    labels = config.get("Labels") or {}
    assert labels.get("org.opencontainers.image.title") == f"{slug}-{image}"
    assert labels.get("io.dagster.version") == answers["dagster_version"]
    assert labels.get("org.opencontainers.image.base.name")
    out = engine.run(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        ref,
        "-c",
        f"id -u; dagster --version; ls /opt/venv/bin; {LEFTOVERS}",
        check=True,
    )
    runs_as, version, *rest = out.stdout.splitlines()
    assert runs_as.strip() == str(uid), f"{ref} runs as uid {runs_as!r}"
    assert f"version {answers['dagster_version']}" in version, version
    # uv installed the lock and left: no installer in the image, so nothing is installed
    # outside the lock by accident (CHANGELOG, image.jinja).
    tools = sorted(set(rest) & {"pip", "pip3", "uv", "uvx"})
    assert "dagster" in rest and not tools, f"{ref}: installers in /opt/venv/bin: {tools}"
    leftovers = [line for line in rest if line.startswith("/")]
    # Nothing the running image does not need: no copy of a build step's working directory,
    # no bytecode cache of the copied code, no compiler. (Installed packages are kept whole:
    # libraries keep runtime files in directories of any name, dbt's macros in tests/; and
    # their bytecode: without it every process, each run included, compiles Dagster again,
    # about 2 s more per start.)
    assert not leftovers, f"{ref} carries build leftovers: {leftovers[:10]}"
    return info


def check_cold_build_reads_the_secret_and_keeps_it_out(
    engine, template_snapshot, answers: dict, root, base: str, figures: dict
) -> None:
    """The cold-build figure: the same set under another name, built from the base with one
    tiny layer more, so that no build cache matches (the checks that follow use the real
    build). The build really reads secrets/pip.conf: one pointing at a closed index fails;
    with the real one, no byte of the three saved images holds the secret."""
    slug = root.name
    cold = render(template_snapshot, root.parent / "cold", {**answers, "project_slug": f"{slug}-cold"})
    fresh = engine.fresh_base(base, f"{slug}-cold")
    use_base(cold, fresh)
    write_pip_conf(cold, BROKEN_PIP_CONF)
    broken = make(cold, "build", timeout=600)
    assert broken.returncode != 0, "the build ignored secrets/pip.conf"
    assert "127.0.0.1" in broken.stdout + broken.stderr, broken.stdout[-2000:] + broken.stderr[-2000:]
    write_pip_conf(cold, PIP_CONF)
    started = time.monotonic()
    result = make(cold, "build")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    images = ["webserver", "daemon", *computed(cold)["pipes_services"].values()]
    figures["cold build"] = f"{time.monotonic() - started:.0f} s ({len(images)} images, no build cache)"
    for image in images:
        assert_no_secret(engine, f"localhost/{slug}-cold-{image}:latest", True, root.parent)
    figures["build secret"] = "absent from every layer, history and metadata (cold set scanned byte by byte)"
    engine.run("rmi", *(f"localhost/{slug}-cold-{image}:latest" for image in images), fresh)


def instructions(containerfile: Path) -> list[str]:
    """The instructions of an image definition, continuation lines joined, comments dropped."""
    lines = [line for line in containerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = [" ".join(i.split()) for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]
    # A stage's name (FROM ... AS dependencies) changes no layer.
    return [re.sub(r"^(FROM \S+) AS \S+$", r"\1", i) for i in joined]


def common_layer_steps(first: Path, second: Path) -> int:
    """How many layer-making steps (RUN, COPY, ADD) two image definitions have in common,
    instruction for instruction from the top: the layers their images should share."""
    steps = 0
    for a, b in zip(instructions(first), instructions(second), strict=False):
        if a != b:
            break
        steps += a.split()[0] in ("RUN", "COPY", "ADD")
    return steps


def check_layers_shared(engine, infos: dict, base: str, root: Path) -> None:
    """All images share the base, the service user and the Dagster core (its requirements file
    and the install); webserver and daemon also share the platform's requirements and install:
    every layer of the instructions their definitions have in common. Every code location's
    image shares the core layers."""
    web, daemon = infos["webserver"]["RootFS"]["Layers"], infos["daemon"]["RootFS"]["Layers"]
    base_layers = len(engine.inspect(base)["RootFS"]["Layers"])
    containerfile = computed(root)["containerfile"]
    web_file, daemon_file = (root / f"platform/{i}/{containerfile}" for i in ("webserver", "daemon"))
    platform_steps = common_layer_steps(web_file, daemon_file)
    shared = shared_prefix(web, daemon)
    assert shared >= base_layers + platform_steps, f"webserver and daemon share {shared} layers"
    core_steps = common_layer_steps(web_file, root / f"pipes/launchpad_pipes/{containerfile}")
    assert core_steps >= 2 and platform_steps >= core_steps + 2, (platform_steps, core_steps)
    for service in computed(root)["pipes_services"].values():
        with_pipes = shared_prefix(web, infos[service]["RootFS"]["Layers"])
        assert with_pipes >= base_layers + core_steps, f"{service} shares {with_pipes} layers with webserver"


def has_package(engine, image: str, package: str, module: str = "definitions") -> bool:
    probe = engine.run(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        image,
        "-c",
        f"import sys\ntry:\n    import {package}.{module}\nexcept ModuleNotFoundError:\n    sys.exit(3)",
    )
    assert probe.returncode in (0, 3), f"{image}: {probe.stderr}"
    return probe.returncode == 0


def check_pipes_have_their_code_only_when_baked(engine, images: dict, answers: dict) -> None:
    """Image delivery: each code location's image imports its own package, and no other
    location's. Volume: they have dependencies only. Either way each carries the package that
    every location shares (launchpad_pipes), and names its own location in its environment (the
    one image definition, built with each location's name)."""
    for package, image in images.items():
        found = {other for other in images if has_package(engine, image, other)}
        expected = {package} if answers["code_delivery"] == "image" else set()
        assert found == expected, f"{image} contains the packages {found}, expected {expected}"
        assert has_package(engine, image, "launchpad_pipes", "defaults"), f"{image} lacks launchpad_pipes"
        env = dict(e.split("=", 1) for e in engine.inspect(image)["Config"]["Env"])
        assert env["DAGSTER_LOCATION_NAME"] == package, env
        assert env["DAGSTER_MODULE_NAME"] == f"{package}.definitions", env


def check_one_line_change_is_rebuilt(engine, root, images: dict) -> float:
    """Image delivery: after a one-line code change in the first code location, `make build`
    bakes the change into its image, and leaves the other locations' images as they were.
    Returns the seconds it took (the rebuild and the check of the new image)."""
    package, *others = images
    pipes = images[package]
    ids = {other: engine.inspect(images[other])["Id"] for other in others}
    assets = root / "pipes" / package / "src" / package / "assets.py"
    assets.write_text(assets.read_text().replace("range(1, 11)", "range(1, 12)"))
    started = time.monotonic()
    rebuilt = make(root, "build")
    assert rebuilt.returncode == 0, rebuilt.stdout[-2000:]
    baked = engine.run("run", "--rm", "--entrypoint", "cat", pipes, f"/opt/dagster/app/{package}/assets.py")
    assert "range(1, 12)" in baked.stdout, "the rebuilt pipes image does not have the change"
    seconds = time.monotonic() - started
    rebuilt_others = [other for other in others if engine.inspect(images[other])["Id"] != ids[other]]
    assert not rebuilt_others, f"a change in {package} rebuilt {rebuilt_others} too"
    return seconds


def check_tampered_hash_fails_the_build(root, engine) -> str:
    """A hash changed in uv.lock (and exported by `make lock`, which does not download) makes
    the install step fail with uv's message naming the package; nothing is installed."""
    lock = root / "uv.lock"
    text = lock.read_text()
    start = text.index('\nname = "dagster-webserver"\n')
    end = text.index("[[package]]", start)
    block = re.sub(r"(sha256:[0-9a-f]{60})[0-9a-f]{4}", r"\g<1>0000", text[start:end])
    lock.write_text(text[:start] + block + text[end:])
    relocked = make(root, "lock")
    assert relocked.returncode == 0, relocked.stdout + relocked.stderr
    failed = make(root, "build")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, "a tampered hash did not fail the build"
    assert "Hash mismatch for `dagster-webserver==" in output, output[-3000:]
    lock.write_text(text)
    assert make(root, "lock").returncode == 0
    return "fails the build, uv naming the package (dagster-webserver)"


def check_kept_uv_wheel_is_verified(engine, root, base: str, tmp_dir) -> str:
    """The install step keeps uv's wheel and its unpacked binary in the build cache and checks
    both each time: a kept wheel altered on the build host is fetched again, an altered binary
    is unpacked again; neither is ever run."""
    cache = tmp_dir / "uv-wheel-cache"
    cache.mkdir()
    (cache / "requirements.txt").write_text(
        "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"
    )
    install = [
        "run", "--rm", "--user", "0", "--entrypoint", "python3",
        "-v", f"{root / 'platform'}:/opt/dagster:ro", "-v", f"{cache}:/var/cache/launchpad",
        base, "/opt/dagster/install_locked.py", "install", "/var/cache/launchpad/requirements.txt",
    ]  # fmt: skip
    engine.run(*install, check=True, timeout=600)
    (kept,) = cache.glob("uv-wheel/*/uv-*.whl")
    hashes = uv_wheel_hashes(root / "platform/requirements-uv.txt")
    assert hashlib.sha256(kept.read_bytes()).hexdigest() in hashes
    kept.write_bytes(b"#!/bin/sh\necho tampered\n")
    again = engine.run(*install, check=True, timeout=600)
    assert "tampered" not in again.stdout + again.stderr
    assert "Installed 1 package" in again.stdout + again.stderr, again.stdout + again.stderr
    assert hashlib.sha256(kept.read_bytes()).hexdigest() in hashes, "the altered wheel was kept"
    # The binary unpacked beside it is checked against the wheel's RECORD: altered, unpacked again.
    binary = kept.parent / "uv"
    with zipfile.ZipFile(kept) as wheel:
        (member,) = [n for n in wheel.namelist() if n.endswith(".data/scripts/uv")]
        unpacked = wheel.read(member)
    assert binary.read_bytes() == unpacked, "the uv binary is not kept beside its wheel"
    binary.write_bytes(b"#!/bin/sh\necho tampered\n")
    third = engine.run(*install, check=True, timeout=600)
    assert "tampered" not in third.stdout + third.stderr
    assert "Installed 1 package" in third.stdout + third.stderr, third.stdout + third.stderr
    assert binary.read_bytes() == unpacked, "the altered uv binary was kept"
    return f"kept in the build cache ({kept.name} and its binary), altered copies replaced"


def test_image_set_builds_runs_as_service_user_and_shares_layers(
    answers, template_snapshot, tmp_path_factory
):
    """`make build` builds the set (once per engine also cold, proving the build secret is read
    and kept out of every byte); each image runs as the service user with its healthcheck,
    labels and pinned Dagster, no build leftovers and no secret in its history or metadata;
    the images share their common layers; each code location's image has its code (and no
    other's) only when it is baked; and (image delivery) a one-line code change is rebuilt, in
    that location's image alone. The first set of each engine has two code locations."""
    if reason := unbuildable_reason(answers):
        pytest.skip(reason)
    engine = ENGINES[answers["container_engine"]].require()
    index = IMAGE_SETS.index(answers)
    slug = f"lp-build-{index}"
    package = slug.replace("-", "_")
    figures = FIGURES.setdefault(engine.name, {"sets built": 0})
    locations = [package, "second"] if "cold build" not in figures else [package]
    root = render(
        template_snapshot,
        tmp_path_factory.mktemp("build") / slug,
        {**answers, "project_slug": slug, "code_locations": locations},
    )
    write_pip_conf(root, PIP_CONF)
    assert SECRET not in (root / ".copier-answers.yml").read_text()
    base = env_value(root, "BASE_IMAGE")
    engine.require_image(base)

    if "cold build" not in figures:
        check_cold_build_reads_the_secret_and_keeps_it_out(
            engine, template_snapshot, answers, root, base, figures
        )
    built = make(root, "build")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    tag, uid = env_value(root, "IMAGE_TAG"), computed(root)["service_uid"]
    services = computed(root)["pipes_services"]
    infos = {
        image: check_image(engine, f"localhost/{slug}-{image}:{tag}", image, slug, answers, uid)
        for image in ("webserver", "daemon", *services.values())
    }
    for image in infos:
        assert_no_secret(engine, f"localhost/{slug}-{image}:{tag}", False, root.parent)
    check_layers_shared(engine, infos, base, root)
    pipes = {location: f"localhost/{slug}-{service}:{tag}" for location, service in services.items()}
    check_pipes_have_their_code_only_when_baked(engine, pipes, answers)
    if len(pipes) > 1:
        figures["code locations"] = f"{len(pipes)} in the first set, each image with its own package only"

    figures["sets built"] += 1
    if "image sizes" not in figures:
        sizes = {i: infos[i]["Size"] for i in infos}
        figures["image sizes"] = ", ".join(f"{i} {s / 1e6:.0f} MB" for i, s in sizes.items())
    if answers["code_delivery"] == "image" and "rebuild after a one-line code change" not in figures:
        seconds = check_one_line_change_is_rebuilt(engine, root, pipes)
        figures["rebuild after a one-line code change"] = f"{seconds:.1f} s (make build)"
    if "uv wheel" not in figures:
        figures["uv wheel"] = check_kept_uv_wheel_is_verified(engine, root, base, root.parent)
    if "tampered hash in uv.lock" not in figures:
        figures["tampered hash in uv.lock"] = check_tampered_hash_fails_the_build(root, engine)
    note(f"build tier, {engine.name}", "; ".join(f"{k}: {v}" for k, v in figures.items()))


def pytest_generate_tests(metafunc):
    if "answers" in metafunc.fixturenames:
        ids = ["-".join(str(v) for v in matrix.image_key(a) if v is not None) for a in IMAGE_SETS]
        metafunc.parametrize("answers", IMAGE_SETS, ids=ids)


# Answers that look like parser directives (issue 29, finding 1): BuildKit reads leading
# `# key=value` comment lines of a Dockerfile as directives; `# syntax=IMAGE` runs IMAGE as the
# build frontend (which sees the build secret) and `# escape=none` breaks the build.
DIRECTIVE_NAMES = ["syntax=docker.io/attacker/frontend", "Escape = none"]


@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_a_name_that_looks_like_a_directive_stays_a_comment(engine_name, template_snapshot, tmp_path):
    """A project named like a parser directive builds unchanged: its name never begins an
    image definition, and the image carries the name in its description label."""
    engine = ENGINES[engine_name].require()
    for index, name in enumerate(DIRECTIVE_NAMES):
        slug = f"lp-directive-{engine.name}-{index}"
        answers = {"container_engine": engine.name, "project_name": name, "project_slug": slug}
        root = render(template_snapshot, tmp_path / slug, answers)
        engine.require_image(computed(root)["python_image"])
        write_pip_conf(root, PIP_CONF)
        for path in root.rglob(computed(root)["containerfile"]):
            first = path.read_text().splitlines()[0]
            assert not re.match(r"#\s*[A-Za-z][A-Za-z0-9]*\s*=", first), f"{path}: {first}"
        try:
            built = make(root, ".build/webserver", timeout=1200)
            assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
            ref = f"localhost/{slug}-webserver:{env_value(root, 'IMAGE_TAG')}"
            assert name in engine.image_text(ref), f"{ref} lacks its description label"
        finally:
            engine.run("rmi", "-f", f"localhost/{slug}-webserver:{env_value(root, 'IMAGE_TAG')}")
