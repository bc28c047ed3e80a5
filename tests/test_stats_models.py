"""hccrad.stats.models: classifiers, grid search, rad-score, clinical model, nomogram, fusion,
SHAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from hccrad.stats.models import (
    CLASSIFIERS,
    ClinicalModel,
    PlattSVC,
    build_pipeline,
    clinical_model,
    fuse_blocks,
    grid_search,
    nomogram,
    platt_sigmoid,
    plot_nomogram,
    radiomics_score,
    score_fusion,
    shap_explanation,
    shap_figures,
)
from hccrad.stats.selection import LassoSelector


def toy(n: int = 80, p: int = 6, seed: int = 0, positives: int | None = None):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    score = X["f0"] - 0.7 * X["f1"] + 0.5 * rng.normal(size=n)
    k = positives if positives is not None else n // 2
    y = np.zeros(n, dtype=int)
    y[np.argsort(-score.to_numpy())[:k]] = 1
    return X, y


def is_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# classifiers and pipelines


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_probabilities_and_determinism(name):
    X, y = toy()
    spec = [{"step": "univariate", "alpha": 0.05}]
    a = build_pipeline(spec, name, seed=3).fit(X, y).predict_proba(X)
    b = build_pipeline(spec, name, seed=3).fit(X, y).predict_proba(X)
    assert a.shape == (80, 2) and (a >= 0).all() and (a <= 1).all()
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(a, b)
    assert roc_auc_score(y, a[:, 1]) > 0.8


def test_pipeline_structure_and_smote():
    X, y = toy(positives=20)
    pipe = build_pipeline(
        [{"step": "univariate"}, {"step": "univariate", "alpha": 0.5}, {"step": "lasso"}],
        "knn",
        {"n_neighbors": 3},
        seed=1,
        smote=True,
    )
    names = [n for n, _ in pipe.steps]
    assert names == ["scaler", "univariate", "univariate_2", "lasso", "smote", "classifier"]
    pipe.fit(X, y)
    assert pipe["classifier"].n_samples_fit_ == 2 * 60  # SMOTE balanced 60 negatives / 20 positives
    assert list(pipe[:-2].get_feature_names_out()) == list(pipe["classifier"].feature_names_in_)
    assert pipe.predict_proba(X).shape == (80, 2)  # SMOTE is skipped at predict time
    with pytest.raises(ValueError, match="unknown classifier"):
        build_pipeline([], "catboost")


def test_icc_table_path_and_pca_steps(tmp_path):
    X, y = toy(p=6)
    icc = tmp_path / "icc.tsv"
    pd.DataFrame(
        {"feature": [f"f{i}" for i in range(6)], "icc2_1": [0.9, 0.95, 0.2, 0.8, 0.9, 0.5]}
    ).to_csv(icc, sep="\t", index=False)
    pipe = build_pipeline(
        [
            {"step": "icc", "icc_table": str(icc), "threshold": 0.75},
            {"step": "pca", "n_components": 2},
        ],
        "logistic",
        seed=0,
    ).fit(X, y)
    assert list(pipe["icc"].get_feature_names_out()) == ["f0", "f1", "f3", "f4"]
    assert pipe["pca"].n_components_ == 2 and pipe["classifier"].coef_.shape == (1, 2)


def test_grid_search_picks_the_right_kernel():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    y = (np.hypot(X["a"], X["b"]) > 1.18).astype(int).to_numpy()  # radial: not linearly separable
    pipe = build_pipeline([], "svm", seed=0)
    gs = grid_search(pipe, {"classifier__kernel": ["linear", "rbf"]}, X, y, cv=4, seed=0)
    assert gs.best_params_ == {"classifier__kernel": "rbf"}
    res = gs.cv_results_
    means = dict(zip(res["param_classifier__kernel"], res["mean_test_score"], strict=True))
    assert means["rbf"] > 0.9 and means["linear"] < 0.75
    again = grid_search(pipe, {"classifier__kernel": ["linear", "rbf"]}, X, y, cv=4, seed=0)
    np.testing.assert_array_equal(
        again.cv_results_["mean_test_score"], gs.cv_results_["mean_test_score"]
    )


def noise_cohort(seed: int = 0, n: int = 30, p: int = 5):
    """Labels independent of the features: cross-validation anti-learns on such a cohort."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)), np.array([0, 1] * (n // 2))


