"""Answers: defaults render through pytest-copie, and invalid answers fail loudly.

Each invalid answer must be refused by the question's own validator, with a message
that names the question and says why, and nothing may be rendered.
"""

from __future__ import annotations

import re
import sys

import copier
import pytest
import yaml

from launchpad_dev import matrix
from launchpad_dev.common import run

# code_locations' limits, as its validator states them: how many names, how long each.
MAX_LOCATIONS, MAX_LOCATION_NAME = matrix.code_location_limits()

INVALID = [
    # (answers, question, words the message must contain)
    ({"project_name": "   "}, "project_name", "must not be empty"),
    ({"project_name": 'Team "A"'}, "project_name", "quotes"),
    ({"project_name": "x" * 61}, "project_name", "at most 60"),
    ({"project_name": "Team A "}, "project_name", "start or end with whitespace"),
    ({"project_name": "Team\x85A"}, "project_name", "control characters"),
    ({"project_name": "Team\u2028A"}, "project_name", "line separators"),
    ({"project_description": "Data\ud800"}, "project_description", "control characters"),
    # Invisible and bidirectional control characters: text that looks like other text.
    ({"project_name": "Team\u202eA"}, "project_name", "bidirectional control characters"),
    ({"project_name": "Team\u2066A\u2069"}, "project_name", "bidirectional control characters"),
    ({"project_name": "Team\u200bA"}, "project_name", "invisible"),
    ({"project_name": "Team\u200dA"}, "project_name", "invisible"),
    ({"project_name": "\ufeffTeam"}, "project_name", "invisible"),
    (
        {"project_description": "Data\u200e platform"},
        "project_description",
        "bidirectional control characters",
    ),
    ({"project_description": " Data platform"}, "project_description", "start or end with whitespace"),
    ({"project_slug": "My-Project"}, "project_slug", "DNS label"),
    ({"project_slug": "9lives"}, "project_slug", "DNS label"),
    ({"project_slug": "team--a"}, "project_slug", "'--'"),
    ({"project_slug": "a" * 41}, "project_slug", "at most 40"),
    ({"package_name": "1pipes"}, "package_name", "Python identifier"),
    ({"package_name": "my-pipes"}, "package_name", "Python identifier"),
    ({"package_name": "class"}, "package_name", "keyword"),
    ({"package_name": "dagster"}, "package_name", "shadow the dagster package"),
    ({"package_name": "dagster_postgres"}, "package_name", "shadow the dagster package"),
    ({"package_name": "json"}, "package_name", "shadows a standard-library"),
    ({"container_engine": "lxc"}, "container_engine", "not in"),
    (
        {"base_image": "custom", "custom_base_image": "python:3.13-slim"},
        "custom_base_image",
        "not fully qualified",
    ),
    ({"base_image": "custom", "custom_base_image": "ubuntu"}, "custom_base_image", "not fully qualified"),
    (
        {"base_image": "custom", "custom_base_image": "registry.example.com/Team/python:3.13"},
        "custom_base_image",
        "not a valid image reference",
    ),
    (
        {"base_image": "custom", "custom_base_image": "registry.example.com/python:bad tag"},
        "custom_base_image",
        "not a valid image reference",
    ),
    (
        {"base_image": "custom", "custom_base_image": "registry.example.com/" + "a" * 240 + ":3.13"},
        "custom_base_image",
        "at most 255 characters",
    ),
    ({"base_image": "custom", "custom_package_manager": "yum"}, "custom_package_manager", "not in"),
    (
        {"base_image": "ubi", "python_version": "3.13"},
        "python_version",
        "the ubi base image offers Python 3.11 and 3.12 only",
    ),
    ({"python_version": "3.10"}, "python_version", "not in"),
    ({"pipes_system_packages": "curl; rm -rf /"}, "pipes_system_packages", "package names"),
    ({"pipes_system_packages": "libpq5\x85"}, "pipes_system_packages", "package names"),
    # code_locations: a YAML list (given as a list, or as its YAML text, e.g. --data) of 1 to
    # 10 unique names, each a lowercase package name nothing else in the stack or Python owns.
    ({"code_locations": "sales"}, "code_locations", "must be a YAML list of names"),
    ({"code_locations": {"sales": "pipes"}}, "code_locations", "must be a YAML list of names"),
    ({"code_locations": "{sales: pipes}"}, "code_locations", "must be a YAML list of names"),
    ({"code_locations": 3}, "code_locations", "must be a YAML list of names"),
    ({"code_locations": []}, "code_locations", "must name at least one code location"),
    ({"code_locations": "[]"}, "code_locations", "must name at least one code location"),
    (
        {"code_locations": [f"loc{i}" for i in range(MAX_LOCATIONS + 1)]},
        "code_locations",
        f"at most {MAX_LOCATIONS} code locations (got {MAX_LOCATIONS + 1})",
    ),
    ({"code_locations": ["sales", "1abc"]}, "code_locations", "'1abc' is not a code location name"),
    ({"code_locations": ["Sales"]}, "code_locations", "'Sales' is not a code location name"),
    ({"code_locations": ["a__b"]}, "code_locations", "'a__b' is not a code location name"),
    ({"code_locations": ["a-b"]}, "code_locations", "'a-b' is not a code location name"),
    ({"code_locations": ["x_"]}, "code_locations", "'x_' is not a code location name"),
    (
        {"code_locations": ["a" * (MAX_LOCATION_NAME + 1)]},
        "code_locations",
        f"at most {MAX_LOCATION_NAME} characters",
    ),
    ({"code_locations": [7]}, "code_locations", "'7' is not a code location name"),
    # The kube pod (and container) <slug>-pipes-<name> is a host name: a DNS label, <= 63.
    (
        {
            "project_slug": "acme-data-platform-production",
            "code_locations": ["customer_lifetime_value_models"],
        },
        "code_locations",
        "'acme-data-platform-production-pipes-customer-lifetime-value-models' 66 characters long",
    ),
    ({"project_slug": "a" * 40, "code_locations": ["b" * 17]}, "code_locations", "a DNS label of at most 63"),
    ({"code_locations": "[sales, class]"}, "code_locations", "'class' is a Python keyword"),
    ({"code_locations": ["dagster"]}, "code_locations", "'dagster' would shadow the dagster package"),
    ({"code_locations": ["dagster_x"]}, "code_locations", "'dagster_x' would shadow the dagster package"),
    ({"code_locations": ["json"]}, "code_locations", "'json' shadows a standard-library"),
    ({"code_locations": ["webserver"]}, "code_locations", "'webserver' is taken by the stack"),
    ({"code_locations": ["sales", "pipes"]}, "code_locations", "'pipes' is taken by the stack"),
    # The package every code location shares (pipes/launchpad_pipes/) is no location.
    ({"code_locations": ["sales", "launchpad_pipes"]}, "code_locations", "'launchpad_pipes' is taken"),
    ({"code_locations": ["a", "a"]}, "code_locations", "'a' is named twice"),
    ({"code_delivery": "git"}, "code_delivery", "not in"),
    ({"storage": "mysql"}, "storage", "not in"),
    ({"run_launcher": "k8s"}, "run_launcher", "not in"),
    ({"max_concurrent_runs": 0}, "max_concurrent_runs", "between 1 and 100"),
    ({"max_concurrent_runs": "four"}, "max_concurrent_runs", "whole number"),
    (
        {"pool_default_limit": -1},
        "pool_default_limit",
        "between 0 (no default: pools are unlimited) and 1000",
    ),
    ({"pool_default_limit": 1001}, "pool_default_limit", "between 0 (no default"),
    ({"pool_default_limit": "two"}, "pool_default_limit", "whole number, 0 for no default"),
    ({"run_tag_limits": "source=crm"}, "run_tag_limits", "must be a YAML list of {key, value, limit}"),
    ({"run_tag_limits": {"key": "source", "limit": 2}}, "run_tag_limits", "must be a YAML list"),
    ({"run_tag_limits": ["source"]}, "run_tag_limits", "item 1 is not a mapping"),
    ({"run_tag_limits": [{"key": "source"}]}, "run_tag_limits", "item 1: limit must be a whole number"),
    ({"run_tag_limits": [{"key": "source", "limit": 2.5}]}, "run_tag_limits", "limit must be a whole number"),
    (
        {"run_tag_limits": [{"key": "source", "limit": True}]},
        "run_tag_limits",
        "limit must be a whole number",
    ),
    ({"run_tag_limits": [{"key": "source", "limit": 1001}]}, "run_tag_limits", "between 0 and 1000"),
    ({"run_tag_limits": [{"key": "a b", "limit": 1}]}, "run_tag_limits", "key must be a tag name"),
    (
        {"run_tag_limits": [{"key": "source", "value": 'crm"', "limit": 1}]},
        "run_tag_limits",
        "value must be text",
    ),
    (
        {"run_tag_limits": [{"key": "source", "value": None, "limit": 1}]},
        "run_tag_limits",
        "value must be text",
    ),
    (
        {"run_tag_limits": [{"key": "source", "lmit": 1}]},
        "run_tag_limits",
        "keys other than key, value and limit",
    ),
    (
        {"run_tag_limits": "[{key: source, value: crm, limit: 1}, {key: source, value: crm, limit: 2}]"},
        "run_tag_limits",
        "item 2 repeats the limit of source=crm",
    ),
    ({"run_tag_limits": [{"key": f"k{i}", "limit": 1} for i in range(21)]}, "run_tag_limits", "at most 20"),
    ({"run_retention_days": -1}, "run_retention_days", "between 0 (keep every run) and 3650"),
    ({"run_retention_days": 3651}, "run_retention_days", "between 0 (keep every run) and 3650"),
    ({"run_retention_days": "30d"}, "run_retention_days", "whole number of days"),
    ({"run_retention_days": 7.5}, "run_retention_days", "whole number of days"),
    ({"run_retention_days": None}, "run_retention_days", "whole number of days"),
    ({"dagster_version": "1.13.29"}, "dagster_version", "not in"),
    ({"ui_port": 80}, "ui_port", "between 1024 and 65535"),
    ({"ui_port": 70000}, "ui_port", "between 1024 and 65535"),
    ({"ui_port": "abc"}, "ui_port", "whole number"),
    ({"ui_port": "{{ 3000 }}"}, "ui_port", "whole number"),
    ({"ui_port": 3000.5}, "ui_port", "whole number"),
    ({"ui_port": None}, "ui_port", "whole number"),
    ({"ui_bind_address": "localhost"}, "ui_bind_address", "IPv4 address"),
    ({"ui_bind_address": "10.0.0.256"}, "ui_bind_address", "IPv4 address"),
    ({"ui_access": "sso"}, "ui_access", "not in"),
    ({"ui_access": "login", "ui_domain": "Dagster.Example.com"}, "ui_domain", "fully qualified domain"),
    ({"ui_access": "login", "ui_domain": "localhost"}, "ui_domain", "fully qualified domain"),
    ({"ui_access": "login", "ui_domain": "a b.example.com"}, "ui_domain", "fully qualified domain"),
]


