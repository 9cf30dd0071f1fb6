"""Fuzz tier: thousands of generated answer sets (hypothesis), each fed to Copier.

Every question of copier.yml gets, per answer set, either no answer (its default), one of
its valid values, or a hostile one: arbitrary Unicode (control characters, NUL, line
separators, surrogates), quotes, backslashes, Jinja delimiters, `../` and absolute paths,
shell metacharacters, very long strings, empty and blank strings, wrong types,
out-of-range numbers, malformed image references and addresses. code_locations (a YAML
list) gets lists of valid names (as a list, or as the YAML text `--data` gives), and hostile
ones: bad, reserved or duplicate names, hostile text among the names, empty or too long lists,
mappings, scalars and other YAML text. The property:

- either Copier refuses the set with the validator message of a question that can
  legitimately refuse it (one answered with a hostile value, a default derived from
  other answers, or a choice whose own validator rejects the combination), and nothing
  is rendered;
- or the project renders and passes the render tier's per-project checks
  (test_render.check_project) plus checks of the free-text answers it carries.

Either way nothing is written outside the destination: each set renders into a fresh
sandbox that must end up holding the destination only, nothing under the destination
may be or resolve outside it, and the working directory and the template snapshot stay
untouched. LAUNCHPAD_FUZZ_EXAMPLES sets the number of answer sets (default 2000); the
examples are derandomized, so every run feeds the same sets. With LAUNCHPAD_FUZZ_REPORT=FILE
the counts are also written to FILE as JSON (benchmarks/run.py --fuzz-long reads them).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import string
import tempfile
import time
import tomllib
import traceback
from collections import Counter
from pathlib import Path

import copier
import copier._main
import copier._template
import hypothesis
import hypothesis.configuration
import jinja2
import jinja2.lexer
import pytest
import yaml
from copier.errors import InvalidTypeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from launchpad_dev import fast_copier as fast_copier_module
from launchpad_dev import matrix
from launchpad_dev.common import CACHE, note
from test_answers import ALIAS_BOMB
from test_render import check_project

# Hypothesis keeps a Unicode table cache; keep it out of the working directory.
hypothesis.configuration.set_hypothesis_home_dir(CACHE / "hypothesis")

EXAMPLES = int(os.environ.get("LAUNCHPAD_FUZZ_EXAMPLES", "2000"))
REPORT = os.environ.get("LAUNCHPAD_FUZZ_REPORT")

ENV = matrix._env()
CONSTANTS = matrix._constants(ENV)
QUESTIONS = {name: spec for name, spec in matrix.questions().items() if not matrix._is_computed(spec)}
# (Their `type` is a Jinja expression in copier.yml, so they are known by their default.)
INT_QUESTIONS = {name for name, spec in QUESTIONS.items() if type(spec.get("default")) is int}
# Questions whose default is derived from other answers: when such a question is left
# unanswered, a hostile or unlucky earlier answer may make its default invalid.
DERIVED = {name for name, spec in QUESTIONS.items() if "{{" in str(spec.get("default", ""))}
RESERVED = set(CONSTANTS["python_reserved"]) | set(CONSTANTS["python_stdlib_clashes"]) | {"dagster"}
LOCATION_RESERVED = RESERVED | set(CONSTANTS["reserved_location_names"])
# Yes-or-no questions (their `type` is rendered: text other than yes/no is refused by name).
YES_NO_QUESTIONS = {"ui_open_without_login"}
# Questions answered in YAML (Copier parses a text answer; the validator gets the value).
YAML_QUESTIONS = {name for name, spec in QUESTIONS.items() if spec.get("type") == "yaml"}

# ------------------------------------------------------------------ valid values


choice_values = matrix.choice_values


TEXT_SAFE = string.ascii_letters + string.digits + " -_.,&()!?:;#@%+=/'*" + "éüßÅøñçΩЖ日本語データ🚀"
text_safe = st.text(TEXT_SAFE, max_size=60).map(str.strip)
lower_word = st.from_regex(r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*", fullmatch=True).filter(lambda s: len(s) < 30)
image_reference = st.builds(
    lambda registry, path, tag, digest: f"{registry}/{'/'.join(path)}{tag}{digest}",
    st.sampled_from(["docker.io", "registry.example.com", "localhost", "localhost:5000", "10.0.0.1:5000"]),
    st.lists(lower_word, min_size=1, max_size=3),
    st.one_of(st.just(""), st.from_regex(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"@sha256:[a-f0-9]{64}", fullmatch=True)),
)
MAX_LOCATIONS, MAX_LOCATION_NAME = matrix.code_location_limits()
location_name = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,7}(_[a-z0-9]{1,5}){0,3}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", fullmatch=True).filter(
        lambda s: len(s) <= MAX_LOCATION_NAME
    ),
).filter(lambda s: s not in LOCATION_RESERVED and not s.startswith("dagster_"))


def yaml_text(value) -> str:
    """The YAML text of a value, as `--data code_locations=...` gives it."""
    return yaml.safe_dump(value, default_flow_style=True).strip()


# Mostly one to three code locations (each renders a directory of its own), up to the most allowed.
location_lists = st.one_of(
    st.lists(location_name, min_size=1, max_size=3, unique=True),
    st.lists(location_name, min_size=1, max_size=MAX_LOCATIONS, unique=True),
)
# run_tag_limits: up to 5 {key, value, limit}, each key and value once.
tag_limit_lists = st.lists(
    st.builds(
        lambda key, value, limit: {"key": key, **({"value": value} if value else {}), "limit": limit},
        st.from_regex(r"([a-z][a-z0-9_.-]{0,10}/)?[a-zA-Z0-9_.-]{1,20}", fullmatch=True),
        st.one_of(
            st.just(""),
            st.from_regex(r"[A-Za-z0-9_.:@/-]([A-Za-z0-9_.:@/ -]{0,20}[A-Za-z0-9_.:@/-])?", fullmatch=True),
        ),
        st.integers(0, 1000),
    ),
    max_size=5,
    unique_by=lambda item: (item["key"], item.get("value")),
)
VALID = {
    "project_name": text_safe.filter(bool),
    "project_slug": st.from_regex(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True).filter(
        lambda s: "--" not in s
    ),
    # The first code location's default is the package's name: often one it accepts too.
    "package_name": st.one_of(
        location_name,
        st.from_regex(r"[a-z_][a-z0-9_]{0,39}", fullmatch=True).filter(
            lambda s: s not in RESERVED and not s.startswith("dagster_")
        ),
    ),
    "code_locations": st.one_of(location_lists, location_lists.map(yaml_text)),
    "project_description": st.text(TEXT_SAFE, max_size=200).map(str.strip),
    "custom_base_image": image_reference,
    "pipes_system_packages": st.lists(
        st.from_regex(r"[a-z0-9][a-z0-9.+~=:-]{0,20}", fullmatch=True), max_size=4
    ).map(" ".join),
    "max_concurrent_runs": st.one_of(st.integers(1, 100), st.integers(1, 100).map(str)),
    "run_retention_days": st.one_of(st.integers(0, 3650), st.integers(0, 3650).map(str)),
    "pool_default_limit": st.one_of(st.integers(0, 1000), st.integers(0, 1000).map(str)),
    "run_tag_limits": st.one_of(tag_limit_lists, tag_limit_lists.map(yaml_text)),
    "ui_port": st.one_of(st.integers(1024, 65535), st.integers(1024, 65535).map(str)),
    "ui_bind_address": st.lists(st.integers(0, 255), min_size=4, max_size=4).map(
        lambda parts: ".".join(map(str, parts))
    ),
    "ui_open_without_login": st.one_of(st.booleans(), st.sampled_from(["yes", "no", "true", "False", "on"])),
    "ui_domain": st.one_of(
        st.just(""), st.from_regex(r"([a-z][a-z0-9-]{0,10}[a-z0-9]\.){1,3}[a-z]{2,6}", fullmatch=True)
    ),
}

# ---------------------------------------------------------------- hostile values

NASTY = [
    "",
    " ",
    "  \t ",
    "\n",
    "\r\n",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\x9b",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u200b",
    "\u202e",
    "\ud800",
    "\udfff",
    "\ufffe",
    "\uffff",
    "\U0010ffff",
    "e\u0301",
    "{{ 7 * 7 }}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{% raw %}",
    "{#",
    "#}",
    "${{ secrets.X }}",
    "${HOME}",
    "$(id)",
    "`id`",
    "'",
    '"',
    "\\",
    "\\n",
    "../",
    "../../../etc/passwd",
    "/abs/path",
    "~/x",
    "..",
    ".",
    "C:\\Windows",
    "a b",
    "; rm -rf /",
    "&& id",
    "| sh",
    "> /tmp/x",
    "*",
    "-rf",
    "--x",
    "#",
    ": x",
    "- x",
    "!!python/object:os.system",
    "&a",
    "null",
    "~",
    "yes",
    "0x1F",
    "1e3",
    "NaN",
    "<script>",
    "💥",
    "日本語",
    "Ж",
    "ǅ",
    "İ",
    "ﬁ",
    # The security review's corpus (issue 29): parser directives of Dockerfiles, systemd
    # specifiers, more invisible and bidirectional characters.
    "syntax=docker.io/attacker/frontend",
    "# syntax=x",
    "escape=`",
    "Escape = none",
    "check=skip=all",
    "%h",
    "%%",
    "%n%i",
    "\u200d",
    "\u2066",
    "\u2069",
    "\u061c",
    "\u00ad",
]
nasty = st.sampled_from(NASTY)
hostile_text = st.one_of(
    st.text(),  # arbitrary Unicode, control characters included
    st.text("".join(sorted(set("".join(NASTY)))), max_size=12),  # their characters, shuffled
    st.lists(nasty, min_size=1, max_size=4).map("".join),
    st.builds(
        lambda chunk, n: chunk * n,
        st.sampled_from(["a", "é", "{{", "../", " ", "a-", "\x00"]),
        st.one_of(st.integers(61, 5000), st.integers(20_000, 40_000)),
    ),  # very long
)
wrong_type = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True)
)


def near(values: list[str]) -> st.SearchStrategy:
    """Valid values, slightly off: case, padding, embedded hostile text."""
    return st.builds(
        lambda v, how, extra: {
            "upper": v.upper(),
            "title": v.title(),
            "pad": f" {v} ",
            "newline": f"{v}\n",
            "prefix": extra + v,
            "suffix": v + extra,
            "middle": v[: len(v) // 2] + extra + v[len(v) // 2 :],
        }[how],
        st.sampled_from(values),
        st.sampled_from(["upper", "title", "pad", "newline", "prefix", "suffix", "middle"]),
        nasty,
    )


SPECIFIC = {
    "ui_open_without_login": st.sampled_from(
        ["maybe", "Yes ", "ja", "1", "0", "", "yes please", "null", "~"]
    ),
    "custom_base_image": st.one_of(
        near(["registry.example.com/platform/python:3.13", "localhost:5000/team/python"]),
        st.sampled_from(
            [
                "python:3.13-slim",
                "ubuntu",
                "Registry.example.com/python",
                "registry.example.com/Team/python",
                "registry.example.com/python:bad tag",
                "registry.example.com//python",
                "registry.example.com/",
                "registry.example.com/python:",
                "registry.example.com/python@sha256:abc",
                "registry.example.com/python@sha256:" + "a" * 63,
                "registry.example.com/../etc",
                "registry.example.com/python:" + "t" * 129,
                "registry.example.com/python:-tag",
                "localhost/" + "a" * 300,
                "/abs/path",
                "../python",
                "registry.example.com/python;id",
                "registry.example.com/{{ x }}",
                "https://registry.example.com/python",
            ]
        ),
        image_reference.map(lambda ref: ref + "\n"),
    ),
    "pipes_system_packages": st.one_of(
        near(["libpq5", "libpq5 unixodbc"]),
        st.sampled_from(
            [
                "curl; rm -rf /",
                "curl && id",
                "curl | sh",
                "$(id)",
                "`id`",
                "curl > /etc/x",
                "-y",
                "--allow-unauthenticated",
                "curl\nRUN id",
                "curl \\",
                "'curl'",
                "curl*",
                "a\tb",
                "curl#x",
            ]
        ),
    ),
    "ui_bind_address": st.one_of(
        near(["127.0.0.1", "0.0.0.0"]),
        st.sampled_from(
            [
                "256.0.0.1",
                "1.2.3",
                "1.2.3.4.5",
                "01.2.3.4",
                "::1",
                "[::1]",
                "localhost",
                "١٢٧.٠.٠.١",
                "0x7f.0.0.1",
                "127.0.0.1:80",
                "127.1",
                "1.2.3.-4",
                "1..2.3",
                "*",
            ]
        ),
        st.lists(st.integers(-5, 300), min_size=3, max_size=5).map(lambda p: ".".join(map(str, p))),
    ),
}
HOSTILE_INT = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1023, 65536, 101, 10**20, -(10**20)]),
    st.integers().map(str),
    st.sampled_from([" 3000", "3000 ", "3_000", "٣٠٠٠", "0x0BB8", "3e3", "3000.0", "+5", "05", "1/2"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


def yaml_parses(text: str) -> bool:
    """Whether YAML reads the text. Deeply nested text ("{{" repeated) exhausts PyYAML's
    recursive parser: a RecursionError, at a depth that depends on the caller's stack, so it
    counts as unreadable too (hypothesis replays a case from a different depth)."""
    try:
        yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return False
    return True


BAD_LOCATION_NAMES = [
    "1abc",
    "Sales",
    "a__b",
    "a-b",
    "x_",
    "_x",
    "a b",
    "a.b",
    "a" * (MAX_LOCATION_NAME + 1),
    "dagster_x",
    "",
    *sorted(n for n in LOCATION_RESERVED if isinstance(n, str)),
]
hostile_location = st.one_of(
    st.sampled_from(BAD_LOCATION_NAMES), hostile_text, wrong_type, near(["sales", "ml"])
)
hostile_location_list = st.one_of(
    # valid names with a hostile one among them
    st.builds(
        lambda names, bad, i: names[: i % (len(names) + 1)] + [bad] + names[i % (len(names) + 1) :],
        st.lists(location_name, max_size=5, unique=True),
        hostile_location,
        st.integers(0, 5),
    ),
    st.just([]),
    st.lists(location_name, min_size=MAX_LOCATIONS + 1, max_size=MAX_LOCATIONS + 4, unique=True),  # too many
    # a name twice
    st.builds(lambda names, i: names + [names[i % len(names)]], location_lists, st.integers(0, 9)),
)
HOSTILE_LOCATIONS = st.one_of(
    hostile_location_list,
    hostile_location_list.map(yaml_text),
    wrong_type,
    st.dictionaries(location_name, st.one_of(location_name, st.integers(), st.none()), max_size=2),
    st.dictionaries(location_name, location_name, min_size=1, max_size=2).map(yaml_text),
    # YAML anchors and aliases: a few hundred bytes that expand to millions of names once
    # printed (the review's 228 bytes became a 694 KB message).
    st.sampled_from([ALIAS_BOMB, "{a: " + ALIAS_BOMB + "}", "[&a x, *a, *a]"]),
    # Any other text YAML reads (a scalar, a mapping, a list). Text YAML cannot read, Copier
    # refuses with its YAML parser's message alone, which names no question: not fuzzed.
    hostile_text.filter(yaml_parses),
    location_name,  # one name, not a list of one
)


def hostile(name: str) -> st.SearchStrategy:
    if name in INT_QUESTIONS:
        return st.one_of(HOSTILE_INT, hostile_text)
    if name == "code_locations":
        return HOSTILE_LOCATIONS
    # Text questions: lists or mappings would only reach Copier through a data file, and
    # Copier's str() conversion refuses them without naming the question (see docs/testing.md).
    # A YAML question (run_tag_limits) gets only text YAML reads, as code_locations: Copier
    # refuses other text with its YAML parser's message alone, which names no question.
    text = hostile_text.filter(yaml_parses) if QUESTIONS[name].get("type") == "yaml" else hostile_text
    options = [text, wrong_type]
    if "choices" in QUESTIONS[name]:
        options.append(near([str(v) for v in choice_values(name)]))
        options.append(st.sampled_from(matrix.choice_labels(name)))  # the label, not the value
    if name in VALID and name not in YES_NO_QUESTIONS:
        options.append(near_valid(name))
    if name in SPECIFIC:
        options.append(SPECIFIC[name])
    return st.one_of(*options)


def near_valid(name: str) -> st.SearchStrategy:
    return st.builds(
        lambda v, extra, at_end: v + extra if at_end else extra + v, VALID[name], nasty, st.booleans()
    )


def valid(name: str) -> st.SearchStrategy:
    if "choices" in QUESTIONS[name]:
        return st.sampled_from(choice_values(name))
    return VALID[name]


@st.composite
def answer_sets(draw) -> tuple[dict, frozenset]:
    """(answers, the names answered with a hostile value)."""
    names = list(QUESTIONS)
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]))
    bad = set(draw(st.lists(st.sampled_from(names), min_size=count, max_size=count, unique=True)))
    answers = {}
    for name in names:
        if name in bad:
            answers[name] = draw(hostile(name))
        elif draw(st.booleans()):
            answers[name] = draw(valid(name))
    return answers, frozenset(bad)


# ----------------------------------------------------------------- the property


def cast(name: str, value):
    """The answer as Copier records it (for values it accepts)."""
    if name in INT_QUESTIONS:
        return int(value)
    if name == "ui_open_without_login":  # yes or no, as its rendered type reads them
        if isinstance(value, bool):
            return value
        words = {
            "yes": True,
            "true": True,
            "y": True,
            "on": True,
            "no": False,
            "false": False,
            "n": False,
            "off": False,
        }
        if isinstance(value, str) and value.lower() in words:
            return words[value.lower()]
        raise ValueError(f"not yes or no: {value!r}")  # refused by its validator
    if name in YAML_QUESTIONS:  # text is read as YAML (as Copier does); other values kept
        return yaml.safe_load(value) if isinstance(value, str) else value
    return value if isinstance(value, str) else str(value)


def expectations(answers: dict) -> tuple[dict, set[str], set[str]]:
    """(answers as recorded, questions that may refuse, questions not asked)."""
    context = dict(CONSTANTS)
    expected, may_refuse, hidden = {}, set(), set()
    for name, spec in QUESTIONS.items():
        given = name in answers
        try:
            value = cast(name, answers[name]) if given else matrix._render(ENV, spec.get("default"), context)
            if not given and name in YAML_QUESTIONS:
                value = yaml.safe_load(value)
        except Exception:  # a value that cannot be cast: Copier refuses it
            continue
        if not given and name in INT_QUESTIONS:
            value = int(value)
        if not given and name in DERIVED:
            may_refuse.add(name)
        if "choices" in spec:
            try:
                reasons = dict(matrix._choices(ENV, name, context))
            except jinja2.UndefinedError:  # its validator reads an earlier, invalid answer
                reasons = {value: "cannot be checked"}
            if reasons.get(value):
                may_refuse.add(name)
        context[name] = value
        try:
            asked = matrix._asked(ENV, spec, context)
        except jinja2.UndefinedError:  # its `when` reads an earlier, invalid answer (refused)
            may_refuse.add(name)
            hidden.add(name)
            continue
        if not asked:
            hidden.add(name)
        elif given or "choices" in spec:
            expected[name] = value
    # A bind address beyond this host needs ui_open_without_login answered yes (no default:
    # left unanswered, Copier says it is required), unless the login proxy fronts the UI.
    bind = context.get("ui_bind_address")
    if (
        isinstance(bind, str)
        and not bind.startswith("127.")
        and context.get("ui_access") != "login"
        and context.get("ui_open_without_login") is not True
    ):
        may_refuse.add("ui_open_without_login")
    # Valid names may still make a container and kube pod name <slug>-pipes-<name> longer than
    # a DNS label (63): code_locations refuses that.
    slug, locations = context.get("project_slug"), context.get("code_locations")
    if isinstance(slug, str) and isinstance(locations, list):
        if any(isinstance(n, str) and len(f"{slug}-pipes-{n}") > 63 for n in locations):
            may_refuse.add("code_locations")
    return expected, may_refuse, hidden


REFUSAL = [
    re.compile(r"\AValidation error for question '(\w+)': "),
    re.compile(r'\AQuestion "(\w+)" is required\Z'),
    re.compile(r"\AInvalid choice for '(\w+)': "),
    re.compile(r'\AInvalid answer "None" of type "<class \'NoneType\'>" to question "(\w+)" of type "\w+"\Z'),
]


def refusal_reason(question: str, error: Exception) -> str:
    """The validator's message without the answer it quotes: refusals grouped by reason."""
    text = str(error)
    for pattern in REFUSAL:
        text = pattern.sub("", text, count=1)
    text = re.sub(r"\(got .*\)\s*\Z", "(got ...)", text, flags=re.S)
    text = re.sub(r"'[^'\n]*' (is not|must)", r"'...' \1", text)
    text = re.sub(r"\s+", " ", text).strip()
    return f"{question}: {text[:160]}"


