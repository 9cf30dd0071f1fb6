"""The repository keeps its promises to a newcomer: README commands and CI agree, and its own
Python is wired as one package (launchpad_dev), with no path tricks and no import cycle."""

import ast
import re
import sys
from pathlib import Path

from launchpad_dev.common import ROOT, run
from launchpad_dev.tools import require_tool

TEST_COMMAND = ".venv/bin/python -m pytest"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in readme_commands()
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert TEST_COMMAND in [line.strip() for line in ci], ".ci/run must call the README's test command"


def test_readme_main_command_renders_the_defaults_and_starts_the_stack():
    main = [c for c in readme_commands() if c.startswith(".venv/bin/copier copy --defaults")]
    assert len(main) == 1, readme_commands()
    assert " make -C " in main[0] and main[0].endswith(" up")


def test_repository_has_the_layout_copier_users_expect():
    for path in [
        "copier.yml",
        "template",
        "tests",
        "docs",
        "README.md",
        "LICENSE",
        "pyproject.toml",
        ".ci/run",
    ]:
        assert (ROOT / path).exists(), path
    for page in ["generate.md", "work.md", "update.md", "architecture.md"]:
        assert (ROOT / "docs" / page).is_file(), page
    copier_yml = (ROOT / "copier.yml").read_text()
    assert "_subdirectory: template" in copier_yml and "_min_copier_version" in copier_yml
    assert "_tasks" not in copier_yml and "_jinja_extensions" not in copier_yml  # no --trust needed
    assert (ROOT / "template" / "{{ _copier_conf.answers_file }}.jinja").is_file()


def test_the_templates_own_python_is_lint_clean():
    ruff = require_tool("ruff", Path(sys.executable).parent)
    for args in (["check", "--no-cache", *SOURCE_DIRS], ["format", "--check", "--no-cache", *SOURCE_DIRS]):
        result = run([ruff, *args], cwd=ROOT)
        assert result.returncode == 0, result.stdout


# ------------------------------------- one package, no path tricks (issue 30, repository wiring)
# What tests/, benchmarks/ and tools/ share lives in launchpad_dev/, which `pip install -e
# '.[test]'` installs (docs/testing.md, "The helpers"). A script of benchmarks/ or tools/ imports
# a module beside it as Python finds it (the script's directory), and a test module one of
# tests/ as pytest finds it (the directory pytest puts on sys.path for its test files); nothing
# else may bend the import system: no sys.path or sys.modules edit, no import of another
# directory's module, and no import cycle among the repository's modules.
PACKAGE = "launchpad_dev"
SOURCE_DIRS = ("tests", "benchmarks", "tools", PACKAGE)
MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "setdefault", "update"}
MUTATORS |= {"__setitem__", "__delitem__"}


def repository_python() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))


def import_state(node: ast.AST) -> bool:
    """`node` is sys.path or sys.modules."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("path", "modules")
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def import_system_edits(tree: ast.AST) -> list[ast.AST]:
    """The nodes of `tree` that edit sys.path or sys.modules, or look a module up in sys.modules."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func, first = node.func, node.args[0] if node.args else None
            if func.attr in MUTATORS and import_state(func.value):
                found.append(node)  # sys.path.insert(...), sys.modules.setdefault(...)
            elif func.attr in ("syspath_prepend", "addsitedir"):
                found.append(node)  # pytest's monkeypatch.syspath_prepend, site.addsitedir
            elif func.attr in ("setitem", "delitem", "setattr") and first is not None and import_state(first):
                found.append(node)  # monkeypatch.setitem(sys.modules, ...)
        elif isinstance(node, ast.Subscript) and import_state(node.value):
            found.append(node)  # sys.modules["name"] (read or written), sys.path[0] = ...
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            if any(import_state(target) for target in targets):
                found.append(node)  # sys.path = [...], sys.path += [...]
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            if {alias.name for alias in node.names} & {"path", "modules"}:
                found.append(node)  # from sys import path (then edited unseen)
    return found


def test_nothing_edits_sys_path_or_sys_modules():
    """No sys.path or sys.modules edit (or lookup by name) in tests/, benchmarks/, tools/ or the
    package: they import the package, never a directory put on the path by hand."""
    found = []
    for path in repository_python():
        text = path.read_text()
        for node in import_system_edits(ast.parse(text, str(path))):
            line = ast.get_source_segment(text, node) or ""
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line.splitlines()[0][:100]}")
    assert not found, found


def module_names() -> dict[Path, str]:
    """Each file's module name: launchpad_dev.x in the package; its stem elsewhere (a script of
    benchmarks/ or tools/, a test module or conftest of tests/), prefixed by its directory."""
    names = {}
    for path in repository_python():
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[0] == PACKAGE:
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            names[path] = ".".join(parts)
        else:
            names[path] = rel.as_posix()
    return names


def imported_names(tree: ast.AST, package: str | None) -> set[str]:
    """Every module name `tree` imports, at any depth (a function's import counts: it runs),
    importlib.import_module("name") included; `package` resolves relative imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from .x import y: within the importer's package
                parts = (package or "").split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if called == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
                names.add(str(node.args[0].value))
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the repository's modules it imports. A name resolves to the package's module
    (and its parent packages, which Python imports first), else to a file beside the importer,
    else to a file of that name in another directory (which only a sys.path edit, or pytest's
    rootdir, would let it find)."""
    names = module_names()
    known = set(names.values())
    elsewhere: dict[str, set[str]] = {}
    for path, module in names.items():
        if not module.startswith(PACKAGE):
            elsewhere.setdefault(path.stem, set()).add(module)
    graph: dict[str, set[str]] = {}
    for path, module in names.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for name in imported_names(ast.parse(path.read_text(), str(path)), package or None):
            top = name.split(".")[0]
            if top == PACKAGE:
                parts = name.split(".")
                edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
            elif (beside := path.parent / f"{top}.py").is_file():
                edges.add(names[beside])
            else:
                edges |= elsewhere.get(top, set())
        graph[module] = edges - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_repositorys_modules_import_one_another_without_a_cycle():
    """The import graph of tests/, benchmarks/, tools/ and the package (every import, a
    function's too): no module imports another directory's module by name, and no cycle."""
    graph = import_graph()
    # The graph is the real one: the wiring this test guards is in it.
    assert "launchpad_dev.matrix" in graph["tests/conftest"]
    assert "launchpad_dev.bench" in graph["benchmarks/stress"]
    assert "benchmarks/stress" in graph["benchmarks/run"]  # run.py's lazy import of a mode
    assert graph["launchpad_dev"] == set(), "the package's __init__ imports nothing"
    # Outside the package, a module imports only modules of its own directory (the package's
    # modules import the package only: they live in no directory of tests/, benchmarks/, tools/).
    strays = {
        module: sorted(e for e in edges if not e.startswith(PACKAGE) and directory(e) != directory(module))
        for module, edges in graph.items()
    }
    strays = {module: edges for module, edges in strays.items() if edges}
    assert not strays, f"imports of another directory's module, found only through sys.path: {strays}"
    assert cycles(graph) == [], cycles(graph)


def directory(module: str) -> str:
    """tests/test_render -> tests; launchpad_dev.matrix -> launchpad_dev."""
    return module.rpartition("/")[0] or PACKAGE
