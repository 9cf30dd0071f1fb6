"""Shared fixtures: a snapshot of the template, the rendered answer matrix, a summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fast_copier  # noqa: E402
import matrix  # noqa: E402

ROOT = matrix.ROOT
CACHE = Path(os.environ.get("LAUNCHPAD_CACHE", Path.home() / ".cache" / "dagster-launchpad"))

# Figures printed at the end of the run: name -> count (or text).
SUMMARY: dict[str, object] = {}
# The test snapshot of the template renders one file more: every computed answer (`when:
# false` in copier.yml) as Copier computed it, so that the tests read those values from Copier
# itself instead of deriving them again.
COMPUTED_FILE = ".launchpad-computed.json"


def note(name: str, value: object) -> None:
    SUMMARY[name] = value


# ------------------------------------------------------------ running the tiers side by side
# The README's test command runs pytest with three workers (pytest-xdist, `--dist loadgroup`,
# in pyproject.toml's addopts): every test that drives an engine joins that engine's group, so
# that Podman's tests run one after the other on one worker, Docker's on another, and the
# tiers that need no engine (render, static, fuzz, update, ...) on the third. Two tests on the
# same engine never overlap (stacks, prunes and leftovers clearing stay one at a time); the two
# engines are independent. A test's engine is its `engine` mark, else a parameter naming an
# engine ("podman", "docker", or answers with container_engine). The tests that read the
# rendered matrix (render and static tiers) form one group too: one worker renders it, once.
ENGINE_NAMES = ("podman", "docker")


def engine_of(item: pytest.Item) -> str | None:
    if (mark := item.get_closest_marker("engine")) is not None:
        return mark.args[0]
    callspec = getattr(item, "callspec", None)
    for value in callspec.params.values() if callspec else ():
        if isinstance(value, dict):
            value = value.get("container_engine")
        if value in ENGINE_NAMES:
            return value
    return None


# What one job of the GitHub matrix runs (docs/testing.md, "Choosing images, shards, bases and
# engines"); unset, everything, as .ci/run runs it:
# - LAUNCHPAD_SHARD=K/N: the render tier renders and checks shard K of N of the answer matrix
#   (matrix.shard: every Nth combination from the Kth), plus the few multi-location renders;
# - LAUNCHPAD_ENGINES=podman,docker: the tests that drive another engine are deselected;
# - LAUNCHPAD_BASES=debian,ubi,alpine,custom: the tests parametrized by a combination of another
#   base_image are deselected (the build and run tiers).
SHARD = os.environ.get("LAUNCHPAD_SHARD") or None
SELECTIONS = {"LAUNCHPAD_ENGINES": "container_engine", "LAUNCHPAD_BASES": "base_image"}


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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    engines, bases = selection("LAUNCHPAD_ENGINES"), selection("LAUNCHPAD_BASES")
    if engines is not None or bases is not None:
        kept = [item for item in items if selected(item, engines, bases)]
        dropped = [item for item in items if item not in kept]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
            chosen = ", ".join(f"{e}={os.environ[e]}" for e in SELECTIONS if os.environ.get(e, "").strip())
            note(f"deselected by {chosen}", len(dropped))
    for item in items:
        if (engine := engine_of(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(engine))
        elif "_renders" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("rendered-matrix"))


def pytest_sessionfinish(session):
    """A worker hands its summary figures to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["launchpad_summary"] = json.dumps(SUMMARY, default=str)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent when pytest runs without xdist
def pytest_testnodedown(node, error):
    SUMMARY.update(json.loads(getattr(node, "workeroutput", {}).get("launchpad_summary", "{}")))


def pytest_terminal_summary(terminalreporter):
    if not SUMMARY:
        return
    terminalreporter.section("Dagster Launchpad summary")
    for name, value in SUMMARY.items():
        terminalreporter.write_line(f"{name}: {value}")


