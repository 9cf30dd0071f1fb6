"""Real-projects tier: code that is not our example fits a generated project, on each engine.

One stack per engine: code delivery `image`, SQLite, two code locations.
- The first keeps the example (its build step writes build_info.json, which its assets read
  at load) and gets a wheel built here, kept in pipes/NAME/wheels/, whose package keeps a data
  file in a `tests/` directory and reads it at load and in a run; plus a job that keeps a
  counter in $DAGSTER_LOCATION_DATA.
- The second, `jaffle`, is a real dbt project over DuckDB, wired exactly as
  docs/real-projects.md says: every block of that page marked with a file name is applied here,
  so the page and this test cannot drift apart. Its job runs `dbt build`, whose tests compile
  only with dbt's macros from `.../macros/.../tests/` (deleted by images before this tier).

Checked: `make lock` with the page's bounds, `make test` (build steps on the host; the location
without tests reported, not failed), a failing build step fails `make build` with its own
output, `make up`, the dbt job SUCCESS with its tests passing, the wheel's data used in the
image, state kept across runs and `make down`/`make up`, and `make reload LOCATION=jaffle`
recreating that location's container alone (ids of the others unchanged).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from launchpad_dev.common import ROOT, note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, make, remove_stack, render

PORTS = {"podman": 3211, "docker": 3212}
DBT = "jaffle"
PAGE = ROOT / "docs" / "real-projects.md"
FIGURES: dict[str, dict[str, str]] = {}

# The dbt project a user brings (dbt's jaffle_shop, cut down): seeds, models, tests.
DBT_PROJECT = {
    "dbt_project.yml": (
        'name: jaffle_shop\nversion: "1.0.0"\nprofile: jaffle_shop\nmodel-paths: ["models"]\n'
        'seed-paths: ["seeds"]\nmodels:\n  jaffle_shop:\n    +materialized: table\n'
    ),
    "seeds/raw_customers.csv": "id,first_name,last_name\n1,Michael,P.\n2,Shawn,M.\n3,Kathleen,P.\n",
    "seeds/raw_orders.csv": (
        "id,user_id,order_date,status\n1,1,2018-01-01,returned\n2,3,2018-01-02,completed\n"
        "3,1,2018-01-04,completed\n4,2,2018-01-05,placed\n"
    ),
    "models/stg_customers.sql": "select id as customer_id, first_name from {{ ref('raw_customers') }}\n",
    "models/stg_orders.sql": (
        "select id as order_id, user_id as customer_id, order_date, status from {{ ref('raw_orders') }}\n"
    ),
    "models/customers.sql": (
        "select c.customer_id, c.first_name, count(o.order_id) as number_of_orders\n"
        "from {{ ref('stg_customers') }} c left join {{ ref('stg_orders') }} o using (customer_id)\n"
        "group by 1, 2\n"
    ),
    "models/schema.yml": (
        "version: 2\nmodels:\n  - name: customers\n    columns:\n      - name: customer_id\n"
        "        data_tests: [unique, not_null]\n  - name: stg_orders\n    columns:\n"
        "      - name: order_id\n        data_tests: [unique, not_null]\n"
    ),
}

# Added to the first location's definitions: the wheel's data read at load and in a run, and a
# counter kept in the location's state directory.
EXTRA = '''

from lp_tests_data import marker as _marker  # noqa: E402

assert _marker() == "kept by the image\\n", "the wheel's tests/marker.txt was not readable"


@dg.op
def count_in_state(context) -> int:
    """Added by the real-projects tier: a counter in $DAGSTER_LOCATION_DATA."""
    import os
    from pathlib import Path

    state = Path(os.environ["DAGSTER_LOCATION_DATA"]) / "counter.txt"
    count = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(count))
    context.log.info(f"count={count} marker={_marker().strip()}")
    return count


@dg.job
def state_job() -> None:
    count_in_state()


defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[state_job]))
'''


def wheel_with_tests_data(dest: Path) -> Path:
    """A wheel (made here, no network) whose package reads a data file from its `tests/`
    directory: what dbt and other libraries do with directories of that name."""
    name, version = "lp_tests_data", "0.1.0"
    files = {
        f"{name}/__init__.py": (
            "from importlib.resources import files\n\n\n"
            "def marker():\n    return (files(__package__) / 'tests' / 'marker.txt').read_text()\n"
        ),
        f"{name}/tests/marker.txt": "kept by the image\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: launchpad-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), text)
    return wheel


def page_steps() -> list[tuple[str, str, str]]:
    """The page's marked blocks, in order: (action, path, text)."""
    text = PAGE.read_text()
    steps = re.findall(r"<!-- (write|append|dependencies|run)(?:: (\S+))? -->\n```\w*\n(.*?)```", text, re.S)
    assert steps, f"{PAGE} has no marked block"
    return steps