@pytest.mark.parametrize(
    ("answers", "question", "words"), INVALID, ids=[f"{q}-{i}" for i, (_, q, _) in enumerate(INVALID)]
)
def test_invalid_answer_is_refused_with_the_validators_message(
    answers, question, words, template_snapshot, tmp_path
):
    with pytest.raises(ValueError) as caught:
        copier.run_copy(str(template_snapshot), tmp_path / "out", data=answers, defaults=True, quiet=True)
    message = str(caught.value)
    assert f"'{question}'" in message, message
    assert words in message, message
    assert not (tmp_path / "out" / "compose.yaml").exists()


COMPUTED = [name for name, spec in matrix.questions().items() if spec.get("when") is False]


@pytest.mark.parametrize("name", COMPUTED)
def test_a_computed_answer_given_as_data_is_refused(name, template_snapshot, tmp_path):
    """Computed answers (`when: false`) are the template's, not the user's: `--data
    service_uid=0` rendered `USER 0:0`, and `image_registry=localhost$(shell touch PWNED)` ran a
    command at `make helm-values`. Each one given as data is refused by name."""
    with pytest.raises(ValueError) as caught:
        copier.run_copy(str(template_snapshot), tmp_path / "out", data={name: "0"}, defaults=True, quiet=True)
    message = str(caught.value)
    assert f"'{name}'" in message and "not an answer" in message, message
    assert not (tmp_path / "out" / "compose.yaml").exists()


