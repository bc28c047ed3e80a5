"""No study model ranks its own training patients backwards.

The five seed studies, as the demo runs them (config/demo.yaml's study deltas) with every grid
pinned to one point and a small SHAP (speed only: the blocks, selection chains and classifiers
are the papers'), are run with :func:`hccrad.studies.run_study` on the synthetic tables of
tests/test_studies.py (48 + 48 patients, the demo cohort's clinical rows) and on their null
version (labels permuted). The deep-model blocks get pure-noise tables of 4 columns: fewer than
mvi_biregional's RFE keeps, so no selection on the training labels makes them look useful to
the SVM's out-of-fold Platt scaling, which then flipped its sigmoid (the demo's peritumoral
SVM had a training AUC of 0.00; with the unconstrained CalibratedClassifierCV its dlr models
score 0.13-0.37 here). Every fitted model must score at least 0.5 on its own training
patients.

A model whose training scores are constant to 1e-6 counts as AUC 0.5 (ties).

Exception, checked instead: a logistic regression on one feature (er_fusion's BCLC and CNLC
staging scores and its networks' outputs). Its probabilities are monotone in the feature, and
the maximum likelihood takes the direction of the feature's covariance with the label (at
slope 0 the log-likelihood's gradient is ``n cov(x, y)``, and it is concave), not of its ranks:
on a near-null feature the training AUC can fall just under 0.5 with a correct fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_studies import ROOT, STUDY_DIR, synthetic_tables

from hccrad import stats, studies
from hccrad.config import read_overlay
from hccrad.overlay import deep_merge
from hccrad.studies import run_study

#: Model kinds the seed studies use (:func:`model_kind`); each must be among the checked fits.
KINDS = {
    "logistic",  # er_fusion's staging comparators, deep-network outputs
    "lasso-logistic",  # er_fusion rad_lr, proliferative_tace radscore
    "lasso-svm",  # er_fusion rad_svm
    "svm",  # mvi_biregional (Pearson -> RFE -> linear SVM)
    "lasso-random_forest",  # habitat_grade
    "extra_trees+smote",  # mil_er clinical
    "lasso-extra_trees+smote",  # mil_er mil, radiomics
    "lasso-knn",
    "lasso-xgboost",
    "lasso-mlp",  # er_fusion's other classifiers
    "clinical",  # univariable then multivariable logistic (nomograms, score stacking)
}


def model_kind(m: Any) -> str:
    """``clinical``, ``score_fusion`` or the pipeline's classifier (``lasso-`` when a LASSO
    step selects its features, ``+smote`` with SMOTE)."""
    if m.kind != "pipeline":
        return m.kind
    lasso = "lasso-" if any(s.get("step") == "lasso" for s in m.selection) else ""
    return f"{lasso}{m.classifier}{'+smote' if m.smote else ''}"


def fast_specs() -> dict[str, Any]:
    """The seed studies with the demo's deltas, one grid point per model and a small SHAP."""
    overlay = read_overlay(ROOT / "config" / "demo.yaml")
    files = [STUDY_DIR / f"{s}.yaml" for s in studies.SEED_STUDIES]
    specs = studies.load_studies(files, overlay=overlay)
    out = {}
    for name, spec in specs.items():
        delta: dict[str, Any] = {"shap": {"max_patients": 5, "background": 5, "nsamples": 20}}
        delta["models"] = {
            m: {"grid": {k: v[:1] for k, v in ms.grid.items()}, "cv": 3}
            for m, ms in spec.models.items()
            if ms.grid
        }
        path = STUDY_DIR / f"{name}.yaml"
        out[name] = studies.load_study(path, override=deep_merge(overlay.study(name), delta))
    return out


def study_tables(specs: dict[str, Any], null: bool) -> dict[str, pd.DataFrame]:
    """Synthetic tables, and a pure-noise table for every table block (the deep models'):
    4 columns, or the block's named columns."""
    tables = synthetic_tables(48, seed=42, null=null)
    ids = pd.Index(tables["clinical"]["patient"].astype(str), name="patient")
    rng = np.random.default_rng(7)
    for spec in specs.values():
        for block in spec.blocks.values():
            if block.source == "table" and block.input_key not in tables:
                named = block.columns != ("*",)  # e.g. er_fusion's network outputs: prob
                cols = list(block.columns) if named else [f"f{j}" for j in range(4)]
                values = rng.normal(size=(len(ids), len(cols)))
                tables[block.input_key] = pd.DataFrame(values, index=ids, columns=cols)
    return tables