def refused_question(error: Exception) -> str | None:
    if not isinstance(error, ValueError | InvalidTypeError):
        return None
    for pattern in REFUSAL:
        if match := pattern.match(str(error)):
            return match.group(1)
    return None


def check_inside(sandbox: Path, dest: Path) -> None:
    """Nothing beside the destination; nothing under it is, or resolves, outside it."""
    assert {p.name for p in sandbox.iterdir()} <= {"dest"}, sorted(os.listdir(sandbox))
    assert sorted(os.listdir(sandbox.parent)) == sorted(["cwd", sandbox.name]), "written beside the sandbox"
    if not dest.exists():
        return
    root = dest.resolve()
    for path in dest.rglob("*"):
        assert not path.is_symlink(), f"symlink {path}"
        assert path.resolve().is_relative_to(root), f"{path} resolves outside the destination"


def check_carried(expected: dict, root: Path) -> None:
    """The free-text answers arrive where they belong, verbatim."""
    readme = (root / "README.md").read_text()
    if "project_name" in expected:
        assert readme.startswith(f"# {expected['project_name']}\n\n")
    locations = yaml.safe_load((root / ".copier-answers.yml").read_text())["code_locations"]
    if "project_description" in expected:
        description = expected["project_description"]
        if description:  # an empty one leaves no paragraph behind
            assert f"\n\n{description}\n\n" in readme
        for location in locations:
            pyproject = tomllib.loads((root / f"pipes/{location}/pyproject.toml").read_text())
            described = f"{description}: " if description else ""
            assert pyproject["project"]["description"] == f"{described}code location {location}"
    if "max_concurrent_runs" in expected:
        instance = yaml.safe_load((root / "config/dagster.yaml").read_text())
        assert instance["concurrency"]["runs"]["max_concurrent_runs"] == expected["max_concurrent_runs"]
    if "run_tag_limits" in expected:
        instance = yaml.safe_load((root / "config/dagster.yaml").read_text())
        assert instance["concurrency"]["runs"].get("tag_concurrency_limits", []) == expected["run_tag_limits"]
    env = (root / ".env.example").read_text().splitlines()
    if "ui_port" in expected:
        assert f"DAGSTER_UI_PORT={expected['ui_port']}" in env
    if "ui_bind_address" in expected:
        assert f"DAGSTER_UI_BIND={expected['ui_bind_address']}" in env
    packages = expected.get("pipes_system_packages", "").split()
    if packages:
        containerfile = "Containerfile" if expected["container_engine"] == "podman" else "Dockerfile"
        # Every code location's image is built from the one definition in pipes/launchpad_pipes/.
        assert " ".join(packages) in (root / "pipes/launchpad_pipes" / containerfile).read_text()


