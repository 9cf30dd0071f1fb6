"""The container engines as the tests find them, and how to drive a generated project."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from launchpad_dev.tools import missing

VENV_BIN = Path(sys.executable).parent

# Which base images the engine tiers use (docs/testing.md, "Choosing images, shards, bases and
# engines"): "standins" (the default: the images tests/standins/make-standins.sh builds here
# from Debian packages; bases it cannot make honestly are skipped with the reason) or
# "upstream" (the real images, pulled from their registries: every base is built; a pull that
# fails fails the test). The GitHub matrix uses "upstream"; .ci/run, here, "standins".
IMAGES_ENV = "LAUNCHPAD_IMAGES"
IMAGE_SOURCES = ("standins", "upstream")


def image_source() -> str:
    value = os.environ.get(IMAGES_ENV) or "standins"
    if value not in IMAGE_SOURCES:
        raise ValueError(f"{IMAGES_ENV}={value!r}: expected one of {', '.join(IMAGE_SOURCES)}")
    return value


UPSTREAM = image_source() == "upstream"

# Bases that cannot be made here from Debian packages, and why (skipped unless upstream).
UNBUILDABLE = {
    "ubi": "UBI images come only from registry.access.redhat.com (unreachable here) and cannot be "
    "made honestly from Debian packages",
    "alpine": "Alpine (musl) images cannot be made honestly from Debian packages",
    "custom": "a custom base is a placeholder for the user's own registry image",
}
# Python versions a Debian stand-in can honestly carry: bookworm has 3.11, trixie 3.13.
DEBIAN_PYTHONS = {"3.11", "3.13"}

# With upstream images, the custom base is answered with a public image that has the
# combination's package manager and Python version: (custom_package_manager, python_version)
# -> custom_base_image (taken from public Containerfiles; none of them has been built by these
# tests before the GitHub matrix runs). A pair without one would be skipped with that reason.
UPSTREAM_CUSTOM_BASES = {
    **{("apt", v): f"docker.io/library/python:{v}-slim-bookworm" for v in ("3.11", "3.12", "3.13")},
    **{("apk", v): f"docker.io/library/python:{v}-alpine3.22" for v in ("3.11", "3.12", "3.13")},
    **{("dnf", v): f"registry.access.redhat.com/ubi9/python-{v.replace('.', '')}" for v in ("3.11", "3.12")},
    **{
        ("microdnf", v): f"registry.access.redhat.com/ubi9/python-{v.replace('.', '')}-minimal"
        for v in ("3.11", "3.12")
    },
    # UBI 9 has no Python 3.13 image: Fedora's (the same sclorg images, on Fedora).
    ("dnf", "3.13"): "quay.io/fedora/python-313",
    ("microdnf", "3.13"): "quay.io/fedora/python-313-minimal",
}


def unbuildable_reason(answers: dict) -> str | None:
    if UPSTREAM:
        if answers["base_image"] != "custom":
            return None
        if (answers["custom_package_manager"], answers["python_version"]) in UPSTREAM_CUSTOM_BASES:
            return None
        return (
            f"no public image with {answers['custom_package_manager']} and Python "
            f"{answers['python_version']} is known to the tests for a custom base "
            "(launchpad_dev/engines.py, UPSTREAM_CUSTOM_BASES)"
        )
    if answers["base_image"] in UNBUILDABLE:
        return UNBUILDABLE[answers["base_image"]]
    if answers["python_version"] not in DEBIAN_PYTHONS:
        return (
            f"no Debian release ships Python {answers['python_version']}, so no honest stand-in "
            f"for python:{answers['python_version']}-slim exists here"
        )
    return None


def buildable_answers(answers: dict) -> dict:
    """The answers to render for an engine tier: with upstream images, a custom base is the
    public image UPSTREAM_CUSTOM_BASES names (unless the answers name one)."""
    if UPSTREAM and answers.get("base_image") == "custom" and "custom_base_image" not in answers:
        key = (answers["custom_package_manager"], answers["python_version"])
        if key in UPSTREAM_CUSTOM_BASES:
            return {**answers, "custom_base_image": UPSTREAM_CUSTOM_BASES[key]}
    return answers


def tool_env() -> dict:
    """Environment for a generated project's make targets: the test venv's tools on PATH."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DOCKER_HOST", None)
    # The test venv's uv (the pinned version): each project would otherwise install its own
    # in .tools/ (test_lock covers that path).
    env.setdefault("UV", str(VENV_BIN / "uv"))
    return env