def test_the_reviews_computed_overrides_are_refused_on_the_command_line(template_snapshot, tmp_path):
    for data in (["service_uid=0", "postgres_uid=0"], ["image_registry=localhost$(shell touch PWNED)"]):
        argv = [sys.executable, "-m", "copier", "copy", "--defaults"]
        for item in data:
            argv += ["--data", item]
        result = run([*argv, str(template_snapshot), str(tmp_path / "out")], cwd=tmp_path)
        assert result.returncode != 0, result.stdout
        assert "not an answer" in result.stdout, result.stdout
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        assert not list(tmp_path.rglob("PWNED"))


def nested_aliases(levels: int) -> str:
    """YAML of `levels` lists of 9 aliases each to the list before (one flow list of them): a
    few hundred bytes that expand to 9**levels items once printed (what a data file with
    anchors hands Copier). The fuzz tier feeds it too."""
    lists = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lists += [f"&l{level} [{', '.join([f'*l{level - 1}'] * 9)}]" for level in range(1, levels)]
    return f"[{', '.join(lists)}]"


ALIAS_BOMB = nested_aliases(6)  # printed in full: 9**6 items, about 3 MB


@pytest.mark.parametrize(
    "question",
    [
        "code_locations",
        "max_concurrent_runs",
        "run_retention_days",
        "pool_default_limit",
        "run_tag_limits",
        "ui_port",
    ],
)
def test_a_refusal_quotes_no_expanded_aliases_and_no_long_value(question, template_snapshot, tmp_path):
    """A refused value is quoted by a short prefix at most, and a YAML structure (whose aliases
    would expand exponentially once printed) is named by its kind: the message stays short."""
    bomb = yaml.safe_load(ALIAS_BOMB)
    long_text = "9" * 30_000 + "x"
    for value in (bomb, {"a": bomb}, [bomb], long_text):
        if question == "code_locations" and value is long_text:
            value = [long_text]
        with pytest.raises(ValueError) as caught:
            copier.run_copy(
                str(template_snapshot), tmp_path / "out", data={question: value}, defaults=True, quiet=True
            )
        message = str(caught.value)
        assert f"'{question}'" in message, message[:300]
        assert len(message) < 600, f"{len(message)} characters: {message[:300]}"
    # The YAML text itself, as --data gives it (code_locations reads YAML).
    with pytest.raises(ValueError) as caught:
        copier.run_copy(
            str(template_snapshot),
            tmp_path / "out",
            data={"code_locations": ALIAS_BOMB},
            defaults=True,
            quiet=True,
        )
    assert len(str(caught.value)) < 600 and "'code_locations'" in str(caught.value), str(caught.value)[:300]
    assert not (tmp_path / "out" / "compose.yaml").exists()


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.10"])
def test_a_ui_beyond_this_host_needs_its_own_yes(bind, template_snapshot, tmp_path):
    """Dagster OSS has no login: a bind address beyond loopback renders only with
    ui_open_without_login answered yes; --defaults alone stops and names the question, and no
    is refused with the way out."""
    base = {"ui_bind_address": bind}
    with pytest.raises(ValueError, match=r'Question "ui_open_without_login" is required'):
        copier.run_copy(str(template_snapshot), tmp_path / "a", data=base, defaults=True, quiet=True)
    with pytest.raises(ValueError) as caught:
        copier.run_copy(
            str(template_snapshot), tmp_path / "b", data={**base, "ui_open_without_login": False},
            defaults=True, quiet=True,
        )  # fmt: skip
    message = str(caught.value)
    assert "'ui_open_without_login'" in message and "open to the network without a login" in message
    assert "ui_bind_address=127.0.0.1" in message, message
    assert not (tmp_path / "a" / "compose.yaml").exists() and not (tmp_path / "b" / "compose.yaml").exists()
    root = tmp_path / "c"
    copier.run_copy(
        str(template_snapshot), root, data={**base, "ui_open_without_login": True}, defaults=True, quiet=True
    )
    security = (root / "docs/security.md").read_text()
    assert f"bound to {bind}, it is open without a login" in security
    # On this host only, the question is not asked (nor recorded).
    copier.run_copy(str(template_snapshot), tmp_path / "d", defaults=True, quiet=True)
    assert "ui_open_without_login" not in (tmp_path / "d/.copier-answers.yml").read_text()