def sklearn_platt(X, y, folds):
    """scikit-learn's out-of-fold Platt scaling of a linear SVC (what PlattSVC replaced)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    cal = CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", cv=folds, ensemble=False)
    return cal.fit(X, y)


def test_platt_svc_out_of_fold_slope_cannot_invert_the_probabilities():
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import SVC

    X, y = noise_cohort()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    # unconstrained, the out-of-fold sigmoid's slope flips (sklearn: P = 1/(1+exp(A f + B)),
    # A > 0 is a probability decreasing in f) and the training AUC is inverted
    ref = sklearn_platt(X, y, folds)
    A = ref.calibrated_classifiers_[0].calibrators[0].a_
    f_ref = ref.calibrated_classifiers_[0].estimator.decision_function(X)
    auc_f = roc_auc_score(y, f_ref)
    assert A > 0.5  # flipped
    assert auc_f == pytest.approx(0.707, abs=0.01)
    assert roc_auc_score(y, ref.predict_proba(X)[:, 1]) == pytest.approx(1 - auc_f)
    # platt_sigmoid without the bound is the same fit (a = -A)
    oof = cross_val_predict(SVC(kernel="linear"), X, y, cv=folds, method="decision_function")
    a_free, _ = platt_sigmoid(oof, y, min_slope=-np.inf)
    assert a_free == pytest.approx(-A, rel=1e-4)
    assert platt_sigmoid(oof, y)[0] == 0.0  # the bound a >= 0 is active
    # ours falls back to the in-sample sigmoid: same SVC, same ranking, AUC of the decision
    model = PlattSVC(kernel="linear", random_state=0).fit(X, y)
    assert model.calibration_ == "in_sample" and model.slope_ > 0.5
    f = model.decision_function(X)
    np.testing.assert_allclose(f, f_ref, atol=1e-8)
    p = model.predict_proba(X)[:, 1]
    assert roc_auc_score(y, p) == roc_auc_score(y, f) == pytest.approx(auc_f)
    # probabilities strictly increasing in the decision function, also on new patients
    grid = np.linspace(-3, 3, 201)[:, None] * np.ones((1, X.shape[1]))
    order = np.argsort(model.decision_function(grid))
    assert (np.diff(model.predict_proba(grid)[order, 1]) > 0).all()
    assert (np.diff(p[np.argsort(f)]) > 0).all()


def test_platt_svc_matches_sklearn_platt_when_the_slope_is_positive():
    from sklearn.model_selection import StratifiedKFold

    X, y = toy()
    X = X.to_numpy()
    model = PlattSVC(kernel="linear", random_state=0).fit(X, y)
    assert model.calibration_ == "out_of_fold" and model.slope_ > 0
    ref = sklearn_platt(X, y, StratifiedKFold(5, shuffle=True, random_state=0))
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-4)
    assert roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.9
    with pytest.raises(ValueError, match="at least 2 patients"):
        PlattSVC().fit(X[:5], [0, 0, 0, 0, 1])


def test_radiomics_score():
    X, y = toy(n=100, p=10, seed=2)
    pipe = build_pipeline([{"step": "univariate"}, {"step": "lasso"}], "random_forest", seed=0)
    pipe.fit(X, y)
    las = pipe["lasso"]
    Xs = pipe["univariate"].transform(pipe["scaler"].transform(X))
    np.testing.assert_allclose(radiomics_score(pipe, X), Xs.to_numpy() @ las.coef_ + las.intercept_)
    assert isinstance(las, LassoSelector)
    np.testing.assert_allclose(radiomics_score(las, Xs), las.score(Xs))
    logistic = build_pipeline([], "logistic").fit(X, y)
    np.testing.assert_allclose(radiomics_score(logistic, X), logistic.decision_function(X))
    knn = build_pipeline([], "knn", {"n_neighbors": 7}).fit(X, y)
    p = np.clip(knn.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    np.testing.assert_allclose(radiomics_score(knn, X), np.log(p / (1 - p)))


# ---------------------------------------------------------------------------------------------
# clinical model and nomogram


@pytest.fixture(scope="module")
def clinical() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n).round(0),
            "afp": rng.lognormal(3, 1.5, n).round(1),
            "sex": rng.choice(["M", "F"], n),
            "child_pugh": rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1]),
            "hbv": rng.integers(0, 2, n),
            "noise": rng.normal(size=n),
        }
    )
    lp = -1.0 + 0.07 * (df["age"] - 60) + df["child_pugh"].map({"A": 0, "B": 0.8, "C": 1.5})
    lp += 0.9 * df["hbv"]
    df["mvi"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-lp))).astype(int)
    df.loc[[3, 7], "age"] = np.nan
    df.loc[[11], "child_pugh"] = None
    return df


def sm_fit(df: pd.DataFrame, label: str, cols: list[str]):
    """Independent reference fit: dummy coding by hand, first sorted level as reference."""
    sub = df[[label, *cols]].dropna()
    X = pd.DataFrame(index=sub.index)
    for c in cols:
        if sub[c].dtype == object:
            for level in sorted(sub[c].unique())[1:]:
                X[f"{c}[T.{level}]"] = (sub[c] == level).astype(float)
        else:
            X[c] = sub[c].astype(float)
    return sm.Logit(sub[label], sm.add_constant(X)).fit(disp=0)


CANDIDATES = ["age", "afp", "sex", "child_pugh", "hbv", "noise"]


def test_clinical_model_tables_match_statsmodels(clinical):
    cm = clinical_model(clinical, "mvi", CANDIDATES, alpha=0.05)
    uni = cm.univariable.set_index("term")
    for var in CANDIDATES:
        res = sm_fit(clinical, "mvi", [var])
        ci = np.exp(res.conf_int())
        for term in res.params.index.drop("const"):
            row = uni.loc[term]
            assert row["variable"] == var and row["n"] == res.nobs
            np.testing.assert_allclose(row["OR"], np.exp(res.params[term]), rtol=1e-8)
            np.testing.assert_allclose(row["ci_low"], ci.loc[term, 0], rtol=1e-8)
            np.testing.assert_allclose(row["ci_high"], ci.loc[term, 1], rtol=1e-8)
            np.testing.assert_allclose(row["p"], res.pvalues[term], rtol=1e-8)
        p_var = res.llr_pvalue if len(res.params) > 2 else res.pvalues.iloc[1]
        np.testing.assert_allclose(uni.loc[uni["variable"] == var, "p_variable"], p_var, rtol=1e-8)
    # selection rule: exactly the candidates with variable P < alpha, in candidate order
    p_var = cm.univariable.groupby("variable", sort=False)["p_variable"].first()
    assert cm.selected == [v for v in CANDIDATES if p_var[v] < 0.05]
    assert {"age", "child_pugh", "hbv"} <= set(cm.selected) and "noise" not in cm.selected
    assert (
        cm.univariable["selected"].tolist() == cm.univariable["variable"].isin(cm.selected).tolist()
    )
    # multivariable = statsmodels on the complete cases of the selected variables
    res = sm_fit(clinical, "mvi", cm.selected)
    multi = cm.multivariable.set_index("term")
    assert list(multi.index) == list(res.params.index.drop("const"))
    np.testing.assert_allclose(multi["OR"], np.exp(res.params.drop("const")), rtol=1e-8)
    ci = np.exp(res.conf_int()).drop("const")
    np.testing.assert_allclose(multi["ci_low"], ci[0], rtol=1e-8)
    np.testing.assert_allclose(multi["ci_high"], ci[1], rtol=1e-8)
    np.testing.assert_allclose(cm.result.params.to_numpy(), res.params.to_numpy(), rtol=1e-8)
    assert cm.result.nobs == len(clinical[["mvi", *cm.selected]].dropna())
    assert not cm.fallback


def test_clinical_model_fallback_and_errors(clinical):
    cm = clinical_model(clinical, "mvi", ["noise", "sex", "hbv"], alpha=1e-12)
    assert cm.fallback and cm.selected == ["hbv"]
    with pytest.raises(ValueError, match="missing column"):
        clinical_model(clinical, "mvi", ["bmi"])
    with pytest.raises(ValueError, match="level"):
        cm2 = clinical_model(clinical, "mvi", ["child_pugh"])
        cm2.predict(clinical.assign(child_pugh="D"))


def test_nomogram_points_map_back_to_probability(clinical, tmp_path):
    cm = clinical_model(clinical, "mvi", CANDIDATES)
    out = tmp_path / "fig" / "nomogram.png"
    nomo = plot_nomogram(cm, out)
    assert is_png(out) and not list(out.parent.glob(".*tmp"))
    rows = clinical.dropna().iloc[[0, 5, 17, 42, 99]]
    pts = nomo.points(cm.design(rows))
    assert list(pts.columns) == [*cm.selected, "total"]
    np.testing.assert_allclose(nomo.probability(pts["total"]), cm.predict(rows), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cm.predict(rows), cm.result.predict(cm.design(rows)), atol=1e-12)
    # the most influential covariate spans exactly 0-100 points; references score 0 or more
    spans = [(a.contrib_max - a.contrib_min) * nomo.scale for a in nomo.axes]
    assert max(spans) == pytest.approx(100.0)
    cat = next(a for a in nomo.axes if a.variable == "child_pugh")
    assert cat.kind == "categorical" and cat.tick_labels == ("A", "B", "C")
    # same scale from the bare statsmodels result (reference level then labelled "ref")
    raw = nomogram(cm.result)
    assert raw.scale == pytest.approx(nomo.scale)
    assert next(a for a in raw.axes if a.variable == "child_pugh").tick_labels[0] == "ref"
    assert isinstance(cm, ClinicalModel)


# ---------------------------------------------------------------------------------------------
# fusion


def test_fuse_blocks():
    ap = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0]}, index=["p1", "p2", "p3"])
    pvp = pd.DataFrame({"x": [7.0, 8.0, 9.0, 10.0]}, index=["p3", "p2", "p1", "p4"])
    out = fuse_blocks({"AP": ap, "PVP": pvp}, ["p2", "p1", "p3"])
    assert list(out.columns) == ["AP__x", "AP__y", "PVP__x"]
    assert list(out.index) == ["p2", "p1", "p3"] and out.index.name == "patient"
    assert out.loc["p1"].tolist() == [1.0, 4.0, 9.0]
    with pytest.raises(ValueError, match=r"block 'AP' lacks patient\(s\) p4"):
        fuse_blocks({"AP": ap, "PVP": pvp}, ["p1", "p4"])
    with pytest.raises(ValueError, match="p4"):
        fuse_blocks({"AP": ap, "PVP": pvp})  # same patients required without a list
    with pytest.raises(ValueError, match="duplicate"):
        fuse_blocks({"AP": pd.concat([ap, ap.head(1)])}, ["p1"])


def test_score_fusion_mean_and_logistic():
    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 2, n)
    a = y + rng.normal(size=n)  # two complementary noisy scores
    b = 10 * (y + rng.normal(size=n)) + 3
    mean = score_fusion({"rad": a, "dl": b})
    za = (a - a.mean()) / a.std(ddof=1)
    zb = (b - b.mean()) / b.std(ddof=1)
    np.testing.assert_allclose(mean.transform({"rad": a, "dl": b}), (za + zb) / 2)
    new = {"rad": np.array([0.0, 1.0]), "dl": np.array([3.0, 13.0])}
    expect = ((new["rad"] - a.mean()) / a.std(ddof=1) + (new["dl"] - b.mean()) / b.std(ddof=1)) / 2
    np.testing.assert_allclose(mean.transform(new), expect)  # training statistics, no refit
    w = score_fusion({"rad": a, "dl": b}, weights={"rad": 3, "dl": 1})
    np.testing.assert_allclose(w.transform({"rad": a, "dl": b}), 0.75 * za + 0.25 * zb)
    lr = score_fusion({"rad": a, "dl": b}, y)
    ref = LogisticRegression(C=np.inf, max_iter=10000).fit(np.column_stack([za, zb]), y)
    np.testing.assert_allclose(
        lr.transform({"rad": a, "dl": b}),
        ref.decision_function(np.column_stack([za, zb])),
        rtol=1e-6,
    )
    fused_auc = roc_auc_score(y, lr.transform({"rad": a, "dl": b}))
    assert fused_auc > max(roc_auc_score(y, a), roc_auc_score(y, b))
    with pytest.raises(ValueError, match="length"):
        score_fusion({"rad": a, "dl": b[:-1]})
    with pytest.raises(ValueError, match="one or other"):
        score_fusion({"rad": a}, y, weights=[1.0])


# ---------------------------------------------------------------------------------------------
# SHAP


def test_shap_tree_additivity_and_figures(tmp_path):
    X, y = toy(n=100, p=20, seed=5)
    X.index = [f"P{i:03d}" for i in range(100)]
    rf = build_pipeline(
        [{"step": "univariate", "alpha": 0.2}], "random_forest", {"n_estimators": 100}, seed=0
    )
    rf.fit(X, y)
    bee, wf = tmp_path / "bee.png", tmp_path / "wf.png"
    expl = shap_figures(rf, X, bee, wf, patient_index="P007")
    assert is_png(bee) and is_png(wf)
    assert list(expl.feature_names) == list(rf["univariate"].get_feature_names_out())
    rows = [0, 7, 50]
    total = expl.base_values[rows] + expl.values[rows].sum(axis=1)
    np.testing.assert_allclose(total, rf.predict_proba(X.iloc[rows])[:, 1], atol=1e-6)
    xgb = build_pipeline([], "xgboost", {"n_estimators": 50}, seed=0).fit(X, y)
    ex = shap_explanation(xgb, X.iloc[rows])
    margin = xgb["classifier"].predict(xgb["scaler"].transform(X.iloc[rows]), output_margin=True)
    np.testing.assert_allclose(ex.base_values + ex.values.sum(axis=1), margin, atol=1e-4)


def test_shap_kernel_path_is_additive_and_seeded():
    X, y = toy(n=60, p=5, seed=6)
    model = build_pipeline([], "logistic", seed=0).fit(X, y)
    a = shap_explanation(model, X.iloc[:5], seed=1)
    b = shap_explanation(model, X.iloc[:5], seed=1)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(
        a.base_values + a.values.sum(axis=1), model.predict_proba(X.iloc[:5])[:, 1], atol=1e-9
    )
    assert isinstance(model["classifier"], LogisticRegression)