def compose_argv(command: str) -> list[str]:
    """A generated project's compose command (its computed answer `compose_command`, e.g.
    "podman-compose") as arguments, the program found where the project's make finds it."""
    program, *args = command.split()
    return [shutil.which(program, path=tool_env()["PATH"]) or program, *args]


@dataclass(frozen=True)
class Engine:
    name: str  # "podman" or "docker"

    @property
    def compose(self) -> list[str]:
        if self.name == "podman":
            return [shutil.which("podman-compose", path=tool_env()["PATH"]) or "podman-compose"]
        return ["docker", "compose"]

    def run(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.name, *args], capture_output=True, text=True, timeout=timeout, env=tool_env()
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    @cache  # noqa: B019 - one answer per engine per session
    def problem(self) -> str | None:
        """Why this engine cannot be used here, or None."""
        if not shutil.which(self.name):
            return f"{self.name} is not installed (bash .ci/run installs it)"
        info = self.run("info", timeout=60)
        if info.returncode != 0:
            return f"`{self.name} info` fails: {(info.stderr or info.stdout).strip()[-300:]}"
        probe = subprocess.run(
            [*self.compose, "version"], capture_output=True, text=True, env=tool_env(), timeout=60
        )
        if probe.returncode != 0:
            return f"{' '.join(self.compose)} is not available: {(probe.stderr or probe.stdout).strip()}"
        return None

    def require(self) -> Engine:
        if (reason := self.problem()) is not None:
            missing(reason)
        return self

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, timeout=60).returncode == 0

    def require_image(self, ref: str) -> None:
        """A base or PostgreSQL image the test needs, in this engine's store. Stand-ins: a
        missing one skips (fails in CI) with the advice. Upstream: it is pulled, and a pull
        that fails fails the test with the engine's message (never a skip)."""
        if self.has_image(ref):
            return
        if not UPSTREAM:
            missing(f"the stand-in {ref} is not in {self.name}'s store (run tests/standins/make-standins.sh)")
        pulled = self.run("pull", ref, timeout=1200)
        if pulled.returncode != 0:
            pytest.fail(
                f"{IMAGES_ENV}=upstream and `{self.name} pull {ref}` failed:\n{pulled.stdout}{pulled.stderr}"
            )

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("image", "inspect", ref, check=True).stdout)[0]

    def containers(self, project: str) -> list[str]:
        """Names of every container (running or not) of a compose project."""
        result = self.run("ps", "-a", "--format", "{{.Names}}", check=True)
        return [
            n for n in result.stdout.split() if n.startswith(f"{project}-") or n.startswith(f"{project}_")
        ]

    def fresh_base(self, base: str, name: str) -> str:
        """`base` with one tiny layer more (a file holding a timestamp): no build cache matches
        it, so a normal build from it is a cold build, while the images of one project still
        share their layers, as on a machine that never built them. A new image ID alone is not
        enough: BuildKit (Docker) matches its cache by layer content, and a label adds none.
        (`--no-cache` would instead give each image its own copy of the shared layers, and leave
        those copies in the build cache, where later builds of other projects may pick
        different ones.)"""
        ref = f"localhost/lp-fresh-base-{name}:{time.time_ns()}"
        with tempfile.TemporaryDirectory() as context:
            (Path(context) / "fresh").write_text(f"{time.time_ns()}\n")
            (Path(context) / "Containerfile").write_text(
                f"FROM {base}\nCOPY fresh /usr/share/launchpad-fresh-base\n"
            )
            self.run("build", "-q", "-t", ref, "-f", f"{context}/Containerfile", context, check=True)
        return ref

    def image_text(self, ref: str) -> str:
        """Everything an image says about itself: its history (full commands) and its metadata."""
        return (
            self.run("history", "--no-trunc", ref, check=True).stdout
            + self.run("image", "inspect", ref, check=True).stdout
        )

    def image_bytes_contain(self, ref: str, needle: bytes, tmp_dir: Path) -> bool:
        """Whether `needle` occurs anywhere in the saved image (every layer, byte by byte)."""
        archive = tmp_dir / (ref.replace("/", "_").replace(":", "_") + ".tar")
        self.run("image", "save", "-o", str(archive), ref, check=True, timeout=600)
        try:
            with archive.open("rb") as f:
                tail = b""
                while chunk := f.read(1 << 24):
                    if needle in tail + chunk:
                        return True
                    tail = chunk[-(len(needle) - 1) :] if len(needle) > 1 else b""
            return False
        finally:
            archive.unlink()

    def wait_pg_ready(self, container: str, user: str, db: str, what: str, timeout: float = 120) -> None:
        """Poll `pg_isready` in a PostgreSQL container until it accepts connections."""
        deadline = time.monotonic() + timeout
        while self.run("exec", container, "pg_isready", "-h", "127.0.0.1", "-U", user, "-d", db).returncode:
            assert time.monotonic() < deadline, f"{what} did not accept connections within {timeout:.0f} s"
            time.sleep(1)

    def networks(self) -> list[str]:
        return self.run("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()

    def clear_leftovers(self, project: str) -> None:
        """Remove what an earlier, interrupted session left of a project: its containers, pods
        (compose's and the kube stack's), volumes (the kube stack's claims too) and networks. A
        stale PostgreSQL volume holds a database made with other secrets (the webserver then
        fails with "password authentication failed"), and a stale container keeps the name a new
        one needs. Says what it removed (in the test's output)."""
        removed = self.containers(project)
        if removed:
            self.run("rm", "-f", *removed, timeout=300)
        if self.name == "podman" and self.run("pod", "exists", f"pod_{project}").returncode == 0:
            self.run("pod", "rm", "-f", f"pod_{project}", timeout=300)
            removed.append(f"pod_{project}")
        if self.name == "podman":
            # The kube stack's pods (<slug>-<service>), left by a `make kube-up` without kube-down.
            listed = self.run("pod", "ls", "--format", "{{.Name}}", check=True).stdout.split()
            pods = [n for n in listed if n.startswith(f"{project}-")]
            if pods:
                self.run("pod", "rm", "-f", *pods, timeout=300, check=True)
                removed += pods
        for kind in ("volume", "network"):
            listed = self.run(kind, "ls", "--format", "{{.Name}}", check=True).stdout.split()
            # compose's <slug>_NAME; the kube stack's claims and ConfigMap volume, <slug>-NAME
            # (a claim kept from a run with other secrets fails PostgreSQL's password check)
            stale = [n for n in listed if n.startswith((f"{project}_", f"{project}-"))]
            if stale:
                self.run(kind, "rm", *(["-f"] if kind == "volume" else []), *stale, timeout=300, check=True)
                removed += stale
        if removed:
            print(f"removed what an earlier session left of {project}: {removed}")


ENGINES = {name: Engine(name) for name in ("podman", "docker")}


def uv_wheel_hashes(requirements: Path) -> set[str]:
    """The SHA-256 of every uv wheel that a requirements-uv.txt allows."""
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", requirements.read_text()))


def render(template: Path, dest: Path, answers: dict) -> Path:
    """A real `copier copy` of the template with these answers (no --trust needed; with
    upstream images, a custom base is answered with a public image: buildable_answers)."""
    import copier

    copier.run_copy(str(template), dest, data=buildable_answers(answers), defaults=True, quiet=True)
    return dest


def env_value(root: Path, name: str) -> str | None:
    """A setting's default in a generated project's .env.example (None if absent)."""
    match = re.search(rf"^{name}=(.*)$", (root / ".env.example").read_text(), re.M)
    return match.group(1) if match else None


def use_base(root: Path, base: str) -> None:
    """Make a generated project build from `base` (its BASE_IMAGE setting, as for a mirror)."""
    example = root / ".env.example"
    configured = f"BASE_IMAGE={env_value(root, 'BASE_IMAGE')}"
    example.write_text(example.read_text().replace(configured, f"BASE_IMAGE={base}"))


def set_env(root: Path, key: str, value: str) -> None:
    """KEY=value in a generated project's .env (made by make on first use), in place of its line."""
    env = root / ".env"
    if not env.exists():
        assert make(root, ".env").returncode == 0
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{key}=")]
    env.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")


def remove_stack(engine: Engine, root: Path, slug: str) -> None:
    """Delete a test stack with everything it made: containers, volumes, network (and pod; on
    Podman the kube stack's pods and claims too)."""
    make(root, "clean", extra_env={"CONFIRM": "yes"}, timeout=300)
    if engine.name == "podman":
        engine.run("pod", "rm", "-f", f"pod_{slug}")
        make(root, "kube-clean", extra_env={"CONFIRM": "yes"}, timeout=300)


def make(root: Path, *targets: str, timeout: float = 1200, extra_env: dict | None = None):
    """Run the generated project's own make targets; returns the CompletedProcess."""
    return subprocess.run(
        ["make", "-C", str(root), *targets],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**tool_env(), **(extra_env or {})},
    )
