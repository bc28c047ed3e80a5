"""Study layer: declarative study configurations run on the cohort tables.

A study (``config/studies/{study}.yaml``) is a small delta over ``config/studies/defaults.yaml``
(deep-merged under it: mappings merge key by key, everything else is replaced). It names a
modality, a binary label, feature **blocks** (``radiomics`` columns picked by phase, region, image
type, class and feature patterns; ``habitats``; listed ``clinical`` columns; any parquet
``table`` indexed by patient), **models** (``pipeline``: blocks -> encoder -> scaler -> selection
chain -> [SMOTE] -> classifier, optionally grid-searched; ``clinical``: univariable then
multivariable logistic regression, optionally with other models' scores as covariates;
``score_fusion``: other models' scores combined), the comparisons of the paper, the primary model
and survival endpoints. :func:`load_study` validates it (JSON schema
``workflow/schemas/study.schema.yaml`` plus cross-checks) and returns a :class:`StudySpec`;
:func:`run_study` splits the patients, fits every model on the training patients only, predicts
every split and writes the tables and figures of :func:`study_outputs`. ``docs/studies.md``
documents the keys, outputs and conventions.

Leakage rules: every fitted quantity (imputation medians/modes, category levels, scaler,
selectors, SMOTE, classifier, grid search, Youden cut-off, score-fusion weights, survival
cut-point) is learned from training patients only; validation and test patients are only
predicted. Derived clinical columns (``derived``) are per-patient functions of that patient's own
row and learn nothing.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hccrad import paths
from hccrad.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: The five seed studies (``config/studies/{name}.yaml``), in MISSION.md order.
SEED_STUDIES = ("habitat_grade", "mvi_biregional", "er_fusion", "mil_er", "proliferative_tace")
#: Study files the workflow runs when the config has no ``studies`` key.
DEFAULT_STUDY_FILES = tuple(f"config/studies/{name}.yaml" for name in SEED_STUDIES)
#: Evaluated splits, in report order (``unlabeled`` patients are never evaluated).
EVAL_SPLITS = ("train", "validation", "external", "temporal")
#: Names of the derived-column operations.
DERIVED_OPS = ("gt", "ge", "lt", "le", "eq", "ne", "isin", "log", "log2", "log10", "map")
SOURCES = ("radiomics", "habitats", "clinical", "table")
MODEL_KINDS = ("pipeline", "clinical", "score_fusion")
_SCOPES = ("all", "train", "held_out", "validation", "external", "temporal")
_BLOCK_KEYS = {
    "radiomics": {"phases", "regions", "image_types", "classes", "features", "exclude"},
    "habitats": {"columns", "exclude"},
    "clinical": {"columns", "categorical"},
    "table": {"path", "columns", "exclude"},
}
_MODEL_KEYS = {
    "pipeline": {"blocks", "selection", "classifier", "params", "grid", "cv", "smote", "output"},
    "clinical": {"candidates", "categorical", "scores", "alpha"},
    "score_fusion": {"models", "method"},
}


# ============================================================================================
# Specification
# ============================================================================================


@dataclass(frozen=True)
class SplitSpec:
    """How patients are split (see :func:`hccrad.stats.make_splits`)."""

    primary_centers: tuple[str, ...]
    validation_fraction: float = 0.3
    temporal_cutoff: str | None = None
    center_column: str = "center"
    date_column: str = "acquisition_date"

    @property
    def names(self) -> tuple[str, ...]:
        """The evaluated splits this design can produce."""
        out = ["train"]
        if self.validation_fraction > 0:
            out.append("validation")
        out.append("external")
        if self.temporal_cutoff is not None:
            out.append("temporal")
        return tuple(out)


@dataclass(frozen=True)
class BlockSpec:
    """One feature block: where its columns come from and which ones are taken.

    ``radiomics`` columns are ``{phase}_{region}_{imageType}_{class}_{feature}`` and are picked by
    ``fnmatch`` patterns on each part (``exclude``: patterns on the full name); ``habitats`` and
    ``table`` take the columns matching ``columns`` minus ``exclude``; ``clinical`` takes the
    listed ``columns`` (exact names, derived columns allowed), the non-numeric ones and those in
    ``categorical`` being dummy-coded inside the pipeline.
    """

    name: str
    source: str
    phases: tuple[str, ...] = ("*",)
    regions: tuple[str, ...] = ("*",)
    image_types: tuple[str, ...] = ("*",)
    classes: tuple[str, ...] = ("*",)
    features: tuple[str, ...] = ("*",)
    columns: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    path: str | None = None

    @property
    def input_key(self) -> str:
        """Key of the table this block reads in :func:`run_study`'s ``tables``."""
        return f"table_{self.name}" if self.source == "table" else self.source


@dataclass(frozen=True)
class ModelSpec:
    """One model of a study (``kind`` = ``pipeline``, ``clinical`` or ``score_fusion``)."""

    name: str
    kind: str = "pipeline"
    blocks: tuple[str, ...] = ()
    selection: tuple[dict[str, Any], ...] = ()
    classifier: str = "logistic"
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    cv: int = 5
    smote: bool | dict[str, Any] = False
    output: str = "probability"
    candidates: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    scores: tuple[str, ...] = ()
    alpha: float = 0.05
    models: tuple[str, ...] = ()
    method: str = "logistic"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Models whose scores this model uses."""
        return self.scores if self.kind == "clinical" else self.models

    @property
    def uses_icc(self) -> bool:
        return any(s.get("step") == "icc" for s in self.selection)


@dataclass(frozen=True)
class SurvivalSpec:
    """Survival analysis of a model's score: KM by the training cut-point, Cox models."""

    model: str
    endpoints: dict[str, tuple[str, str]]
    covariates: tuple[str, ...] = ()
    min_prop: float = 0.1
    screen_p: float | None = None
    km_scope: str = "held_out"
    cox_scope: str = "held_out"


@dataclass(frozen=True)
class StudySpec:
    """A validated study: the merged configuration as typed fields (``raw`` keeps the dict)."""

    name: str
    path: str
    title: str
    modality: str
    label: str
    seed: int | None
    splits: SplitSpec
    stacking: str
    stacking_folds: int
    derived: dict[str, dict[str, Any]]
    blocks: dict[str, BlockSpec]
    models: dict[str, ModelSpec]
    primary: str
    explain: str | None
    nomogram: str | None
    comparisons: tuple[tuple[str, str], ...]
    evaluation: dict[str, Any]
    shap: dict[str, Any]
    baseline: dict[str, Any]
    survival: SurvivalSpec | None
    raw: dict[str, Any]

    @property
    def used_blocks(self) -> list[str]:
        """Blocks some model uses, in declaration order."""
        used = {b for m in self.models.values() for b in m.blocks}
        return [b for b in self.blocks if b in used]

    @property
    def clinical_models(self) -> list[str]:
        return [n for n, m in self.models.items() if m.kind == "clinical"]

    def model_order(self) -> list[str]:
        """Models with every dependency before its dependents (declaration order otherwise)."""
        done: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            for dep in self.models[name].depends_on:
                visit(dep)
            done.append(name)

        for name in self.models:
            visit(name)
        return done