def auc(y: Any, score: Any) -> float:
    return stats.auc(np.asarray(y, dtype=float), np.asarray(score, dtype=float))


def single_feature(spec: Any, model: str) -> tuple[str, str] | None:
    """(block source, column) of a logistic model on one named column, else None."""
    m = spec.models[model]
    if m.kind != "pipeline" or m.classifier != "logistic" or m.selection or len(m.blocks) != 1:
        return None
    block = spec.blocks[m.blocks[0]]
    if block.source not in ("clinical", "table") or len(block.columns) != 1:
        return None
    return (block.source, block.columns[0]) if block.columns != ("*",) else None


@pytest.fixture(scope="module")
def training_scores(tmp_path_factory) -> dict[tuple[bool, str, str], pd.DataFrame]:
    """Training predictions per (null, study, model) with the model's kind, and for a
    one-feature logistic model its feature (column ``x``)."""
    specs = fast_specs()
    found = {}
    for null in (False, True):
        tables = study_tables(specs, null)
        for name, spec in specs.items():
            out = tmp_path_factory.mktemp(f"{name}_{null}")
            run_study(spec, tables, out, seed=42)
            pred = pd.read_parquet(out / "predictions.parquet")
            clinical = studies.study_clinical(spec, tables["clinical"])
            for model, rows in pred[pred["split"] == "train"].groupby("model"):
                rows = rows.assign(kind=model_kind(spec.models[model]))
                one = single_feature(spec, str(model))
                if one is not None:
                    source, column = one
                    key = spec.blocks[spec.models[model].blocks[0]].input_key
                    table = clinical if source == "clinical" else tables[key]
                    rows = rows.assign(x=table[column].reindex(rows["patient"]).to_numpy(float))
                found[(null, name, str(model))] = rows
    return found


def test_every_model_kind_is_fitted(training_scores):
    kinds = {rows["kind"].iloc[0] for rows in training_scores.values()}
    assert kinds >= KINDS, KINDS - kinds
    # both cohorts, every study, and the noise-block SVMs among the fits
    assert {(null, s) for null, s, _ in training_scores} == {
        (null, s) for null in (False, True) for s in studies.SEED_STUDIES
    }
    assert (True, "mvi_biregional", "dlr_peritumoral") in training_scores


def test_no_model_ranks_its_training_patients_backwards(training_scores):
    below = {}
    for (null, study, model), rows in training_scores.items():
        score = rows["score"].to_numpy(float)
        # a model with (numerically) constant scores ranks nobody: e.g. a linear SVM on one
        # near-null feature (mvi_biregional's clinical model when the pooled clinical_lr keeps
        # only age) has |w| ~ 1e-7, and its AUC would be decided by rounding noise
        value = 0.5 if np.ptp(score) < 1e-6 else auc(rows["label"], score)
        if "x" not in rows and value < 0.5:
            below[(null, study, model, rows["kind"].iloc[0])] = round(value, 3)
    assert not below, f"training AUC below 0.5 (null cohort, study, model, kind): {below}"
    planted = [auc(r["label"], r["score"]) for (null, *_), r in training_scores.items() if not null]
    assert np.median(planted) > 0.75  # the fits learn the planted signal on training data


def test_one_feature_logistic_models_follow_the_covariance_direction(training_scores):
    checked = set()
    for (null, study, model), rows in training_scores.items():
        if "x" not in rows:
            continue
        x, y = rows["x"].to_numpy(float), rows["label"].to_numpy(float)
        cov = float(np.cov(x, y)[0, 1])
        assert np.sign(np.cov(x, rows["score"].to_numpy(float))[0, 1]) == np.sign(cov)
        expected = auc(y, x) if cov > 0 else 1 - auc(y, x)
        assert auc(y, rows["score"]) == pytest.approx(expected, abs=1e-12), (null, study, model)
        checked.add((study, model))
    one_feature = ("bclc", "cnlc", "dl", "dl_r18", "dl_r34", "nlr", "plr", "lmr")
    assert checked == {("er_fusion", m) for m in one_feature}


def test_study_files_are_the_configured_ones():
    assert Path(STUDY_DIR) == ROOT / "config" / "studies"
    assert set(fast_specs()) == set(studies.SEED_STUDIES)
