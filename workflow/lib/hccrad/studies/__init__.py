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

Modules: :mod:`~hccrad.studies.spec` (the typed specification), :mod:`~.loading` (YAML, schema,
estimator check) with :mod:`~.checks` (cross-checks), :mod:`~.files` (inputs and outputs),
:mod:`~.tables`, :mod:`~.splits`, :mod:`~.fitting`, :mod:`~.evaluation`, :mod:`~.survival`,
:mod:`~.figures`, :mod:`~.run` (:func:`run_study`) and :mod:`~.jobs` (the workflow's jobs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hccrad.config import DEFAULT_STUDY_FILES, SEED_STUDIES  # the config key `studies`
from hccrad.lazy import lazy_attributes
from hccrad.studies.files import study_dir, study_inputs, study_outputs
from hccrad.studies.loading import (
    ESTIMATOR_PACKAGES,
    estimator_check_digest,
    load_studies,
    load_study,
)
from hccrad.studies.spec import (
    DERIVED_OPS,
    EVAL_SPLITS,
    MODEL_KINDS,
    SOURCES,
    BlockSpec,
    DeepModelSpec,
    ModelSpec,
    SplitSpec,
    StudySpec,
    SurvivalSpec,
    deep_merge,
)
from hccrad.studies.tables import (
    block_table,
    derive_columns,
    read_clinical_table,
    select_block_columns,
    study_clinical,
)

if TYPE_CHECKING:
    from hccrad.studies.evaluation import (
        baseline_tables,
        by_group_table,
        calibration_table,
        comparison_table,
        decision_curve_table,
        performance_table,
    )
    from hccrad.studies.jobs import load_tables, run_study_job, write_splits_job
    from hccrad.studies.run import run_study, study_data
    from hccrad.studies.splits import study_splits
    from hccrad.studies.survival import survival_analysis

#: Public names of the modules that import scikit-learn, statsmodels, lifelines and matplotlib
#: (through :mod:`hccrad.stats`), by module; imported on first use, since every Snakemake start
#: (and cluster job) imports this package for the specification alone.
_LAZY = {
    "study_splits": "splits",
    "performance_table": "evaluation",
    "comparison_table": "evaluation",
    "calibration_table": "evaluation",
    "decision_curve_table": "evaluation",
    "by_group_table": "evaluation",
    "baseline_tables": "evaluation",
    "survival_analysis": "survival",
    "run_study": "run",
    "study_data": "run",
    "load_tables": "jobs",
    "write_splits_job": "jobs",
    "run_study_job": "jobs",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_STUDY_FILES",
    "DERIVED_OPS",
    "ESTIMATOR_PACKAGES",
    "EVAL_SPLITS",
    "MODEL_KINDS",
    "SEED_STUDIES",
    "SOURCES",
    "BlockSpec",
    "DeepModelSpec",
    "ModelSpec",
    "SplitSpec",
    "StudySpec",
    "SurvivalSpec",
    "baseline_tables",
    "block_table",
    "by_group_table",
    "calibration_table",
    "comparison_table",
    "decision_curve_table",
    "deep_merge",
    "derive_columns",
    "estimator_check_digest",
    "load_studies",
    "load_study",
    "load_tables",
    "performance_table",
    "read_clinical_table",
    "run_study",
    "run_study_job",
    "select_block_columns",
    "study_clinical",
    "study_data",
    "study_dir",
    "study_inputs",
    "study_outputs",
    "study_splits",
    "survival_analysis",
    "write_splits_job",
]