#: Defaults of the optional sections (``defaults.yaml`` normally sets them all).
_SECTION_DEFAULTS: dict[str, Any] = {
    "stacking": "crossfit",
    "stacking_folds": 5,
    "evaluation": {
        "ci_level": 0.95,
        "figure_split": "validation",
        "calibration_bins": 5,
        "calibration_strategy": "quantile",
        "thresholds": {"start": 0.01, "stop": 0.99, "step": 0.01},
        "by": ["center", "field_strength"],
    },
    "shap": {"max_patients": 60, "background": 20, "nsamples": None, "max_display": 10},
    "baseline": {"variables": [], "categorical": [], "nonnormal": []},
    "survival": {
        "model": None,
        "endpoints": {},
        "covariates": [],
        "min_prop": 0.1,
        "screen_p": None,
        "km_scope": "held_out",
        "cox_scope": "held_out",
    },
}


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``delta`` merged over ``base``: mappings merge recursively, any other value replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    from hccrad.config import read_yaml

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

    from hccrad.config import load_schema

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

    Raises:
        ConfigError: Naming the study file and the offending key.
    """
    p = Path(path)
    where = f"study {p}"
    delta = _read_yaml(p, "study file")
    dpath = Path(defaults) if defaults is not None else p.parent / "defaults.yaml"
    base = _read_yaml(dpath, "study defaults") if (defaults is not None or dpath.is_file()) else {}
    merged = deep_merge(base, delta)
    errors = _schema_errors(merged)
    if errors:
        raise ConfigError(f"{where} (merged with {dpath}): invalid\n  " + "\n  ".join(errors))
    spec = _spec_from_dict(p, merged)
    _cross_check(spec, where)
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


#: Distributions whose versions decide whether a pipeline builds (:func:`estimator_check_digest`).
ESTIMATOR_PACKAGES = ("hccrad", "scikit-learn", "imbalanced-learn", "xgboost", "numpy", "scipy")


def estimator_check_digest(spec: StudySpec) -> str:
    """SHA-256 of a study's pipeline models (steps, classifier, parameters, SMOTE, grid), the
    installed versions of :data:`ESTIMATOR_PACKAGES` and the source of the pipeline builder
    (``hccrad/stats/models.py``): equal digests give the same check result."""
    import hashlib
    from importlib import metadata

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
    builder = Path(__file__).with_name("stats") / "models.py"  # build_pipeline's source
    payload = {
        "models": models,
        "versions": {d: version(d) for d in ESTIMATOR_PACKAGES},
        "builder": hashlib.sha256(builder.read_bytes()).hexdigest(),
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _t(values: Any) -> tuple:
    return tuple(values) if values is not None else ()


def _spec_from_dict(path: Path, d: dict[str, Any]) -> StudySpec:
    d = deep_merge(_SECTION_DEFAULTS, d)
    s = d.get("splits", {})
    splits = SplitSpec(
        primary_centers=tuple(str(c) for c in s["primary_centers"]),
        validation_fraction=float(s.get("validation_fraction", 0.3)),
        temporal_cutoff=s.get("temporal_cutoff"),
        center_column=s.get("center_column", "center"),
        date_column=s.get("date_column", "acquisition_date"),
    )
    blocks = {}
    for name, b in d["blocks"].items():
        blocks[name] = BlockSpec(
            name=name,
            source=b["source"],
            **{k: _t(v) for k, v in b.items() if k not in ("source", "path", "description")},
            path=b.get("path"),
        )
    chains = d.get("chains", {})
    models = {}
    for name, m in d["models"].items():
        sel = m.get("selection", [])
        steps = chains.get(sel, sel) if isinstance(sel, str) else sel
        models[name] = ModelSpec(
            name=name,
            kind=m.get("kind", "pipeline"),
            blocks=_t(m.get("blocks")),
            selection=tuple(dict(st) for st in steps) if isinstance(steps, list) else (),
            classifier=m.get("classifier", "logistic"),
            params=dict(m.get("params") or {}),
            grid={k: list(v) for k, v in m["grid"].items()} if m.get("grid") else None,
            cv=int(m.get("cv", 5)),
            smote=m.get("smote", False),
            output=m.get("output", "probability"),
            candidates=_t(m.get("candidates")),
            categorical=_t(m.get("categorical")),
            scores=_t(m.get("scores")),
            alpha=float(m.get("alpha", 0.05)),
            models=_t(m.get("models")),
            method=m.get("method", "logistic"),
        )
    clinical = [n for n, m in models.items() if m.kind == "clinical"]
    pipelines = [n for n, m in models.items() if m.kind == "pipeline"]
    primary = d["primary"]
    if "explain" in d:
        explain = d["explain"]
    else:
        explain = primary if primary in pipelines else (pipelines[0] if pipelines else None)
    nomogram = d["nomogram"] if "nomogram" in d else (clinical[0] if clinical else None)
    sv = d["survival"]
    survival = None
    if sv.get("endpoints"):
        survival = SurvivalSpec(
            model=sv.get("model") or primary,
            endpoints={k: (v["time"], v["event"]) for k, v in sv["endpoints"].items()},
            covariates=_t(sv.get("covariates")),
            min_prop=float(sv.get("min_prop", 0.1)),
            screen_p=sv.get("screen_p"),
            km_scope=sv.get("km_scope", "held_out"),
            cox_scope=sv.get("cox_scope", "held_out"),
        )
    return StudySpec(
        name=path.stem,
        path=str(path),
        title=d.get("title", path.stem),
        modality=d["modality"],
        label=d["label"],
        seed=d.get("seed"),
        splits=splits,
        stacking=d["stacking"],
        stacking_folds=int(d["stacking_folds"]),
        derived=dict(d.get("derived", {})),
        blocks=blocks,
        models=models,
        primary=primary,
        explain=explain,
        nomogram=nomogram,
        comparisons=tuple((a, b) for a, b in d.get("comparisons", [])),
        evaluation=d["evaluation"],
        shap=d["shap"],
        baseline=d["baseline"],
        survival=survival,
        raw=d,
    )


def _cross_check(spec: StudySpec, where: str) -> None:
    """The checks a JSON schema cannot express; raises ConfigError naming the key."""
    problems: list[str] = []

    def bad(key: str, msg: str) -> None:
        problems.append(f"key {key}: {msg}")

    if not spec.path.endswith((".yaml", ".yml")):
        bad("(file)", "study files end in .yaml")
    chains = spec.raw.get("chains", {})
    for name, b in spec.raw["blocks"].items():
        allowed = _BLOCK_KEYS[b["source"]] | {"source", "description"}
        extra = sorted(set(b) - allowed)
        if extra:
            bad(f"blocks.{name}", f"{extra} not allowed for source {b['source']!r}")
        if b["source"] == "clinical" and spec.label in b.get("columns", []):
            bad(f"blocks.{name}.columns", f"holds the label {spec.label!r} (leakage)")
    for name, raw in spec.raw["models"].items():
        m = spec.models[name]
        key = f"models.{name}"
        if name in ("all", "none"):
            bad(key, "'all' and 'none' are reserved (decision-curve strategies)")
        extra = sorted(set(raw) - _MODEL_KEYS[m.kind] - {"kind", "description"})
        if extra:
            bad(key, f"{extra} not allowed for kind {m.kind!r}")
        sel = raw.get("selection")
        if isinstance(sel, str) and sel not in chains:
            bad(f"{key}.selection", f"unknown chain {sel!r} (chains: {sorted(chains)})")
        if m.kind == "pipeline":
            if not m.blocks:
                bad(f"{key}.blocks", "a pipeline model needs at least one block")
            for b in m.blocks:
                if b not in spec.blocks:
                    bad(f"{key}.blocks", f"unknown block {b!r} (blocks: {sorted(spec.blocks)})")
            if m.output == "radscore" and not any(s["step"] == "lasso" for s in m.selection):
                bad(f"{key}.output", "radscore needs a lasso step in the selection chain")
            for i, st in enumerate(m.selection):
                if st.get("step") == "icc":
                    if "icc_table" in st:
                        bad(f"{key}.selection[{i}]", "icc_table is supplied by the study layer")
                    if not any(
                        spec.blocks[b].source == "radiomics" for b in m.blocks if b in spec.blocks
                    ):
                        bad(f"{key}.selection[{i}]", "an icc step needs a radiomics block")
        elif m.kind == "clinical":
            if not (m.candidates or m.scores):
                bad(key, "a clinical model needs candidates and/or scores")
            if spec.label in m.candidates:
                bad(f"{key}.candidates", f"holds the label {spec.label!r} (leakage)")
        for dep in m.depends_on:
            what = "scores" if m.kind == "clinical" else "models"
            if dep not in spec.models:
                bad(f"{key}.{what}", f"unknown model {dep!r}")
            elif dep == name:
                bad(f"{key}.{what}", "a model cannot use its own score")
            elif spec.models[dep].depends_on:
                bad(f"{key}.{what}", f"{dep!r} itself stacks other models (one level only)")
    if spec.primary not in spec.models:
        bad("primary", f"unknown model {spec.primary!r}")
    if spec.explain is not None and (
        spec.explain not in spec.models or spec.models[spec.explain].kind != "pipeline"
    ):
        bad("explain", f"{spec.explain!r} is not a pipeline model of this study")
    if spec.nomogram is not None and (
        spec.nomogram not in spec.models or spec.models[spec.nomogram].kind != "clinical"
    ):
        bad("nomogram", f"{spec.nomogram!r} is not a clinical model of this study")
    for i, (a, b) in enumerate(spec.comparisons):
        for m in (a, b):
            if m not in spec.models:
                bad(f"comparisons[{i}]", f"unknown model {m!r}")
        if a == b:
            bad(f"comparisons[{i}]", "compares a model with itself")
    if spec.survival is not None:
        if spec.survival.model not in spec.models:
            bad("survival.model", f"unknown model {spec.survival.model!r}")
        if spec.label in spec.survival.covariates:
            bad("survival.covariates", f"holds the label {spec.label!r}")
    for name, dspec in spec.derived.items():
        if name == spec.label:
            bad(f"derived.{name}", "a derived column cannot replace the label")
        op, value = dspec["op"], dspec.get("value")
        if op in ("gt", "ge", "lt", "le") and not isinstance(value, int | float):
            bad(f"derived.{name}.value", f"{op} needs a number")
        if op == "isin" and not isinstance(value, list):
            bad(f"derived.{name}.value", "isin needs a list")
        if op == "map" and not isinstance(value, dict):
            bad(f"derived.{name}.value", "map needs a mapping")
    if problems:
        raise ConfigError(f"{where}: invalid\n  " + "\n  ".join(problems))


def _check_estimators(spec: StudySpec, where: str) -> None:
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


def load_studies(files: Sequence[str | os.PathLike[str]], **kwargs: Any) -> dict[str, StudySpec]:
    """Load several study files; names (file stems) must be unique."""
    out: dict[str, StudySpec] = {}
    for f in files:
        spec = load_study(f, **kwargs)
        if spec.name in out:
            raise ConfigError(f"study {f}: name {spec.name!r} also used by {out[spec.name].path}")
        out[spec.name] = spec
    return out


# ============================================================================================
# Inputs and outputs
# ============================================================================================


def study_dir(name: str) -> str:
    """``results/cohort/studies/{name}``."""
    return paths.cohort_path("studies", name)


def study_inputs(spec: StudySpec, clinical: str) -> dict[str, str]:
    """The tables a study reads, by :func:`run_study` ``tables`` key: ``clinical`` (the path
    given), ``radiomics``, ``reader_icc`` (when a used chain has an ``icc`` step), ``habitats``,
    and ``table_{block}`` for each used ``table`` block."""
    out = {"clinical": str(clinical)}
    for name in spec.used_blocks:
        b = spec.blocks[name]
        if b.source == "radiomics":
            out["radiomics"] = paths.cohort_path("radiomics", "features.parquet")
        elif b.source == "habitats":
            out["habitats"] = paths.cohort_path("habitats", "features.parquet")
        elif b.source == "table":
            out[b.input_key] = str(b.path)
    if any(m.kind == "pipeline" and m.uses_icc for m in spec.models.values()):
        out["reader_icc"] = paths.cohort_path("radiomics", "reader_icc.parquet")
    return out


def study_outputs(spec: StudySpec) -> dict[str, str]:
    """Every file :func:`run_study` writes (besides ``splits.parquet``), by output name, as file
    names inside the study folder. Fixed by the spec alone, whatever the data: a figure that
    cannot be drawn (e.g. a split with one class) is written as a placeholder saying why."""
    out = {
        name: f"{name}.parquet"
        for name in (
            "predictions",
            "performance",
            "comparisons",
            "calibration",
            "decision_curve",
            "by_center",
            "baseline",
        )
    }
    out["selected_features"] = "selected_features.json"
    out["metrics"] = "metrics.json"
    for split in spec.splits.names:
        out[f"roc_{split}"] = f"roc_{split}.png"
    out["calibration_png"] = "calibration.png"
    out["decision_curve_png"] = "decision_curve.png"
    if spec.clinical_models:
        out["clinical_univariable"] = "clinical_univariable.parquet"
        out["clinical_multivariable"] = "clinical_multivariable.parquet"
    if spec.nomogram:
        out["nomogram"] = "nomogram.png"
    if spec.explain:
        out["shap_beeswarm"] = "shap_beeswarm.png"
        out["shap_waterfall"] = "shap_waterfall.png"
    if spec.survival is not None:
        out["cox"] = "cox.parquet"
        out["cutpoint"] = "cutpoint.json"
        for ep in spec.survival.endpoints:
            out[f"km_{ep}"] = f"km_{ep}.png"
    return out


# ============================================================================================
# Tables
# ============================================================================================


def read_clinical_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The clinical TSV typed: schema string columns stay text, other columns become numbers
    when every non-empty cell parses as one; empty cells are missing. Index: ``patient``."""
    from hccrad.config import load_schema
    from hccrad.sheets import read_clinical

    raw = read_clinical(path)
    if "patient" not in raw.columns:
        raise InputError("clinical table has no 'patient' column", file=path)
    props = load_schema("clinical")["properties"]
    out = {}
    for col in raw.columns:
        text = raw[col].replace("", np.nan)
        types = props.get(col, {}).get("type", [])
        types = types if isinstance(types, list) else [types]
        if col == "patient" or "string" in types:
            out[col] = text.astype(object)
            continue
        num = pd.to_numeric(text, errors="coerce")
        out[col] = num if num.notna().sum() == text.notna().sum() else text.astype(object)
    table = pd.DataFrame(out)
    table["patient"] = table["patient"].astype(str)
    return table.set_index("patient")


