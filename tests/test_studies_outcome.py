"""Outcome cohorts, stepwise Cox, score tests and rate CIs of a study run (hccrad.studies) on
constructed tables where some labels are missing: the unlabelled patients are scored by the
model fitted on the labelled training patients only, never fitted on; every number is checked
against an independent computation (lifelines, scipy, statsmodels)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest import ROOT
from hccrad.stats.survival import optimal_cutpoint
from hccrad.studies import load_study, run_study

SPEC = """
title: outcome cohorts test
modality: CT
label: proliferative
splits: {primary_centers: [A], temporal_cutoff: null, validation_fraction: 0.3}
blocks:
  feat: {source: clinical, columns: [f1, f2, f3]}
models:
  score:
    blocks: [feat]
    selection: []
    classifier: logistic
    params: {C: 1.0}
primary: score
nomogram: null
explain: null
comparisons: []
survival:
  model: score
  endpoints:
    pfs: {time: pfs_months, event: pfs_event}
  covariates: [age_gt_50, tumor_size_mm, noise]
  km_scope: held_out
  cox_scope: held_out
  outcome_cohorts:
    same_center: {centers: [A]}
    second: {centers: [B, C]}
    unlabelled: {label: missing}
  outcome_cutpoint: {rule: maxstat, scope: __SCOPE__}
  stepwise: {direction: both, criterion: aic}
  response: {column: tace_response, responders: [CR, PR]}
  score_by_class: true
"""


def _tables(seed: int = 3, n: int = 150) -> dict[str, pd.DataFrame]:
    """Three centers; the label depends on f1 - f2; PFS on the label and the tumor size; the
    response on the label. A's unlabelled patients and most of C's have no label."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    center = np.array(["A"] * 70 + ["B"] * 40 + ["C"] * 40)
    f = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * f[:, 0] - f[:, 1])))).astype(float)
    size = rng.uniform(10, 120, n)
    hazard = np.exp(0.9 * y + 0.015 * size)
    pfs = np.round(rng.exponential(20 / hazard), 1) + 0.5
    response = np.where(rng.random(n) < 0.65 - 0.35 * y, "PR", "SD")
    response[rng.random(n) < 0.15] = "CR"
    clinical = pd.DataFrame(
        {
            "patient": ids,
            "center": center,
            "modality": "CT",
            "acquisition_date": "2020-01-01",
            "age": rng.integers(35, 80, n),
            "tumor_size_mm": size,
            "noise": rng.normal(size=n),
            "f1": f[:, 0],
            "f2": f[:, 1],
            "f3": f[:, 2],
            "proliferative": y,
            "pfs_months": pfs,
            "pfs_event": (rng.random(n) < 0.8).astype(int),
            "tace_response": response,
        }
    )
    clinical["age_gt_50"] = (clinical["age"] > 50).astype(float)
    # the columns the shared defaults derive from (unused here)
    clinical = clinical.assign(
        afp=100.0, bclc="A", child_pugh="A", cnlc="I", sex="M", tumor_number=1
    )
    unlabelled = np.r_[np.arange(60, 70), np.arange(115, 150)]  # 10 of A, 35 of C
    clinical.loc[unlabelled, "proliferative"] = np.nan
    return {"clinical": clinical}


def _spec(tmp: Path, scope: str):
    folder = tmp / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defaults.yaml").write_text((ROOT / "config/studies/defaults.yaml").read_text())
    path = folder / "outcome.yaml"
    path.write_text(textwrap.dedent(SPEC).replace("__SCOPE__", scope))
    return load_study(path, check_estimators=False)