def apply_page(root: Path) -> list[str]:
    """Apply docs/real-projects.md to a project; returns what it did, one line a block."""
    done = []
    for action, path, text in page_steps():
        target = root / path if path else None
        if action == "write":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        elif action == "append":
            target.write_text(target.read_text() + text)
        elif action == "dependencies":
            before = target.read_text()
            assert before.count('    "dagster-core",\n') == 1, f"{path}: no dagster-core line to add after"
            target.write_text(before.replace('    "dagster-core",\n', '    "dagster-core",\n' + text))
        else:
            for command in text.strip().splitlines():
                for pattern in command.split()[1:]:
                    assert list(root.glob(pattern)), f"the page removes {pattern}, which the project lacks"
                    for found in root.glob(pattern):
                        found.unlink()
        done.append(f"{action} {path}")
    return done


class Real:
    def __init__(self, engine, root: Path, slug: str, port: int, first: str):
        self.engine, self.root, self.slug, self.first = engine, root, slug, first
        self.stack, self.dbt = Stack(port, first), Stack(port, DBT)

    def ids(self) -> dict[str, str]:
        listed = self.engine.run("ps", "--format", "{{.Names}} {{.ID}}", check=True).stdout.split("\n")
        return dict(line.split() for line in listed if line.startswith(f"{self.slug}-"))

    def state(self) -> str:
        out = self.engine.run("exec", f"{self.slug}-pipes-{self.first.replace('_', '-')}", "sh", "-c",
                              'cat "$DAGSTER_LOCATION_DATA/counter.txt"')  # fmt: skip
        return out.stdout.strip()

    def succeed(self, stack: Stack, job: str) -> str:
        run_id = stack.launch(job)
        status = stack.wait_run(run_id, timeout=300)
        assert status.value == "SUCCESS", stack.errors(run_id)
        return run_id


@pytest.fixture(scope="module", params=["podman", "docker"])
def real(request, template_snapshot, tmp_path_factory):
    engine = ENGINES[request.param].require()
    slug, port = f"lp-real-{engine.name}", PORTS[engine.name]
    first = slug.replace("-", "_")
    answers = {
        "container_engine": engine.name,
        "code_delivery": "image",
        "storage": "sqlite",
        "project_slug": slug,
        "ui_port": port,
        "code_locations": [first, DBT],
    }
    root = render(template_snapshot, tmp_path_factory.mktemp("real") / slug, answers)
    engine.clear_leftovers(slug)
    engine.require_image((root / ".env.example").read_text().split("BASE_IMAGE=")[1].split()[0])
    figures = FIGURES.setdefault(engine.name, {})

    # The first location: the wheel, kept in the project, and the job that keeps state.
    wheel = wheel_with_tests_data(root / "pipes" / first / "wheels")
    pyproject = root / "pipes" / first / "pyproject.toml"
    text = pyproject.read_text()
    for anchor, added in (
        ('    "dagster-core",\n', '    "lp-tests-data",\n'),
        ("dagster-core = { workspace = true }\n", f'lp-tests-data = {{ path = "wheels/{wheel.name}" }}\n'),
    ):
        assert text.count(anchor) == 1, f"{pyproject}: no single {anchor!r}"
        text = text.replace(anchor, anchor + added)
    pyproject.write_text(text)
    definitions = root / "pipes" / first / "src" / first / "definitions.py"
    definitions.write_text(definitions.read_text() + EXTRA)
    # The second: the user's dbt project, then the page's steps.
    for rel, text in DBT_PROJECT.items():
        (root / "pipes" / DBT / "jaffle_shop" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "pipes" / DBT / "jaffle_shop" / rel).write_text(text)
    figures["docs/real-projects.md"] = f"{len(apply_page(root))} blocks applied"

    lock = make(root, "lock", timeout=900)
    assert lock.returncode == 0, lock.stdout[-3000:] + lock.stderr[-3000:]
    requirements = (root / "pipes" / DBT / "requirements.txt").read_text()
    assert re.search(r"^dbt-core==1\.11\.", requirements, re.M), "the page's bound did not hold"
    assert f"./pipes/{first}/wheels/{wheel.name}" in (root / "pipes" / first / "requirements.txt").read_text()

    real = Real(engine, root, slug, port, first)
    try:
        yield real
    finally:
        remove_stack(engine, root, slug)
        note(f"real-projects tier, {engine.name}", "; ".join(f"{k}: {v}" for k, v in figures.items()))