def snapshot_template(dest: Path) -> Path:
    """The template as the working tree has it (tracked and untracked), without .git: what
    Copier reads (copier.yml, template/) and runs (migrations/, copier.yml's _migrations)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "copier.yml", dest / "copier.yml")
    for folder in ("template", "migrations"):
        shutil.copytree(ROOT / folder, dest / folder, dirs_exist_ok=True)
    return dest


def _render(args: tuple[str, str, dict]) -> tuple[str, str | None]:
    import copier

    src, dst, answers = args
    try:
        copier.run_copy(src, dst, data=answers, defaults=True, quiet=True, unsafe=False)
    except Exception as exc:  # reported per combination by the test
        return dst, f"{type(exc).__name__}: {exc}"
    return dst, None


def add_computed_answers_file(snapshot: Path) -> Path:
    """Make `snapshot` render COMPUTED_FILE: {name: value} of every computed answer."""
    names = [name for name, spec in matrix.questions().items() if spec.get("when") is False]
    pairs = ", ".join(f"{name!r}: {name}" for name in names)
    (snapshot / "template" / f"{COMPUTED_FILE}.jinja").write_text(f"{{{{ {{{pairs}}} | tojson }}}}\n")
    return snapshot


def computed(root: Path) -> dict:
    """The computed answers of a project rendered from the test snapshot, as Copier made them."""
    return json.loads((root / COMPUTED_FILE).read_text())


@pytest.fixture(scope="session")
def template_snapshot(tmp_path_factory) -> Path:
    return add_computed_answers_file(snapshot_template(tmp_path_factory.mktemp("template")))


@pytest.fixture(scope="session")
def _renders(template_snapshot, tmp_path_factory) -> dict[str, tuple[dict, Path, str | None]]:
    """Render every combination of copier.yml once (LAUNCHPAD_SHARD: its shard only), and the
    few multi-location combinations (matrix.multi_location_combinations), in parallel:
    id -> (answers, dir, error).
    The workers render with fast_copier (tests/fast_copier.py): the same files, about four
    times faster (copier.yml parsed and the templates compiled once per worker)."""
    out = tmp_path_factory.mktemp("matrix")
    combos = combinations_to_render(SHARD)
    jobs = {matrix.combo_id(a): (str(template_snapshot), str(out / matrix.combo_id(a)), a) for a in combos}
    assert len(jobs) == len(combos), "two combinations share an id"
    assert not (template_snapshot / ".git").exists()  # fast_copier's premise: no git
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, initializer=fast_copier.apply) as pool:
        results = dict(zip(jobs, pool.map(_render, jobs.values(), chunksize=8), strict=True))
    return {cid: (jobs[cid][2], Path(dst), error) for cid, (dst, error) in results.items()}


@pytest.fixture(scope="session")
def rendered_matrix(_renders) -> dict[str, tuple[dict, Path, str | None]]:
    """Every combination of copier.yml (one code location, the default), rendered once:
    id -> (answers, dir, error)."""
    ids = {matrix.combo_id(a) for a in matrix.combinations()}
    rendered = {cid: result for cid, result in _renders.items() if cid in ids}
    if SHARD:
        note("combinations rendered", f"{len(rendered)} of {len(ids)} (LAUNCHPAD_SHARD={SHARD})")
    else:
        note("combinations rendered", len(rendered))
    return rendered


@pytest.fixture(scope="session")
def rendered_multi_location(_renders) -> dict[str, tuple[dict, Path, str | None]]:
    """The few combinations rendered with several code locations (matrix.MULTI_LOCATIONS)."""
    ids = {matrix.combo_id(a) for a in matrix.multi_location_combinations()}
    rendered = {cid: result for cid, result in _renders.items() if cid in ids}
    note(f"combinations rendered with {len(matrix.MULTI_LOCATIONS)} code locations", len(rendered))
    return rendered


@pytest.fixture(scope="session")
def rendered_projects(rendered_matrix, rendered_multi_location) -> dict[str, tuple[dict, Path, str | None]]:
    """Every rendered project the render tier checks: the matrix, then the multi-location ones."""
    return {**rendered_matrix, **rendered_multi_location}


def answers_of(root: Path) -> dict:
    """The answers a rendered project recorded (.copier-answers.yml)."""
    return yaml.safe_load((root / ".copier-answers.yml").read_text())


def code_locations(root: Path) -> list[str]:
    """The code locations of a rendered project, in the order it declares them."""
    return list(answers_of(root)["code_locations"])


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run a command, returning the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
