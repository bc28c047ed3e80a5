"""The package's import rules (docs/architecture.md), checked on its source.

- No import loops between hccrad modules, counting imports inside functions too.
- An hccrad module is imported inside a function only to keep torch, snakemake or scikit-learn
  off a light module's import path: the imported module pulls one of them in, the importing one
  does not, and a comment on or above the line says why.
- Layers: statistics never import torch or snakemake; handcrafted features never import the deep
  package; preprocessing never imports the studies; reading inputs (config, sheets, images,
  plan) never imports the audit or the report. The package never imports snakemake, except
  the Snakefile's patches of Snakemake internals (``hccrad.snakemake_speedups``).
- Size: no module over 800 lines, no function over 80.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "workflow" / "lib"
PACKAGE = LIB / "hccrad"
#: What a light module keeps off its import path by importing an hccrad module inside a function:
#: torch and snakemake, and scikit-learn, which the workflow keeps off its start (every Snakemake
#: start and every cluster job parses the workflow, which imports the studies' specs).
HEAVY = ("torch", "snakemake", "sklearn")


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # a module of the package, or a third-party top-level name
    line: int
    in_function: bool
    commented: bool


def _resolve(name: str) -> str:
    """The deepest package module that ``name`` (dotted) names."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
    return False


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import statement of a package module (TYPE_CHECKING blocks left out)."""
    path = MODULES[module]
    lines = path.read_text().splitlines()
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            assert node.level == 0, f"{module}: relative import on line {node.lineno}"
            base = node.module or ""
            names = [f"{base}.{a.name}" if base == "hccrad" or base.startswith("hccrad.") else base
                     for a in node.names]  # fmt: skip
        line = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        commented = "#" in line or above.startswith("#")
        for name in names:
            target = _resolve(name) if name.startswith("hccrad") else name.split(".")[0]
            found.append(
                Import(module, target, node.lineno, _in_function(node, parents), commented)
            )
    return tuple(found)


def module_edges(module: str, *, functions: bool) -> set[str]:
    """Package modules that ``module`` imports (at module level, or anywhere), with the
    packages whose ``__init__`` an import runs on the way."""
    out = set()
    for imp in imports_of(module):
        if imp.target in MODULES and (functions or not imp.in_function):
            parts = imp.target.split(".")
            out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    # a module's own packages are being imported already when it runs: not an edge
    own = module.split(".")
    return out - {".".join(own[:i]) for i in range(1, len(own) + 1)}


@cache
def pulls_in(module: str, names: tuple[str, ...] = HEAVY) -> bool:
    """Whether importing ``module`` imports one of ``names`` (module-level imports, transitively;
    computed from the source, a cycle counts once)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if any(i.target in names for i in imports_of(m) if not i.in_function):
            return True
        todo.extend(module_edges(m, functions=False))
    return False


def reachable(module: str) -> set[str]:
    """Package modules imported, transitively at module level, by importing ``module``."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(module_edges(m, functions=False))
    return seen


def find_cycle() -> list[str] | None:
    """A loop in the import graph (function-level imports included), or None."""
    graph = {m: sorted(module_edges(m, functions=True)) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_no_import_loops() -> None:
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_function_level_imports_only_keep_torch_off_light_modules() -> None:
    bad = []
    for module in MODULES:
        for imp in imports_of(module):
            if not imp.in_function or imp.target not in MODULES:
                continue
            why = []
            if not pulls_in(imp.target):
                why.append(f"the imported module does not pull in any of {HEAVY}")
            if pulls_in(module):
                why.append("the importing module pulls them in anyway")
            if not imp.commented:
                why.append("no comment says why")
            if why:
                bad.append(f"{module}:{imp.line} imports {imp.target}: {'; '.join(why)}")
    assert not bad, "\n".join(bad)


#: The one module that touches Snakemake: version-guarded patches of its internals, called by
#: the Snakefile only (docs/benchmarks.md, dry run).
SNAKEMAKE_GLUE = "hccrad.snakemake_speedups"


def test_the_package_never_imports_snakemake() -> None:
    users = [
        f"{i.source}:{i.line}"
        for m in MODULES
        for i in imports_of(m)
        if i.target == "snakemake" and m != SNAKEMAKE_GLUE
    ]
    assert not users
    assert not any(i.target in MODULES for i in imports_of(SNAKEMAKE_GLUE))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # handcrafted features never import the deep package
        (("hccrad.radiomics", "hccrad.voxelmaps", "hccrad.habitats", "hccrad.ibsi"), "hccrad.deep"),
        # preprocessing never imports the studies
        (("hccrad.preprocess",), "hccrad.studies"),
        # reading inputs never imports the audit or the report
        (("hccrad.config", "hccrad.sheets", "hccrad.imageio", "hccrad.plan"), "hccrad.audit"),
        (("hccrad.config", "hccrad.sheets", "hccrad.imageio", "hccrad.plan"), "hccrad.report"),
    ],
)
def test_layers(layer: tuple[str, ...], forbidden: str) -> None:
    for module in MODULES:
        if not module.startswith(layer):
            continue
        hits = {m for m in reachable(module) if m == forbidden or m.startswith(forbidden + ".")}
        lazy = {
            i.target
            for i in imports_of(module)
            if i.target == forbidden or i.target.startswith(forbidden + ".")
        }
        assert not hits | lazy, f"{module} imports {sorted(hits | lazy)}"


@pytest.mark.parametrize("module", ["hccrad.stats", "hccrad.config", "hccrad.plan"])
def test_light_modules_import_without_torch_or_snakemake(module: str) -> None:
    """Statistics (and the plan the workflow builds at every start) never import torch or
    snakemake: checked on a real import in a fresh interpreter, not only on the source."""
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in ('torch', 'snakemake') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert res.stdout.strip() == "", f"{module} imports {res.stdout.strip()}"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_module_over_800_lines_and_no_function_over_80() -> None:
    long_modules = []
    long_functions = []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > 800:
            long_modules.append(f"{module}: {len(text.splitlines())} lines")
        for fn in _functions(ast.parse(text)):
            n = fn.end_lineno - fn.lineno + 1
            if n > 80:
                long_functions.append(f"{module}.{fn.name}: {n} lines")
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)


def test_steps_and_studies_load_their_modules_on_first_use() -> None:
    """hccrad.steps imports none of its stage modules until a name is used; hccrad.studies
    imports its specs without scikit-learn (docs/architecture.md)."""
    code = (
        "import sys\n"
        "from hccrad import steps, studies\n"
        "before = sorted(m for m in sys.modules if m.startswith('hccrad.steps.'))\n"
        "light = 'sklearn' not in sys.modules\n"
        "f = steps.assign_habitats\n"
        "print(before, light, f.__module__, 'hccrad.steps.deep_models' in sys.modules)\n"
        "print(studies.run_study.__module__, 'sklearn' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert res.stdout.splitlines() == [
        "[] True hccrad.steps.habitats False",
        "hccrad.studies.run True",
    ]


def test_job_scripts_read_their_params_not_the_config() -> None:
    """A job uses exactly the values that trigger its rerun: its rule's params and files, never
    the raw workflow configuration."""
    scripts = sorted((LIB.parents[0] / "scripts").glob("*.py"))
    assert scripts
    readers = [p.name for p in scripts if "snakemake.config" in p.read_text()]
    assert not readers, readers
