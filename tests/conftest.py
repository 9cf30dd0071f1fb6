"""Shared fixtures and hooks: a snapshot of the template, the rendered answer matrix, the
platform images published to a local registry, the tiers side by side
(launchpad_dev.selection), a summary. The helpers the tests share live in the
repository's package, launchpad_dev."""

from __future__ import annotations

import json
import os
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from launchpad_dev import fast_copier, matrix, publish, signing
from launchpad_dev.common import SUMMARY, add_computed_answers_file, note, snapshot_template
from launchpad_dev.engines import ENGINES
from launchpad_dev.local_registry import running_registry
from launchpad_dev.selection import SELECTIONS, SHARD, combinations_to_render, engine_of, selected, selection


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


# Each test's phases as this process ran them (start, seconds), written at the end to
# timeline.json in its base temporary directory (with xdist, the worker's own: popen-gwN), so
# that a whole run's time can be read per worker afterwards (docs/testing.md, "Timing").
TIMELINE: list[tuple[str, str, float, float]] = []


def pytest_runtest_logreport(report):
    TIMELINE.append((report.nodeid, report.when, round(report.start, 2), round(report.duration, 2)))


def pytest_sessionfinish(session):
    """A worker hands its summary figures to the controller, which prints them. Each process
    writes its timeline."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and TIMELINE:
        (factory.getbasetemp() / "timeline.json").write_text(json.dumps(TIMELINE))
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


def _render(args: tuple[str, str, dict]) -> tuple[str, str | None]:
    import copier

    src, dst, answers = args
    try:
        copier.run_copy(src, dst, data=answers, defaults=True, quiet=True, unsafe=False)
    except Exception as exc:  # reported per combination by the test
        return dst, f"{type(exc).__name__}: {exc}"
    return dst, None


@pytest.fixture(scope="session")
def template_snapshot(tmp_path_factory) -> Path:
    return add_computed_answers_file(snapshot_template(tmp_path_factory.mktemp("template")))


@pytest.fixture(scope="session")
def _renders(template_snapshot, tmp_path_factory) -> dict[str, tuple[dict, Path, str | None]]:
    """Render every combination of copier.yml once (LAUNCHPAD_SHARD: its shard only), and the
    few multi-location combinations (matrix.multi_location_combinations), in parallel:
    id -> (answers, dir, error).
    The workers render with fast_copier (launchpad_dev/fast_copier.py): the same files, more than ten
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


@pytest.fixture(scope="session")
def platform_signing_key(tmp_path_factory) -> tuple[Path, Path, str]:
    """(private key, public key, its password): the key the session's platform images are
    signed with (launchpad_dev/signing.py, cosign's format); a test signs a new release with it."""
    password = secrets.token_urlsafe(16)
    private, public = signing.keygen(tmp_path_factory.mktemp("publish-key"), password)
    return private, public, password


@pytest.fixture(scope="session")
def published_platform(tmp_path_factory, platform_signing_key) -> publish.Published:
    """The platform images of publish.TESTED (Dagster 1.13.27, Debian, Python 3.11), published
    once per session with Podman (a test using this joins Podman's xdist group:
    launchpad_dev/selection.py, ENGINE_FIXTURES) by launchpad_dev.publish, as the release
    workflow publishes them, to a registry on 127.0.0.1 (plain HTTP) that stays up for the
    session, signed with a key made for it. Yields publish.Published: (registry, pub, result)."""
    engine = ENGINES["podman"].require()
    private, public, password = platform_signing_key
    with running_registry(tmp_path_factory.mktemp("published-registry")) as address:
        registry = f"{address}/launchpad"
        started = time.monotonic()
        result = publish.publish(
            registry,
            **publish.TESTED,
            key_path=private,
            password=password,
            expect_pub=public,
            workdir=tmp_path_factory.mktemp("publish-work"),
            prepare=engine.require_image,
        )
        note("platform images published", f"3 to {registry} in {time.monotonic() - started:.0f} s")
        yield publish.Published(registry, public, result)