def test_make_test_runs_build_steps_and_reports_a_location_without_tests(real):
    tested = make(real.root, "test", timeout=900)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output[-4000:]
    assert f"== build step of {DBT}" in output and "Sync complete" in output, output[-3000:]
    assert (real.root / "pipes" / DBT / "src" / DBT / "dbt_project" / "target" / "manifest.json").is_file()
    assert (real.root / "pipes" / real.first / "src" / real.first / "build_info.json").is_file()
    assert f"no tests in: {DBT}" in output, output[-2000:]
    assert "tests failed" not in output
    # Twice in a row (the build steps run again over their own output).
    again = make(real.root, "test", timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]


def test_a_failing_build_step_fails_make_build_with_its_output(real):
    hook = real.root / "pipes" / real.first / "build.sh"
    good = hook.read_text()
    hook.write_text("#!/bin/sh\necho 'the build step says: no manifest (exit 3)' >&2\nexit 3\n")
    try:
        built = make(real.root, "build", timeout=900)
    finally:
        hook.write_text(good)
    output = built.stdout + built.stderr
    assert built.returncode != 0, output[-3000:]
    assert "the build step says: no manifest (exit 3)" in output, output[-3000:]


def test_stack_loads_and_the_dbt_project_builds_with_its_tests(real):
    up = make(real.root, "up", timeout=1500)
    assert up.returncode == 0, (up.stdout + up.stderr)[-5000:]
    real.stack.wait_loaded(timeout=60)
    real.dbt.wait_loaded(timeout=60)
    assert {"jaffle/customers", "jaffle/stg_orders"} <= real.dbt.asset_keys()
    run_id = real.succeed(real.dbt, "jaffle_job")
    events = real.dbt.gql(
        """query ($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on AssetCheckEvaluationEvent { evaluation { success checkName } } } } } }""",
        id=run_id,
    )["logsForRun"]["events"]
    checks = {e["evaluation"]["checkName"]: e["evaluation"]["success"] for e in events if "evaluation" in e}
    assert len(checks) == 4 and all(checks.values()), checks
    FIGURES[real.engine.name]["dbt"] = f"jaffle_job SUCCESS, {len(checks)} dbt tests passed"


def test_wheel_data_and_state_survive_runs_and_down_up(real):
    real.stack.wait_loaded(timeout=60)
    real.succeed(real.stack, "state_job")
    real.succeed(real.stack, "state_job")
    assert real.state() == "2"
    down = make(real.root, "down", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    up = make(real.root, "up", timeout=900)
    assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
    real.stack.wait_loaded(timeout=60)
    real.succeed(real.stack, "state_job")
    assert real.state() == "3", "the state directory did not survive make down / make up"
    FIGURES[real.engine.name]["state"] = "3 runs counted across make down/up"


def test_reload_one_location_recreates_its_container_alone(real):
    real.dbt.wait_loaded(timeout=60)
    before = real.ids()
    pipes_dbt = f"{real.slug}-pipes-{DBT}"
    assert pipes_dbt in before and f"{real.slug}-webserver" in before, before
    definitions = real.root / "pipes" / DBT / "src" / DBT / "definitions.py"
    definitions.write_text(definitions.read_text() + "\n# changed by the real-projects tier\n")
    reloaded = make(real.root, "reload", f"LOCATION={DBT}", timeout=900)
    assert reloaded.returncode == 0, (reloaded.stdout + reloaded.stderr)[-4000:]
    after = real.ids()
    assert after[pipes_dbt] != before[pipes_dbt], "the reloaded location's container was not recreated"
    unchanged = {name for name in before if name != pipes_dbt and after.get(name) == before[name]}
    assert unchanged == set(before) - {pipes_dbt}, f"recreated besides {pipes_dbt}: {set(before) - unchanged}"
    baked = real.engine.run("exec", pipes_dbt, "cat", f"/opt/dagster/app/{DBT}/definitions.py")
    assert "changed by the real-projects tier" in baked.stdout
    real.dbt.wait_loaded(timeout=60)
    real.succeed(real.dbt, "jaffle_job")
    FIGURES[real.engine.name]["reload"] = f"only {pipes_dbt} recreated ({len(unchanged)} kept)"
