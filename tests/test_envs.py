"""The conda env files pin exactly the versions pyproject.toml pins."""

import re
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
