"""Render tier: every combination of copier.yml renders, and the result is well formed.

One Copier run per combination (in parallel, see conftest.rendered_matrix); the checks
here are cheap and run per combination. Expensive checks (linters, compose validation,
the generated project's own tests) run once per distinct file in test_static.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

import matrix
from conftest import COMPUTED_FILE

COMBINATIONS = matrix.combinations()
IDS = [matrix.combo_id(a) for a in COMBINATIONS]
SERVICE_UID = 10001
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#")


def expected_files(answers: dict, package: str) -> set[str]:
    cf = "Containerfile" if answers["container_engine"] == "podman" else "Dockerfile"
    ignore = ".containerignore" if answers["container_engine"] == "podman" else ".dockerignore"
    return {
        COMPUTED_FILE,
        ".copier-answers.yml",
        ".compose-lint.yml",
        ".env.example",
        ".gitignore",
        ".pre-commit-config.yaml",
        "docs/security.md",
        "docs/update.md",
        ".github/workflows/ci.yml",
        ignore,
        "Makefile",
        "README.md",
        "compose.yaml",
        "ruff.toml",
        "config/dagster.yaml",
        "config/workspace.yaml",
        "platform/requirements.txt",
        "platform/requirements-core.txt",
        f"platform/webserver/{cf}",
        f"platform/daemon/{cf}",
        f"pipes/{cf}",
        "pipes/pyproject.toml",
        "pipes/requirements.txt",
        "pipes/recover_runs.py",
        *(f"pipes/src/{package}/{m}.py" for m in ("__init__", "assets", "jobs", "sensors", "definitions")),
        "pipes/tests/test_assets.py",
        "pipes/tests/test_definitions.py",
        "scripts/ensure_images.sh",
        "scripts/init_env.py",
        "scripts/wait_ready.py",
    }


def files_of(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def expected_base(answers: dict) -> str:
    py = answers["python_version"]
    return {
        "debian": f"docker.io/library/python:{py}-slim-{'trixie' if py == '3.13' else 'bookworm'}",
        "ubi": f"registry.access.redhat.com/ubi9/python-{py.replace('.', '')}",
        "alpine": f"docker.io/library/python:{py}-alpine3.22",
        "custom": answers.get("custom_base_image", matrix.questions()["custom_base_image"]["default"]),
    }[answers["base_image"]]


@pytest.fixture(params=range(len(COMBINATIONS)), ids=IDS)
def project(request, rendered_matrix):
    answers, path, error = rendered_matrix[IDS[request.param]]
    assert error is None, f"copier failed for {answers}: {error}"
    return answers, path


def test_combination(project):
    check_project(*project)


def check_project(answers: dict, root: Path) -> None:
    """The per-project render checks (also used by test_fuzz on generated answer sets)."""
    recorded = yaml.safe_load((root / ".copier-answers.yml").read_text())
    package = recorded["package_name"]

    # Copier recorded every answer, and none of the computed ones.
    for name, value in answers.items():
        assert recorded[name] == value, name
    assert "python_image" not in recorded and "containerfile" not in recorded
    assert recorded["_src_path"]

    # Exactly the expected files: nothing missing, no other engine's files, no partials.
    assert files_of(root) == expected_files(answers, package)

    # No Jinja left in any file; every structured file parses; the project's own pre-commit
    # hooks (end-of-file-fixer, trailing-whitespace, check-merge-conflict) would pass.
    for rel in files_of(root):
        text = (root / rel).read_text()
        assert not JINJA_LEFTOVER.search(text), f"leftover Jinja in {rel}"
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{rel} must end with one newline"
        assert not re.search(r"[ \t]$", text, re.M), f"trailing whitespace in {rel}"
        assert not re.search(r"^(<<<<<<< |=======$|>>>>>>> )", text, re.M), f"conflict marker in {rel}"
        if rel.endswith((".yml", ".yaml")):
            yaml.safe_load(text)
        elif rel.endswith(".toml"):
            tomllib.loads(text)
        elif rel.endswith(".json"):
            json.loads(text)

    check_images(answers, root, package)
    check_instance(answers, root)
    check_compose(answers, root, package)


def check_images(answers: dict, root: Path, package: str) -> None:
    cf = "Containerfile" if answers["container_engine"] == "podman" else "Dockerfile"
    for image, path in [
        ("webserver", f"platform/webserver/{cf}"),
        ("daemon", f"platform/daemon/{cf}"),
        ("pipes", f"pipes/{cf}"),
    ]:
        text = (root / path).read_text()
        assert f"ARG BASE_IMAGE={expected_base(answers)}\n" in text, path
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users[-1] == f"{SERVICE_UID}:{SERVICE_UID}", f"{path} must end as the service user"
        assert "HEALTHCHECK" in text and "python3 -m venv /opt/venv" in text
        assert f'io.dagster.launchpad.component="{image}"' in text
        assert f'io.dagster.version="{answers["dagster_version"]}"' in text
        assert "chmod 777" not in text
        # No configuration in any image: it is mounted at run time.
        assert not re.search(r"^COPY .*config/", text, re.M)
        # Secrets never pass through ARG or ENV; the private index arrives as a build secret.
        assert not re.search(r"^(ARG|ENV)\b.*(PASSWORD|TOKEN|SECRET|INDEX_URL)", text, re.M | re.I), path
        assert "RUN --mount=type=secret,id=pip_conf" in text, path
    pipes = (root / f"pipes/{cf}").read_text()
    bakes_code = f"COPY pipes/src/{package}/ /opt/dagster/app/{package}/" in pipes
    assert bakes_code == (answers["code_delivery"] == "image")

    libs = "0.{}.{}".format(
        int(answers["dagster_version"].split(".")[1]) + 16, answers["dagster_version"].split(".")[2]
    )
    # Every storage and launcher library is in every set: one image serves every config. The
    # core set, installed first by all three images (their shared layer), is in the other two.
    core = {
        line
        for line in (root / "platform/requirements-core.txt").read_text().splitlines()
        if line[:1].isalpha()
    }
    assert core == {
        f"dagster=={answers['dagster_version']}",
        f"dagster-postgres=={libs}",
        f"dagster-docker=={libs}",
        "sqlalchemy<2.1",
    }
    for cf_path in (f"pipes/{cf}", f"platform/webserver/{cf}", f"platform/daemon/{cf}"):
        first_install = (root / cf_path).read_text().split("pip install -r ", 1)[1].split()[0]
        assert first_install == "/opt/dagster/requirements-core.txt", (cf_path, first_install)
    for req in ("platform/requirements.txt", "pipes/requirements.txt"):
        lines = set((root / req).read_text().splitlines())
        assert f"dagster=={answers['dagster_version']}" in lines
        assert {f"dagster-postgres=={libs}", f"dagster-docker=={libs}", "sqlalchemy<2.1"} <= lines
    platform = (root / "platform/requirements.txt").read_text()
    assert f"dagster-webserver=={answers['dagster_version']}" in platform
    assert f"dagster-graphql=={answers['dagster_version']}" in platform
    assert "dagster-webserver" not in (root / "pipes/requirements.txt").read_text()


def check_instance(answers: dict, root: Path) -> None:
    instance = yaml.safe_load((root / "config/dagster.yaml").read_text())
    expected_storage = "sqlite" if answers["storage"] == "sqlite" else "postgres"
    assert list(instance["storage"]) == [expected_storage]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["run_coordinator"]["config"]["max_concurrent_runs"] >= 1
    launcher = {"code-server": "DefaultRunLauncher", "container": "DockerRunLauncher"}
    assert instance["run_launcher"]["class"] == launcher[answers["run_launcher"]]
    assert instance["run_monitoring"]["enabled"] is True
    assert instance["telemetry"]["enabled"] is False
    queue = instance["run_coordinator"]["config"]
    assert queue["max_user_code_failure_retries"] >= 1 and queue["user_code_failure_retry_delay"] >= 1
    if answers["run_launcher"] == "container":
        kwargs = instance["run_launcher"]["config"]["container_kwargs"]
        assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges:true"]
    workspace = yaml.safe_load((root / "config/workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "pipes"


def check_compose(answers: dict, root: Path, package: str) -> None:
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    services = compose["services"]
    expected = {"webserver", "daemon", "pipes"} | (
        {"postgres"} if answers["storage"] == "postgres" else set()
    )
    assert set(services) == expected
    for name in ("webserver", "daemon", "pipes"):
        assert services[name]["restart"] == "unless-stopped"
        assert "healthcheck" in services[name]
        assert "dagster-data:/var/lib/dagster" in services[name]["volumes"]
        assert "./config/dagster.yaml:/opt/dagster/home/dagster.yaml:ro,z" in services[name]["volumes"]
        has_workspace = (
            "./config/workspace.yaml:/opt/dagster/home/workspace.yaml:ro,z" in services[name]["volumes"]
        )
        assert has_workspace == (name != "pipes")
    # The UI is published on the chosen address only; nothing else is published.
    bind, port = (answers.get(q, matrix.questions()[q]["default"]) for q in ("ui_bind_address", "ui_port"))
    published = f"${{DAGSTER_UI_BIND:-{bind}}}:${{DAGSTER_UI_PORT:-{port}}}:3000"
    assert services["webserver"]["ports"] == [published]
    assert all("ports" not in s for n, s in services.items() if n != "webserver")
    # The engine socket goes to the services that launch or stop runs, and nowhere else.
    socket = [n for n, s in services.items() if any("docker.sock" in v for v in s.get("volumes", []))]
    assert sorted(socket) == (["daemon", "webserver"] if answers["run_launcher"] == "container" else [])
    mounts_code = any(f"/opt/dagster/app/{package}" in v for v in services["pipes"]["volumes"])
    assert mounts_code == (answers["code_delivery"] == "volume")
    # No secret value is written into the compose file.
    assert "change-me" not in (root / "compose.yaml").read_text()
    # Confinement: no capabilities, no privilege gain, fixed non-root users, read-only
    # platform services, resource ceilings; the build secret goes to the builds only.
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert "privileged" not in service and "mem_limit" in service and "cpus" in service, name
        assert service.get("read_only", False) is (name != "pipes"), name
        assert "secrets" not in service, f"{name} gets a runtime secret"
        if "build" in service:
            assert service["build"]["secrets"] == ["pip_conf"], name
    if "postgres" in services:
        assert services["postgres"]["user"] == "999:999"
    assert compose["secrets"] == {"pip_conf": {"file": "./secrets/pip.conf"}}
    # compose-lint's exceptions are few, scoped to services, and each carries its reason.
    rules = yaml.safe_load((root / ".compose-lint.yml").read_text())["rules"]
    expected_rules = {"CL-0004", "CL-0007"} | ({"CL-0019"} if "postgres" in services else set())
    if answers["run_launcher"] == "container":
        expected_rules.add("CL-0001")
    assert set(rules) == expected_rules
    for rule, config in rules.items():
        assert set(config) == {"exclude_services"}, rule
        assert all(isinstance(r, str) and len(r) > 40 for r in config["exclude_services"].values()), rule
    assert set(rules.get("CL-0001", {}).get("exclude_services", {})) <= {"webserver", "daemon"}


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
    for name in matrix.choice_questions():
        values = matrix.choice_values(name)
        seen = {a.get(name) for a in COMBINATIONS}
        assert set(values) <= seen, f"{name}: {set(values) - seen} never rendered"
    assert len(matrix.rejected_combinations()) >= 1
