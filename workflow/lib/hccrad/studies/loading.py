"""Loading a study file: YAML, merge over the defaults, JSON schema, cross-checks and the
(cached) estimator check."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from hccrad.config import load_schema, read_yaml
from hccrad.errors import ConfigError
from hccrad.overlay import Overlay, changes, deep_merge
from hccrad.studies.checks import cross_check
from hccrad.studies.spec import StudySpec, spec_from_dict

#: Distributions whose versions decide whether a pipeline builds (:func:`estimator_check_digest`).
ESTIMATOR_PACKAGES = ("hccrad", "scikit-learn", "imbalanced-learn", "xgboost", "numpy", "scipy")
#: The pipeline builder's source (``hccrad/stats/models.py``: ``build_pipeline``), hashed into
#: :func:`estimator_check_digest`.
_BUILDER_SOURCE = Path(__file__).parents[1] / "stats" / "models.py"


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        data = read_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping")
    return data


def _schema_errors(data: Mapping[str, Any]) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema("study"))
    lines = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        key = ".".join(str(p) for p in err.path) or "(top level)"
        lines.append(f"key {key}: {err.message}")
    return lines


def load_study(
    path: str | os.PathLike[str],
    defaults: str | os.PathLike[str] | None = None,
    *,
    check_estimators: bool = True,
    estimator_cache: str | os.PathLike[str] | None = None,
    override: Mapping[str, Any] | None = None,
) -> StudySpec:
    """Load, merge and validate one study file.

    Args:
        path: The study YAML; its stem is the study name.
        defaults: Shared defaults; by default ``defaults.yaml`` next to the study file (skipped
            when absent).
        check_estimators: Also build every pipeline once, so that a bad step or classifier
            argument or grid key is reported now (imports scikit-learn).
        estimator_cache: A folder remembering passed estimator checks (one empty file per
            digest of the study's pipeline models and the versions of the packages that build
            them, :func:`estimator_check_digest`): a check that passed before is not repeated.
        override: An overlay's delta for this study (:mod:`hccrad.overlay`), merged last; the
            values it changes are kept in ``StudySpec.overlay_changes``.

    Raises:
        ConfigError: Naming the study file and the offending key.
    """
    p = Path(path)
    where = f"study {p}"
    delta = _read_yaml(p, "study file")
    dpath = Path(defaults) if defaults is not None else p.parent / "defaults.yaml"
    base = _read_yaml(dpath, "study defaults") if (defaults is not None or dpath.is_file()) else {}
    merged = deep_merge(base, delta)
    overlay_changes = changes(p.stem, merged, override or {})
    merged = deep_merge(merged, override or {})
    errors = _schema_errors(merged)
    if errors:
        raise ConfigError(f"{where} (merged with {dpath}): invalid\n  " + "\n  ".join(errors))
    spec = dataclasses.replace(spec_from_dict(p, merged), overlay_changes=overlay_changes)
    cross_check(spec, where)
    if check_estimators:
        marker = None
        if estimator_cache is not None:
            marker = Path(estimator_cache) / f"estimators-{estimator_check_digest(spec)}.ok"
        if marker is None or not marker.is_file():
            _check_estimators(spec, where)
            if marker is not None:
                with contextlib.suppress(OSError):  # a read-only folder only costs the re-check
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.touch()
    return spec


def estimator_check_digest(spec: StudySpec) -> str:
    """SHA-256 of a study's pipeline models (steps, classifier, parameters, SMOTE, grid), the
    installed versions of :data:`ESTIMATOR_PACKAGES` and the source of the pipeline builder
    (``hccrad/stats/models.py``): equal digests give the same check result."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return ""

    models = {
        name: [list(m.selection), m.classifier, m.params, m.smote, m.grid]
        for name, m in sorted(spec.models.items())
        if m.kind == "pipeline"
    }
    payload = {
        "models": models,
        "versions": {d: version(d) for d in ESTIMATOR_PACKAGES},
        "builder": hashlib.sha256(_BUILDER_SOURCE.read_bytes()).hexdigest(),
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_estimators(spec: StudySpec, where: str) -> None:
    """Build every pipeline model once (and set its first grid point): ConfigError if one
    does not build."""
    # scikit-learn et al.: imported only when a check runs, not at every Snakemake start
    from hccrad.stats.models import build_pipeline

    for name, m in spec.models.items():
        if m.kind != "pipeline":
            continue
        try:
            pipe = build_pipeline(list(m.selection), m.classifier, m.params, 0, m.smote)
            if m.grid:
                valid = pipe.get_params()
                unknown = sorted(k for k in m.grid if k not in valid)
                if unknown:
                    raise ValueError(f"unknown grid key(s) {unknown}")
                pipe.set_params(**{k: v[0] for k, v in m.grid.items()})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: key models.{name}: {err}") from err


def load_studies(
    files: Sequence[str | os.PathLike[str]], overlay: Overlay | None = None, **kwargs: Any
) -> dict[str, StudySpec]:
    """Load several study files (with ``overlay``'s delta for each, when given); names (file
    stems) must be unique. An overlay's delta for a study that is not configured is unused
    (a configuration may run a subset of the studies)."""
    out: dict[str, StudySpec] = {}
    for f in files:
        override = overlay.study(Path(f).stem) if overlay is not None else None
        spec = load_study(f, override=override, **kwargs)
        if spec.name in out:
            raise ConfigError(f"study {f}: name {spec.name!r} also used by {out[spec.name].path}")
        out[spec.name] = spec
    return out