def test_fast_copier_fits_the_installed_copier():
    problems = fast_copier_module.unfit_patches()
    installed, pinned = importlib.metadata.version("copier"), fast_copier_module.pinned_copier()
    if installed != pinned:
        problems.insert(0, f"Copier {installed} is installed, but pyproject.toml pins copier=={pinned}")
    assert not problems, fast_copier_module.unfit_message(problems)


def test_fast_copier_renders_yield_paths_as_copier_does(tmp_path, monkeypatch):
    """A `{% yield %}` path (one directory per list item) renders the same with fast_copier as
    with Copier, run after run: the memoized compile still runs the extensions' preprocess
    hooks, where Copier's yield extension forgets the previous path's yield."""
    template = tmp_path / "template"
    item = template / "{% yield item from items %}{{ item }}{% endyield %}"
    item.mkdir(parents=True)
    (template / "copier.yml").write_text('items:\n  type: yaml\n  default: "[a]"\n')
    (item / "name.txt.jinja").write_text("{{ item }} of {{ items | join(',') }}\n")

    def rendered(run: str) -> dict:
        out = {}
        for items in (["a"], ["b", "c", "d"], ["e", "f"]):
            dest = tmp_path / run / "-".join(items)
            copier.run_copy(str(template), str(dest), data={"items": items}, defaults=True, quiet=True)
            files = {p.relative_to(dest).as_posix(): p.read_text() for p in dest.rglob("*.txt")}
            out["-".join(items)] = files
        return out

    expected = rendered("copier")
    assert expected["b-c-d"]["c/name.txt"] == "c of b,c,d\n", expected
    fast_copier_module.apply(monkeypatch.setattr)
    assert rendered("fast-1") == expected
    assert rendered("fast-2") == expected  # every path compiled before: all from the memo


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a rendered project: relative path -> (mode, content)."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def test_fast_copier_renders_the_template_as_copier_does(template_snapshot, tmp_path, monkeypatch):
    """Combinations spread over the matrix (and one with several code locations) render to the
    same files, modes and bytes with fast_copier as with Copier as shipped: its passed-through
    plain strings, parsed-once YAML answers and memoized compiles change nothing."""
    combos = matrix.combinations()
    picked = [*combos[:: max(1, len(combos) // 5)], matrix.multi_location_combinations()[0]]

    def render_all(name: str) -> list[dict]:
        out = []
        for i, answers in enumerate(picked):
            dest = tmp_path / name / str(i)
            copier.run_copy(str(template_snapshot), str(dest), data=answers, defaults=True, quiet=True)
            out.append(tree(dest))
        return out

    expected = render_all("copier")
    fast_copier_module.apply(monkeypatch.setattr)
    for run in ("fast-1", "fast-2"):  # the second one from the memos only
        got = render_all(run)
        for answers, want, have in zip(picked, expected, got, strict=True):
            differ = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
            assert not differ, f"{matrix.combo_id(answers)}: {run} differs in {differ[:10]}"


@pytest.fixture
def fast_copier(monkeypatch, template_snapshot):
    """Copier with fast_copier.apply's memoization (see launchpad_dev/fast_copier.py)."""
    if problems := fast_copier_module.unfit_patches():
        pytest.fail(fast_copier_module.unfit_message(problems), pytrace=False)
    assert not (template_snapshot / ".git").exists()
    fast_copier_module.apply(monkeypatch.setattr)


def listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (p.relative_to(root).as_posix(), p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
    )


def test_fuzzed_answers_are_refused_by_name_or_render_a_sound_project(
    template_snapshot, tmp_path_factory, fast_copier
):
    base = tmp_path_factory.mktemp("fuzz")
    cwd = base / "cwd"
    cwd.mkdir()
    snapshot_before = listing(template_snapshot)
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    locations: Counter[int] = Counter()  # rendered sets by their number of code locations

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(answer_sets())
    # Found by CI: a package named 'src' (the src/ layout's own name) rendered soundly, yet
    # the check counted the location's wheels and requirements among its code copies.
    @example(({"package_name": "src"}, frozenset({"package_name"})))
    def feed(case: tuple[dict, frozenset]) -> None:
        answers, bad = case
        hypothesis.note(f"hostile answers: {sorted(bad)}")
        expected, may_refuse, hidden = expectations(answers)
        sandbox = Path(tempfile.mkdtemp(dir=base))
        dest = sandbox / "dest"
        start = time.perf_counter()
        try:
            try:
                copier.run_copy(
                    str(template_snapshot), str(dest), data=answers, defaults=True, quiet=True, unsafe=False
                )
            except Exception as error:  # classified below: a refusal must name its question
                question = refused_question(error)
                detail = "".join(traceback.format_exception(error))
                assert question is not None, f"refused without naming a question:\n{detail}"
                assert question in bad | may_refuse, (
                    f"refused by '{question}', which was given a valid answer:\n{detail}"
                )
                # A validator quotes a short prefix of the refused value at most (20-40k
                # characters of text, or YAML aliases that expand once printed, stay out).
                if str(error).startswith("Validation error"):
                    assert len(str(error)) < 1000, (
                        f"a {len(str(error))}-character message: {str(error)[:300]}"
                    )
                assert not (dest / "compose.yaml").exists(), "refused, yet rendered"
                check_inside(sandbox, dest)
                outcomes[f"refused:{question}"] += 1
                reasons[refusal_reason(question, error)] += 1
                seconds["refused"] += time.perf_counter() - start
                return
            check_inside(sandbox, dest)
            recorded = yaml.safe_load((dest / ".copier-answers.yml").read_text())
            assert not hidden & set(recorded), "an answer to a question that was not asked is recorded"
            check_project(expected, dest)
            check_carried(expected, dest)
            locations[len(recorded["code_locations"])] += 1
            outcomes["rendered" if not bad else "rendered (hostile answer accepted)"] += 1
            seconds["rendered"] += time.perf_counter() - start
        finally:
            shutil.rmtree(sandbox, ignore_errors=True)

    with contextlib.chdir(cwd):
        feed()

    assert listing(template_snapshot) == snapshot_before, "the template snapshot was modified"
    assert not any(cwd.iterdir()), f"files written to the working directory: {sorted(os.listdir(cwd))}"
    assert sorted(p.name for p in base.iterdir()) == ["cwd"], "files left beside the sandboxes"
    rendered = outcomes["rendered"] + outcomes["rendered (hostile answer accepted)"]
    refused = {k.split(":", 1)[1]: v for k, v in sorted(outcomes.items()) if k.startswith("refused:")}
    note(
        "fuzz",
        f"{sum(outcomes.values())} answer sets: {rendered} rendered and checked "
        f"({outcomes['rendered (hostile answer accepted)']} with a hostile-looking answer accepted), "
        f"{sum(refused.values())} refused by a validator "
        f"({', '.join(f'{k} {v}' for k, v in refused.items())}); "
        f"{sum(v for k, v in locations.items() if k > 1)} of the rendered with several code locations "
        f"(up to {max(locations, default=0)}); "
        f"{seconds['rendered'] / max(rendered, 1):.2f} s per rendered set, "
        f"{seconds['refused'] / max(sum(refused.values()), 1):.2f} s per refused set",
    )
    if REPORT:
        counts = {
            "answer_sets": sum(outcomes.values()),
            "rendered": rendered,
            "rendered_hostile_accepted": outcomes["rendered (hostile answer accepted)"],
            "refused": sum(refused.values()),
            "refused_by_question": refused,
            "refused_by_reason": dict(reasons.most_common()),
            "rendered_by_code_locations": {str(k): v for k, v in sorted(locations.items())},
            "seconds_per_rendered": round(seconds["rendered"] / max(rendered, 1), 3),
            "seconds_per_refused": round(seconds["refused"] / max(sum(refused.values()), 1), 3),
        }
        Path(REPORT).write_text(json.dumps(counts, indent=2) + "\n")
    assert rendered and refused
