"""The conda env files pin exactly the versions pyproject.toml pins, and every rule's env
provides the third-party packages its job imports (static, via ast)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name, _, version = dep.partition("==")
        assert version, f"pyproject.toml dependency {dep!r} is not pinned with =="
        pins[_norm(name)] = version
    return pins


def _env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        sep = "==" if isinstance(dep, dict) else "="
        for item in items:
            name, _, version = item.partition(sep)
            pins[_norm(name)] = version
    return pins


def test_there_are_env_files():
    assert {p.stem for p in ENVS} >= {"preprocess", "radiomics", "deep", "stats"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.stem)
def test_env_pins_match_pyproject(path):
    pins = _pyproject_pins()
    for name, version in _env_pins(path).items():
        if name in {"python", "pip"}:
            continue
        assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version == pins[name], f"{path.name}: {name}={version}, pyproject has {pins[name]}"


def test_python_version_matches():
    for path in ENVS:
        assert _env_pins(path)["python"] == "3.11", path.name


# ---------------------------------------------------------------------------------------------
# every rule's env provides what its job imports
# ---------------------------------------------------------------------------------------------
#
# Static (ast): a rule's job runs its script, so the script's imports run and the functions it
# calls run. From the script, follow every hccrad module imported at import time (parents
# included), every function or class referenced from code that runs (module-level code, reached
# functions and classes) and the imports inside reached functions: the package keeps torch,
# scikit-learn, antspyx... in function-level imports of the functions that need them.
# hccrad.steps / hccrad.studies resolve their lazy names (``_LAZY``). A reference that cannot be
# resolved statically (getattr, a string) is not followed. One edge depends on an argument:
# ``job_logging`` calls ``limit_threads`` (SimpleITK) only when the script passes ``threads=``
# (the stats rules' scripts do not; stats.yaml has no SimpleITK).

LIB = ROOT / "workflow" / "lib"
RULES = ROOT / "workflow" / "rules"
FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)
Target = tuple[str, str | None]  # (module, attribute; None: the module itself)

#: Top-level import name -> the distributions (as env files name them) that provide it;
#: dependencies of a listed package count (threadpoolctl comes with scikit-learn).
IMPORT_DISTS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "pandas": ("pandas",),
    "pyarrow": ("pyarrow",),
    "yaml": ("pyyaml",),
    "jsonschema": ("jsonschema",),
    "SimpleITK": ("simpleitk",),
    "pydicom": ("pydicom",),
    "highdicom": ("highdicom",),
    "nibabel": ("nibabel",),
    "matplotlib": ("matplotlib",),
    "PIL": ("pillow", "matplotlib"),
    "ants": ("antspyx",),
    "pywt": ("pywavelets",),
    "radiomics": ("pyradiomics-bhklab",),
    "sklearn": ("scikit-learn",),
    "threadpoolctl": ("threadpoolctl", "scikit-learn"),
    "imblearn": ("imbalanced-learn",),
    "statsmodels": ("statsmodels",),
    "lifelines": ("lifelines",),
    "shap": ("shap",),
    "xgboost": ("xgboost-cpu",),
    "torch": ("torch",),
    "monai": ("monai",),
}


def _module_file(name: str) -> Path | None:
    base = LIB.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _import_base(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _bindings(node: ast.Import | ast.ImportFrom, package: str) -> dict[str, Target]:
    """Local name -> target bound by one import statement."""
    if isinstance(node, ast.Import):
        return {
            a.asname or a.name.split(".")[0]: (a.name if a.asname else a.name.split(".")[0], None)
            for a in node.names
        }
    base = _import_base(node, package)
    return {
        a.asname or a.name: (
            (f"{base}.{a.name}", None) if _module_file(f"{base}.{a.name}") else (base, a.name)
        )
        for a in node.names
    }


def _imported_modules(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = _import_base(node, package)
    return [base] + [m for m, attr in _bindings(node, package).values() if attr is None]


def _import_time_statements(tree: ast.Module) -> list[ast.stmt]:
    """Module-level statements other than defs (class bodies run when the class is used)."""
    return [s for s in tree.body if not isinstance(s, (*FUNC, ast.ClassDef))]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports_in(nodes: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found = []
    for stmt in nodes:
        if _is_type_checking(stmt):
            continue
        found += [n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


class _Module:
    """One parsed module: its top-level defs, lazy names and import-time bindings."""

    def __init__(self, name: str, path: Path, script: bool = False) -> None:
        self.name = name
        self.tree = ast.parse(path.read_text())
        self.package = name if path.name == "__init__.py" or script else name.rpartition(".")[0]
        self.defs = {n.name: n for n in self.tree.body if isinstance(n, (*FUNC, ast.ClassDef))}
        self.lazy: dict[str, str] = {}
        for n in self.tree.body:
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_LAZY":
                self.lazy = ast.literal_eval(n.value)
        self.imports = _imports_in(_import_time_statements(self.tree))
        self.bindings: dict[str, Target] = {}
        for node in self.imports:
            self.bindings.update(_bindings(node, self.package))


class _Reach:
    """What running a script reaches: hccrad modules, functions and third-party imports."""

    def __init__(self) -> None:
        self.modules: dict[str, _Module] = {}
        self.functions: set[Target] = set()
        self.third_party: set[str] = set()
        self.caps_threads = True

    def run_script(self, path: Path) -> None:
        script = _Module("__script__", path, script=True)
        self.caps_threads = any(
            isinstance(n, ast.Call)
            and ast.unparse(n.func).endswith("job_logging")
            and any(k.arg == "threads" for k in n.keywords)
            for n in ast.walk(script.tree)
        )
        self._run(script, _import_time_statements(script.tree), {})

    def module(self, name: str) -> _Module | None:
        """Import ``name`` (and its parent packages); None when it is not an hccrad module."""
        top = name.split(".")[0]
        if top != "hccrad":
            if top and top != "__future__" and top not in sys.stdlib_module_names:
                self.third_party.add(top)
            return None
        parts = name.split(".")
        for i in range(1, len(parts)):
            self.module(".".join(parts[:i]))
        if name not in self.modules:
            path = _module_file(name)
            if path is None:
                return None
            self.modules[name] = mod = _Module(name, path)
            self._run(mod, _import_time_statements(mod.tree), {})
        return self.modules[name]

    def symbol(self, target: Target) -> None:
        """Use ``module.attribute``: run the def it names, following re-exports and lazy names."""
        name, attr = target
        mod = self.module(name)
        if mod is None or attr is None or (name, attr) in self.functions:
            return
        if (name, attr) == ("hccrad.runlog", "limit_threads") and not self.caps_threads:
            return
        self.functions.add((name, attr))
        if attr in mod.defs:
            self._run(mod, [mod.defs[attr]], {})
        elif attr in mod.lazy:
            self.symbol((f"{name}.{mod.lazy[attr]}", attr))
        elif attr in mod.bindings:
            self.symbol(mod.bindings[attr])
        elif _module_file(f"{name}.{attr}"):
            self.module(f"{name}.{attr}")

    def _run(self, mod: _Module, nodes: list[ast.stmt], local: dict[str, Target]) -> None:
        """Run code of ``mod``: its imports, then every name and ``name.attr`` it references."""
        local = dict(local)
        for node in _imports_in(nodes):
            local.update(_bindings(node, mod.package))
            for name in _imported_modules(node, mod.package):
                self.module(name)
        for stmt in nodes:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    self._use(mod, local, node.id, None)
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    self._use(mod, local, node.value.id, node.attr)

    def _use(self, mod: _Module, local: dict[str, Target], name: str, attr: str | None) -> None:
        target = local.get(name) or mod.bindings.get(name)
        if target is None:
            if name in mod.defs and mod.name != "__script__":
                self.symbol((mod.name, name))
            return
        self.symbol(target)
        if attr is not None and target[1] is None:  # module.attr
            self.symbol((target[0], attr))


def _rule_jobs() -> dict[str, tuple[str, Path]]:
    """Rule name -> (conda env name, script) of every rule in workflow/rules."""
    common = (RULES / "common.smk").read_text()
    envs = dict(re.findall(r'^(\w+_ENV) = "\.\./\.\./envs/(\w+)\.yaml"', common, re.M))
    jobs = {}
    for smk in sorted(RULES.glob("*.smk")):
        for block in re.split(r"^\s*rule\b", smk.read_text(), flags=re.M)[1:]:
            name = re.match(r"\s*(\w+)\s*:", block) or re.search(r'name:\s*f?"([^"]+)"', block)
            env = re.search(r"\bconda:\s*(\w+)", block)
            script = re.search(r'\bscript:\s*"([^"]+)"', block)
            assert name and env and script, f"{smk.name}: a rule without conda env or script"
            jobs[name.group(1)] = (envs[env.group(1)], (RULES / script.group(1)).resolve())
    return jobs


def _env_dists(env: str) -> set[str]:
    return set(_env_pins(ROOT / "envs" / f"{env}.yaml"))


RULE_JOBS = _rule_jobs()


def test_rule_jobs_are_found():
    assert len(RULE_JOBS) >= 20
    assert RULE_JOBS["register_patient"][0] == "preprocess"
    assert RULE_JOBS["train_segmentation"][0] == "deep"
    assert RULE_JOBS["run_study_{_study}"] == ("stats", ROOT / "workflow/scripts/run_study.py")


def test_reach_follows_lazy_names_and_function_level_imports():
    """register_patient reaches antspyx only through steps' lazy name and a function-level
    import; the preprocessing job never imports torch or scikit-learn."""
    reach = _Reach()
    reach.run_script(RULE_JOBS["register_patient"][1])
    assert "hccrad.steps.preprocessing" in reach.modules
    assert {"ants", "SimpleITK"} <= reach.third_party
    assert not {"torch", "sklearn", "monai"} & reach.third_party
    reach = _Reach()
    reach.run_script(RULE_JOBS["train_segmentation"][1])
    assert {"torch", "monai"} <= reach.third_party
    reach = _Reach()  # no threads= to job_logging: limit_threads (SimpleITK) does not run
    reach.run_script(RULE_JOBS["study_splits"][1])
    assert "hccrad.runlog" in reach.modules and "SimpleITK" not in reach.third_party
    assert {"sklearn", "pandas"} <= reach.third_party


@pytest.mark.parametrize("rule", sorted(RULE_JOBS))
def test_rule_env_provides_its_imports(rule):
    env, script = RULE_JOBS[rule]
    reach = _Reach()
    reach.run_script(script)
    unknown = sorted(reach.third_party - set(IMPORT_DISTS))
    assert not unknown, f"{rule}: add {unknown} to IMPORT_DISTS (import name -> distribution)"
    dists = _env_dists(env)
    lacking = {m: IMPORT_DISTS[m] for m in reach.third_party if not set(IMPORT_DISTS[m]) & dists}
    assert not lacking, f"rule {rule} (envs/{env}.yaml) imports {lacking} not in its env"
