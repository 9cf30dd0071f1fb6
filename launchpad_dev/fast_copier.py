"""fast_copier: Copier rendering the same template many times, several times faster.

Used by the fuzz tier (2000 answer sets) and by the render tier's matrix (every combination).
The build, run, update and README tiers render with Copier as shipped.
"""

from __future__ import annotations

import copy
import inspect
import pkgutil
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import copier._jinja_ext
import copier._main
import copier._template
import copier._user_data
import jinja2
import jinja2.lexer

from launchpad_dev import matrix

# fast_copier patches private functions of Copier (copier._template, copier._main), and Jinja's
# Environment.compile: Copier has no public way to reuse its parsed copier.yml, its compiled
# templates or to skip its git probes, and 2000 runs need all three. Private functions may
# change in any release, so the patch is written for the Copier that pyproject.toml pins, and
# checked: test_fast_copier_fits_the_installed_copier fails on any other Copier version, and it
# and the fixture fail when a patched function is missing or its signature is not the one below.
# On a Copier upgrade, read these functions again in the new release, adapt fast_copier and
# PATCHED to them, then bump the pin in pyproject.toml.
PATCHED = {  # what fast_copier replaces -> the signature its replacement has (no annotations)
    "copier._template:load_template_config": "(conf_path, quiet=False)",
    "copier._template:is_git_available": "()",
    "copier._main:is_git_available": "()",
    "jinja2:Environment.compile": "(self, source, name=None, filename=None, raw=False, defer_init=False)",
    "copier._main:Worker._render_string": "(self, string, extra_context=None)",
    "copier._main:Worker.answers_relpath.fget": "(self)",
    "copier._user_data:parse_yaml_string": "(string)",
}


def pinned_copier() -> str:
    """The Copier version pyproject.toml pins for the tests (copier==X in the test extra)."""
    pyproject = tomllib.loads((matrix.ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["optional-dependencies"]["test"]
    pins = [pin[1] for dep in deps if (pin := re.fullmatch(r"copier\s*==\s*(\S+)", dep))]
    assert len(pins) == 1, f"pyproject.toml's test extra pins copier (copier==X) not exactly once: {deps}"
    return pins[0]


def bare_signature(function) -> str:
    """The signature without annotations: the parameters' names, kinds and defaults."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def unfit_patches() -> list[str]:
    """Each patched function that is missing, or whose signature is not the one fast_copier expects."""
    problems = []
    for target, expected in PATCHED.items():
        try:
            found = bare_signature(pkgutil.resolve_name(target))
        except (ImportError, AttributeError) as exc:
            problems.append(f"{target} is missing ({exc})")
            continue
        if found != expected:
            problems.append(f"{target}{found}, but fast_copier expects {target}{expected}")
    return problems


def unfit_message(problems: list[str]) -> str:
    return "\n".join(
        [
            "fast_copier patches private Copier functions (PATCHED in launchpad_dev/fast_copier.py) for the "
            "pinned Copier only. On a Copier upgrade, re-check those functions in the new release, "
            "adapt fast_copier and PATCHED, and bump the copier pin in pyproject.toml.",
            *(f"- {problem}" for problem in problems),
        ]
    )


def apply(patch: Callable[[object, str, object], None] = setattr) -> None:
    """Patch Copier (with `patch`: setattr, or a monkeypatch's) to render the same files faster.

    Per run, Copier parses copier.yml (twice) with PyYAML's pure-Python loader, builds a
    fresh Jinja environment and compiles every template, path, default and validator again
    (some 550 strings per project). The parsed file is memoized on its path, size and mtime
    (each run gets a deep copy); the compiled code depends only on the source and the
    environment's configuration, which are the same in every run here, so it is memoized on
    exactly those. Copier also asks git whether the template is a repository and, after each
    file, runs `git update-index` in the destination; neither the snapshot nor the sandboxes
    are git repositories, so both answers are known: no git. A string with no Jinja in it (most
    path parts) is not rendered at all, and a YAML answer's text is parsed once (each run gets
    a deep copy); the answers file's plain path is not rendered either.
    Six of the seven functions it replaces are private to Copier: see PATCHED above.
    """
    if problems := unfit_patches():
        raise RuntimeError(unfit_message(problems))
    compile_uncached = jinja2.Environment.compile
    compiled: dict = {}

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if not isinstance(source, str):
            return compile_uncached(self, source, name, filename, raw, defer_init)
        key = (
            type(self),
            jinja2.lexer.get_lexer(self),
            frozenset(self.extensions),
            frozenset(self.filters),
            frozenset(self.tests),
            self.optimized,
            self.finalize,
            self.autoescape,
            self.is_async,
            source,
            name,
            filename,
            raw,
            defer_init,
        )
        if key not in compiled:
            compiled[key] = compile_uncached(self, source, name, filename, raw, defer_init)
        else:
            # Compiling runs the extensions' preprocess hooks, which may reset state: Copier's
            # yield extension forgets the previous path's `{% yield %}` there. Run them.
            self.preprocess(source, name, filename)
        return compiled[key]

    load_uncached = copier._template.load_template_config
    loaded: dict = {}

    def load_template_config(conf_path: Path, quiet: bool = False):
        stat = conf_path.stat()
        key = (conf_path.resolve(), stat.st_size, stat.st_mtime_ns, quiet)
        if key not in loaded:
            loaded[key] = load_uncached(conf_path, quiet)
        return copy.deepcopy(loaded[key])

    render_string_uncached = copier._main.Worker._render_string

    def _render_string(self, string, extra_context=None):
        # A path part or value with no Jinja in it renders as itself; Copier builds its whole
        # render context (every answer, the answers to remember) for each one, a third of a
        # render. Only plain one-line strings are passed through (no delimiter can start in
        # them: this template keeps Jinja's default delimiters and no line statements), and the
        # yield extension's state is reset as compiling them would.
        if isinstance(string, str) and "{" not in string and "\n" not in string and "#" not in string:
            context = copier._jinja_ext.get_yield_context(self.jinja_env)
            context.yield_name = context.yield_iterable = None
            return string
        return render_string_uncached(self, string, extra_context)

    answers_relpath_uncached = copier._main.Worker.answers_relpath.fget

    def answers_relpath(self):
        # Asked for every path of the template; a plain path (.copier-answers.yml here) needs
        # no render context.
        path = str(self.answers_file or self.template.answers_relpath)
        return Path(path) if "{" not in path else answers_relpath_uncached(self)

    yaml_uncached = copier._user_data.parse_yaml_string
    parsed: dict = {}

    def parse_yaml_string(string):
        # A pure function of the string: the same tables (engines, storages, services, ...)
        # render to the same YAML in many combinations. Each caller gets its own deep copy.
        if string not in parsed:
            parsed[string] = yaml_uncached(string)
        return copy.deepcopy(parsed[string])

    patch(jinja2.Environment, "compile", compile)
    patch(copier._main.Worker, "_render_string", _render_string)
    patch(copier._main.Worker, "answers_relpath", property(answers_relpath))
    patch(copier._user_data, "parse_yaml_string", parse_yaml_string)
    casts = {**copier._user_data.CAST_STR_TO_NATIVE, "yaml": parse_yaml_string}
    patch(copier._user_data, "CAST_STR_TO_NATIVE", casts)
    patch(copier._template, "load_template_config", load_template_config)
    patch(copier._template, "is_git_available", lambda: False)
    patch(copier._main, "is_git_available", lambda: False)