def _splits(clinical: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """A fixed split: 49 of A's labelled patients train, the rest validation; B external; the
    unlabelled patients ``unlabeled``."""
    rng = np.random.default_rng(seed)
    split = np.where(clinical["center"] == "A", "validation", "external").astype(object)
    labelled_a = np.flatnonzero((clinical["center"] == "A") & clinical["proliferative"].notna())
    split[rng.permutation(labelled_a)[:42]] = "train"
    split[clinical["proliferative"].isna().to_numpy()] = "unlabeled"
    return pd.DataFrame({"patient": clinical["patient"], "split": split})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The study with missing labels (pooled and per-cohort cut-points) and, as the
    reference, the same patients fully labelled with the same training patients."""
    tmp = tmp_path_factory.mktemp("outcome")
    tables = _tables()
    splits = _splits(tables["clinical"])
    out = {}
    for scope in ("pooled", "cohort"):
        spec = _spec(tmp / scope, scope)
        run_study(spec, tables, tmp / scope / "out", seed=5, splits=splits)
        out[scope] = tmp / scope / "out"
    # reference: every label known, the unlabelled patients as external (never trained on)
    full = _tables()
    rng = np.random.default_rng(3)
    truth = pd.Series(rng.integers(0, 2, len(full["clinical"])), dtype=float)
    missing = full["clinical"]["proliferative"].isna()
    full["clinical"].loc[missing, "proliferative"] = truth[missing]
    ref_splits = splits.assign(split=splits["split"].replace("unlabeled", "external"))
    run_study(_spec(tmp / "ref", "pooled"), full, tmp / "ref" / "out", seed=5, splits=ref_splits)
    out["ref"] = tmp / "ref" / "out"
    return tables, splits, out


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def _ref_scores(ref: Path) -> pd.Series:
    """Every patient's linear predictor from the fully labelled run."""
    pred = pd.read_parquet(ref / "predictions.parquet")
    return pred.set_index("patient")["linear_predictor"]


def _members(clinical: pd.DataFrame, splits: pd.DataFrame) -> dict[str, list[str]]:
    c = clinical.set_index("patient")
    sp = splits.set_index("patient")["split"]
    not_train = sp != "train"
    return {
        "same_center": list(c.index[(c["center"] == "A") & not_train]),
        "second": list(c.index[c["center"].isin(["B", "C"]) & not_train]),
        "unlabelled": list(c.index[c["proliferative"].isna()]),
    }


def test_model_fitted_on_labelled_training_patients_only(runs):
    tables, _, out = runs
    pred = pd.read_parquet(out["pooled"] / "predictions.parquet")
    unlabelled = set(tables["clinical"].loc[tables["clinical"]["proliferative"].isna(), "patient"])
    assert not unlabelled & set(pred["patient"])  # never evaluated as labelled
    # the same training patients give the same fit whether or not the outcome patients have
    # labels: every analysed patient's score is identical to the fully labelled run
    ref = _ref_scores(out["ref"])
    mine = pred[pred["model"] == "score"].set_index("patient")["linear_predictor"]
    np.testing.assert_allclose(mine.to_numpy(), ref.loc[mine.index].to_numpy(), rtol=1e-12)


def test_outcome_cohorts_members_and_pooled_cutpoint(runs):
    tables, splits, out = runs
    info = _json(out["pooled"], "cutpoint.json")["pfs"]["outcome_cohorts"]
    members = _members(tables["clinical"], splits)
    c = tables["clinical"].set_index("patient")
    for name, ids in members.items():
        assert info[name]["n_members"] == info[name]["n"] == len(ids)
        assert info[name]["n_unlabelled"] == int(c.loc[ids, "proliferative"].isna().sum())
    assert info["unlabelled"]["n"] == 45 and info["same_center"]["n_unlabelled"] == 10
    assert info["second"]["n_unlabelled"] == 35
    # the pooled maxstat cut on every outcome patient, scored by the fitted model (the scores
    # of the unlabelled patients are the reference run's, where they were labelled)
    scores = _ref_scores(out["ref"])
    pooled = sorted(set().union(*members.values()))
    cp = optimal_cutpoint(c.loc[pooled, "pfs_months"], c.loc[pooled, "pfs_event"], scores[pooled])
    for name, ids in members.items():
        assert info[name]["cutpoint"] == pytest.approx(cp.cutpoint, abs=1e-12)
        high = scores[ids] > cp.cutpoint
        assert (info[name]["n_high"], info[name]["n_low"]) == (int(high.sum()), int((~high).sum()))
        from lifelines.statistics import logrank_test

        lr = logrank_test(
            c.loc[ids, "pfs_months"][high.to_numpy()],
            c.loc[ids, "pfs_months"][~high.to_numpy()],
            c.loc[ids, "pfs_event"][high.to_numpy()],
            c.loc[ids, "pfs_event"][~high.to_numpy()],
        )
        assert info[name]["logrank_p"] == pytest.approx(lr.p_value, rel=1e-8)
        # response rate by score group: Fisher's exact test of the 2 x 2 table
        resp = c.loc[ids, "tace_response"].isin(["CR", "PR"]).to_numpy()
        table = [
            [(resp & high).sum(), (~resp & high).sum()],
            [(resp & ~high).sum(), (~resp & ~high).sum()],
        ]
        assert info[name]["response"]["fisher_p"] == pytest.approx(sps.fisher_exact(table)[1])


def test_per_cohort_cutpoint(runs):
    tables, splits, out = runs
    info = _json(out["cohort"], "cutpoint.json")["pfs"]["outcome_cohorts"]
    c = tables["clinical"].set_index("patient")
    scores = _ref_scores(out["ref"])
    for name, ids in _members(tables["clinical"], splits).items():
        cp = optimal_cutpoint(c.loc[ids, "pfs_months"], c.loc[ids, "pfs_event"], scores[ids])
        assert info[name]["cutpoint"] == pytest.approx(cp.cutpoint, abs=1e-12)
        assert info[name]["cut_rule"] == "maxstat (cohort)"


def test_outcome_cox_stepwise_matches_lifelines(runs):
    from lifelines import CoxPHFitter

    tables, splits, out = runs
    cox = pd.read_parquet(out["pooled"] / "cox.parquet")
    info = _json(out["pooled"], "cutpoint.json")["pfs"]["outcome_cohorts"]
    c = tables["clinical"].set_index("patient")
    scores = _ref_scores(out["ref"])
    ids = _members(tables["clinical"], splits)["second"]
    df = c.loc[ids, ["pfs_months", "pfs_event", "age_gt_50", "tumor_size_mm", "noise"]].copy()
    df["score_high"] = (scores[ids] > info["second"]["cutpoint"]).astype(float).to_numpy()
    covs = ["score_high", "age_gt_50", "tumor_size_mm", "noise"]
    rows = cox[(cox["cohort"] == "second") & (cox["endpoint"] == "pfs")]
    multi = rows[rows["analysis"] == "multivariable"].set_index("covariate")
    full = CoxPHFitter().fit(df[["pfs_months", "pfs_event", *covs]], "pfs_months", "pfs_event")
    np.testing.assert_allclose(multi.loc[covs, "coef"], full.params_[covs], atol=1e-6)
    step = rows[rows["analysis"] == "stepwise"].set_index("covariate")
    kept = list(step.index)
    assert "tumor_size_mm" in kept  # the planted effect
    ref = CoxPHFitter().fit(df[["pfs_months", "pfs_event", *kept]], "pfs_months", "pfs_event")
    np.testing.assert_allclose(step.loc[kept, "hr"], np.exp(ref.params_[kept]), rtol=1e-6)

    # no single drop or add lowers the AIC of the kept model (R step's stopping rule)
    def aic(cs: list[str]) -> float:
        return (
            CoxPHFitter()
            .fit(df[["pfs_months", "pfs_event", *cs]], "pfs_months", "pfs_event")
            .AIC_partial_
        )

    best = aic(kept)
    for cov in covs:
        other = [x for x in kept if x != cov] if cov in kept else [*kept, cov]
        if other:
            assert aic(other) >= best - 1e-9
    # the held-out scope keeps its analyses, now labelled by cohort
    assert set(cox["cohort"]) == {"held_out", "same_center", "second", "unlabelled"}


def test_score_tests_by_class_and_response(runs):
    tables, splits, out = runs
    metrics = _json(out["pooled"], "metrics.json")
    tests = {(t["test"], t["cohort"]): t for t in metrics["score_tests"]}
    pred = pd.read_parquet(out["pooled"] / "predictions.parquet")
    tr = pred[pred["split"] == "train"]
    ref = sps.mannwhitneyu(
        tr.loc[tr["label"] == 1, "linear_predictor"],
        tr.loc[tr["label"] == 0, "linear_predictor"],
        method="exact",
    )
    assert tests[("class", "train")]["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert tests[("class", "train")]["p"] < 0.01  # the planted class signal
    c = tables["clinical"].set_index("patient")
    scores = _ref_scores(out["ref"])
    ids = _members(tables["clinical"], splits)["unlabelled"]
    resp = c.loc[ids, "tace_response"].isin(["CR", "PR"]).to_numpy()
    ref = sps.mannwhitneyu(scores[ids][resp], scores[ids][~resp], method="exact")
    row = tests[("response", "unlabelled")]
    assert row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert (row["n_pos"], row["n_neg"]) == (int(resp.sum()), int((~resp).sum()))
    assert metrics["outcome_cohorts"]["unlabelled"] == {"n_members": 45, "n_scored": 45}


def test_performance_rates_carry_wilson_cis(runs):
    from statsmodels.stats.proportion import proportion_confint

    _, _, out = runs
    perf = pd.read_parquet(out["pooled"] / "performance.parquet").set_index("split")
    r = perf.loc["validation"]
    lo, hi = proportion_confint(int(r["tp"]), int(r["tp"] + r["fn"]), method="wilson")
    assert (r["sensitivity_lower"], r["sensitivity_upper"]) == pytest.approx((lo, hi))
    lo, hi = proportion_confint(int(r["tn"]), int(r["tn"] + r["fp"]), method="wilson")
    assert (r["specificity_lower"], r["specificity_upper"]) == pytest.approx((lo, hi))


def test_report_shows_outcome_cohorts_score_tests_and_rate_cis(runs):
    from hccrad import report

    _, _, out = runs
    o = out["pooled"]
    result = report.load_study_result(
        "outcome", o / "performance.parquet", o / "comparisons.parquet", o / "metrics.json"
    )
    lines = report.survival_lines(result)
    cut = _json(o, "cutpoint.json")["pfs"]["outcome_cohorts"]["unlabelled"]
    assert any(
        line.startswith("pfs, outcome cohort unlabelled (n = 45, 45 unlabelled): cut-point ")
        and f"high {cut['n_high']} vs low {cut['n_low']}" in line
        for line in lines
    )
    train = [line for line in lines if line.startswith("score by class, training:")]
    assert len(train) == 1 and "rank-sum P " in train[0]
    perf = pd.read_parquet(o / "performance.parquet").set_index("split").loc["validation"]
    table = report.classification_table(result).set_index("split")
    lo, hi = perf["sensitivity_lower"], perf["sensitivity_upper"]
    expected = f"{perf['sensitivity']:.2f} ({lo:.2f}\u2013{hi:.2f})"
    assert table.loc["internal validation", "sensitivity"] == expected
