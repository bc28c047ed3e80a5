"""Study specification: the typed form of a merged study configuration.

:class:`StudySpec` holds a study's settings as typed fields (:class:`SplitSpec`,
:class:`BlockSpec`, :class:`ModelSpec`, :class:`SurvivalSpec`, :class:`DeepModelSpec`);
:func:`spec_from_dict` builds it from a study file merged over the defaults
(:func:`deep_merge`). Loading and validation: :mod:`hccrad.studies.loading`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hccrad.overlay import Change, deep_merge

#: Evaluated splits, in report order (``unlabeled`` patients are never evaluated).
EVAL_SPLITS = ("train", "validation", "external", "temporal")
#: Names of the derived-column operations on one source ``column``.
DERIVED_OPS = (
    "gt", "ge", "lt", "le", "eq", "ne", "isin", "log", "log2", "log10", "map", "between", "cut"
)  # fmt: skip
#: Names of the derived-column operations on several source ``columns``.
DERIVED_MULTI_OPS = ("any", "all", "sum", "ratio")
#: Operations of a patient criterion (``include`` / ``exclude``): a test of one column.
CRITERIA_OPS = ("gt", "ge", "lt", "le", "eq", "ne", "isin", "between", "notna", "isna")
SOURCES = ("radiomics", "habitats", "clinical", "table")
MODEL_KINDS = ("pipeline", "clinical", "score_fusion")


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
    """One model of a study (``kind`` = ``pipeline``, ``clinical`` or ``score_fusion``).

    Pipeline options: ``keep`` (blocks of the model, or patterns on its ``{block}__{column}``
    columns, that bypass the selection chain and always reach the classifier), ``head`` (the
    :class:`~hccrad.deep.fusion.FusionHeadClassifier` settings replacing ``classifier``: the
    model's ``table`` blocks are its deep input; with ``backbone``, a deep model of the study
    whose network :class:`~hccrad.deep.joint.JointFusionClassifier` trains end to end with the
    model's columns), ``pool`` (models whose selected features,
    fitted on the same training patients, are this model's columns, with ``keep``). Clinical
    options: ``keep`` (variables that always enter) and ``multivariable`` (pruning strategy of
    :func:`~hccrad.stats.clinical.clinical_model`).
    """

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
    keep: tuple[str, ...] = ()
    head: dict[str, Any] | None = None
    pool: tuple[str, ...] = ()
    multivariable: str = "all"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Models whose scores this model uses."""
        return self.scores if self.kind == "clinical" else self.models

    @property
    def uses_icc(self) -> bool:
        return any(s.get("step") == "icc" for s in self.selection)

    @property
    def uses_icc_intra(self) -> bool:
        """Whether an ``icc`` step also asks for the intra-observer ICC (``intra: true``)."""
        return any(s.get("step") == "icc" and s.get("intra") for s in self.selection)


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
class DeepModelSpec:
    """One deep model of a study (``deep_models.{name}``, trained by ``workflow/rules/deep.smk``).

    ``phase`` is ``None`` when the study does not name one (a per-phase input then uses its
    first phase); ``phases`` (exclusive with ``phase``) trains one network per listed phase, a
    bundle whose features are ``{phase}_deep_{j}``; ``mil``, ``gradcam`` and ``train`` carry
    the defaults the deep rules apply (no MIL features, 4 Grad-CAM patients, no
    ``TrainConfig`` override). ``raw`` is the model's mapping exactly as configured
    (``mil_bins`` and ``mil_words`` included).
    """

    name: str
    input: str
    preset: str
    phase: str | None = None
    phases: tuple[str, ...] = ()
    mil: bool = False
    gradcam: int = 4
    train: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    """A validated study: the merged configuration as typed fields (``raw`` keeps the dict;
    ``deep_models`` are in config order, empty when the study has none)."""

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
    deep_models: dict[str, DeepModelSpec] = field(default_factory=dict)
    #: The values a configuration overlay changed in this study (full scale -> this run).
    overlay_changes: tuple[Change, ...] = ()
    #: The paper's key comparison: ``pair`` (ours) and its claim (``key_comparison`` key).
    key_comparison: dict[str, Any] = field(default_factory=dict)
    #: What the paper reports (``published`` key), shown next to this run's results.
    published: dict[str, Any] = field(default_factory=dict)
    #: Where this study differs from the paper, with the reason (``deviations`` key).
    deviations: tuple[dict[str, str], ...] = ()
    #: Patient criteria (``include`` / ``exclude`` keys): ``{column, op, value, reason}`` tests
    #: on clinical or derived columns; a patient stays when every ``include`` test holds and
    #: no ``exclude`` test does (:func:`hccrad.studies.tables.apply_criteria`).
    include: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    #: Inter-reader agreement (``agreement`` key): ``{reader-1 column: reader-2 column}``,
    #: Cohen's kappa of each pair (``agreement.parquet``).
    agreement: dict[str, str] = field(default_factory=dict)
    #: Correlation of a model's selected features with pathology columns (``pathology`` key):
    #: ``{model, columns, method}`` (``pathology_correlation.parquet``); empty: none.
    pathology: dict[str, Any] = field(default_factory=dict)
    #: The study's own PyRadiomics parameter file (``radiomics.params``), as configured; None:
    #: its modality's default (the main configuration's ``radiomics.params``).
    radiomics_params: str | None = None

    @property
    def key_pair(self) -> tuple[str, str] | None:
        """The key comparison's ``(model, reference)``: the configured one, else the first
        comparison of the primary model, else the first comparison, else None."""
        if self.key_comparison:
            a, b = self.key_comparison["pair"]
            return (a, b)
        for pair in self.comparisons:
            if pair[0] == self.primary:
                return pair
        return self.comparisons[0] if self.comparisons else None

    @property
    def used_blocks(self) -> list[str]:
        """Blocks some model uses, in declaration order."""
        used = {b for m in self.models.values() for b in m.blocks}
        return [b for b in self.blocks if b in used]

    @property
    def backbones(self) -> list[str]:
        """Deep models that some model trains end to end (``head.backbone``), in order."""
        out: list[str] = []
        for m in self.models.values():
            name = (m.head or {}).get("backbone")
            if name is not None and name not in out:
                out.append(str(name))
        return out

    @property
    def reads_radiomics(self) -> bool:
        """Whether a used block reads the cohort radiomics table."""
        return any(self.blocks[b].source == "radiomics" for b in self.used_blocks)

    @property
    def uses_icc(self) -> bool:
        """Whether a pipeline model's chain has an ``icc`` step (it reads the reader-ICC table)."""
        return any(m.kind == "pipeline" and m.uses_icc for m in self.models.values())

    @property
    def uses_icc_intra(self) -> bool:
        """Whether a pipeline model's ``icc`` step has ``intra: true`` (it reads the
        intra-observer ICC table too)."""
        return any(m.kind == "pipeline" and m.uses_icc_intra for m in self.models.values())

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
    "baseline": {"variables": [], "categorical": [], "nonnormal": [], "variance_test": "none"},
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


def _t(values: Any) -> tuple:
    return tuple(values) if values is not None else ()


def _split_spec(s: Mapping[str, Any]) -> SplitSpec:
    return SplitSpec(
        primary_centers=tuple(str(c) for c in s["primary_centers"]),
        validation_fraction=float(s.get("validation_fraction", 0.3)),
        temporal_cutoff=s.get("temporal_cutoff"),
        center_column=s.get("center_column", "center"),
        date_column=s.get("date_column", "acquisition_date"),
    )


def _block_specs(blocks: Mapping[str, Mapping[str, Any]]) -> dict[str, BlockSpec]:
    return {
        name: BlockSpec(
            name=name,
            source=b["source"],
            **{k: _t(v) for k, v in b.items() if k not in ("source", "path", "description")},
            path=b.get("path"),
        )
        for name, b in blocks.items()
    }


def _model_spec(name: str, m: Mapping[str, Any], chains: Mapping[str, Any]) -> ModelSpec:
    """One model; a ``selection`` naming a chain becomes that chain's steps."""
    sel = m.get("selection", [])
    steps = chains.get(sel, sel) if isinstance(sel, str) else sel
    return ModelSpec(
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
        keep=_t(m.get("keep")),
        head=dict(m["head"]) if m.get("head") is not None else None,
        pool=_t(m.get("pool")),
        multivariable=m.get("multivariable", "all"),
    )


def _survival_spec(sv: Mapping[str, Any], primary: str) -> SurvivalSpec | None:
    """The survival analysis, or ``None`` when no endpoint is configured."""
    if not sv.get("endpoints"):
        return None
    return SurvivalSpec(
        model=sv.get("model") or primary,
        endpoints={k: (v["time"], v["event"]) for k, v in sv["endpoints"].items()},
        covariates=_t(sv.get("covariates")),
        min_prop=float(sv.get("min_prop", 0.1)),
        screen_p=sv.get("screen_p"),
        km_scope=sv.get("km_scope", "held_out"),
        cox_scope=sv.get("cox_scope", "held_out"),
    )


def _pathology_spec(pa: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``pathology`` correlation: ``{model, columns, method}`` (method default pearson);
    empty when not configured (the model is checked with the other references)."""
    if not pa:
        return {}
    return {
        "model": str(pa["model"]),
        "columns": tuple(str(c) for c in pa["columns"]),
        "method": str(pa.get("method", "pearson")),
    }


def _deep_model_specs(deep: Mapping[str, dict[str, Any]]) -> dict[str, DeepModelSpec]:
    """The deep models in config order; each keeps its configured mapping as ``raw``."""
    return {
        name: DeepModelSpec(
            name=name,
            input=m["input"],
            preset=m["preset"],
            phase=m.get("phase"),
            phases=tuple(m.get("phases") or ()),
            mil=bool(m.get("mil", False)),
            gradcam=int(m.get("gradcam", 4)),
            train=dict(m.get("train") or {}),
            raw=m,
        )
        for name, m in deep.items()
    }


def spec_from_dict(path: Path, d: dict[str, Any]) -> StudySpec:
    """The :class:`StudySpec` of a merged, schema-valid study configuration.

    Args:
        path: The study file (its stem is the study name).
        d: The study merged over its defaults; the optional sections' defaults are merged
            under it here, and the result is kept as ``raw``.
    """
    d = deep_merge(_SECTION_DEFAULTS, d)
    models = {name: _model_spec(name, m, d.get("chains", {})) for name, m in d["models"].items()}
    clinical = [n for n, m in models.items() if m.kind == "clinical"]
    pipelines = [n for n, m in models.items() if m.kind == "pipeline"]
    primary = d["primary"]
    if "explain" in d:
        explain = d["explain"]
    else:
        explain = primary if primary in pipelines else (pipelines[0] if pipelines else None)
    nomogram = d["nomogram"] if "nomogram" in d else (clinical[0] if clinical else None)
    return StudySpec(
        name=path.stem,
        path=str(path),
        title=d.get("title", path.stem),
        modality=d["modality"],
        label=d["label"],
        seed=d.get("seed"),
        splits=_split_spec(d.get("splits", {})),
        stacking=d["stacking"],
        stacking_folds=int(d["stacking_folds"]),
        derived=dict(d.get("derived", {})),
        blocks=_block_specs(d["blocks"]),
        models=models,
        primary=primary,
        explain=explain,
        nomogram=nomogram,
        comparisons=tuple((a, b) for a, b in d.get("comparisons", [])),
        evaluation=d["evaluation"],
        shap=d["shap"],
        baseline=d["baseline"],
        survival=_survival_spec(d["survival"], primary),
        raw=d,
        deep_models=_deep_model_specs(d.get("deep_models", {})),
        key_comparison=dict(d.get("key_comparison", {})),
        published=dict(d.get("published", {})),
        deviations=tuple(dict(x) for x in d.get("deviations", [])),
        include=tuple(dict(x) for x in d.get("include", [])),
        exclude=tuple(dict(x) for x in d.get("exclude", [])),
        agreement={str(k): str(v) for k, v in (d.get("agreement") or {}).items()},
        pathology=_pathology_spec(d.get("pathology")),
        radiomics_params=(d.get("radiomics") or {}).get("params"),
    )
