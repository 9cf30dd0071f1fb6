"""Which tests a run selects, and which engine's group each joins (tests/conftest.py's hooks).

The README's test command runs pytest with three workers (pytest-xdist, `--dist loadgroup`,
in pyproject.toml's addopts): every test that drives an engine joins that engine's group, so
that Podman's tests run one after the other on one worker, Docker's on another, and the
tiers that need no engine (render, static, fuzz, update, ...) on the third. Two tests on the
same engine never overlap (stacks, prunes and leftovers clearing stay one at a time); the two
engines are independent. A test's engine is its `engine` mark, else a parameter naming an
engine ("podman", "docker", or answers with container_engine), else a session fixture of
ENGINE_FIXTURES that it uses (the published platform images: Podman). The tests that read the
rendered matrix (render and static tiers) form one group too: one worker renders it, once.

What one job of the GitHub matrix runs (docs/testing.md, "Choosing images, shards, bases and
engines"); unset, everything, as .ci/run runs it:
- LAUNCHPAD_SHARD=K/N: the render tier renders and checks shard K of N of the answer matrix
  (matrix.shard: every Nth combination from the Kth), plus the few multi-location renders;
- LAUNCHPAD_ENGINES=podman,docker: the tests that drive another engine are deselected;
- LAUNCHPAD_BASES=debian,ubi,alpine,custom: the tests parametrized by a combination of another
  base_image are deselected (the build and run tiers).
"""

from __future__ import annotations

import os

import pytest

from launchpad_dev import matrix

ENGINE_NAMES = ("podman", "docker")
SHARD = os.environ.get("LAUNCHPAD_SHARD") or None
SELECTIONS = {"LAUNCHPAD_ENGINES": "container_engine", "LAUNCHPAD_BASES": "base_image"}


# Session fixtures that drive an engine: a test using one joins that engine's group (and is
# deselected with the engine), so the fixture runs on that engine's worker, once.
ENGINE_FIXTURES = {"published_platform": "podman"}


def engine_of(item: pytest.Item) -> str | None:
    if (mark := item.get_closest_marker("engine")) is not None:
        return mark.args[0]
    for fixture, engine in ENGINE_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()):
            return engine
    callspec = getattr(item, "callspec", None)
    for value in callspec.params.values() if callspec else ():
        if isinstance(value, dict):
            value = value.get("container_engine")
        if value in ENGINE_NAMES:
            return value
    return None


def selection(env: str) -> set[str] | None:
    """The values LAUNCHPAD_ENGINES or LAUNCHPAD_BASES allows (None: all); an unknown one is refused."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return None
    values = {v.strip() for v in raw.split(",") if v.strip()}
    known = set(ENGINE_NAMES) if env == "LAUNCHPAD_ENGINES" else set(matrix.choice_values("base_image"))
    if unknown := values - known:
        known_list = ", ".join(sorted(known))
        raise pytest.UsageError(f"{env}={raw!r}: unknown {sorted(unknown)}; known: {known_list}")
    return values


def selected(item: pytest.Item, engines: set[str] | None, bases: set[str] | None) -> bool:
    if engines is not None and (engine := engine_of(item)) is not None and engine not in engines:
        return False
    callspec = getattr(item, "callspec", None)
    for value in callspec.params.values() if callspec and bases is not None else ():
        if isinstance(value, dict) and "base_image" in value and value["base_image"] not in bases:
            return False
    return True


def combinations_to_render(shard: str | None) -> list[dict]:
    """What the render tier renders: shard `shard` of the matrix (all of it without one), and
    every multi-location combination (a few; test_render checks what they cover together)."""
    return matrix.shard(matrix.combinations(), shard) + matrix.multi_location_combinations()
