"""Reporting-checklist evidence: which file of the run answers which checklist item.

Three checklists: TRIPOD+AI (Collins et al., BMJ 2024;385:e078378), CLAIM (Mongan et al., Radiol
Artif Intell 2020;2:e200029; item numbers of that version — the 2024 update renumbers some) and
METRICS (Kocak et al., Insights Imaging 2024;15:8). Only items a run's files can answer are
listed; the others (title, rationale, ethics, funding, interpretation, ...) are the authors'.
A file answering an item is *evidence*, not a guarantee that the item is reported well: the
``note`` column says what the file holds and what it leaves to the authors.

Evidence paths are relative to ``results/``; ``{study}`` stands for every study folder of the run
and shell wildcards are allowed. ``exists`` is True when at least one evidence file exists and
``found`` counts the evidence paths (per study) that exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hccrad.audit._io import PathLike

S = "cohort/studies/{study}/"
AUDIT = "cohort/audit/"


@dataclass(frozen=True)
class Item:
    """One checklist item and the run's files that answer it."""

    checklist: str
    item: str
    topic: str
    evidence: tuple[str, ...]
    note: str = ""


ITEMS: tuple[Item, ...] = (
    # ---- TRIPOD+AI ----------------------------------------------------------------------------
    Item(
        "TRIPOD+AI",
        "6a",
        "setting: number of centres",
        (AUDIT + "drift_summary.tsv", S + "by_center.parquet"),
        "patients and AUC per center; locations are not in the data",
    ),
    Item(
        "TRIPOD+AI",
        "7",
        "data preparation and quality checking",
        ("cohort/preprocess/summary.parquet", "cohort/preprocess/qc_montage.png"),
        "grids, intensities, registration quality and mask volumes per image",
    ),
    Item(
        "TRIPOD+AI",
        "10",
        "sample size (achieved)",
        (S + "metrics.json",),
        "patients and events per split; the sample-size justification is the authors'",
    ),
    Item(
        "TRIPOD+AI",
        "11",
        "missing data",
        (S + "metrics.json",),
        "excluded patients; imputation is described in docs/studies.md",
    ),
    Item(
        "TRIPOD+AI",
        "12a",
        "how data were used for development and evaluation",
        (S + "splits.parquet",),
        "split of every patient",
    ),
    Item(
        "TRIPOD+AI",
        "12c",
        "model type, building and hyperparameter tuning",
        (S + "selected_features.json",),
        "selection steps, classifier parameters, grid search results",
    ),
    Item(
        "TRIPOD+AI",
        "12d",
        "heterogeneity across clusters (centres)",
        (S + "by_center.parquet", AUDIT + "drift.parquet"),
        "AUC per center; feature drift per center",
    ),
    Item(
        "TRIPOD+AI",
        "12e",
        "performance measures (discrimination, calibration, clinical utility)",
        (S + "performance.parquet", S + "calibration.parquet", S + "decision_curve.parquet"),
    ),
    Item(
        "TRIPOD+AI",
        "13",
        "class imbalance",
        (S + "performance.parquet",),
        "prevalence per split (n, n_pos); SMOTE use is in the study file",
    ),
    Item(
        "TRIPOD+AI",
        "15",
        "model output and risk groups",
        (S + "predictions.parquet", S + "performance.parquet"),
        "probabilities and log-odds per patient; training Youden cut-offs",
    ),
    Item(
        "TRIPOD+AI",
        "20a",
        "flow of participants",
        (S + "splits.parquet", S + "metrics.json"),
        "patients per split and those excluded; the diagram is the authors'",
    ),
    Item(
        "TRIPOD+AI",
        "20b",
        "characteristics of participants",
        (S + "baseline.parquet",),
        "baseline table by split and by label",
    ),
    Item(
        "TRIPOD+AI",
        "20c",
        "comparison of development and evaluation data",
        (S + "baseline.parquet", AUDIT + "drift_summary.tsv"),
        "baseline variables by split; radiomics drift per center",
    ),
    Item(
        "TRIPOD+AI",
        "21",
        "number of participants and outcome events",
        (S + "performance.parquet",),
        "n and n_pos per model and split",
    ),
    Item(
        "TRIPOD+AI",
        "22",
        "full model",
        (S + "selected_features.json", S + "nomogram.png"),
        "features, coefficients and parameters of every model; nomogram when configured",
    ),
    Item(
        "TRIPOD+AI",
        "23a",
        "performance estimates with confidence intervals",
        (
            S + "performance.parquet",
            S + "roc_*.png",
            S + "calibration.png",
            S + "decision_curve.png",
        ),
        "AUC with DeLong CI, calibration, net benefit",
    ),
    Item(
        "TRIPOD+AI",
        "23b",
        "heterogeneity of performance across clusters",
        (S + "by_center.parquet",),
    ),
    # ---- CLAIM (2020 item numbers) --------------------------------------------------------------
    Item(
        "CLAIM",
        "9",
        "data preprocessing steps",
        ("cohort/preprocess/summary.parquet", "cohort/preprocess/qc_montage.png"),
    ),
    Item(
        "CLAIM",
        "12",
        "de-identification methods",
        (AUDIT + "privacy.tsv",),
        "search of every output for the DICOM identifiers of the inputs (docs/audit.md)",
    ),
    Item("CLAIM", "13", "handling of missing data", (S + "metrics.json",), "excluded patients"),
    Item(
        "CLAIM",
        "18",
        "inter-rater variability",
        ("cohort/radiomics/reader_icc.parquet", AUDIT + "icc_summary.tsv"),
        "second-reader ICC of every radiomics feature",
    ),
    Item("CLAIM", "20", "assignment of data to partitions", (S + "splits.parquet",)),
    Item(
        "CLAIM",
        "21",
        "level at which partitions are disjoint",
        (S + "splits.parquet",),
        "one split per patient (patient level)",
    ),
    Item(
        "CLAIM",
        "23",
        "software libraries, frameworks and packages",
        (AUDIT + "manifest.json",),
        "package versions, Python, platform, git commit",
    ),
    Item(
        "CLAIM",
        "25",
        "training details and hyperparameters",
        (S + "selected_features.json", S + "deep/*/metrics.json"),
    ),
    Item(
        "CLAIM",
        "26",
        "method of selecting the final model",
        (S + "selected_features.json",),
        "grid search: best parameters and CV AUC",
    ),
    Item("CLAIM", "28", "metrics of model performance", (S + "performance.parquet",)),
    Item(
        "CLAIM",
        "29",
        "statistical significance and uncertainty",
        (S + "performance.parquet", S + "comparisons.parquet"),
        "DeLong CIs and tests, NRI",
    ),
    Item(
        "CLAIM",
        "30",
        "robustness or sensitivity analysis",
        (AUDIT + "drift.parquet", S + "by_center.parquet", AUDIT + "icc_summary.tsv"),
        "center drift, per-center AUC, reader reproducibility; no perturbation analysis",
    ),
    Item(
        "CLAIM",
        "31",
        "explainability or interpretability",
        (
            S + "shap_beeswarm.png",
            S + "shap_waterfall.png",
            S + "shap_force.png",
            S + "deep/*/gradcam",
        ),
        "SHAP of the explained model; Grad-CAM of deep models",
    ),
    Item(
        "CLAIM",
        "32",
        "validation on external data",
        (S + "performance.parquet",),
        "rows of split external (when the design has one)",
    ),
    Item("CLAIM", "33", "flow of participants", (S + "splits.parquet", S + "metrics.json")),
    Item(
        "CLAIM",
        "34",
        "characteristics of cases in each partition",
        (S + "baseline.parquet",),
    ),
    Item("CLAIM", "35", "performance on all partitions", (S + "performance.parquet",)),
    Item(
        "CLAIM",
        "36",
        "estimates of accuracy with confidence intervals",
        (S + "performance.parquet",),
    ),
    Item(
        "CLAIM",
        "37",
        "failure analysis",
        (S + "predictions.parquet",),
        "per-patient predictions to start from; no automatic failure analysis",
    ),
    # ---- METRICS --------------------------------------------------------------------------------
    Item(
        "METRICS",
        "4",
        "multi-center",
        (AUDIT + "drift_summary.tsv", S + "by_center.parquet"),
    ),
    Item(
        "METRICS",
        "6",
        "imaging protocol with acquisition parameters",
        ("cohort/preprocess/summary.parquet",),
        "image grids; vendor and field strength are clinical columns; full protocols are the "
        "authors'",
    ),
    Item(
        "METRICS",
        "9",
        "formal evaluation of fully automated segmentation",
        ("cohort/segmentation/dice.parquet",),
        "Dice of the U-Net on held-out patients (only when masks are predicted)",
    ),
    Item(
        "METRICS",
        "11",
        "image preprocessing",
        ("cohort/preprocess/summary.parquet", "cohort/preprocess/qc_montage.png"),
    ),
    Item(
        "METRICS",
        "12",
        "standardized feature extraction software",
        (AUDIT + "manifest.json", "cohort/radiomics/diagnostics.parquet"),
        "PyRadiomics version and diagnostics",
    ),
    Item(
        "METRICS",
        "13",
        "feature extraction parameters",
        ("cohort/radiomics/diagnostics.parquet",),
        "PyRadiomics settings per image (diagnostics_Configuration_Settings)",
    ),
    Item(
        "METRICS",
        "14",
        "removal of non-robust features",
        ("cohort/radiomics/reader_icc.parquet", AUDIT + "icc_summary.tsv"),
        "reader ICC; the ICC filter of a study is in selected_features.json",
    ),
    Item(
        "METRICS",
        "15",
        "removal of redundant features",
        (S + "selected_features.json",),
        "columns after each selection step (correlation filter)",
    ),
    Item(
        "METRICS",
        "16",
        "dimensionality compared to data size",
        (S + "selected_features.json", S + "metrics.json"),
        "features reaching each classifier vs training patients",
    ),
    Item("METRICS", "18", "proper data partitioning", (S + "splits.parquet",)),
    Item(
        "METRICS",
        "19",
        "handling of confounding factors",
        (S + "by_center.parquet", AUDIT + "drift.parquet"),
        "center effects are measured, not corrected",
    ),
    Item("METRICS", "20", "appropriate performance metrics", (S + "performance.parquet",)),
    Item(
        "METRICS",
        "21",
        "consideration of uncertainty",
        (S + "performance.parquet", S + "comparisons.parquet"),
    ),
    Item(
        "METRICS",
        "22",
        "calibration assessment",
        (S + "calibration.parquet", S + "calibration.png"),
    ),
    Item(
        "METRICS",
        "24",
        "comparison with a non-radiomic approach or added clinical value",
        (S + "comparisons.parquet", S + "decision_curve.png"),
    ),
    Item(
        "METRICS",
        "25",
        "comparison with simple or classical statistical models",
        (S + "comparisons.parquet",),
        "clinical / logistic reference models when the study configures them",
    ),
    Item("METRICS", "26", "internal testing", (S + "performance.parquet",), "validation split"),
    Item(
        "METRICS",
        "27",
        "external testing",
        (S + "performance.parquet",),
        "external and temporal splits (when the design has them)",
    ),
    Item(
        "METRICS",
        "29",
        "code availability",
        (AUDIT + "manifest.json",),
        "the git commit of the code that produced the run; publishing it is the authors'",
    ),
)

COLUMNS = ["checklist", "item", "topic", "evidence", "exists", "found", "note"]


def checklist_table(
    results: PathLike,
    studies: Sequence[str],
    *,
    items: Sequence[Item] = ITEMS,
    written: Sequence[str] = (),
) -> pd.DataFrame:
    """The checklist evidence table of the run in ``results``.

    Args:
        results: the results folder.
        studies: the study folder names under ``results/cohort/studies``.
        items: the checklist items (default :data:`ITEMS`).
        written: evidence paths that count as existing although not (yet) on disk (the audit's
            own outputs, written in the same job).
    """
    root = Path(results)
    rows = []
    for it in items:
        n_expected = n_found = 0
        for pattern in it.evidence:
            expanded = (
                [pattern.format(study=s) for s in studies] if "{study}" in pattern else [pattern]
            )
            for path in expanded:
                n_expected += 1
                if path in written or any(root.glob(path)):
                    n_found += 1
        rows.append(
            {
                "checklist": it.checklist,
                "item": it.item,
                "topic": it.topic,
                "evidence": "; ".join(it.evidence),
                "exists": n_found > 0,
                "found": f"{n_found}/{n_expected}",
                "note": it.note,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