@pytest.mark.parametrize("bind", [None, "192.168.1.10"])
def test_behind_the_login_proxy_a_ui_beyond_this_host_needs_no_extra_yes(bind, template_snapshot, tmp_path):
    """With ui_access=login the proxy is the one service published (on every interface by
    default), the question of an open UI is not asked, and the webserver publishes nothing."""
    data = {"ui_access": "login", **({"ui_bind_address": bind} if bind else {})}
    root = tmp_path / "login"
    copier.run_copy(str(template_snapshot), root, data=data, defaults=True, quiet=True)
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    assert "ui_open_without_login" not in answers
    assert answers["ui_bind_address"] == (bind or "0.0.0.0")
    services = yaml.safe_load((root / "compose.yaml").read_text())["services"]
    # (and the metrics endpoint, on the loopback address: test_render.py)
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy", "metrics"]
    assert services["metrics"]["ports"][0].startswith("${DAGSTER_METRICS_BIND:-127.0.0.1}:")
    assert "--read-only" in services["webserver-viewer"]["command"]
    assert (root / "config/Caddyfile").exists() and (root / "scripts/ui_users.py").exists()
    # The local default has none of it.
    copier.run_copy(str(template_snapshot), tmp_path / "local", defaults=True, quiet=True)
    assert not (tmp_path / "local/config/Caddyfile").exists()
    assert "proxy" not in yaml.safe_load((tmp_path / "local/compose.yaml").read_text())["services"]


