"""Render tier: every combination of copier.yml renders, and the result is well formed.

One Copier run per combination (in parallel, see conftest.rendered_matrix). Each check
below is one promise about a rendered project; `test_every_combination_keeps_it[<check>]`
runs it over the whole matrix and lists every combination that breaks it. Expensive checks
(linters, compose validation, the generated project's own tests) run once per distinct file
in test_static.py. Facts that copier.yml computes (file names, images, UIDs) come from Copier
itself: `launchpad_dev.common.computed` reads them from the rendered project. Every combination renders
with one code location (the default); a few also with several (conftest.rendered_projects),
and every check holds for each code location of a project.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path

import pytest
import yaml

from launchpad_dev import matrix
from launchpad_dev.common import COMPUTED_FILE, computed

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What every code location shares (pipes/SHARED/): a workspace package, and the one definition of
# every code location's image.
SHARED = "launchpad_pipes"
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#")
STRUCTURED = (".yml", ".yaml", ".toml", ".json")


@dataclass
class Project:
    """A rendered project: the answers given, where it is, and what Copier computed."""

    answers: dict
    root: Path
    _texts: dict = field(default_factory=dict, repr=False)
    _parsed: dict = field(default_factory=dict, repr=False)

    @cached_property
    def computed(self) -> dict:
        return computed(self.root)

    @cached_property
    def recorded(self) -> dict:
        return self.yaml(".copier-answers.yml")

    @property
    def package(self) -> str:
        return self.recorded["package_name"]

    @cached_property
    def locations(self) -> list[str]:
        """The code locations, in the order the answer gives them."""
        return list(self.recorded["code_locations"])

    def service(self, location: str) -> str:
        """The compose service (and image component) of a code location."""
        return self.computed["pipes_services"][location]

    @cached_property
    def pipes_services(self) -> list[str]:
        return [self.service(location) for location in self.locations]

    def answer(self, name: str):
        """The recorded answer (given, or the question's default)."""
        return self.recorded[name]

    def text(self, rel: str) -> str:
        if rel not in self._texts:
            self._texts[rel] = (self.root / rel).read_text()
        return self._texts[rel]

    def yaml(self, rel: str):
        """The file parsed (libyaml's safe loader, once per file: the checks read it often);
        the kube YAML (kube/<slug>.yaml, one document per object) as the list of its documents."""
        if rel not in self._parsed and rel.startswith("kube/"):
            self._parsed[rel] = list(yaml.load_all(self.text(rel), Loader=SAFE_LOADER))
        elif rel not in self._parsed:
            self._parsed[rel] = yaml.load(self.text(rel), Loader=SAFE_LOADER)
        return self._parsed[rel]

    @cached_property
    def files(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def image_files(self) -> dict[str, str]:
        """image (its compose service) -> path of its definition: webserver, daemon, and the
        pipes image of each code location (one definition for all of them, pipes/SHARED/)."""
        cf = self.computed["containerfile"]
        return {
            "webserver": f"platform/webserver/{cf}",
            "daemon": f"platform/daemon/{cf}",
            **{self.service(loc): f"pipes/{SHARED}/{cf}" for loc in self.locations},
        }

    def build_args(self, image: str) -> dict[str, str]:
        """The build arguments compose.yaml gives an image."""
        return self.yaml("compose.yaml")["services"][image]["build"]["args"]

    def image_text(self, image: str) -> str:
        """An image's definition as its build reads it: ${LOCATION} and ${SERVICE} filled in
        with the build arguments (a pipes image)."""
        text = self.text(self.image_files()[image])
        for name in ("LOCATION", "SERVICE"):
            if image in self.pipes_services:
                text = text.replace("${" + name + "}", self.build_args(image)[name])
        return text

    def location_files(self, location: str) -> set[str]:
        """Everything a code location's directory holds: the first location has the examples
        (assets, jobs, sensors), the others a first asset and its job in definitions.py."""
        d = f"pipes/{location}"
        modules = ("__init__", "definitions")
        tests = ("test_definitions",)
        if location == self.locations[0]:
            modules, tests = (*modules, "assets", "jobs", "sensors"), (*tests, "test_assets")
        return {
            f"{d}/pyproject.toml",
            f"{d}/requirements.txt",
            f"{d}/build.sh",
            f"{d}/wheels/README.md",
            *(f"{d}/src/{location}/{m}.py" for m in modules),
            *(f"{d}/tests/{m}.py" for m in tests),
        }

    def shared_files(self) -> set[str]:
        """What every code location shares: pipes/SHARED/."""
        d = f"pipes/{SHARED}"
        return {
            f"{d}/{self.computed['containerfile']}",
            f"{d}/pyproject.toml",
            *(f"{d}/src/{SHARED}/{m}.py" for m in ("__init__", "defaults", "io_manager", "recover_runs")),
            *(f"{d}/tests/test_{m}.py" for m in ("defaults", "io_manager", "recover_runs")),
        }


CHECKS: list[Callable[[Project], None]] = []


def check(fn: Callable[[Project], None]) -> Callable[[Project], None]:
    CHECKS.append(fn)
    return fn


def run_context(text: str) -> dict:
    """DAGSTER_CONTAINER_CONTEXT of compose.yaml as JSON, its RUN_* settings at their defaults
    (the numbers are written bare, so the text is JSON only once compose fills them in)."""
    return json.loads(re.sub(r"\$\{RUN_[A-Z_]+:-([^}]*)\}", r"\1", text))


@check
def answers_are_recorded(p: Project) -> None:
    """Copier recorded every answer given, and none of the computed ones."""
    for name, value in p.answers.items():
        assert p.recorded[name] == value, name
    assert not set(p.computed) & set(p.recorded), set(p.computed) & set(p.recorded)
    assert p.recorded["_src_path"]
    if "code_locations" not in p.answers:  # the default: one code location, the package
        assert p.locations == [p.package], p.locations


@check
def code_locations_are_named_as_computed(p: Project) -> None:
    """Each code location's service is pipes-NAME ('-' for '_'); the assets of every location
    (the first location's two examples, the others' first asset) carry their location's name as
    key prefix (asset keys are global: a real project's raw_orders must not collide with the
    example's)."""
    assert p.computed["pipes_services"] == {loc: f"pipes-{loc.replace('_', '-')}" for loc in p.locations}
    assert len(set(p.pipes_services)) == len(p.locations)
    prefixes = p.computed["example_key_prefixes"]
    assert prefixes == {loc: loc for loc in p.locations}, prefixes
    first, *others = p.locations
    assets = p.text(f"pipes/{first}/src/{first}/assets.py")
    decorators = re.findall(r"^@dg\.asset\(\n(.*?)^\)$", assets, re.M | re.S)
    assert len(decorators) == 2, f"pipes/{first}: the two example assets, found {decorators}"
    assert all(re.findall(r'key_prefix="([^"]*)"', args) == [first] for args in decorators), decorators
    for loc in others:
        definitions = p.text(f"pipes/{loc}/src/{loc}/definitions.py")
        assert re.findall(r"^@dg\.asset\((.*)\)$", definitions, re.M) == [f'key_prefix="{loc}"'], loc


@check
def file_set_is_exactly_the_expected_one(p: Project) -> None:
    """Nothing missing, no other engine's files, no partials, no .jinja file."""
    c = p.computed
    expected = {
        COMPUTED_FILE,
        ".copier-answers.yml",
        ".compose-lint.yml",
        ".env.example",
        ".gitignore",
        ".pre-commit-config.yaml",
        "docs/security.md",
        "docs/update.md",
        "docs/upgrade.md",
        "docs/kubernetes.md",
        "deploy/helm/values.yaml",
        "deploy/helm/values-bundled-postgres.yaml",
        ".github/workflows/ci.yml",
        c["ignorefile"],
        "Makefile",
        "README.md",
        "compose.yaml",
        "ruff.toml",
        "config/dagster.yaml",
        "config/workspace.yaml",
        "config/alerts.yml",
        "pyproject.toml",
        "uv.lock",
        "platform/pyproject.toml",
        "platform/requirements.txt",
        "platform/requirements-core.txt",
        "platform/requirements-uv.txt",
        "platform/install_locked.py",
        "platform/instance_ready.py",
        "platform/metrics.py",
        *p.image_files().values(),
        *p.shared_files(),
        *(rel for loc in p.locations for rel in p.location_files(loc)),
        "scripts/ensure_images.sh",
        "scripts/init_env.py",
        "scripts/push_images.py",
        "scripts/wait_ready.py",
        "scripts/launch_run.py",
        "scripts/check_wheels.py",
        "scripts/stale_services.py",
        "scripts/log_errors.py",
        "scripts/check_network.py",
        "scripts/env_make.py",
        # The targets' steps (the Makefile dispatches to them).
        "scripts/lock.py",
        "scripts/stack.py",
        "scripts/locations.py",
        "scripts/backup.py",
        "scripts/purge.py",
        "scripts/upgrade.py",
        "scripts/helm.py",
        # The scripts' unit tests (make test).
        "scripts/tests/test_push_images.py",
        "scripts/tests/test_lock.py",
        "scripts/tests/test_stack.py",
        "scripts/tests/test_locations.py",
        "scripts/tests/test_backup.py",
        "scripts/tests/test_purge.py",
        "scripts/tests/test_upgrade.py",
        "scripts/tests/test_helm.py",
    }
    if c["external_postgres"]:
        expected.add("scripts/postgres_tls.py")
    if c["prebuilt"]:
        # The published platform images: pins, key, the pipes-base's definition (tests/test_prebuilt.py).
        expected |= {
            "platform/images.pub",
            f"platform/pipes-base/{c['containerfile']}",
            "docs/platform-images.md",
            "scripts/images.py",
            "scripts/tests/test_images.py",
        }
    if c["kube_play"]:
        # The stack for podman kube play and Quadlet (tests/test_kube.py checks them).
        slug = p.answer("project_slug")
        expected |= {
            f"kube/{slug}.yaml",
            f"kube/{slug}.kube",
            "scripts/quadlet.sh",
            "scripts/kube_recycle.sh",
            "scripts/kube_yaml.py",
            "scripts/kube.py",
            "scripts/tests/test_kube_yaml.py",
            "scripts/tests/test_kube.py",
            "docs/podman-kube.md",
        }
        if c["kube_secrets"]:  # PostgreSQL's credentials, the S3 store's (compute_logs=s3)
            expected.add("scripts/kube_secret.sh")
    if c["ui_login"]:
        # The login proxy's configuration and its users' script (tests/test_login.py).
        expected |= {"config/Caddyfile", "scripts/ui_users.py", "scripts/tests/test_ui_users.py"}
    assert p.files == expected, f"missing {expected - p.files}, unexpected {p.files - expected}"


@check
def files_are_clean_and_parse(p: Project) -> None:
    """No Jinja left; structured files parse; the project's own pre-commit hooks would pass
    (one final newline, no trailing whitespace, no conflict-marker line)."""
    for rel in p.files:
        problem = unclean(Path(rel).suffix, p.text(rel))
        assert problem is None, f"{rel}: {problem}"
        if rel.endswith((".yml", ".yaml")):
            p.yaml(rel)


@functools.lru_cache(maxsize=4096)
def parsed_toml(text: str) -> dict:
    """A TOML text parsed (memoized: callers only read it)."""
    return tomllib.loads(text)


@functools.lru_cache(maxsize=16)
def parsed_lock(lock: str) -> dict:
    """uv.lock parsed, each [[package]] entry on its own: the entries recur in every project
    (only the workspace's differ with the code locations), so each is parsed once."""
    head, *entries = re.split(r"^(?=\[\[package\]\]$)", lock, flags=re.M)
    return {
        **parsed_toml(head),
        "package": [pkg for entry in entries for pkg in parsed_toml(entry)["package"]],
    }


# The same text recurs in many combinations (uv.lock alone: 200 kB): each is checked once.
@functools.lru_cache(maxsize=4096)
def unclean(suffix: str, text: str) -> str | None:
    """What is wrong with a file's text (None: clean); TOML and JSON must parse."""
    if JINJA_LEFTOVER.search(text):
        return "leftover Jinja"
    if not text.endswith("\n") or text.endswith("\n\n"):
        return "must end with one newline"
    if re.search(r"[ \t]$", text, re.M):
        return "trailing whitespace"
    if re.search(r"^(<<<<<<< |=======$|>>>>>>> )", text, re.M):
        return "conflict marker"
    try:
        if suffix == ".toml":
            parsed_toml(text)
        elif suffix == ".json":
            json.loads(text)
    except ValueError as error:
        return f"does not parse: {error}"
    return None


def empty_mappings(node, path: str = "") -> list[str]:
    if isinstance(node, dict):
        found = [path or "/"] if not node else []
        for key, value in node.items():
            found += empty_mappings(value, f"{path}/{key}")
        return found
    if isinstance(node, list):
        return [f for i, item in enumerate(node) for f in empty_mappings(item, f"{path}[{i}]")]
    return []


def blank_line_opening_a_block(text: str) -> bool:
    """A key line (`name:`) followed by a blank line and then by its more indented contents."""
    lines = text.splitlines()
    indent = [len(line) - len(line.lstrip()) for line in lines]
    return any(
        line.rstrip().endswith(":")
        and not lines[i + 1].strip()
        and lines[i + 2].strip()
        and indent[i + 2] > indent[i]
        for i, line in enumerate(lines[:-2])
    )


@check
def no_empty_mappings_or_stray_blank_lines(p: Project) -> None:
    """Conditional blocks leave nothing behind: no `{}` where a block was left out, no blank
    line opening a block or a file, no two blank lines in a row (Python files: ruff's rules,
    checked in test_static)."""
    for rel in p.files:
        text = p.text(rel)
        assert not text.startswith("\n"), f"{rel} starts with a blank line"
        assert rel.endswith(".py") or "\n\n\n" not in text, f"two blank lines in a row in {rel}"
        if rel.endswith((".yml", ".yaml")):
            assert not blank_line_opening_a_block(text), f"a blank line opens a block in {rel}"
            empty = empty_mappings(p.yaml(rel))
            assert not empty, f"empty mappings in {rel}: {empty}"


@check
def instance_configuration_fits_100_columns(p: Project) -> None:
    """config/ is what operators read and edit most: no line wider than 100 characters."""
    for rel in ("config/dagster.yaml", "config/workspace.yaml"):
        wide = [line for line in p.text(rel).splitlines() if len(line) > 100]
        assert not wide, f"{rel}: {len(wide)} lines over 100 characters: {wide[0][:60]}..."


@check
def images_build_from_the_base_and_end_as_the_service_user(p: Project) -> None:
    c = p.computed
    uid = c["service_uid"]
    files = {image: (path, p.image_text(image)) for image, path in p.image_files().items()}
    if c["prebuilt"]:  # the published pipes-base's definition: the locations' images start from it
        base = f"platform/pipes-base/{c['containerfile']}"
        files["pipes-base"] = (base, p.text(base))
    for image, (path, text) in files.items():
        assert f"ARG BASE_IMAGE={c['python_image']}\n" in text, path
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users[-1] == f"{uid}:{uid}", f"{path} must end as the service user"
        # From the published pipes-base (which ends as the service user) the installs switch to root.
        root = c["build_as_root"] or (c["prebuilt"] and image in p.pipes_services)
        assert ("0" in users) == root, f"{path}: switches to root={'0' in users}"
        # Every install step installs an export of uv.lock, with the installer that checks it.
        installer = r"^\s+(?:&& )?python3 /opt/dagster/install_locked\.py install (\S+)$"
        installs = re.findall(installer, text, re.M)
        assert installs and len(installs) == len(re.findall(r"^RUN --mount=type=secret", text, re.M)), path
        assert f'io.dagster.launchpad.component="{image}"' in text
        assert f'io.dagster.version="{p.answer("dagster_version")}"' in text
        assert "chmod 777" not in text
        # No configuration in any image: it is mounted at run time.
        assert not re.search(r"^COPY .*config/", text, re.M)
        # Secrets never pass through ARG or ENV; the private index arrives as a build secret.
        assert not re.search(r"^(ARG|ENV)\b.*(PASSWORD|TOKEN|SECRET|INDEX_URL)", text, re.M | re.I), path
        assert "RUN --mount=type=secret,id=pip_conf" in text, path


@check
def each_image_defines_its_healthcheck_once(p: Project) -> None:
    """The health check of each Dagster image is in the image, and compose does not repeat it."""
    services = p.yaml("compose.yaml")["services"]
    for image, path in p.image_files().items():
        assert len(re.findall(r"^HEALTHCHECK ", p.text(path), re.M)) == 1, path
        assert "healthcheck" not in services[image], f"compose.yaml repeats the {image} health check"
    if "postgres" in services:  # an upstream image, with no HEALTHCHECK of its own
        assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


@check
def pipes_image_bakes_code_only_with_image_delivery(p: Project) -> None:
    """Each code location's image carries its own package (image delivery) or none: its
    directory goes to a build stage (owned by the service user, who runs build.sh there), and
    the package from it into the image, owned by root. Every one carries the shared package
    (pipes/SHARED/src/), after its dependencies, owned by root, with either delivery."""
    uid = p.computed["service_uid"]
    shared = (f"pipes/{SHARED}/src/{SHARED}/", f"/opt/dagster/app/{SHARED}/")
    for loc in p.locations:
        path, text = p.image_files()[p.service(loc)], p.image_text(p.service(loc))
        copied = re.findall(r"^COPY (.*) (\S+)$", text, re.M)
        code = [
            (src, dst)
            for src, dst in copied
            if dst.startswith("/opt/dagster/app/") or dst == "/opt/dagster/build/"
        ]
        expected = [
            shared,
            (f"--chown={uid}:{uid} pipes/{loc}/", "/opt/dagster/build/"),
            (f"--from=code --chown=0:0 /opt/dagster/build/src/{loc}/", f"/opt/dagster/app/{loc}/"),
        ]
        assert code == (expected if p.answer("code_delivery") == "image" else expected[:1]), (path, code)
        assert text.index(f"COPY {shared[0]} ") > text.index("install /opt/dagster/requirements.txt"), path
        assert ("\nRUN PYTHONDONTWRITEBYTECODE=1 sh build.sh\n" in text) == (
            p.answer("code_delivery") == "image"
        ), path


@check
def each_pipes_image_serves_its_own_location(p: Project) -> None:
    """Every code location's image is built from the one shared definition with its own name
    and service (compose's build arguments LOCATION and SERVICE), installs its own
    requirements and serves its own package, under its own name (DAGSTER_LOCATION_NAME and
    DAGSTER_MODULE_NAME, which Dagster's server command and recover_runs read); the definition
    names no location's directory itself."""
    slug = p.answer("project_slug")
    shared = p.text(f"pipes/{SHARED}/{p.computed['containerfile']}")
    code = "\n".join(line for line in shared.splitlines() if not line.startswith("#"))
    for loc in p.locations:
        assert not re.search(rf"(?<![\w.-])pipes/{loc}/", code), (
            f"pipes/{SHARED}/'s image definition names pipes/{loc}/"
        )
    for loc in p.locations:
        service = p.service(loc)
        pipes_base = "${PIPES_BASE_IMAGE:?make sets it from platform/images.lock (make up)}"
        assert p.build_args(service) == {
            "BASE_IMAGE": f"${{BASE_IMAGE:-{p.computed['python_image']}}}",
            **({"PIPES_BASE_IMAGE": pipes_base} if p.computed["prebuilt"] else {}),
            "LOCATION": loc,
            "SERVICE": service,
        }, loc
        text = p.image_text(service)
        assert f"COPY pipes/{loc}/requirements.txt platform/instance_ready.py /opt/dagster/\n" in text
        assert f"    DAGSTER_LOCATION_NAME={loc} \\\n    DAGSTER_MODULE_NAME={loc}.definitions \\\n" in text
        cmd = re.search(r"^CMD \[(.*?)\]$", text, re.M | re.S)
        assert cmd, p.image_files()[service]
        args = json.loads(f"[{cmd[1].replace(chr(92) + chr(10), '')}]")
        # The storage made ready first, then recover_runs takes the process's place (exec).
        assert args[:7] == [
            "python3", "/opt/dagster/instance_ready.py", "--", "python3", "-m", f"{SHARED}.recover_runs", "--"
        ], args  # fmt: skip
        # Code in the image: Dagster's gRPC server alone; mounted code: the reloading code server.
        image = p.answer("code_delivery") == "image"
        server = ["dagster", "api", "grpc"] if image else ["dagster", "code-server", "start"]
        assert args[7:10] == server, args
        assert "--module-name" not in args and "--location-name" not in args, args
        assert f'org.opencontainers.image.title="{slug}-{service}"' in text
        assert f'io.dagster.launchpad.component="{service}"' in text


INSTALL = {
    "apt": r"apt-get install",
    "dnf": r"(?<!micro)dnf install",
    "microdnf": r"microdnf install",
    "apk": r"apk add",
}


@check
def os_packages_use_the_bases_package_manager(p: Project) -> None:
    """Extra packages go into pipes only, installed with the base's package manager."""
    manager = p.computed["package_manager"]
    packages = " ".join(p.answer("pipes_system_packages").split())
    for image, path in p.image_files().items():
        text = p.text(path)
        used = {m for m, pattern in INSTALL.items() if re.search(pattern, text)}
        assert used <= {manager}, f"{path} installs with {used}, the base has {manager}"
        if packages:
            installs = bool(re.search(rf"{INSTALL[manager]} .*{re.escape(packages)}", text))
            assert installs == (image in p.pipes_services), path


@functools.cache  # each export is the same text in many combinations; callers only read it
def locked_requirements(text: str) -> dict[str, str]:
    """name -> version of an exported lock; every requirement must carry a hash."""
    pins: dict[str, str] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        if entry.strip() and not entry.lstrip().startswith("#"):
            match = re.match(
                r"([A-Za-z0-9._-]+)==(\S+)( ;[^-]*)?\s+(--hash=sha256:[0-9a-f]{64}\s*)+(#.*)?$", entry
            )
            assert match, f"not a pinned, hashed requirement: {entry!r}"
            pins[match[1].lower()] = match[2]
    return pins


@functools.lru_cache(maxsize=16)
def locked_versions(lock: str) -> dict[str, str]:
    """name -> version of every package in a uv.lock."""
    return {pkg["name"]: pkg["version"] for pkg in parsed_lock(lock)["package"]}


def locked_workspace(lock: str) -> tuple[list[str], dict[str, dict]]:
    """The workspace members a uv.lock records, and name -> source of its editable packages."""
    parsed = parsed_lock(lock)
    editable = {pkg["name"]: pkg["source"] for pkg in parsed["package"] if "editable" in pkg["source"]}
    return parsed["manifest"]["members"], editable


@check
def images_install_the_locked_dagster_set(p: Project) -> None:
    """The Dagster version is declared once (pyproject.toml); each image installs an export of
    uv.lock, every package pinned with its hashes; all three install the core set first (their
    shared layer), and every storage and launcher library (dagster-k8s for the Helm chart's
    K8sRunLauncher included) is in every set; dagster-aws (the S3 compute log manager) is too
    with compute_logs=s3, and in none without."""
    version = p.answer("dagster_version")
    minor, patch = version.split(".")[1:]
    libs = f"0.{int(minor) + 16}.{patch}"  # Dagster's libraries: 0.(minor + 16).patch
    projects = [
        "pyproject.toml",
        "platform/pyproject.toml",
        f"pipes/{SHARED}/pyproject.toml",
        *(f"pipes/{loc}/pyproject.toml" for loc in p.locations),
    ]
    declared = [dep for path in projects for dep in tomllib.loads(p.text(path))["project"]["dependencies"]]
    assert [d for d in declared if "==" in d] == [f"dagster=={version}"], declared
    core = locked_requirements(p.text("platform/requirements-core.txt"))
    platform = locked_requirements(p.text("platform/requirements.txt"))
    pipes = {loc: locked_requirements(p.text(f"pipes/{loc}/requirements.txt")) for loc in p.locations}
    expected = {"dagster": version, "dagster-postgres": libs, "dagster-docker": libs, "dagster-k8s": libs}
    s3 = p.answer("compute_logs") == "s3"
    if s3:
        expected["dagster-aws"] = libs
    for name, pins in (("core", core), ("platform", platform), *pipes.items()):
        assert expected.items() <= pins.items(), (name, {k: pins.get(k) for k in expected})
        assert s3 or "dagster-aws" not in pins, name
        assert pins["sqlalchemy"] < "2.1", pins["sqlalchemy"]
        assert core.items() <= pins.items(), f"{name} does not install the core set as locked"
    assert platform["dagster-webserver"] == version == platform["dagster-graphql"]
    assert not [loc for loc, pins in pipes.items() if "dagster-webserver" in pins]
    locked = locked_versions(p.text("uv.lock"))
    assert all(locked.get(name) == v for pins in (platform, *pipes.values()) for name, v in pins.items())
    paths = set(p.image_files().values())
    if p.computed["prebuilt"]:  # the core is the published pipes-base's; a location's image adds to it
        pipes = f"pipes/{SHARED}/{p.computed['containerfile']}"
        paths = paths - {pipes} | {f"platform/pipes-base/{p.computed['containerfile']}"}
        assert "\nFROM ${PIPES_BASE_IMAGE}" in p.text(pipes), pipes
    for path in paths:
        first_install = p.text(path).split("install_locked.py install ", 1)[1].split()[0]
        assert first_install == "/opt/dagster/requirements-core.txt", (path, first_install)
    assert locked_requirements(p.text("platform/requirements-uv.txt")).keys() == {"uv"}


@check
def instance_matches_storage_and_launcher(p: Project) -> None:
    instance = p.yaml("config/dagster.yaml")
    assert list(instance["storage"]) == [p.computed["storages"][p.answer("storage")]["instance"]]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    queue = instance["run_coordinator"]["config"]
    # The limits are the instance's concurrency block's, never the coordinator's too (Dagster
    # refuses both: dagster-io/dagster#33225).
    limits = {"max_concurrent_runs", "tag_concurrency_limits", "block_op_concurrency_limited_runs"}
    assert not limits & set(queue), queue
    runs, pools = instance["concurrency"]["runs"], instance["concurrency"]["pools"]
    assert runs["max_concurrent_runs"] == p.answer("max_concurrent_runs")
    assert runs.get("tag_concurrency_limits", []) == p.answer("run_tag_limits")
    assert pools["granularity"] == "op"
    assert pools.get("default_limit", 0) == p.answer("pool_default_limit")
    assert queue["max_user_code_failure_retries"] >= 1 and queue["user_code_failure_retry_delay"] >= 1
    # Launches in parallel: one at a time, each waits for its run's process to start.
    assert queue["dequeue_use_threads"] is True and queue["dequeue_num_workers"] == 4
    launcher = {"code-server": "DefaultRunLauncher", "container": "DockerRunLauncher"}
    assert instance["run_launcher"]["class"] == launcher[p.answer("run_launcher")]
    assert instance["run_monitoring"]["enabled"] is True
    assert instance["telemetry"]["enabled"] is False
    if p.answer("run_launcher") == "container":
        kwargs = instance["run_launcher"]["config"]["container_kwargs"]
        assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges:true"]
        # Each run gets its own location's volumes (DAGSTER_CONTAINER_CONTEXT in compose.yaml).
        assert "volumes_from" not in kwargs, kwargs["volumes_from"]
        # Its process under recover_runs.py --run, which names an out-of-memory kill.
        assert kwargs["entrypoint"] == ["python3", "-m", f"{SHARED}.recover_runs", "--run", "--"]


@check
def helm_values_match_the_project(p: Project) -> None:
    """deploy/helm/values.yaml (Dagster's official chart, docs/kubernetes.md) runs the project's
    own images, one code server per location started as a code server (Reload works), confined
    as compose confines them, with config/dagster.yaml's queue, run monitoring and retries, and
    no password. The chart's schemas check the file in test_static and test_helm."""
    c = p.computed
    slug, uid = p.answer("project_slug"), c["service_uid"]
    values = p.yaml("deploy/helm/values.yaml")
    assert c["helm_chart_version"] == p.answer("dagster_version")
    assert f"version {c['helm_chart_version']} " in p.text("deploy/helm/values.yaml")
    assert f"--version {c['helm_chart_version']} " in p.text("Makefile")
    webserver, daemon = values["dagsterWebserver"], values["dagsterDaemon"]
    deployments = values["dagster-user-deployments"]["deployments"]
    compose = p.yaml("compose.yaml")["services"]
    pods = {"webserver": webserver, "daemon": daemon, **dict(zip(p.pipes_services, deployments, strict=True))}
    for service, pod in pods.items():
        prebuilt = c["prebuilt"] and service in ("webserver", "daemon")  # pinned: make helm-values
        assert pod["image"] == {
            "repository": f"@PLATFORM_REGISTRY@/launchpad-{service}"
            if prebuilt
            else f"@REGISTRY@/{slug}-{service}",
            "tag": f"@{service.upper()}_PIN@" if prebuilt else "@IMAGE_TAG@",
            "pullPolicy": "IfNotPresent",
        }, (service, pod["image"])
        security, pod_security = pod["securityContext"], pod["podSecurityContext"]
        assert security["capabilities"] == {"drop": ["ALL"]} and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is compose[service].get("read_only", False), service
        assert pod_security["runAsUser"] == pod_security["runAsGroup"] == uid and pod_security["runAsNonRoot"]
        assert set(pod["resources"]["limits"]) == {"cpu", "memory"}, service
        assert pod.get("livenessProbe") and (service == "daemon" or pod.get("readinessProbe")), service
    # Scratch space for the read-only ones, as compose's tmpfs.
    for pod in (webserver, daemon):
        assert pod["volumeMounts"] == [{"name": "scratch-1", "mountPath": "/tmp"}]
    # The workspace: config/workspace.yaml's entries, so each location keeps its name.
    servers = [
        {"host": s["host"], "port": s["port"], "location_name": s["name"]}
        for s in webserver["workspace"]["servers"]
    ]
    assert webserver["workspace"]["enabled"] is True
    assert [{"grpc_server": server} for server in servers] == p.yaml("config/workspace.yaml")["load_from"]
    for location, deployment in zip(p.locations, deployments, strict=True):
        assert deployment["name"] == p.service(location)
        # It names a Service: a DNS-1035 label.
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", deployment["name"]), deployment["name"]
        assert deployment["codeServerArgs"] == [
            "--module-name", f"{location}.definitions", "--location-name", location
        ]  # fmt: skip
        assert "dagsterApiGrpcArgs" not in deployment and deployment["port"] == 4000
        assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    # One Kubernetes Job per run, from its location's image (DAGSTER_CURRENT_IMAGE, set by the
    # chart), confined as the code servers.
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert "image" not in launcher
    assert launcher["securityContext"] == deployments[0]["securityContext"]
    run_pod = launcher["runK8sConfig"]["podSpecConfig"]["security_context"]
    assert run_pod["run_as_user"] == uid and run_pod["run_as_non_root"] is True
    # The instance settings of config/dagster.yaml.
    instance = p.yaml("config/dagster.yaml")
    coordinator = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    assert {k: coordinator[k] for k in ("module", "class", "config")} == instance["run_coordinator"]
    # The same limits, in the chart's concurrency block (camelCase keys).
    concurrency, runs = values["concurrency"], instance["concurrency"]["runs"]
    assert concurrency["enabled"] is True
    assert concurrency["runs"] == {
        "maxConcurrentRuns": runs["max_concurrent_runs"],
        "tagConcurrencyLimits": runs.get("tag_concurrency_limits", []),
    }
    pools = instance["concurrency"]["pools"]
    assert concurrency["pools"] == {
        "granularity": pools["granularity"],
        **({"defaultLimit": pools["default_limit"]} if "default_limit" in pools else {}),
    }
    monitoring, retries = daemon["runMonitoring"], daemon["runRetries"]
    assert {
        "enabled": monitoring["enabled"],
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
    } == instance["run_monitoring"]
    assert {"enabled": retries["enabled"], "max_retries": retries["maxRetries"]} == instance["run_retries"]
    assert values["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False
    artifacts = values["additionalInstanceConfig"]["local_artifact_storage"]
    assert artifacts["class"] == instance["local_artifact_storage"]["class"]
    assert artifacts["config"]["base_dir"].startswith("/tmp/")  # writable in every pod
    # PostgreSQL: yours by default, the password only in the secret.
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["global"]["postgresqlSecretName"] == c["helm_postgres_secret"]
    assert values["global"]["dagsterHome"] == "/opt/dagster/home"
    # ui_access=login: the read-only webserver for viewers, and the login proxy with its Ingress
    # in extraManifests instead of the chart's ingress (test_helm checks them in depth).
    login = c["ui_login"]
    assert webserver.get("enableReadOnly", False) is login
    assert values.get("ingress", {"enabled": False})["enabled"] is False
    kinds = [m["kind"] for m in values.get("extraManifests", [])]
    purge = ["ConfigMap", "CronJob"] if p.answer("run_retention_days") > 0 else []
    # The metrics service, last: a Deployment and its Service (prometheus.io annotations).
    metrics = ["Deployment", "Service"]
    login_kinds = ["ConfigMap", "Deployment", "Service", "Ingress"] if login else []
    assert kinds == login_kinds + purge + metrics, kinds
    deployment, service = values["extraManifests"][-2:]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "python3", "/opt/dagster/metrics.py", "--port", str(c["metrics_port"]),
        "--webserver", f"http://@RELEASE@-dagster-webserver:{webserver['service']['port']}",
    ]  # fmt: skip
    image = webserver["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    assert container["env"][1]["valueFrom"]["secretKeyRef"]["name"] == c["helm_postgres_secret"]
    assert container["livenessProbe"]["exec"]["command"] == c["health_checks"]["metrics"]["command"]
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(c["metrics_port"])
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    if login:
        (ingress,) = [m for m in values["extraManifests"] if m["kind"] == "Ingress"]
        assert ingress["spec"]["rules"][0]["host"] == (p.recorded.get("ui_domain") or "@UI_HOST@")
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    bundled = p.yaml("deploy/helm/values-bundled-postgres.yaml")
    assert bundled == {
        "generatePostgresqlPasswordSecret": True,
        "postgresql": {"enabled": True, "postgresqlHost": ""},
    }


@check
def retention_follows_run_retention_days(p: Project) -> None:
    """run_retention_days (0: keep every run): `make purge` always; with N > 0 the daily purge
    beside the daemon (compose.yaml, the kube YAML: scripts/purge.py --daily N, scripts/ mounted
    read-only), a CronJob in the Helm values, and tick history kept N days in both instances."""
    days = p.answer("run_retention_days")
    assert isinstance(days, int) and 0 <= days <= 3650, days
    makefile = p.text("Makefile")
    assert re.search(r"^purge: ## .*\n\t@\$\(PYTHON\) scripts/purge\.py --days=", makefile, re.M)
    ticks = p.yaml("config/dagster.yaml")["retention"]
    if days:
        assert ticks == {
            "schedule": {"purge_after_days": days},
            "sensor": {"purge_after_days": {"skipped": min(7, days), "failure": days, "success": days}},
        }, ticks
    else:  # the template's defaults before the answer existed
        assert ticks["schedule"] == {"purge_after_days": 90}, ticks
        assert ticks["sensor"]["purge_after_days"] == {"skipped": 7, "failure": 30, "success": -1}
    helm = p.yaml("deploy/helm/values.yaml")
    assert helm["retention"]["enabled"] is True
    assert helm["retention"]["schedule"]["purgeAfterDays"] == ticks["schedule"]["purge_after_days"]
    assert helm["retention"]["sensor"]["purgeAfterDays"] == ticks["sensor"]["purge_after_days"]
    jobs = [m for m in helm.get("extraManifests", []) if m["kind"] == "CronJob"]
    daily = ["python3", "/opt/dagster/scripts/purge.py", "--inside", "--daily", str(days), "--"]
    daemon = p.yaml("compose.yaml")["services"]["daemon"]
    mount = "./scripts:/opt/dagster/scripts:ro,z"
    kube = []
    if p.computed["kube_play"]:
        pods = [d for d in yaml.safe_load_all(p.text(f"kube/{p.answer('project_slug')}.yaml")) if d]
        kube = [
            c["args"] for d in pods if d["kind"] == "Pod" and d["metadata"]["name"].endswith("-daemon")
            for c in d["spec"]["containers"] if "args" in c
        ]  # fmt: skip
    if days:
        command = daemon["command"]
        assert command[: len(daily)] == daily, command
        assert command[len(daily) :] == [
            "python3", "/opt/dagster/instance_ready.py", "--",
            "dagster-daemon", "run", "--workspace", "/opt/dagster/home/workspace.yaml",
        ]  # fmt: skip
        assert mount in daemon["volumes"]
        assert kube == ([command] if p.computed["kube_play"] else []), kube
        (job,) = jobs
        container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][-3:] == ["--inside", "--days", str(days)]
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        names = [(m["kind"], m["metadata"]["name"]) for m in helm["extraManifests"]]
        script = helm["extraManifests"][names.index(("ConfigMap", "@RELEASE@-purge"))]
        # The script as it is, but one blank line where it has two (the values' rule).
        assert script["data"]["purge.py"] == p.text("scripts/purge.py").replace("\n\n\n", "\n\n")
    else:
        assert "command" not in daemon and mount not in daemon["volumes"]
        assert kube == [] and jobs == []


@check
def workspace_has_one_code_server_per_location(p: Project) -> None:
    """One gRPC entry per code location, in order, at its compose service."""
    workspace = p.yaml("config/workspace.yaml")
    assert list(workspace) == ["load_from"]
    assert workspace["load_from"] == [
        {"grpc_server": {"host": p.service(loc), "port": 4000, "location_name": loc}} for loc in p.locations
    ]
    services = p.yaml("compose.yaml")["services"]
    assert all(entry["grpc_server"]["host"] in services for entry in workspace["load_from"])


@check
def compose_services_match_the_answers(p: Project) -> None:
    c = p.computed
    services = p.yaml("compose.yaml")["services"]
    pipes = p.pipes_services
    login = {"webserver-viewer", "proxy"} if c["ui_login"] else set()
    assert set(services) == {"webserver", "daemon", "metrics", *pipes} | login | (
        {"postgres"} if c["bundled_postgres"] else set()
    )
    viewer = ["webserver-viewer"] if c["ui_login"] else []
    # The metrics endpoint: the webserver's image, its own command and health check, the
    # instance's storage (the data volume, dagster.yaml, PostgreSQL's connection) and no
    # workspace; published on the loopback address, on a port the engine picks by default.
    metrics = services["metrics"]
    assert metrics["command"] == [
        "python3", "/opt/dagster/metrics.py", "--port", str(c["metrics_port"]),
        "--webserver", "http://webserver:3000",
    ]  # fmt: skip
    published_metrics = "${DAGSTER_METRICS_BIND:-127.0.0.1}:${DAGSTER_METRICS_PORT:-}"
    assert metrics["ports"] == [f"{published_metrics}:{c['metrics_port']}"]
    assert metrics["healthcheck"]["test"] == ["CMD", *c["health_checks"]["metrics"]["command"]]
    assert metrics["read_only"] is True and "build" not in metrics
    platform_mounts = [v for v in services["webserver"]["volumes"] if "workspace.yaml" not in v]
    assert metrics["volumes"] == [v for v in platform_mounts if "docker.sock" not in v]
    assert ("DAGSTER_PG_PASSWORD_FILE" in metrics.get("environment", {})) == c["uses_postgres"]
    for name in ("webserver", "daemon", *pipes, *viewer):
        volumes = services[name]["volumes"]
        assert services[name]["restart"] == "unless-stopped"
        assert "dagster-data:/var/lib/dagster" in volumes
        assert "./config/dagster.yaml:/opt/dagster/home/dagster.yaml:ro,z" in volumes
        has_workspace = "./config/workspace.yaml:/opt/dagster/home/workspace.yaml:ro,z" in volumes
        assert has_workspace == (name not in pipes)
        if name == "webserver-viewer":  # the webserver's image, read-only (ui_access=login)
            assert "build" not in services[name]
            assert services[name]["image"] == (
                services["webserver"]["image"]
                if c["prebuilt"]
                else f"localhost/{p.answer('project_slug')}-webserver:${{IMAGE_TAG:-latest}}"
            )
            assert services[name]["command"][-1] == "--read-only"
            socket = f"${{CONTAINER_SOCKET:-{c['engine_socket']}}}:/var/run/docker.sock"
            assert services[name]["volumes"] == [v for v in services["webserver"]["volumes"] if v != socket]
        elif c["prebuilt"] and name in ("webserver", "daemon"):  # the pinned published image
            assert "build" not in services[name], name
            assert services[name]["image"].startswith(f"${{{name.upper()}_IMAGE:?"), name
        else:
            assert services[name]["build"]["dockerfile"] == p.image_files()[name]
            assert services[name]["build"]["args"]["BASE_IMAGE"] == f"${{BASE_IMAGE:-{c['python_image']}}}"
        environment = services[name].get("environment", {})
        # The password is compose's secret file, never an environment value (test_secrets.py).
        assert "DAGSTER_PG_PASSWORD" not in environment, name
        assert ("DAGSTER_PG_PASSWORD_FILE" in environment) == c["uses_postgres"], name
        # TLS settings for an external server, and its CA's directory, in every Dagster service.
        external = p.answer("storage") == "external-postgres"
        assert ("PGSSLMODE" in environment and "PGSSLROOTCERT" in environment) == external, name
        tls_mount = f"./.build/postgres-tls:{c['postgres_ca_dir']}:ro,z"
        assert (tls_mount in volumes) == external, name
        # Every Dagster service starts after a bundled PostgreSQL has started, not after its
        # health check (a 2 s interval: its first pass would delay every start); each image
        # waits for PostgreSQL itself (platform/instance_ready.py, tests/test_instance_ready.py).
        waits = services[name].get("depends_on", {}).get("postgres", {}).get("condition")
        expected = "service_started" if c["bundled_postgres"] else None
        assert waits == expected, f"{name} waits for postgres: {waits}"
    # The UI is published on the chosen address only (with ui_access=login: the login proxy's
    # HTTPS and HTTP ports, the webservers not at all); nothing else is published.
    bind, port = p.answer("ui_bind_address"), p.answer("ui_port")
    ui = f"${{DAGSTER_UI_BIND:-{bind}}}:${{DAGSTER_UI_PORT:-{port}}}"
    published = "proxy" if c["ui_login"] else "webserver"
    if c["ui_login"]:
        http = f"${{DAGSTER_UI_BIND:-{bind}}}:${{DAGSTER_UI_HTTP_PORT:-{c['ui_http_port']}}}"
        assert services["proxy"]["ports"] == [
            f"{ui}:{c['proxy_ports']['https']}",
            f"{http}:{c['proxy_ports']['http']}",
        ]
        assert services["proxy"]["image"] == f"${{PROXY_IMAGE:-{c['proxy_image']}}}"
        assert "./config/Caddyfile:/etc/caddy/Caddyfile:ro,z" in services["proxy"]["volumes"]
        assert f"./{c['ui_users_dir']}:/etc/caddy-users:ro,z" in services["proxy"]["volumes"]
    else:
        assert services["webserver"]["ports"] == [f"{ui}:3000"]
    assert all("ports" not in s for n, s in services.items() if n not in (published, "metrics"))
    # The engine socket goes to the services that launch or stop runs, and nowhere else.
    socket = [n for n, s in services.items() if any(c["engine_socket"] in v for v in s.get("volumes", []))]
    assert sorted(socket) == (["daemon", "webserver"] if p.answer("run_launcher") == "container" else [])
    # No service depends on a code location: podman-compose would recreate the webserver and
    # the daemon with it on `make reload LOCATION=...` (tests/test_real_projects.py checks the
    # container ids on both engines).
    for name, service in services.items():
        assert not set(service.get("depends_on", {})) & set(pipes), f"{name} depends on a code location"


@check
def services_find_each_other_at_fixed_addresses(p: Project) -> None:
    """Every service has a fixed address on the project network (DAGSTER_NETWORK_PREFIX.N,
    .2-.19, inside the subnet and outside the range for containers that join later) and finds
    every other in its /etc/hosts (extra_hosts), never through the engine's DNS server; so do
    the runs' containers (container launcher) and, on Podman, the kube stack's pods. On Podman
    each also has a fixed MAC, given in the pods' order by kube-up and the Quadlet unit."""
    c = p.computed
    prefix, hosts = c["network_prefix"], c["network_hosts"]
    assert re.fullmatch(r"10\.(19[2-9]|2[0-4][0-9]|25[0-5])\.([0-9]{1,3})", prefix), prefix
    assert int(prefix.split(".")[2]) <= 255
    var = f"${{DAGSTER_NETWORK_PREFIX:-{prefix}}}"
    compose = p.yaml("compose.yaml")
    services = compose["services"]
    assert sorted(hosts) == sorted(services), (hosts, list(services))
    assert len(set(hosts.values())) == len(hosts) and all(2 <= n <= 19 for n in hosts.values()), hosts
    (ipam,) = compose["networks"]["dagster"]["ipam"]["config"]
    assert ipam == {"subnet": f"{var}.0/24", "ip_range": f"{var}.128/25"}, ipam
    expected_hosts = sorted(f"{name}:{var}.{n}" for name, n in hosts.items())
    # On Podman a fixed MAC too (a restarted container keeps it, as Docker's derived one):
    # unique, locally administered unicast.
    macs = c["network_macs"]
    assert sorted(macs) == sorted(hosts) and len(set(macs.values())) == len(macs), macs
    assert all(re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac) for mac in macs.values()), macs
    for name, service in services.items():
        network = {"ipv4_address": f"{var}.{hosts[name]}"}
        if c["fixed_macs"]:
            network["mac_address"] = macs[name]
        assert service["networks"] == {"dagster": network}, name
        assert sorted(service["extra_hosts"]) == expected_hosts, name
    assert f"DAGSTER_NETWORK_PREFIX={prefix}" in p.text(".env.example").splitlines()
    if p.answer("run_launcher") == "container":
        for loc in p.locations:
            context = run_context(services[p.service(loc)]["environment"]["DAGSTER_CONTAINER_CONTEXT"])
            extra = context["docker"]["container_kwargs"]["extra_hosts"]
            assert extra == {name: f"{var}.{n}" for name, n in hosts.items()}, extra
    if c["kube_play"]:
        slug = p.answer("project_slug")
        pods = [d for d in yaml.safe_load_all(p.text(f"kube/{slug}.yaml")) if d and d["kind"] == "Pod"]
        # Each by its pod's name and by its compose name (config/workspace.yaml's hosts); every
        # service has its pod (the login proxy's and the read-only webserver's too).
        assert sorted(c["kube_pods"]) == sorted(hosts), (c["kube_pods"], hosts)
        aliases = sorted((f"{prefix}.{n}", [c["kube_pods"][name], name]) for name, n in hosts.items())
        addresses, order = [], []
        for pod in pods:
            found = sorted((a["ip"], a["hostnames"]) for a in pod["spec"]["hostAliases"])
            assert found == aliases, pod["metadata"]["name"]
            addresses.append(pod["metadata"]["annotations"]["launchpad.dagster.io/address"])
            service = next(s for s, name in c["kube_pods"].items() if name == pod["metadata"]["name"])
            order.append(service)
            assert addresses[-1] == f"{prefix}.{hosts[service]}", pod["metadata"]["name"]
        # podman kube play --ip takes the addresses in the pods' order: the unit gives them so.
        assert addresses == c["kube_addresses"], (addresses, c["kube_addresses"])
        assert order == c["kube_order"], (order, c["kube_order"])
        mac_args = " ".join(f"--mac-address={macs[service]}" for service in order)
        unit = p.text(f"kube/{slug}.kube")
        assert f"PodmanArgs={' '.join('--ip=' + a for a in addresses)} {mac_args}\n" in unit
        # make kube-up gives the same (scripts/kube.py: --ip from the YAML, --mac from the Makefile).
        (facts,) = [line for line in p.text("Makefile").splitlines() if line.startswith("KUBE_FACTS :=")]
        assert facts.endswith(" " + mac_args.replace("--mac-address=", "--mac=")), facts


@check
def each_location_has_its_own_service_image_and_container(p: Project) -> None:
    """pipes-NAME: its own image and container name, its own code mount (volume delivery),
    and with the container launcher its own run image and volumes for the runs it launches."""
    slug = p.answer("project_slug")
    services = p.yaml("compose.yaml")["services"]
    names = [s["container_name"] for s in services.values()]
    assert len(names) == len(set(names)), names
    for name in ("webserver", "daemon"):
        own = f"localhost/{slug}-{name}:${{IMAGE_TAG:-latest}}"
        pinned = f"${{{name.upper()}_IMAGE:?make sets it from platform/images.lock (make up)}}"
        assert services[name]["image"] == (pinned if p.computed["prebuilt"] else own)
        assert services[name]["container_name"] == f"{slug}-{name}"
    for loc in p.locations:
        service = services[p.service(loc)]
        container = f"{slug}-{p.service(loc)}"
        image = f"localhost/{container}:${{IMAGE_TAG:-latest}}"
        assert service["container_name"] == container and service["image"] == image, loc
        mounts = [v for v in service["volumes"] if "/opt/dagster/app" in v]
        mount = f"./pipes/{loc}/src/{loc}:/opt/dagster/app/{loc}:ro,z"
        volume = p.answer("code_delivery") == "volume"
        # Prebuilt with mounted code: the image may be the pipes-base itself, so the shared
        # package is mounted too and the location's name is environment (copier.yml: services).
        shared = volume and p.computed["prebuilt"]
        expected = [mount] if volume else []
        expected += [f"./pipes/{SHARED}/src/{SHARED}:/opt/dagster/app/{SHARED}:ro,z"] if shared else []
        assert mounts == expected, (loc, mounts)
        named = {k: v for k, v in service.get("environment", {}).items() if k.startswith("DAGSTER_LOC")}
        want = {"DAGSTER_LOCATION_NAME": loc, "DAGSTER_LOCATION_DATA": f"/var/lib/dagster/locations/{loc}"}
        assert named == (want if shared else {}), (loc, named)
        environment = service.get("environment", {})
        launched = {
            k: environment[k]
            for k in ("DAGSTER_CURRENT_IMAGE", "DAGSTER_CONTAINER_CONTEXT")
            if k in environment
        }
        if p.answer("run_launcher") == "container":
            assert launched.get("DAGSTER_CURRENT_IMAGE") == image, (loc, launched)
            context = run_context(launched["DAGSTER_CONTAINER_CONTEXT"])
            kwargs = context["docker"]["container_kwargs"]  # extra_hosts: see the network check
            env_vars = [f"{k}={v}" for k, v in want.items()] if shared else None
            expected_context = {"container_kwargs": kwargs, **({"env_vars": env_vars} if shared else {})}
            assert context == {"docker": expected_context}, (loc, context)
            assert kwargs.pop("volumes_from") == [container] and kwargs.pop("extra_hosts"), loc
            # The run's ceilings: .env's RUN_* (compose's defaults: copier.yml, run_limits).
            limits = p.computed["run_limits"]
            assert kwargs == {
                "mem_limit": limits["memory"],
                "memswap_limit": limits["memory"],
                "nano_cpus": int(limits["cpus"] * 10**9),
                "pids_limit": limits["pids"],
            }, (loc, kwargs)
            assert f"RUN_MEMORY_LIMIT={limits['memory']}" in p.text(".env.example").splitlines()
        else:
            assert not launched, (loc, launched)
    # No mount of any location's code elsewhere.
    others = [n for n, s in services.items() if n not in p.pipes_services]
    assert not [n for n in others if any("/opt/dagster/app" in v for v in services[n].get("volumes", []))]


@check
def compose_confines_every_service(p: Project) -> None:
    """No capabilities, no privilege gain, fixed non-root users, read-only platform services,
    resource ceilings; the build secret goes to the builds only; no secret value in the file."""
    c = p.computed
    compose = p.yaml("compose.yaml")
    assert "change-me" not in p.text("compose.yaml")
    for name, service in compose["services"].items():
        # The login proxy keeps the one capability its image's binary carries (setcap): without
        # it, exec fails (tests/test_login.py runs it).
        assert service["cap_drop"] == ["ALL"], name
        assert service.get("cap_add") == (["NET_BIND_SERVICE"] if name == "proxy" else None), name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert "privileged" not in service and "mem_limit" in service and "cpus" in service, name
        assert service.get("read_only", False) is (name not in p.pipes_services), name
        # The runtime secrets: the PostgreSQL password's file (compose.yaml, test_secrets.py), in
        # the services that talk to PostgreSQL (not the login proxy), and with compute_logs=s3
        # the S3 store's secret key, in the Dagster services (not PostgreSQL, not the proxy).
        password = [{"source": "postgres_password", "target": c["postgres_password_file"].split("/")[-1]}]
        s3_key = [{"source": "s3_secret_key", "target": c["s3_secret_key_file"].split("/")[-1]}]
        talks = c["uses_postgres"] and name != "proxy"
        logs = p.answer("compute_logs") == "s3" and name not in ("proxy", "postgres")
        assert service.get("secrets", []) == (password if talks else []) + (s3_key if logs else []), name
        if "build" in service:
            assert service["build"]["secrets"] == ["pip_conf"], name
    if "postgres" in compose["services"]:
        assert compose["services"]["postgres"]["user"] == f"{c['postgres_uid']}:{c['postgres_uid']}"
    if "proxy" in compose["services"]:  # Caddy's image runs as root (docs/security.md says why)
        assert compose["services"]["proxy"]["user"] == "0:0"
    secrets = {"pip_conf": {"file": "./secrets/pip.conf"}}
    if c["uses_postgres"]:
        secrets["postgres_password"] = {"file": "./.build/secrets/postgres-password", "x-podman.relabel": "z"}
    if p.answer("compute_logs") == "s3":
        secrets["s3_secret_key"] = {"file": "./.build/secrets/s3-secret-key", "x-podman.relabel": "z"}
    assert compose["secrets"] == secrets


# What a Dagster process of the stack gets for compute_logs=s3 (compose.yaml's x-s3-client, the kube
# YAML's secret, the Helm chart's Secret): the settings, never the secret key's value in a file.
S3_ENV = {"DAGSTER_S3_ENDPOINT_URL", "DAGSTER_S3_BUCKET", "DAGSTER_S3_PREFIX", "AWS_DEFAULT_REGION",
          "AWS_ACCESS_KEY_ID"}  # fmt: skip


@check
def step_logs_go_where_compute_logs_says(p: Project) -> None:
    """volume: the local compute log manager on the shared volume, and the Helm values say that
    Kubernetes shows no step logs. s3: Dagster's S3ComputeLogManager whose bucket, prefix and
    endpoint are environment, which every Dagster service gets (compose: the settings and the
    secret key's file; each run's container the same names; the kube YAML and the Helm chart from
    a secret); .env.example names every setting with no secret in it (dagster-aws in the images:
    images_install_the_locked_dagster_set)."""
    s3 = p.answer("compute_logs") == "s3"
    c = p.computed
    logs = p.yaml("config/dagster.yaml")["compute_logs"]
    dagster = [n for n in p.yaml("compose.yaml")["services"] if n not in ("postgres", "proxy")]
    if not s3:
        assert logs["class"] == "LocalComputeLogManager", logs
        assert logs["config"]["base_dir"].startswith("/var/lib/dagster/"), logs  # the shared volume
        assert "DAGSTER_S3" not in p.text("compose.yaml") + p.text(".env.example")
        assert p.yaml("deploy/helm/values.yaml")["computeLogManager"] == {"type": "NoOpComputeLogManager"}
        assert "the UI shows no\n# stdout or stderr of any step on Kubernetes" in p.text(
            "deploy/helm/values.yaml"
        )
    else:
        assert (logs["module"], logs["class"]) == (
            "dagster_aws.s3.compute_log_manager",
            "S3ComputeLogManager",
        )
        assert {k: v for k, v in logs["config"].items() if isinstance(v, dict)} == {
            "bucket": {"env": "DAGSTER_S3_BUCKET"},
            "prefix": {"env": "DAGSTER_S3_PREFIX"},
            "endpoint_url": {"env": "DAGSTER_S3_ENDPOINT_URL"},
        }, logs
        assert logs["config"]["local_dir"].startswith("/tmp/"), logs  # each container's own scratch
        services = p.yaml("compose.yaml")["services"]
        for name in dagster:
            env = services[name]["environment"]
            assert S3_ENV <= set(env), (name, env)
            assert env["AWS_SECRET_ACCESS_KEY_FILE"] == c["s3_secret_key_file"], name
            assert "AWS_SECRET_ACCESS_KEY" not in env, name
        if p.answer("run_launcher") == "container":
            names = p.yaml("config/dagster.yaml")["run_launcher"]["config"]["env_vars"]
            assert S3_ENV | {"AWS_SECRET_ACCESS_KEY"} <= set(names), names
        settings = dict(
            line.split("=", 1)
            for line in p.text(".env.example").splitlines()
            if line.startswith("DAGSTER_S3_")
        )
        assert set(settings) == {"DAGSTER_S3_ENDPOINT_URL", "DAGSTER_S3_REGION", "DAGSTER_S3_BUCKET",
                                 "DAGSTER_S3_PREFIX", "DAGSTER_S3_ACCESS_KEY_ID",
                                 "DAGSTER_S3_SECRET_ACCESS_KEY"}, settings  # fmt: skip
        assert settings["DAGSTER_S3_SECRET_ACCESS_KEY"] == settings["DAGSTER_S3_ACCESS_KEY_ID"] == ""
        values = p.yaml("deploy/helm/values.yaml")
        secret = [{"name": c["helm_s3_secret"]}]
        assert values["computeLogManager"]["type"] == "S3ComputeLogManager", values["computeLogManager"]
        assert values["dagsterWebserver"]["envSecrets"] == values["dagsterDaemon"]["envSecrets"] == secret
        assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == secret
        for deployment in values["dagster-user-deployments"]["deployments"]:
            assert deployment["envSecrets"] == secret, deployment["name"]
        if c["kube_play"]:
            pods = [d for d in p.yaml(f"kube/{p.answer('project_slug')}.yaml") if d and d["kind"] == "Pod"]
            for pod in pods:
                for container in pod["spec"]["containers"]:
                    env = {e["name"]: e for e in container.get("env", [])}
                    wanted = S3_ENV | {"AWS_SECRET_ACCESS_KEY"}
                    if container["name"] in ("postgres", "proxy"):
                        assert not wanted & set(env), container["name"]
                        continue
                    assert wanted <= set(env), (pod["metadata"]["name"], sorted(env))
                    refs = {env[n]["valueFrom"]["secretKeyRef"]["name"] for n in wanted}
                    assert refs == {c["kube_secret"]}, refs


@check
def compose_lint_exceptions_are_few_scoped_and_explained(p: Project) -> None:
    services = p.yaml("compose.yaml")["services"]
    rules = p.yaml(".compose-lint.yml")["rules"]
    login = "proxy" in services
    expected = {"CL-0004", "CL-0007"} | ({"CL-0019"} if "postgres" in services or login else set())
    if p.answer("run_launcher") == "container":
        expected.add("CL-0001")
    if login:  # the login proxy: root in its container, the one service on every interface
        expected |= {"CL-0018", "CL-0005"}
        assert (
            set(rules["CL-0018"]["exclude_services"])
            == set(rules["CL-0005"]["exclude_services"])
            == {"proxy"}
        )
    assert set(rules) == expected
    for rule, config in rules.items():
        assert set(config) == {"exclude_services"}, rule
        assert all(isinstance(r, str) and len(r) > 40 for r in config["exclude_services"].values()), rule
    assert set(rules.get("CL-0001", {}).get("exclude_services", {})) <= {"webserver", "daemon"}
    # Local builds: every image built here; writable root filesystems: the code servers only.
    viewer = {"webserver-viewer"} if login else set()
    built_here = {"webserver", "daemon", "metrics", *p.pipes_services} | viewer
    assert set(rules["CL-0004"]["exclude_services"]) == built_here
    assert set(rules["CL-0007"]["exclude_services"]) == set(p.pipes_services)
    assert set(rules.get("CL-0019", {}).get("exclude_services", {})) <= {"postgres", "proxy"}


def ignored(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves `path` out, by the ignore file's rules: the last
    pattern that matches decides; `!` re-includes; a pattern matches a path or its parents."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatchcase(prefix, pattern) for prefix in prefixes):
            verdict = not negate
    return verdict


@check
def build_context_holds_what_each_image_copies_and_no_more(p: Project) -> None:
    """The ignore file re-includes exactly the files the images COPY: each code location's
    requirements and kept wheels, and with image delivery its directory (for its build step)
    without its tests."""
    patterns = [
        line.strip()
        for line in p.text(p.computed["ignorefile"]).splitlines()
        if line.strip() and line[0] != "#"
    ]
    assert patterns[0] == "*", patterns[:1]
    copied = set()
    for image in p.image_files():
        for sources in re.findall(r"^COPY (?!--from)(.*) \S+$", p.image_text(image), re.M):
            copied.update(s for s in sources.split() if not s.startswith("--"))
    # A location's tests are never sent, though its directory is copied (image delivery).
    tests = {f for f in p.files for loc in p.locations if f.startswith(f"pipes/{loc}/tests/")}
    assert not [f for f in p.files if f.startswith(f"pipes/{SHARED}/tests/") and not ignored(patterns, f)]
    for source in copied:
        files = [f for f in p.files if f == source or f.startswith(source.rstrip("/") + "/")]
        assert files, f"an image copies {source}, which the project does not have"
        left_out = [f for f in files if ignored(patterns, f) and f not in tests]
        assert not left_out, f"{p.computed['ignorefile']} leaves out {left_out}, which an image copies"
    sent = {f for f in p.files if not ignored(patterns, f)}
    expected = {f for f in p.files for s in copied if f == s or f.startswith(s.rstrip("/") + "/")} - tests
    assert sent == expected, f"sent but not copied: {sent - expected}; copied but not sent: {expected - sent}"
    image = p.answer("code_delivery") == "image"
    assert f"!pipes/{SHARED}/src/{SHARED}/" in patterns
    for loc in p.locations:
        assert f"!pipes/{loc}/requirements.txt" in patterns, loc
        assert f"!pipes/{loc}/wheels/" in patterns, loc
        assert (f"!pipes/{loc}/" in patterns) == image, loc
        assert (f"pipes/{loc}/tests/" in patterns) == image, loc


@check
def every_tool_knows_every_location(p: Project) -> None:
    """The uv workspace, its lock, ruff and the Makefile list each code location, once."""
    root = tomllib.loads(p.text("pyproject.toml"))
    assert root["project"]["name"] == "dagster-core"
    assert root["tool"]["uv"]["workspace"]["members"] == [
        "platform",
        f"pipes/{SHARED}",
        *(f"pipes/{loc}" for loc in p.locations),
    ]
    assert "dev" in root["dependency-groups"], "the dev tools are the root project's dev group"
    for loc in p.locations:
        project = tomllib.loads(p.text(f"pipes/{loc}/pyproject.toml"))
        assert project["project"]["name"] == p.service(loc), loc
        assert project["tool"]["dagster"] == {"module_name": f"{loc}.definitions", "code_location_name": loc}
        assert "dependency-groups" not in project, f"pipes/{loc} has its own dependency groups"
        # Each location depends on the shared package (a workspace member).
        assert "launchpad-pipes" in project["project"]["dependencies"], loc
        assert project["tool"]["uv"]["sources"]["launchpad-pipes"] == {"workspace": True}, loc
    shared = tomllib.loads(p.text(f"pipes/{SHARED}/pyproject.toml"))
    assert shared["project"]["name"] == "launchpad-pipes"
    members, editable = locked_workspace(p.text("uv.lock"))
    assert members == sorted(["dagster-core", "launchpad-pipes", "platform", *p.pipes_services]), members
    assert editable == {
        "launchpad-pipes": {"editable": f"pipes/{SHARED}"},
        **{p.service(loc): {"editable": f"pipes/{loc}"} for loc in p.locations},
    }, editable
    ruff = tomllib.loads(p.text("ruff.toml"))
    assert ruff["lint"]["isort"]["known-first-party"] == [SHARED, *p.locations]
    makefile = p.text("Makefile")
    assert re.findall(r"^LOCATIONS := (.*)$", makefile, re.M) == [" ".join(p.locations)]
    assert re.findall(r"^SHARED := (.*)$", makefile, re.M) == [SHARED]
    services = dict(re.findall(r"^SERVICE_(\w+) := (\S+)$", makefile, re.M))
    assert services == {loc: p.service(loc) for loc in p.locations}, services
    platform = "" if p.computed["prebuilt"] else "webserver daemon "  # prebuilt: pulled, pinned
    assert re.findall(r"^IMAGES\s+:= (.*)$", makefile, re.M) == [f"{platform}$(PIPES_SERVICES)"]
    for loc in p.locations:
        assert f".build/$(SERVICE_{loc}): $(call pipes_inputs,{loc})" in makefile, loc


def check_project(answers: dict, root: Path) -> None:
    """Every check above on one project (also used by test_fuzz on generated answer sets)."""
    project = Project(answers, root)
    for fn in CHECKS:
        fn(project)


PROJECTS: dict[Path, Project] = {}


def project_of(answers: dict, root: Path) -> Project:
    """One Project per rendered combination, shared by the promises (files read once)."""
    if root not in PROJECTS:
        PROJECTS[root] = Project(answers, root)
    return PROJECTS[root]


@pytest.mark.parametrize("promise", CHECKS, ids=[fn.__name__ for fn in CHECKS])
def test_every_combination_keeps_it(promise, rendered_projects):
    failures = []
    for cid, (answers, root, error) in rendered_projects.items():
        if error is not None:
            failures.append(f"{cid}: copier failed: {error}")
            continue
        try:
            promise(project_of(answers, root))
        except AssertionError as failure:
            failures.append(f"{cid}: {failure}")
    assert not failures, f"{len(failures)} of {len(rendered_projects)} combinations:\n" + "\n".join(
        failures[:20]
    )


def test_several_code_locations_are_rendered(rendered_multi_location):
    """The multi-location renders carry matrix.MULTI_LOCATIONS, and cover what they promise."""
    assert len(rendered_multi_location) >= 2
    seen: dict[str, set] = {f: set() for f in matrix.MULTI_LOCATION_FACTORS}
    for cid, (answers, root, error) in rendered_multi_location.items():
        assert error is None, f"{cid}: {error}"
        assert project_of(answers, root).locations == list(matrix.MULTI_LOCATIONS), cid
        for factor in seen:
            seen[factor].add(answers[factor])
    for factor, values in seen.items():
        assert values == set(matrix.choice_values(factor)), f"{factor}: only {values} with several locations"


# run_retention_days is no choice: the matrix renders its default (0). These render N > 0 where
# the files it changes differ: the default, SQLite on Docker, the login proxy with prebuilt
# images, the container launcher on Podman with an external server.
RETENTION_PROJECTS = {
    "default-30": {"run_retention_days": 30},
    "sqlite-docker-3": {"run_retention_days": 3, "storage": "sqlite", "container_engine": "docker"},
    "login-prebuilt-3650": {"run_retention_days": 3650, "ui_access": "login", "platform_images": "prebuilt"},
    "container-external-1": {
        "run_retention_days": 1, "run_launcher": "container", "storage": "external-postgres",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", RETENTION_PROJECTS)
def test_a_retention_project_keeps_every_promise(name, template_snapshot, tmp_path):
    import copier

    answers = RETENTION_PROJECTS[name]
    copier.run_copy(str(template_snapshot), tmp_path / name, data=answers, defaults=True, quiet=True)
    check_project(answers, tmp_path / name)


# pool_default_limit and run_tag_limits are no choices either: the matrix renders their defaults
# (no default pool limit, no tag limits). These render others where the files they change differ
# (config/dagster.yaml, the Helm values): both Dagster versions, both engines, every storage.
CONCURRENCY_PROJECTS = {
    "default-pools": {
        "pool_default_limit": 2, "run_tag_limits": [{"key": "source", "value": "crm", "limit": 2}],
    },
    "sqlite-docker-1-12": {
        "pool_default_limit": 1000, "storage": "sqlite", "container_engine": "docker",
        "dagster_version": "1.12.22",
        "run_tag_limits": [{"key": "team", "limit": 0}, {"key": "dagster/backfill", "limit": 3}],
    },
    "container-external-tags": {
        "run_launcher": "container", "storage": "external-postgres",
        "run_tag_limits": [{"key": "source", "value": "crm", "limit": 2}, {"key": "source", "limit": 5}],
    },
}  # fmt: skip


@pytest.mark.parametrize("name", CONCURRENCY_PROJECTS)
def test_a_concurrency_project_keeps_every_promise(name, template_snapshot, tmp_path):
    import copier

    answers = CONCURRENCY_PROJECTS[name]
    copier.run_copy(str(template_snapshot), tmp_path / name, data=answers, defaults=True, quiet=True)
    check_project(answers, tmp_path / name)


@pytest.mark.parametrize(
    "rejection",
    matrix.rejected_combinations(),
    ids=[matrix.combo_id(r.answers) for r in matrix.rejected_combinations()],
)
def test_rejected_combination_fails_with_its_reason(rejection, template_snapshot, tmp_path):
    import copier

    with pytest.raises(ValueError) as caught:
        copier.run_copy(
            str(template_snapshot),
            tmp_path / "out",
            data=rejection.answers,
            defaults=True,
            quiet=True,
        )
    assert rejection.question in str(caught.value)
    assert rejection.reason in str(caught.value)
    assert not (tmp_path / "out" / "compose.yaml").exists()


def test_matrix_uses_every_choice():
    """Each choice of each question appears in some accepted combination."""
    combinations = matrix.combinations()
    for name in matrix.choice_questions():
        seen = {a.get(name) for a in combinations}
        assert set(matrix.choice_values(name)) <= seen, f"{name}: never rendered"
    assert len(matrix.rejected_combinations()) >= 1
