"""One place per variant: what differs between engines and between storages is read in one place.

The facts of each engine and storage live in copier.yml's tables (`engines`, `storages`) and the
computed answers derived from them (`kube_play`, `fixed_macs`, `uses_postgres`,
`bundled_postgres`, `external_postgres`, `backup_method`, ...); the engines' prose and steps that
are not values live in one include per engine, template/_includes/engines/ENGINE.jinja, each with
the same macros. The rest of template/ reads those, never the answer's name: a new storage of an
existing kind is its table entry (and its docs line), a new engine its table entry and include.
"""

from __future__ import annotations

import re

import yaml

from launchpad_dev.common import ROOT

TEMPLATE = ROOT / "template"
ENGINE_INCLUDES = TEMPLATE / "_includes" / "engines"
# A Jinja expression or statement (or a path's part) comparing an engine, storage or UI access
# answer's value, or testing it against a list: engine == 'podman', storage != "sqlite", engine
# in [...], ui_access == 'login' (templates read the computed ui_login).
RAW = re.compile(r"\b(?:container_engine|engine|storage|ui_access)\s*(?:==|!=|\bin\s*[\[(])")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def raw_comparisons(text: str) -> list[str]:
    return [m.group(0) for block in JINJA.findall(text) for m in [RAW.search(block)] if m]


def test_raw_comparisons_are_found():
    """The check itself: it finds a comparison in an expression, a statement and a path."""
    assert raw_comparisons("{% if engine == 'podman' %}x{% endif %}")
    assert raw_comparisons("{{ 'a' if storage != 'sqlite' else 'b' }}")
    assert raw_comparisons("{%- if container_engine in ['docker'] %}")
    assert not raw_comparisons("{% if kube_play %}{{ engines[engine].socket }}{% endif %}")
    assert not raw_comparisons('exists = ("image",) if args.engine == "podman" else ()')


def test_no_engine_or_storage_name_is_compared_outside_its_place():
    found = []
    for path in sorted(TEMPLATE.rglob("*")):
        rel = path.relative_to(TEMPLATE)
        if path.is_relative_to(ENGINE_INCLUDES):
            continue
        found += [f"{rel} (its path): {c}" for c in raw_comparisons(str(rel))]
        if path.is_file() and path.suffix != ".lock":
            found += [f"{rel}: {c}" for c in raw_comparisons(path.read_text())]
    assert not found, "read the engines/storages tables' facts instead:\n" + "\n".join(found)


def test_every_engine_has_its_include_with_the_same_macros():
    engines = yaml.safe_load((ROOT / "copier.yml").read_text())["engines"]["default"]
    macros = {}
    for name in engines:
        include = ENGINE_INCLUDES / f"{name}.jinja"
        assert include.is_file(), f"engine {name} has no {include.relative_to(ROOT)}"
        macros[name] = sorted(re.findall(r"\{%-?\s*macro\s+(\w+)", include.read_text()))
    first, *others = macros
    for name in others:
        assert macros[name] == macros[first], (first, macros[first], name, macros[name])
    assert sorted(p.stem for p in ENGINE_INCLUDES.glob("*.jinja")) == sorted(engines)
