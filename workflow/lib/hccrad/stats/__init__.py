"""Statistics of the radiomics study: evaluation, survival, baseline tables, figures, ICC.

Modules: :mod:`~hccrad.stats.roc` (AUC/DeLong, cut-offs, NRI, calibration, net benefit),
:mod:`~hccrad.stats.survival` (Kaplan-Meier, log-rank, optimal cut-point, Cox),
:mod:`~hccrad.stats.baseline` (Table 1), :mod:`~hccrad.stats.figures` (PNG figures) and
:mod:`~hccrad.stats.agreement` (ICC, Cohen's kappa). Formulas and conventions: ``docs/stats.md``.
"""

from __future__ import annotations

from hccrad.stats.agreement import KappaResult, cohen_kappa, icc
from hccrad.stats.baseline import baseline_table
from hccrad.stats.roc import (
    CalibrationResult,
    DeLongResult,
    NRIResult,
    UnpairedDeLongResult,
    auc,
    auc_ci,
    calibration,
    classification_metrics,
    delong_placements,
    delong_test,
    delong_unpaired_test,
    net_benefit,
    nri,
    roc_curve,
    unpaired_auc_test,
    youden_cutoff,
)
from hccrad.stats.survival import (
    CoxResult,
    CutpointResult,
    LogRankResult,
    cox,
    cutpoint_groups,
    kaplan_meier,
    logrank,
    logrank_scores,
    multivariable_cox,
    optimal_cutpoint,
    survival_at,
    univariable_cox,
)

__all__ = [
    "CalibrationResult",
    "CoxResult",
    "CutpointResult",
    "DeLongResult",
    "KappaResult",
    "LogRankResult",
    "NRIResult",
    "UnpairedDeLongResult",
    "auc",
    "auc_ci",
    "baseline_table",
    "calibration",
    "classification_metrics",
    "cohen_kappa",
    "cox",
    "cutpoint_groups",
    "delong_placements",
    "delong_test",
    "delong_unpaired_test",
    "icc",
    "kaplan_meier",
    "logrank",
    "logrank_scores",
    "multivariable_cox",
    "net_benefit",
    "nri",
    "optimal_cutpoint",
    "roc_curve",
    "survival_at",
    "univariable_cox",
    "unpaired_auc_test",
    "youden_cutoff",
]

# modelling API (splits, selection steps, classifiers, clinical model):
# hccrad.stats.{splits,selection,models,clinical}
from hccrad.stats.clinical import ClinicalModel, Nomogram, clinical_model, nomogram, plot_nomogram
from hccrad.stats.models import (
    CLASSIFIERS,
    PlattSVC,
    ScoreFusion,
    build_pipeline,
    fuse_blocks,
    grid_search,
    make_classifier,
    radiomics_score,
    score_fusion,
    shap_explanation,
    shap_figures,
)
from hccrad.stats.selection import (
    STEP_NAMES,
    CorrelationFilter,
    ICCFilter,
    LassoSelector,
    RFESelector,
    UnivariateFilter,
    binary_labels,
    make_step,
    univariate_auc,
)
from hccrad.stats.splits import SPLITS, make_splits

__all__ += [
    "CLASSIFIERS",
    "SPLITS",
    "STEP_NAMES",
    "ClinicalModel",
    "CorrelationFilter",
    "ICCFilter",
    "LassoSelector",
    "Nomogram",
    "PlattSVC",
    "RFESelector",
    "ScoreFusion",
    "UnivariateFilter",
    "binary_labels",
    "build_pipeline",
    "clinical_model",
    "fuse_blocks",
    "grid_search",
    "make_classifier",
    "make_splits",
    "make_step",
    "nomogram",
    "plot_nomogram",
    "radiomics_score",
    "score_fusion",
    "shap_explanation",
    "shap_figures",
    "univariate_auc",
]