def systemd_unescape(value: str) -> str:
    """A unit setting as systemd shows it: `%%` is `%`, any other `%X` a specifier it expands
    (left as `<%X>` here, so that the comparison below sees it)."""
    return re.sub(r"%(.)", lambda m: "%" if m[1] == "%" else f"<%{m[1]}>", value)


def test_a_percent_in_the_name_reaches_systemd_as_itself(template_snapshot, tmp_path):
    """systemd expands specifiers in the Quadlet unit's Description (`%h`: a home directory):
    the project's name is written there with `%` escaped."""
    name = "100% Data %h"
    root = tmp_path / "out"
    copier.run_copy(
        str(template_snapshot), root, data={"project_name": name, "container_engine": "podman"},
        defaults=True, quiet=True,
    )  # fmt: skip
    (unit,) = (root / "kube").glob("*.kube")
    (description,) = [line for line in unit.read_text().splitlines() if line.startswith("Description=")]
    assert systemd_unescape(description.removeprefix("Description=")).startswith(f"{name}: Dagster"), (
        description
    )


def test_cli_prints_the_reason_and_fails(template_snapshot, tmp_path):
    copier_cli = [sys.executable, "-m", "copier"]
    result = run(
        [
            *copier_cli,
            "copy",
            "--defaults",
            "--data",
            "ui_port=80",
            str(template_snapshot),
            str(tmp_path / "out"),
        ]
    )
    assert result.returncode != 0
    assert "ui_port" in result.stdout and "between 1024 and 65535" in result.stdout
    assert not (tmp_path / "out" / "compose.yaml").exists()