def derive_columns(
    clinical: pd.DataFrame, derived: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Add the derived columns (each a function of one source column of the same row).

    ``gt/ge/lt/le/eq/ne`` -> 1.0/0.0; ``isin`` (a list) -> 1.0/0.0; ``log/log2/log10`` (values
    <= 0 -> missing); ``map`` (a mapping; unmapped -> missing). A missing source stays missing.
    """
    out = clinical.copy()
    for name, d in derived.items():
        col, op, value = d["column"], d["op"], d.get("value")
        if col not in out.columns:
            raise InputError(f"derived column {name!r}: source column {col!r} not in the table")
        src = out[col]
        miss = src.isna()
        if op in ("gt", "ge", "lt", "le", "eq", "ne"):
            if op in ("eq", "ne"):
                cmp = src.astype(str) == str(value)
                res = cmp if op == "eq" else ~cmp
            else:
                num = pd.to_numeric(src, errors="coerce")
                res = getattr(num, op)(float(value))
            vals = res.astype(float)
        elif op == "isin":
            vals = src.astype(str).isin([str(v) for v in value]).astype(float)
        elif op in ("log", "log2", "log10"):
            num = pd.to_numeric(src, errors="coerce")
            vals = getattr(np, op)(num.where(num > 0))
        elif op == "map":
            vals = src.map(lambda v, m=value: m.get(v, m.get(str(v), np.nan)))
            num = pd.to_numeric(vals, errors="coerce")
            vals = num if num.notna().sum() == vals.notna().sum() else vals.astype(object)
        else:  # pragma: no cover - the schema rejects other ops
            raise ConfigError(f"derived column {name!r}: unknown op {op!r}")
        out[name] = vals.where(~miss)
    return out


def study_clinical(
    spec: StudySpec, clinical: pd.DataFrame, patients: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The study's patients (its modality) with the derived columns, indexed by patient.

    Args:
        clinical: The clinical table (index or column ``patient``).
        patients: ``{patient: modality}`` of the cohort sheet; when given, only these patients
            are kept and their modality comes from here (else from the ``modality`` column,
            and every row counts when there is none).

    Raises:
        InputError: No patient of the study's modality, or the label column is missing.
    """
    table = clinical.copy()
    if "patient" in table.columns:
        table = table.set_index("patient")
    table.index = table.index.astype(str)
    table.index.name = "patient"
    if patients is not None:
        table = table.loc[[p for p in table.index if p in patients]]
        table["modality"] = [patients[p] for p in table.index]
    if "modality" in table.columns:
        table = table[table["modality"].astype(str) == spec.modality]
    if table.empty:
        raise InputError(f"study {spec.name}: no {spec.modality} patient in the clinical table")
    if spec.label not in table.columns:
        raise InputError(
            f"study {spec.name}: the clinical table has no label column {spec.label!r}"
        )
    table = derive_columns(table, spec.derived)
    return table.sort_index()


def _match(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def select_block_columns(block: BlockSpec, columns: Sequence[str]) -> list[str]:
    """Columns of a ``radiomics``/``habitats``/``table`` source that ``block`` takes."""
    out = []
    for col in columns:
        col = str(col)
        if block.source == "radiomics":
            parts = col.split("_", 4)
            if len(parts) != 5:
                continue
            phase, region, itype, cls, feat = parts
            ok = (
                _match(phase, block.phases)
                and _match(region, block.regions)
                and _match(itype, block.image_types)
                and _match(cls, block.classes)
                and _match(feat, block.features)
            )
        elif block.source == "habitats":
            pats = block.columns if block.columns != ("*",) else ("habitat[0-9]*_*",)
            ok = _match(col, pats)
        else:
            ok = _match(col, block.columns)
        if ok and not _match(col, block.exclude):
            out.append(col)
    return out


def block_table(
    spec: StudySpec, block: BlockSpec, tables: Mapping[str, pd.DataFrame], clinical: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """One block's columns for its patients (index ``patient``) and its categorical columns."""
    where = f"study {spec.name}, block {block.name}"
    if block.source == "clinical":
        missing = [c for c in block.columns if c not in clinical.columns]
        if missing:
            raise InputError(f"{where}: clinical column(s) {missing} not in the table")
        data = clinical[list(block.columns)].copy()
        cats = [
            c
            for c in data.columns
            if c in block.categorical or not pd.api.types.is_numeric_dtype(data[c])
        ]
        for c in cats:
            data[c] = data[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
        return data, cats
    key = block.input_key
    if key not in tables:
        raise InputError(f"{where}: no {key} table given (source {block.source})")
    table = tables[key].copy()
    if "patient" in table.columns:
        table = table.set_index("patient")
    table.index = table.index.astype(str)
    table.index.name = "patient"
    cols = select_block_columns(block, table.columns)
    if not cols:
        raise InputError(f"{where}: no column of the {key} table matches the block's patterns")
    data = table[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(data[c])]
    if bad:
        raise InputError(f"{where}: non-numeric column(s) {bad[:5]} in the {key} table")
    if data.index.has_duplicates:
        raise InputError(f"{where}: duplicate patient rows in the {key} table")
    return data.astype(float), []


# ============================================================================================
# Splits
# ============================================================================================


def study_splits(spec: StudySpec, clinical: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``patient, split`` for the study's patients (sorted by patient), by
    :func:`hccrad.stats.make_splits` on the study's label and split settings.

    When the development set cannot be stratified (one class, or a class too small for the
    validation set), the split is retried without a validation set, then done by the center
    and date rules alone (every development patient in ``train``); a warning says so. The
    consequence (a study that cannot be trained) is reported by :func:`run_study`.
    """
    from hccrad.stats.splits import make_splits

    s = spec.splits
    table = clinical.reset_index()
    for col in (s.center_column, s.date_column if s.temporal_cutoff else None):
        if col is not None and col not in table.columns:
            raise InputError(f"study {spec.name}: the clinical table has no column {col!r}")
    if s.temporal_cutoff is not None:
        primary = table[s.center_column].astype(str).isin(set(s.primary_centers))
        undated = table.loc[primary & table[s.date_column].isna(), "patient"].tolist()
        if undated:
            raise InputError(
                f"study {spec.name}: primary-center patient(s) without {s.date_column} (needed "
                f"for the temporal cut-off): {undated[:10]}"
            )
    kwargs = dict(
        label=spec.label,
        center_col=s.center_column,
        date_col=s.date_column,
        primary_centers=list(s.primary_centers),
        temporal_cutoff=s.temporal_cutoff,
        seed=seed,
    )
    for fraction in dict.fromkeys((s.validation_fraction, 0.0)):
        try:
            out = make_splits(table, validation_fraction=fraction, **kwargs)
            if fraction != s.validation_fraction:
                log.warning("study %s: no validation set (stratification impossible)", spec.name)
            return out.sort_values("patient", kind="stable").reset_index(drop=True)
        except ValueError as err:
            last = err
    log.warning("study %s: split by center and date only (%s)", spec.name, last)
    centers = table[s.center_column].astype(str)
    split = np.where(centers.isin(set(s.primary_centers)), "train", "external").astype(object)
    if s.temporal_cutoff is not None:
        dates = pd.to_datetime(table[s.date_column], errors="coerce")
        split[(split == "train") & (dates >= pd.Timestamp(s.temporal_cutoff)).to_numpy()] = (
            "temporal"
        )
    split[table[spec.label].isna().to_numpy()] = "unlabeled"
    out = pd.DataFrame({"patient": table["patient"].astype(str), "split": split})
    return out.sort_values("patient", kind="stable").reset_index(drop=True)


# ============================================================================================
# Fitting
# ============================================================================================


@dataclass
class _Fitted:
    """A model fitted on training patients: ``predict(patients) -> (probability, log-odds)``."""

    name: str
    kind: str
    predict: Callable[[pd.Index], tuple[np.ndarray, np.ndarray]]
    estimator: Any = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Data:
    """Everything the fitting needs: the study's design per model and the label."""

    spec: StudySpec
    seed: int
    clinical: pd.DataFrame  # study patients x clinical (+ derived) columns
    y: pd.Series  # 0/1 label of the study patients
    X: dict[str, pd.DataFrame]  # fused design per pipeline model
    categorical: dict[str, list[str]]  # categorical fused columns per pipeline model
    icc: pd.DataFrame | None  # reader ICC table (index: feature)
    radiomics_cols: dict[str, dict[str, str]]  # model -> fused name -> radiomics name


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _n_min(y: pd.Series) -> int:
    counts = y.value_counts()
    return int(counts.min()) if len(counts) == 2 else 0


def _pipeline(data: _Data, m: ModelSpec, n_min: int) -> Any:
    from hccrad.stats.models import build_pipeline

    steps = []
    for st in m.selection:
        st = dict(st)
        if st["step"] == "icc":
            if data.icc is None:
                raise InputError(
                    f"study {data.spec.name}: model {m.name} needs the reader-ICC table"
                )
            mapping = data.radiomics_cols[m.name]
            table = data.icc.reindex([mapping[c] for c in mapping])
            table.index = list(mapping)
            st.update(icc_table=table, missing="keep")  # non-radiomics columns are exempt
        steps.append(st)
    smote: bool | dict[str, Any] = m.smote
    if smote:
        kw = dict(smote) if isinstance(smote, Mapping) else {}
        kw.setdefault("k_neighbors", max(1, min(5, n_min // 2 - 1)))
        smote = kw
    pipe = build_pipeline(steps, m.classifier, m.params, data.seed, smote)
    from hccrad.stats.encoding import TableEncoder

    pipe.steps.insert(0, ("encode", TableEncoder(tuple(data.categorical[m.name]))))
    return pipe


def _walk(pipe: Any, X: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """Feature names reaching the classifier and the number of columns after each step."""
    counts = {"input": X.shape[1]}
    Xt: Any = X
    for name, step in pipe.steps[:-1]:
        if hasattr(step, "fit_resample"):
            continue
        Xt = step.transform(Xt)
        counts[name] = int(Xt.shape[1])
    names = (
        list(Xt.columns) if isinstance(Xt, pd.DataFrame) else [f"x{i}" for i in range(Xt.shape[1])]
    )
    return names, counts


def _fit_pipeline(data: _Data, m: ModelSpec, train: pd.Index) -> _Fitted:
    from hccrad.stats.models import grid_search
    from hccrad.stats.selection import LassoSelector

    X, y = data.X[m.name], data.y
    Xtr, ytr = X.loc[train], y.loc[train]
    n_min = _n_min(ytr)
    pipe = _pipeline(data, m, n_min)
    info: dict[str, Any] = {}
    if m.grid:
        cv = min(m.cv, n_min)
        if cv >= 2:
            search = grid_search(pipe, m.grid, Xtr, ytr, cv=cv, seed=data.seed)
            est = search.best_estimator_
            info["best_params"] = dict(search.best_params_)
            info["cv_auc"] = float(search.best_score_)
            info["cv_folds"] = cv
        else:
            est = pipe.fit(Xtr, ytr)
            info["note"] = "grid search skipped (a class has < 2 training patients)"
    else:
        est = pipe.fit(Xtr, ytr)
    names, counts = _walk(est, Xtr)
    info.update(features=names, n_features=len(names), step_features=counts)
    lasso = next((st for _, st in est.steps if isinstance(st, LassoSelector)), None)
    if lasso is not None:
        names_in = getattr(lasso, "feature_names_in_", None)
        if names_in is None:
            names_in = [f"x{i}" for i in range(lasso.n_features_in_)]
        kept = np.flatnonzero(lasso.support_)
        info["lasso"] = {
            "C": lasso.C_,
            "intercept": lasso.intercept_,
            "coef": {str(names_in[i]): float(lasso.coef_[i]) for i in kept},
        }

    def predict(idx: pd.Index, est: Any = est) -> tuple[np.ndarray, np.ndarray]:
        return _pipe_predict(data, m, est, idx)

    return _Fitted(m.name, m.kind, predict, est, info)


def _impute_frame(df: pd.DataFrame, train: pd.Index, categorical: Sequence[str]) -> pd.DataFrame:
    """Training median / mode imputation; levels unseen in training -> the training mode."""
    out = df.copy()
    for col in out.columns:
        tr = out.loc[train, col]
        if col in categorical or not pd.api.types.is_numeric_dtype(out[col]):
            text = out[col].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
            seen = tr.dropna().astype(str)
            if seen.empty:
                raise ValueError(f"column {col!r} has no training value")
            counts = seen.value_counts()
            mode = min(counts.index[counts == counts.max()])
            text = text.where(text.isin(set(seen)) | text.isna(), mode)
            out[col] = text.fillna(mode)
        else:
            vals = pd.to_numeric(out[col], errors="coerce")
            med = vals.loc[train].median()
            if not np.isfinite(med):
                raise ValueError(f"column {col!r} has no training value")
            out[col] = vals.fillna(med).astype(float)
    return out


def _fit_clinical(
    data: _Data, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]
) -> _Fitted:
    from hccrad.stats.models import clinical_model

    missing = [c for c in m.candidates if c not in data.clinical.columns]
    if missing:
        raise InputError(f"study {data.spec.name}, model {m.name}: clinical column(s) {missing}")
    df = data.clinical[list(m.candidates)].copy()
    for dep in m.scores:
        df[f"{dep}_score"] = stack[dep]
    df = _impute_frame(df, train, m.categorical)
    fit_df = df.loc[train].assign(**{data.spec.label: data.y.loc[train].to_numpy()})
    cm = clinical_model(fit_df, data.spec.label, list(df.columns), alpha=m.alpha)
    info = {
        "features": list(cm.selected),
        "n_features": len(cm.selected),
        "fallback": bool(cm.fallback),
        "odds_ratios": dict(zip(cm.multivariable["term"], cm.multivariable["OR"], strict=True)),
    }

    def predict(idx: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        p = cm.predict(df.loc[idx])
        return p, _logit(p)

    return _Fitted(m.name, m.kind, predict, cm, info)


def _fit_fusion(
    data: _Data, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]
) -> _Fitted:
    from sklearn.linear_model import LogisticRegression

    from hccrad.stats.models import score_fusion

    ytr = data.y.loc[train]
    tr_scores = {d: stack[d].loc[train].to_numpy() for d in m.models}
    if m.method == "logistic":
        sf = score_fusion(tr_scores, ytr.to_numpy())
        recal = None
    else:
        sf = score_fusion(tr_scores)
        z = sf.transform(tr_scores).reshape(-1, 1)
        recal = LogisticRegression(C=np.inf, max_iter=10000).fit(z, ytr.to_numpy())
    info = {
        "features": list(m.models),
        "n_features": len(m.models),
        "weights": dict(zip(sf.names, sf.weights.tolist(), strict=True)),
        "intercept": sf.intercept,
    }

    def predict(idx: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        fused = sf.transform({d: stack[d].loc[idx].to_numpy() for d in m.models})
        if recal is not None:
            fused = recal.decision_function(fused.reshape(-1, 1))
        return _expit(fused), np.asarray(fused, dtype=float)

    return _Fitted(m.name, m.kind, predict, sf, info)


def _fit(data: _Data, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]) -> _Fitted:
    if m.kind == "pipeline":
        return _fit_pipeline(data, m, train)
    if m.kind == "clinical":
        return _fit_clinical(data, m, train, stack)
    return _fit_fusion(data, m, train, stack)


def _stack_scores(
    data: _Data, m: ModelSpec, fitted: _Fitted, train: pd.Index, patients: pd.Index
) -> pd.Series:
    """The log-odds other models stack on (``stacking``).

    * ``in_sample``: the full training fit's prediction for every patient;
    * ``oof``: out-of-fold predictions for training patients (each from a fold model that did
      not see it), the full training fit's prediction for everyone else;
    * ``crossfit``: out-of-fold for training patients, the mean of the fold models' predictions
      for everyone else (so that both come from models of the same size and scale).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    _, lp = fitted.predict(patients)
    out = pd.Series(lp, index=patients)
    if data.spec.stacking == "in_sample":
        return out
    ytr = data.y.loc[train]
    k = min(data.spec.stacking_folds, _n_min(ytr))
    if k < 2:
        log.warning("model %s: too few training patients for out-of-fold scores", m.name)
        return out
    others = patients.difference(train, sort=False)
    fold_mean = pd.Series(0.0, index=others)
    folds = StratifiedKFold(k, shuffle=True, random_state=data.seed)
    for fit_i, held_i in folds.split(np.zeros(len(train)), ytr.to_numpy()):
        fit_idx, held_idx = train[fit_i], train[held_i]
        if m.kind == "pipeline":
            est = clone(fitted.estimator).fit(data.X[m.name].loc[fit_idx], ytr.loc[fit_idx])
            sub = _Fitted(m.name, m.kind, lambda idx, e=est: _pipe_predict(data, m, e, idx), est)
        else:
            sub = _fit(data, m, fit_idx, {})
        out.loc[held_idx] = sub.predict(held_idx)[1]
        if data.spec.stacking == "crossfit" and len(others):
            fold_mean += sub.predict(others)[1] / k
    if data.spec.stacking == "crossfit" and len(others):
        out.loc[others] = fold_mean
    return out


def _pipe_predict(
    data: _Data, m: ModelSpec, est: Any, idx: pd.Index
) -> tuple[np.ndarray, np.ndarray]:
    from hccrad.stats.models import radiomics_score

    Xi = data.X[m.name].loc[idx]
    if m.output == "radscore":
        lp = np.asarray(radiomics_score(est, Xi), dtype=float)
        return _expit(lp), lp
    p = est.predict_proba(Xi)[:, 1]
    return p, _logit(p)


# ============================================================================================
# Evaluation
# ============================================================================================


def _classes(y: np.ndarray) -> tuple[int, int]:
    n1 = int(np.sum(y == 1))
    return n1, int(y.size - n1)


def _degenerate(y: np.ndarray) -> str:
    """Why a split cannot be evaluated ('' when it can)."""
    n1, n0 = _classes(y)
    if y.size == 0:
        return "no patients"
    if n1 == 0 or n0 == 0:
        return f"one class only ({n1} cases, {n0} controls)"
    return ""


def performance_table(
    predictions: pd.DataFrame,
    cutoffs: Mapping[str, float],
    splits: Sequence[str],
    models: Sequence[str],
    level: float = 0.95,
    notes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per model x split: ``n, n_pos, auc, auc_lower, auc_upper`` (DeLong) and the
    classification metrics at the model's **training** Youden cut-off (``cutoff``); ``note``
    says why values are NaN (no patients, one class, a failed fit)."""
    from hccrad.stats import auc_ci, classification_metrics

    rows = []
    metric_cols = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn")
    for model in models:
        for split in splits:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            y = sub["label"].to_numpy(dtype=float)
            s = sub["score"].to_numpy(dtype=float)
            n1, _ = _classes(y)
            cut = float(cutoffs.get(model, np.nan))
            row: dict[str, Any] = {"model": model, "split": split, "n": len(sub), "n_pos": n1}
            row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan, cutoff=cut)
            row.update(dict.fromkeys(metric_cols, np.nan))
            note = (notes or {}).get(model, "")
            if not note:
                note = _degenerate(y) if len(sub) else "no patients"
                if not _degenerate(y):
                    row["auc"], row["auc_lower"], row["auc_upper"] = auc_ci(y, s, level)
                if len(sub) and np.isfinite(cut):
                    row.update(classification_metrics(y, s, cut))
                elif len(sub):
                    note = note or "no training cut-off"
            row["note"] = note
            rows.append(row)
    cols = ["model", "split", "n", "n_pos", "auc", "auc_lower", "auc_upper", "cutoff"]
    return pd.DataFrame(rows, columns=[*cols, *metric_cols, "note"])


def _paired(predictions: pd.DataFrame, a: str, b: str, split: str) -> pd.DataFrame:
    pa = predictions[(predictions["model"] == a) & (predictions["split"] == split)]
    pb = predictions[(predictions["model"] == b) & (predictions["split"] == split)]
    return pa.merge(pb[["patient", "score"]], on="patient", suffixes=("_a", "_b"))


def comparison_table(
    predictions: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    cutoffs: Mapping[str, float],
    splits: Sequence[str],
) -> pd.DataFrame:
    """Per pair (``model`` vs ``reference``) and split: paired DeLong ``z, p``; categorical NRI
    of the two models' classifications at their training cut-offs; continuous NRI of their
    probabilities."""
    from hccrad.stats import delong_test, nri

    rows = []
    for a, b in pairs:
        for split in splits:
            m = _paired(predictions, a, b, split)
            y = m["label"].to_numpy(dtype=float)
            row: dict[str, Any] = {"model": a, "reference": b, "split": split, "n": len(m)}
            row["n_pos"] = _classes(y)[0]
            absent = [x for x in (a, b) if not (predictions["model"] == x).any()]
            note = f"model(s) {absent} not fitted" if absent else _degenerate(y)
            if not note:
                sa, sb = m["score_a"].to_numpy(float), m["score_b"].to_numpy(float)
                d = delong_test(y, sa, sb)
                row.update(auc_model=d.auc_a, auc_reference=d.auc_b, delong_z=d.z, delong_p=d.p)
                ca, cb = cutoffs.get(a, np.nan), cutoffs.get(b, np.nan)
                if np.isfinite(ca) and np.isfinite(cb):
                    cat = nri(y, (sb >= cb).astype(float), (sa >= ca).astype(float), [0.5])
                    row.update(
                        nri_categorical=cat.nri,
                        nri_categorical_events=cat.nri_events,
                        nri_categorical_nonevents=cat.nri_nonevents,
                        nri_categorical_p=cat.p,
                    )
                cont = nri(y, sb, sa)
                row.update(
                    nri_continuous=cont.nri,
                    nri_continuous_events=cont.nri_events,
                    nri_continuous_nonevents=cont.nri_nonevents,
                    nri_continuous_p=cont.p,
                )
            row["note"] = note
            rows.append(row)
    cols = [
        "model",
        "reference",
        "split",
        "n",
        "n_pos",
        "auc_model",
        "auc_reference",
        "delong_z",
        "delong_p",
        "nri_categorical",
        "nri_categorical_events",
        "nri_categorical_nonevents",
        "nri_categorical_p",
        "nri_continuous",
        "nri_continuous_events",
        "nri_continuous_nonevents",
        "nri_continuous_p",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols)


def calibration_table(
    predictions: pd.DataFrame,
    models: Sequence[str],
    splits: Sequence[str],
    n_bins: int,
    strategy: str,
) -> pd.DataFrame:
    """Per model x split x bin: the binned curve with the split's slope, intercept and Brier."""
    from hccrad.stats import calibration

    rows = []
    for model in models:
        for split in splits:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            y = sub["label"].to_numpy(dtype=float)
            base = {"model": model, "split": split, "n": len(sub)}
            note = _degenerate(y)
            if note:
                rows.append({**base, "note": note})
                continue
            try:
                res = calibration(y, sub["score"].to_numpy(float), n_bins=n_bins, strategy=strategy)
            except (InputError, ValueError) as err:
                rows.append({**base, "note": f"calibration failed: {err}"})
                continue
            scal = {k: v for k, v in res.as_dict().items() if k != "n"}
            for _, b in res.curve.iterrows():
                rows.append(
                    {
                        **base,
                        **scal,
                        "bin": int(b["bin"]) if np.isfinite(b["bin"]) else b["bin"],
                        "mean_predicted": b["mean_predicted"],
                        "observed": b["observed"],
                        "bin_n": int(b["n"]),
                        "note": "",
                    }
                )
    cols = [
        "model",
        "split",
        "n",
        "slope",
        "intercept",
        "recalibration_intercept",
        "brier",
        "bin",
        "mean_predicted",
        "observed",
        "bin_n",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols).astype({"bin": "float64"})


def _thresholds(evaluation: Mapping[str, Any]) -> np.ndarray:
    t = evaluation["thresholds"]
    grid = np.arange(t["start"], t["stop"] + t["step"] / 2, t["step"])
    return np.round(grid[grid < 1], 10)


def decision_curve_table(
    predictions: pd.DataFrame, models: Sequence[str], splits: Sequence[str], thresholds: np.ndarray
) -> pd.DataFrame:
    """Net benefit per split, threshold and strategy (each model, ``all``, ``none``)."""
    from hccrad.stats import net_benefit

    parts = []
    for split in splits:
        refs = False
        for model in models:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            if sub.empty:
                continue
            nb = net_benefit(
                sub["label"].to_numpy(float), sub["score"].to_numpy(float), thresholds, model
            )
            if refs:
                nb = nb[nb["strategy"] == model]
            refs = True
            parts.append(nb.assign(split=split))
    if not parts:
        return pd.DataFrame(columns=["split", "threshold", "strategy", "net_benefit"])
    out = pd.concat(parts, ignore_index=True)
    return out[["split", "threshold", "strategy", "net_benefit"]]


def by_group_table(
    predictions: pd.DataFrame,
    clinical: pd.DataFrame,
    columns: Sequence[str],
    models: Sequence[str],
    level: float = 0.95,
) -> pd.DataFrame:
    """AUC per model within each value of ``columns`` (center, field strength...), over all
    evaluated patients (``scope = all``) and over the held-out ones (``held_out``)."""
    from hccrad.stats import auc_ci

    rows = []
    present = [c for c in columns if c in clinical.columns]
    for model in models:
        pm = predictions[predictions["model"] == model]
        for scope in ("all", "held_out"):
            ps = pm if scope == "all" else pm[pm["split"] != "train"]
            for col in present:
                vals = clinical[col].reindex(ps["patient"]).to_numpy()
                text = np.array(
                    [
                        "" if pd.isna(v) else (f"{v:g}" if isinstance(v, float) else str(v))
                        for v in vals
                    ]
                )
                for value in sorted(set(text) - {""}):
                    sel = text == value
                    y = ps["label"].to_numpy(float)[sel]
                    s = ps["score"].to_numpy(float)[sel]
                    row = {"model": model, "scope": scope, "by": col, "value": value}
                    row.update(n=int(sel.sum()), n_pos=_classes(y)[0])
                    note = _degenerate(y)
                    a = lo = hi = np.nan
                    if not note:
                        a, lo, hi = auc_ci(y, s, level)
                    rows.append({**row, "auc": a, "auc_lower": lo, "auc_upper": hi, "note": note})
    cols = ["model", "scope", "by", "value", "n", "n_pos", "auc", "auc_lower", "auc_upper", "note"]
    return pd.DataFrame(rows, columns=cols)


def baseline_tables(
    spec: StudySpec, clinical: pd.DataFrame, split: pd.Series, y: pd.Series
) -> pd.DataFrame:
    """Baseline characteristics: by split (``table = by_split``) and, within each split, by
    label (``table = <split>``); long format, group columns side by side."""
    from hccrad.stats import baseline_table

    cfg = spec.baseline
    variables = [v for v in cfg.get("variables", []) if v in clinical.columns and v != spec.label]
    parts = []
    if not variables:
        return pd.DataFrame(columns=["table", "variable", "level", "p", "test", "missing", "note"])
    df = clinical.loc[y.index, variables].copy()
    empty = [v for v in variables if df[v].isna().all()]
    variables = [v for v in variables if v not in empty]
    df = df[variables]
    df["split"] = split.loc[y.index].to_numpy()
    df[spec.label] = y.astype(int).astype(str).to_numpy()
    cats = [v for v in cfg.get("categorical", []) if v in variables]
    nonnormal = [v for v in cfg.get("nonnormal", []) if v in variables]
    groups = [("by_split", df, "split")]
    groups += [(s, df[df["split"] == s], spec.label) for s in spec.splits.names]
    for name, data, col in groups:
        try:
            tab = baseline_table(data, col, variables, categorical=cats, nonnormal=nonnormal)
            parts.append(tab.assign(table=name, note=""))
        except (InputError, ValueError, IndexError) as err:
            parts.append(pd.DataFrame([{"table": name, "note": f"not tabulated: {err}"}]))
    out = pd.concat(parts, ignore_index=True)
    lead = ["table", "variable", "level"]
    for c in lead:  # every group may have failed (tiny or one-class splits)
        if c not in out:
            out[c] = None
    out = out[lead + [c for c in out.columns if c not in lead]]
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(_text_or_none)
    return out


def _text_or_none(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v if isinstance(v, str) else str(v)


# ============================================================================================
# Survival
# ============================================================================================


def _scope(split: pd.Series, scope: str) -> pd.Series:
    if scope == "all":
        return pd.Series(True, index=split.index)
    if scope == "held_out":
        return split != "train"
    return split == scope


def _cox_rows(df: pd.DataFrame, covariates: list[str], analysis: str) -> pd.DataFrame:
    """One Cox model's table; a failed fit, or a convergence warning (separation: HRs near 0
    or infinite), is reported in ``note``."""
    from hccrad.stats.survival import cox

    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            res = cox(df, "time", "event", covariates)
        except Exception as err:  # lifelines raises its own convergence errors
            return pd.DataFrame([{"analysis": analysis, "note": f"Cox failed: {err}"}])
    problems = [
        str(w.message).strip().splitlines()[0]
        for w in caught
        if "Convergence" in w.category.__name__
    ]
    note = f"convergence warning: {problems[0]}" if problems else ""
    return res.table.assign(
        analysis=analysis, concordance=res.concordance, n=res.n, n_events=res.n_events, note=note
    )


def survival_analysis(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    out_dir: Path,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per endpoint: the maxstat cut-point of ``score`` on the **training** patients, groups
    (low = score <= cut) applied to all, KM figure (``km_scope``), log-rank per scope and
    uni/multivariable Cox (``cox_scope``) of the high-score group and the listed covariates."""
    from hccrad.stats import cutpoint_groups, logrank, optimal_cutpoint
    from hccrad.stats.figures import plot_km

    sv = spec.survival
    assert sv is not None
    rows: list[pd.DataFrame] = []
    cuts: dict[str, Any] = {}
    for ep, (tcol, ecol) in sv.endpoints.items():
        info: dict[str, Any] = {"model": sv.model, "score": "linear_predictor", "time": tcol}
        info.update(event=ecol, min_prop=sv.min_prop, km_scope=sv.km_scope, cox_scope=sv.cox_scope)
        png = out_dir / f"km_{ep}.png"
        missing = [c for c in (tcol, ecol) if c not in clinical.columns]
        if missing:
            raise InputError(f"study {spec.name}: survival columns {missing} not in the table")
        df = pd.DataFrame(
            {
                "time": pd.to_numeric(clinical[tcol].reindex(score.index), errors="coerce"),
                "event": pd.to_numeric(clinical[ecol].reindex(score.index), errors="coerce"),
                "score": score,
                "split": split.reindex(score.index),
            }
        ).dropna(subset=["time", "event", "score"])
        train = df[df["split"] == "train"]
        try:
            cp = optimal_cutpoint(
                train["time"], train["event"], train["score"], min_prop=sv.min_prop
            )
        except (InputError, ValueError) as err:
            note = f"no training cut-point: {err}"
            info.update(cutpoint=None, note=note)
            cuts[ep] = info
            _placeholder_png(png, f"Kaplan-Meier: {ep}", note)
            rows.append(pd.DataFrame([{"endpoint": ep, "note": note}]))
            continue
        info.update(
            cutpoint=cp.cutpoint,
            statistic=cp.statistic,
            n_low_train=cp.n_low,
            n_high_train=cp.n_high,
            logrank_p_train=cp.logrank_p,
            p_lausen94=cp.p_lausen94,
            note="",
        )
        df["group"] = cutpoint_groups(df["score"], cp.cutpoint)
        df["score_high"] = (df["group"] == "high").astype(float)
        groups_info = {}
        for scope in ("train", "held_out", "all"):
            sub = df[_scope(df["split"], scope)]
            g = {
                "n_low": int((sub["group"] == "low").sum()),
                "n_high": int((sub["group"] == "high").sum()),
            }
            if g["n_low"] and g["n_high"]:
                lr = logrank(sub["time"], sub["event"], sub["group"])
                g.update(logrank_chisq=lr.statistic, logrank_p=lr.p)
            groups_info[scope] = g
        info["groups"] = groups_info
        km = df[_scope(df["split"], sv.km_scope)]
        if km["group"].nunique() == 2:
            plot_km(
                km["time"],
                km["event"],
                km["group"],
                png,
                title=f"{spec.name}: {ep} by {sv.model} score ({sv.km_scope})",
                xlabel=f"{tcol}",
            )
        else:
            _placeholder_png(png, f"Kaplan-Meier: {ep}", f"one score group in {sv.km_scope}")
        cuts[ep] = info
        # Cox models
        cdf = df[_scope(df["split"], sv.cox_scope)].copy()
        covs = ["score_high"]
        for c in sv.covariates:
            if c not in clinical.columns:
                raise InputError(f"study {spec.name}: survival covariate {c!r} not in the table")
            v = clinical[c].reindex(cdf.index)
            if pd.api.types.is_numeric_dtype(v):
                cdf[c] = v.astype(float)
                covs.append(c)
            else:
                d = pd.get_dummies(
                    v.astype("string"), prefix=c, prefix_sep="=", drop_first=True, dtype=float
                )
                cdf[d.columns] = d
                covs += list(d.columns)
        uni = pd.concat([_cox_rows(cdf, [c], "univariable") for c in covs], ignore_index=True)
        entered = covs
        if sv.screen_p is not None:
            entered = uni.loc[uni["p"] < sv.screen_p, "covariate"].tolist()
        if entered:
            multi = _cox_rows(cdf, entered, "multivariable")
        else:
            note = f"no covariate has univariable p < {sv.screen_p}"
            multi = pd.DataFrame([{"analysis": "multivariable", "note": note}])
        rows += [uni.assign(endpoint=ep), multi.assign(endpoint=ep)]
    cols = [
        "endpoint",
        "analysis",
        "covariate",
        "coef",
        "se",
        "hr",
        "hr_lower",
        "hr_upper",
        "z",
        "p",
    ]
    cols += ["concordance", "n", "n_events", "note"]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)
    return out.reindex(columns=cols), cuts


# ============================================================================================
# Writers and figures
# ============================================================================================


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence NumPy's runtime warnings of statistics on tiny splits (1 case, n = 2...)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a table atomically (temporary file in the same folder, then rename)."""
    with _atomic(Path(path)) as tmp:
        table.to_parquet(tmp, index=False)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | np.ndarray | pd.Index):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically (sorted keys, indent 2, NaN/inf -> null)."""
    text = json.dumps(_jsonable(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"
    with _atomic(Path(path)) as tmp:
        tmp.write_text(text)


def _placeholder_png(path: Path, title: str, note: str) -> None:
    """A small PNG saying why a figure could not be drawn (so every declared output exists)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 2.2))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=11, fontweight="bold")
    fig.text(0.5, 0.38, f"not drawn: {note}", ha="center", va="center", fontsize=9, wrap=True)
    with _atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    log.info("placeholder %s: %s", path.name, note)


def _figure_split(spec: StudySpec, predictions: pd.DataFrame) -> str | None:
    """The configured figure split if it has both classes, else the first evaluable one."""
    first = spec.evaluation.get("figure_split", "validation")
    order = [first] + [s for s in ("validation", "external", "temporal", "train") if s != first]
    one = (
        predictions[predictions["model"] == predictions["model"].iloc[0]]
        if len(predictions)
        else predictions
    )
    for s in order:
        y = one.loc[one["split"] == s, "label"].to_numpy(float)
        if s in spec.splits.names and not _degenerate(y):
            return s
    return None


# ============================================================================================
# Running a study
# ============================================================================================


def _icc_frame(table: pd.DataFrame | None) -> pd.DataFrame | None:
    if table is None:
        return None
    t = table.set_index("feature") if "feature" in table.columns else table
    t.index = t.index.astype(str)
    return t


def _study_split(
    spec: StudySpec, clinical: pd.DataFrame, splits: pd.DataFrame | None, seed: int
) -> tuple[pd.DataFrame, bool]:
    if splits is None:
        return study_splits(spec, clinical, seed), True
    if not {"patient", "split"} <= set(splits.columns):
        raise InputError(f"study {spec.name}: the splits table needs columns patient and split")
    table = splits[["patient", "split"]].astype({"patient": str})
    lacking = sorted(set(clinical.index) - set(table["patient"]))
    if lacking:
        raise InputError(f"study {spec.name}: patient(s) {lacking[:10]} missing from the splits")
    return table, False


def run_study(
    spec: StudySpec,
    tables: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    seed: int | None = None,
    *,
    splits: pd.DataFrame | None = None,
    patients: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Split, fit every model on the training patients, predict every split, write the outputs.

    Args:
        spec: The study (:func:`load_study`).
        tables: ``clinical`` (required; index or column ``patient``) and, as the blocks need,
            ``radiomics``, ``habitats``, ``reader_icc`` and ``table_{block}`` (parquet tables
            indexed by patient); see :func:`study_inputs`.
        out_dir: The study folder; receives :func:`study_outputs` (and ``splits.parquet`` when
            ``splits`` is not given).
        seed: Used when the study sets no ``seed`` (default 42).
        splits: A ``patient, split`` table to use instead of computing it (the workflow computes
            it in its own rule so that deep-learning training can use the same split).
        patients: ``{patient: modality}`` of the cohort sheet (see :func:`study_clinical`).

    Returns:
        The summary written to ``metrics.json``.

    Raises:
        InputError: No patient of the study's modality, a missing label/column/table.
    """
    from hccrad.stats import fuse_blocks, youden_cutoff

    seed = int(spec.seed if spec.seed is not None else (42 if seed is None else seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / v for k, v in study_outputs(spec).items()}
    clinical = study_clinical(spec, tables["clinical"], patients)
    split_table, computed = _study_split(spec, clinical, splits, seed)
    if computed:
        write_parquet(split_table, out / "splits.parquet")
    split = pd.Series(split_table["split"].to_numpy(), index=split_table["patient"].to_numpy())
    split = split.reindex(clinical.index)
    notes: list[str] = []

    # patients: labelled, in an evaluated split, with a row in every used block
    label = pd.to_numeric(clinical[spec.label], errors="coerce")
    bad_label = label.notna() & ~label.isin([0, 1])
    if bad_label.any():
        which = list(label.index[bad_label][:5])
        raise InputError(f"study {spec.name}: label {spec.label!r} is not 0/1 for {which}")
    candidates = [p for p in clinical.index if pd.notna(label[p]) and split[p] in EVAL_SPLITS]
    blocks, block_cats = {}, {}
    for b in spec.used_blocks:
        blocks[b], block_cats[b] = block_table(spec, spec.blocks[b], tables, clinical)
    excluded: dict[str, str] = {}
    for p in candidates:
        lacking = [b for b in blocks if p not in blocks[b].index]
        if lacking:
            excluded[p] = f"no row in block(s) {', '.join(lacking)}"
    if excluded:
        notes.append(f"{len(excluded)} labelled patient(s) excluded: no features in some block")
    study = pd.Index([p for p in candidates if p not in excluded], name="patient")
    y = label.loc[study].astype(int)
    X, cats, rad = {}, {}, {}
    for name, m in spec.models.items():
        if m.kind != "pipeline":
            continue
        X[name] = fuse_blocks({b: blocks[b] for b in m.blocks}, study)
        cats[name] = [f"{b}__{c}" for b in m.blocks for c in block_cats[b]]
        rad[name] = {
            f"{b}__{c}": c
            for b in m.blocks
            if spec.blocks[b].source == "radiomics"
            for c in blocks[b].columns
        }
    data = _Data(
        spec, seed, clinical.loc[study], y, X, cats, _icc_frame(tables.get("reader_icc")), rad
    )

    # fitting
    train = pd.Index([p for p in study if split[p] == "train"], name="patient")
    ytr = y.loc[train]
    untrainable = _degenerate(ytr.to_numpy())
    if not untrainable and _n_min(ytr) < 2:
        n1 = int(ytr.sum())
        untrainable = f"a class with fewer than 2 patients ({n1} cases, {len(ytr) - n1} controls)"
    if untrainable:
        notes.append(f"no model trained: training set has {untrainable}")
        log.warning("study %s: no model trained (training set: %s)", spec.name, untrainable)
    dependencies = {d for m in spec.models.values() for d in m.depends_on}
    fitted: dict[str, _Fitted] = {}
    failed: dict[str, str] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stack: dict[str, pd.Series] = {}
    for name in spec.model_order():
        m = spec.models[name]
        if untrainable:
            failed[name] = f"not trained: training set has {untrainable}"
            continue
        lost = [d for d in m.depends_on if d in failed]
        if lost:
            failed[name] = f"depends on failed model(s) {lost}"
            continue
        try:
            f = _fit(data, m, train, stack)
            prob, lp = f.predict(study)
            if not (np.isfinite(prob).all() and np.isfinite(lp).all()):
                raise ValueError("non-finite predictions")
            if name in dependencies:
                stack[name] = _stack_scores(data, m, f, train, study)
        except (ValueError, np.linalg.LinAlgError) as err:
            log.warning("study %s: model %s failed: %s", spec.name, name, err, exc_info=True)
            failed[name] = f"fit failed: {err}"
            continue
        fitted[name] = f
        scores[name] = (prob, lp)
        log.info(
            "study %s: model %s fitted (%s features)", spec.name, name, f.info.get("n_features")
        )
    ok = [n for n in spec.models if n in fitted]
    pred = pd.concat(
        [
            pd.DataFrame(
                {
                    "patient": study.to_numpy(),
                    "split": split.loc[study].to_numpy(),
                    "model": name,
                    "score": scores[name][0],
                    "linear_predictor": scores[name][1],
                    "label": y.to_numpy(),
                }
            )
            for name in ok
        ]
        or [
            pd.DataFrame(
                columns=["patient", "split", "model", "score", "linear_predictor", "label"]
            )
        ],
        ignore_index=True,
    ).astype(
        {
            "patient": str,
            "split": str,
            "model": str,
            "score": float,
            "linear_predictor": float,
            "label": int,
        }
    )
    cutoffs = {}
    for name in ok:
        tr = pred[(pred["model"] == name) & (pred["split"] == "train")]
        cutoffs[name] = youden_cutoff(tr["label"].to_numpy(float), tr["score"].to_numpy(float))

    # tables
    ev = spec.evaluation
    level = float(ev.get("ci_level", 0.95))
    split_names = spec.splits.names
    write_parquet(pred, files["predictions"])
    with _quiet():
        perf = performance_table(pred, cutoffs, split_names, list(spec.models), level, failed)
        comp = comparison_table(pred, spec.comparisons, cutoffs, split_names)
    write_parquet(perf, files["performance"])
    write_parquet(comp, files["comparisons"])
    with _quiet():
        calib = calibration_table(
            pred, ok, split_names, int(ev["calibration_bins"]), ev["calibration_strategy"]
        )
    write_parquet(calib, files["calibration"])
    thresholds = _thresholds(ev)
    dca = decision_curve_table(pred, ok, split_names, thresholds)
    write_parquet(dca, files["decision_curve"])
    with _quiet():
        by_center = by_group_table(pred, clinical, ev.get("by", []), ok, level)
    write_parquet(by_center, files["by_center"])
    write_parquet(baseline_tables(spec, clinical, split, y), files["baseline"])
    if spec.clinical_models:
        uni, multi = [], []
        for name in spec.clinical_models:
            if name in fitted:
                cm = fitted[name].estimator
                uni.append(cm.univariable.assign(model=name))
                multi.append(cm.multivariable.assign(model=name, note=""))
            else:
                multi.append(pd.DataFrame([{"model": name, "note": failed.get(name, "")}]))
        u = pd.concat(uni, ignore_index=True) if uni else pd.DataFrame(columns=["model"])
        mt = pd.concat(multi, ignore_index=True)
        write_parquet(
            u[["model", *[c for c in u.columns if c != "model"]]], files["clinical_univariable"]
        )
        write_parquet(
            mt[["model", *[c for c in mt.columns if c != "model"]]], files["clinical_multivariable"]
        )

    # figures
    fig_split = _figure_split(spec, pred) if ok else None
    with _quiet():
        _roc_figures(spec, pred, ok, split_names, files, level)
        _calibration_figures(spec, pred, ok, fig_split, dca, files, ev)
    if spec.explain:
        _shap_figures(spec, data, fitted, split, study, files)
    if spec.nomogram:
        _nomogram_figure(spec, fitted, failed, files)
    survival_info: dict[str, Any] = {}
    if spec.survival is not None:
        sv = spec.survival
        if sv.model in fitted:
            lp = pd.Series(scores[sv.model][1], index=study)
            cox_table, survival_info = survival_analysis(spec, clinical, split, lp, out)
        else:
            note = f"model {sv.model} not fitted ({failed.get(sv.model, '')})"
            cox_table = pd.DataFrame([{"endpoint": ep, "note": note} for ep in sv.endpoints])
            survival_info = {
                ep: {"model": sv.model, "cutpoint": None, "note": note} for ep in sv.endpoints
            }
            for ep in sv.endpoints:
                _placeholder_png(files[f"km_{ep}"], f"Kaplan-Meier: {ep}", note)
        write_parquet(cox_table, files["cox"])
        write_json(survival_info, files["cutpoint"])

    # summaries
    selected = {}
    for name, m in spec.models.items():
        entry: dict[str, Any] = {"kind": m.kind, "status": "fitted" if name in fitted else "failed"}
        entry["note"] = failed.get(name, "")
        if name in fitted:
            entry.update(fitted[name].info)
        if m.kind == "pipeline":
            entry["blocks"] = list(m.blocks)
        selected[name] = entry
    write_json(selected, files["selected_features"])
    counts = {}
    for s in (*EVAL_SPLITS, "unlabeled"):
        members = split[split == s].index
        ys = y.reindex(members).dropna()
        counts[s] = {"n": len(members), "n_analysed": len(ys), "n_pos": int(ys.sum())}
    for s in split_names:
        if _degenerate(y[split.loc[study] == s].to_numpy()):
            notes.append(f"split {s}: {_degenerate(y[split.loc[study] == s].to_numpy())}")
    primary_perf = perf[perf["model"] == spec.primary].set_index("split")
    metrics = {
        "study": spec.name,
        "title": spec.title,
        "modality": spec.modality,
        "label": spec.label,
        "seed": seed,
        "n_patients": len(clinical),
        "n_analysed": len(study),
        "splits": counts,
        "excluded": excluded,
        "primary": spec.primary,
        "primary_auc": primary_perf["auc"].to_dict(),
        "models": {
            name: {
                "status": selected[name]["status"],
                "note": selected[name]["note"],
                "cutoff": cutoffs.get(name),
                "auc": perf[perf["model"] == name].set_index("split")["auc"].to_dict(),
            }
            for name in spec.models
        },
        "comparisons": comp[["model", "reference", "split", "delong_p", "nri_continuous"]].to_dict(
            orient="records"
        ),
        "figure_split": fig_split,
        "survival": survival_info,
        "notes": notes,
    }
    write_json(metrics, files["metrics"])
    log.info("study %s: %d models fitted, outputs in %s", spec.name, len(ok), out)
    absent = [str(p) for p in files.values() if not p.exists()]
    if absent:  # pragma: no cover - a bug, not a data problem
        raise RuntimeError(f"study {spec.name}: outputs not written: {absent}")
    return metrics


def _roc_figures(
    spec: StudySpec,
    pred: pd.DataFrame,
    ok: Sequence[str],
    split_names: Sequence[str],
    files: Mapping[str, Path],
    level: float,
) -> None:
    from hccrad.stats.figures import plot_roc

    for s in split_names:
        curves = {}
        reason = "no fitted model"
        for name in ok:
            sub = pred[(pred["model"] == name) & (pred["split"] == s)]
            y = sub["label"].to_numpy(float)
            reason = _degenerate(y)
            if not reason:
                curves[name] = (y, sub["score"].to_numpy(float))
        if curves:
            n = int((pred["split"] == s).sum() / max(len(ok), 1))
            plot_roc(
                curves, files[f"roc_{s}"], title=f"{spec.name}: ROC, {s} (n = {n})", level=level
            )
        else:
            _placeholder_png(files[f"roc_{s}"], f"{spec.name}: ROC, {s}", reason)


def _calibration_figures(
    spec: StudySpec,
    pred: pd.DataFrame,
    ok: Sequence[str],
    fig_split: str | None,
    dca: pd.DataFrame,
    files: Mapping[str, Path],
    ev: Mapping[str, Any],
) -> None:
    from hccrad.stats.figures import plot_calibration, plot_decision_curve

    if fig_split is None:
        for key, what in (
            ("calibration_png", "calibration"),
            ("decision_curve_png", "decision curve"),
        ):
            _placeholder_png(files[key], f"{spec.name}: {what}", "no split with both classes")
        return
    curves = {}
    for name in ok:
        sub = pred[(pred["model"] == name) & (pred["split"] == fig_split)]
        curves[name] = (sub["label"].to_numpy(float), sub["score"].to_numpy(float))
    try:
        plot_calibration(
            curves,
            files["calibration_png"],
            title=f"{spec.name}: calibration, {fig_split}",
            n_bins=int(ev["calibration_bins"]),
            strategy=ev["calibration_strategy"],
        )
    except (InputError, ValueError) as err:
        _placeholder_png(files["calibration_png"], f"{spec.name}: calibration", str(err))
    nb = dca[dca["split"] == fig_split]
    plot_decision_curve(
        nb, files["decision_curve_png"], title=f"{spec.name}: decision curve, {fig_split}"
    )


def _shap_figures(
    spec: StudySpec,
    data: _Data,
    fitted: Mapping[str, _Fitted],
    split: pd.Series,
    study: pd.Index,
    files: Mapping[str, Path],
) -> None:
    from hccrad.stats.models import shap_figures

    name = spec.explain
    title = f"{spec.name}: SHAP of {name}"
    if name not in fitted:
        for key in ("shap_beeswarm", "shap_waterfall"):
            _placeholder_png(files[key], title, f"model {name} not fitted")
        return
    cfg = spec.shap
    held = [p for s in ("validation", "external", "temporal") for p in study if split[p] == s]
    chosen = held or [p for p in study if split[p] == "train"]
    chosen = sorted(chosen)[: int(cfg["max_patients"])]
    X = data.X[name].loc[chosen]
    prob, _ = fitted[name].predict(pd.Index(chosen))
    patient = chosen[int(np.argmax(prob))]
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)  # SHAP asks for TeX fonts matplotlib may not have
    try:
        shap_figures(
            fitted[name].estimator,
            X,
            files["shap_beeswarm"],
            files["shap_waterfall"],
            patient_index=patient,
            seed=data.seed,
            background=min(int(cfg["background"]), len(chosen)),
            nsamples=cfg.get("nsamples"),
            max_display=int(cfg["max_display"]),
        )
    except Exception as err:  # SHAP's explainers raise many error types
        log.warning("study %s: SHAP failed: %s", spec.name, err, exc_info=True)
        for key in ("shap_beeswarm", "shap_waterfall"):
            _placeholder_png(files[key], title, f"SHAP failed: {err}")
    finally:
        fonts.setLevel(level)


def _nomogram_figure(
    spec: StudySpec,
    fitted: Mapping[str, _Fitted],
    failed: Mapping[str, str],
    files: Mapping[str, Path],
) -> None:
    from hccrad.stats.models import plot_nomogram

    name = spec.nomogram
    title = f"{spec.name}: nomogram of {name}"
    if name not in fitted:
        _placeholder_png(files["nomogram"], title, failed.get(name, "not fitted"))
        return
    try:
        plot_nomogram(fitted[name].estimator, files["nomogram"], title=title)
    except ValueError as err:
        _placeholder_png(files["nomogram"], title, str(err))


# ============================================================================================
# Workflow jobs
# ============================================================================================


def load_tables(inputs: Mapping[str, str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """Read the tables of :func:`study_inputs` (``clinical`` TSV, the rest parquet)."""
    tables = {}
    for key, path in inputs.items():
        if key == "clinical":
            tables[key] = read_clinical_table(path)
        else:
            p = Path(path)
            if not p.is_file():
                raise InputError(f"study table {key} not found", file=p)
            tables[key] = pd.read_parquet(p)
    return tables


def write_splits_job(
    study_file: str | os.PathLike[str],
    clinical: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    seed: int,
    patients: Mapping[str, str] | None = None,
) -> None:
    """Rule ``study_splits``: the study's ``splits.parquet`` from the clinical table alone."""
    spec = load_study(study_file, check_estimators=False)
    table = study_clinical(spec, read_clinical_table(clinical), patients)
    s = study_splits(spec, table, int(spec.seed if spec.seed is not None else seed))
    write_parquet(s, dst)
    log.info("study %s: splits %s", spec.name, s["split"].value_counts().to_dict())


def run_study_job(
    study_file: str | os.PathLike[str],
    inputs: Mapping[str, str | os.PathLike[str]],
    splits: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    patients: Mapping[str, str] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Rule ``run_study``: load the spec and tables, run the study with the rule's splits."""
    from threadpoolctl import threadpool_limits

    spec = load_study(study_file, check_estimators=False)
    tables = load_tables(inputs)
    with threadpool_limits(limits=max(1, int(threads))):
        return run_study(
            spec, tables, out_dir, seed, splits=pd.read_parquet(splits), patients=patients
        )