def test_boundary_answers_are_accepted(template_snapshot, tmp_path):
    answers = {
        "project_name": "Ünïcode & Co. Data Platform (EU)",
        "project_slug": "a" * 40,
        "package_name": "_" + "a" * 39,
        # The default (the package's name) is no code location name here: name one, the longest
        # with this slug (<slug>-pipes-<name>, a host name, is at most 63 characters).
        "code_locations": ["z" + "a" * (63 - 40 - len("-pipes-") - 1)],
        "ui_port": 65535,
        "ui_bind_address": "0.0.0.0",
        "ui_open_without_login": True,
        "max_concurrent_runs": 100,
        "run_retention_days": 3650,
        "pool_default_limit": 1000,
        "run_tag_limits": [
            {"key": "a" * 63 + "/" + "b" * 63, "value": "x" * 100, "limit": 1000},
            {"key": "source", "limit": 0},
        ]
        + [{"key": f"k{i}", "limit": 1} for i in range(18)],
        "base_image": "custom",
        "custom_base_image": "localhost:5000/team/python-base:3.13@sha256:" + "a" * 64,
        "custom_package_manager": "microdnf",
        "pipes_system_packages": "libpq5 unixodbc-dev",
    }
    copier.run_copy(str(template_snapshot), tmp_path / "out", data=answers, defaults=True, quiet=True)
    recorded = yaml.safe_load((tmp_path / "out/.copier-answers.yml").read_text())
    assert {k: recorded[k] for k in answers} == answers
    pipes = (tmp_path / "out/pipes/launchpad_pipes/Containerfile").read_text()
    assert "microdnf install -y --nodocs libpq5 unixodbc-dev" in pipes
    assert f"ARG BASE_IMAGE={answers['custom_base_image']}" in pipes


# The most code locations the question takes (ten), the longest name among them.
TEN_LOCATIONS = [
    "a" + "b" * (MAX_LOCATION_NAME - 1),
    "sales",
    "ml2",
    "a1_b2_c3",
    "x",
    "eu_sales",
    "finance",
    "hr",
]
TEN_LOCATIONS += [f"more{i}" for i in range(MAX_LOCATIONS - len(TEN_LOCATIONS))]


@pytest.mark.parametrize("given", [TEN_LOCATIONS, "[" + ", ".join(TEN_LOCATIONS) + "]"], ids=["list", "yaml"])
def test_ten_code_locations_are_accepted(given, template_snapshot, tmp_path):
    """Ten names (the limit; the longest name allowed among them), given as a list or as YAML
    text (as `--data` gives it): each gets its directory, compose service and workspace entry,
    in the order given."""
    copier.run_copy(
        str(template_snapshot), tmp_path / "out", data={"code_locations": given}, defaults=True, quiet=True
    )
    out = tmp_path / "out"
    recorded = yaml.safe_load((out / ".copier-answers.yml").read_text())
    assert recorded["code_locations"] == TEN_LOCATIONS
    # Each location's directory, and the package that they share.
    folders = sorted(p.name for p in (out / "pipes").iterdir() if p.is_dir())
    assert folders == sorted([*TEN_LOCATIONS, "launchpad_pipes"])
    for name in TEN_LOCATIONS:
        assert (out / f"pipes/{name}/src/{name}/definitions.py").is_file(), name
    workspace = yaml.safe_load((out / "config/workspace.yaml").read_text())
    assert [e["grpc_server"]["location_name"] for e in workspace["load_from"]] == TEN_LOCATIONS
    services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    assert {f"pipes-{name.replace('_', '-')}" for name in TEN_LOCATIONS} <= set(services)


def test_defaults_render_with_pytest_copie_from_git(copie):
    """The default answers, through pytest-copie (a real `copier copy` of this checkout)."""
    result = copie.copy()
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    recorded = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    assert recorded["_src_path"] and recorded["_commit"]
    assert recorded["container_engine"] == "podman" and recorded["storage"] == "postgres"
    assert recorded["code_locations"] == [recorded["package_name"]]
    location = recorded["package_name"]
    assert (result.project_dir / f"pipes/{location}/src/{location}/definitions.py").is_file()
    assert (result.project_dir / "pipes/launchpad_pipes/Containerfile").is_file()
    assert "DAGSTER_PG_PASSWORD" not in (result.project_dir / ".copier-answers.yml").read_text()
