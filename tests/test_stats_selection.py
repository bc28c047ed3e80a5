"""hccrad.stats.selection: closed-form checks of every selector, no refit on transform, and the
leakage canary of the full selection + classifier pipeline."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LassoCV, LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.preprocessing import StandardScaler

from hccrad.stats.models import build_pipeline
from hccrad.stats.selection import (
    CorrelationFilter,
    GroupedPCA,
    ICCFilter,
    LassoSelector,
    RFESelector,
    UnivariateFilter,
    binary_labels,
    make_step,
    univariate_auc,
)


def frame(X: np.ndarray, prefix: str = "f") -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"{prefix}{i}" for i in range(X.shape[1])])


def planted(n: int = 80, p: int = 10, seed: int = 0, shift: float = 1.5):
    """f0 normal shifted by ``shift`` in the positives, f1 lognormal shifted, the rest noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, p))
    X[:, 0] += shift * y
    X[:, 1] = rng.lognormal(0.0, 1.2, n) + shift * y
    return frame(X), y


# ---------------------------------------------------------------------------------------------
# helpers


def test_binary_labels_and_auc():
    assert binary_labels(["b", "a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="2 classes"):
        binary_labels([0, 1, 2])
    with pytest.raises(ValueError, match="missing"):
        binary_labels([0.0, np.nan])
    X, y = planted()
    auc = univariate_auc(X.to_numpy(), y)
    expect = [roc_auc_score(y, X[c]) for c in X.columns]
    np.testing.assert_allclose(auc, expect, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# univariate filter


def test_univariate_ttest_and_mannwhitney_match_scipy():
    X, y = planted()
    pos, neg = X[y == 1], X[y == 0]
    t = UnivariateFilter(alpha=0.05, test="ttest").fit(X, y)
    p_t = stats.ttest_ind(pos, neg, equal_var=False).pvalue
    np.testing.assert_allclose(t.pvalues_, p_t, rtol=1e-12)
    assert t.support_.tolist() == (p_t < 0.05).tolist()
    assert t.support_[0] and t.support_[1]
    u = UnivariateFilter(alpha=0.05, test="mannwhitney").fit(X, y)
    p_u = stats.mannwhitneyu(pos, neg, alternative="two-sided").pvalue
    np.testing.assert_allclose(u.pvalues_, p_u, rtol=1e-12)
    assert list(u.get_feature_names_out()) == list(X.columns[p_u < 0.05])


def test_univariate_auto_uses_shapiro_per_feature():
    X, y = planted()
    f = UnivariateFilter(test="auto").fit(X, y)
    pos, neg = X[y == 1], X[y == 0]
    normal = (stats.shapiro(pos, axis=0).pvalue > 0.05) & (stats.shapiro(neg, axis=0).pvalue > 0.05)
    assert f.tests_[1] == "mannwhitney" and not normal[1]  # the lognormal feature
    assert f.tests_.tolist() == np.where(normal, "ttest", "mannwhitney").tolist()
    expect = np.where(
        normal,
        stats.ttest_ind(pos, neg, equal_var=False).pvalue,
        stats.mannwhitneyu(pos, neg, alternative="two-sided").pvalue,
    )
    np.testing.assert_allclose(f.pvalues_, expect, rtol=1e-12)


def binary_design(seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """A continuous column, a common 0/1 column (male), a rare 0/1 one (expected counts < 5)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], [46, 34])
    X = pd.DataFrame(
        {
            "age": rng.normal(60, 10, 80) + 4 * y,
            "male": (rng.random(80) < 0.35 + 0.3 * y).astype(float),
            "rare": np.isin(np.arange(80), [3, 50, 60, 70, 79]).astype(float),  # 1 / 46 vs 4 / 34
        }
    )
    return X, y


def expected_counts(table: np.ndarray) -> np.ndarray:
    return np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()


def test_univariate_auto_tests_binary_columns_by_chi2_or_fisher():
    X, y = binary_design()
    f = UnivariateFilter(test="auto").fit(X, y)
    male = pd.crosstab(y, X["male"]).to_numpy()
    rare = pd.crosstab(y, X["rare"]).to_numpy()
    assert (expected_counts(male) >= 5).all() and (expected_counts(rare) < 5).any()
    assert f.tests_.tolist()[1:] == ["chi2", "fisher"]
    # Pearson chi-squared with Yates' correction (2 x 2), as R chisq.test; Fisher's exact
    p_male = stats.chi2_contingency(male, correction=True).pvalue
    assert f.pvalues_[1] == pytest.approx(p_male, rel=1e-12)
    assert f.pvalues_[2] == pytest.approx(stats.fisher_exact(rare).pvalue, rel=1e-12)
    # the closed form of the corrected statistic on the same table
    e = expected_counts(male)
    chi2 = ((np.abs(male - e) - 0.5) ** 2 / e).sum()
    assert f.pvalues_[1] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-10)
    # the continuous column keeps Shapiro-Wilk -> t / Mann-Whitney
    pos, neg = X["age"][y == 1], X["age"][y == 0]
    normal = min(stats.shapiro(pos).pvalue, stats.shapiro(neg).pvalue) > 0.05
    p_age = (
        stats.ttest_ind(pos, neg, equal_var=False).pvalue
        if normal
        else stats.mannwhitneyu(pos, neg, alternative="two-sided").pvalue
    )
    assert f.tests_[0] == ("ttest" if normal else "mannwhitney")
    assert f.pvalues_[0] == pytest.approx(p_age, rel=1e-12)
    # uncorrected on request; z-scored 0/1 columns (the pipeline's scaler first) give the same P
    g = UnivariateFilter(test="auto", correction=False).fit(X, y)
    assert g.pvalues_[1] == pytest.approx(stats.chi2_contingency(male, correction=False).pvalue)
    z = StandardScaler().set_output(transform="pandas").fit_transform(X)
    np.testing.assert_allclose(UnivariateFilter().fit(z, y).pvalues_, f.pvalues_, rtol=1e-9)


def test_univariate_forced_tests_keep_binary_columns_continuous():
    X, y = binary_design()
    t = UnivariateFilter(test="ttest").fit(X, y)
    assert set(t.tests_) == {"ttest"}
    p = stats.ttest_ind(X["male"][y == 1], X["male"][y == 0], equal_var=False).pvalue
    assert t.pvalues_[1] == pytest.approx(p, rel=1e-12)


def test_univariate_fallback_keeps_k_best():
    X, y = planted(shift=0.0, seed=3)
    f = UnivariateFilter(alpha=1e-12, test="ttest", k_fallback=2).fit(X, y)
    assert f.fallback_
    best = np.argsort(f.pvalues_, kind="stable")[:2]
    assert np.flatnonzero(f.support_).tolist() == sorted(best.tolist())
    const = X.assign(f9=1.0)
    g = UnivariateFilter(test="ttest").fit(const, y)
    assert g.pvalues_[9] == 1.0 and not g.support_[9]


# ---------------------------------------------------------------------------------------------
# correlation filter


def collinear(seed: int = 1):
    rng = np.random.default_rng(seed)
    n = 100
    y = np.repeat([0, 1], n // 2)
    strong = y * 1.0 + rng.normal(size=n)
    weak_twin = strong - 0.4 * y + 0.2 * rng.normal(size=n)  # r > 0.9, less label-associated
    other = rng.normal(size=n)
    curved = np.exp(2.5 * other)  # Spearman 1 with other, Pearson well below 0.9
    X = pd.DataFrame({"weak_twin": weak_twin, "other": other, "strong": strong, "curved": curved})
    return X, y


def test_correlation_filter_keeps_more_associated_member():
    X, y = collinear()
    auc = {c: roc_auc_score(y, X[c]) for c in X.columns}
    assert abs(auc["strong"] - 0.5) > abs(auc["weak_twin"] - 0.5)
    assert abs(np.corrcoef(X["strong"], X["weak_twin"])[0, 1]) > 0.9
    assert abs(np.corrcoef(X["other"], X["curved"])[0, 1]) < 0.9
    f = CorrelationFilter(threshold=0.9, method="pearson").fit(X, y)
    assert list(f.get_feature_names_out()) == ["other", "strong", "curved"]
    assert f.dropped_ == {"weak_twin": "strong"}
    np.testing.assert_allclose(f.auc_, [auc[c] for c in X.columns], atol=1e-12)
    # same decision whatever the column order
    g = CorrelationFilter(threshold=0.9).fit(X[X.columns[::-1]], y)
    assert sorted(g.get_feature_names_out()) == sorted(f.get_feature_names_out())
    # Spearman also sees the monotone pair and drops its less label-associated member
    s = CorrelationFilter(threshold=0.9, method="spearman").fit(X, y)
    loser = min(["other", "curved"], key=lambda c: (abs(auc[c] - 0.5), -list(X).index(c)))
    assert s.dropped_ == {"weak_twin": "strong", loser: ({"other", "curved"} - {loser}).pop()}


def test_correlation_filter_no_kept_pair_above_threshold():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(90, 4))
    X = np.hstack([base, base + 0.2 * rng.normal(size=(90, 4)), rng.normal(size=(90, 3))])
    y = rng.integers(0, 2, 90)
    f = CorrelationFilter(threshold=0.8).fit(X, y)
    kept = X[:, f.support_]
    r = np.abs(np.corrcoef(kept, rowvar=False))
    assert (r[np.triu_indices_from(r, 1)] <= 0.8).all()
    assert f.support_.sum() == 7  # one of each of the 4 twins + 3 independent


# ---------------------------------------------------------------------------------------------
# ICC filter


def test_icc_filter_keeps_exactly_the_passing_features():
    X, y = planted(p=6)
    table = pd.DataFrame(
        {"icc2_1": [0.95, 0.75, np.nan, 0.40, 0.80], "icc3_1": [0.1, 0.9, 0.9, 0.9, 0.1]},
        index=pd.Index(["f0", "f1", "f2", "f3", "f4"], name="feature"),
    )  # f5 is not in the table
    f = ICCFilter(table, threshold=0.75).fit(X, y)
    assert list(f.get_feature_names_out()) == ["f0", "f4"]  # strictly above; NaN fails
    keep = ICCFilter(table, threshold=0.75, missing="keep").fit(X)
    assert list(keep.get_feature_names_out()) == ["f0", "f4", "f5"]
    c3 = ICCFilter(table.reset_index(), threshold=0.5, column="icc3_1").fit(X)
    assert list(c3.get_feature_names_out()) == ["f1", "f2", "f3"]
    none = ICCFilter(table, threshold=0.99).fit(X)
    assert none.fallback_ and list(none.get_feature_names_out()) == ["f0"]
    arr = ICCFilter({"x1": 0.9, "x2": 0.1}).fit(X.to_numpy())
    assert list(arr.get_feature_names_out()) == ["x1"]
    with pytest.raises(ValueError, match="none of the input features"):
        ICCFilter(table.rename(index=lambda s: "z" + s)).fit(X)


def test_icc_filter_with_intra_keeps_the_features_passing_both(tmp_path):
    """``intra``: a feature stays when its inter- AND intra-observer ICC exceed the threshold
    (strictly; NaN fails; absent ones follow ``missing``); the fallback takes the best of the
    smaller of the two ICCs."""
    X, y = planted(p=6)
    names = pd.Index(["f0", "f1", "f2", "f3", "f4"], name="feature")
    inter = pd.DataFrame({"icc2_1": [0.95, 0.92, 0.80, 0.97, 0.91]}, index=names)
    intra = pd.DataFrame({"icc2_1": [0.96, 0.85, 0.99, np.nan, 0.90]}, index=names)
    # f0 passes both; f1 fails intra, f2 fails inter, f3's intra is undefined, f4's intra is
    # not strictly above; f5 is in neither table
    f = ICCFilter(inter, threshold=0.9, intra=True, intra_table=intra).fit(X, y)
    assert list(f.get_feature_names_out()) == ["f0"]
    np.testing.assert_array_equal(f.intra_icc_[:5], intra["icc2_1"].to_numpy())
    assert np.isnan(f.intra_icc_[5])
    keep = ICCFilter(inter, 0.9, missing="keep", intra=True, intra_table=intra).fit(X)
    assert list(keep.get_feature_names_out()) == ["f0", "f5"]
    # without intra the intra table is not read: inter alone
    assert list(ICCFilter(inter, 0.9, intra_table=intra).fit(X).get_feature_names_out()) == [
        "f0", "f1", "f3", "f4",
    ]  # fmt: skip
    # an intra table missing a feature: it fails (drop) like an absent inter ICC
    part = ICCFilter(inter, 0.85, intra=True, intra_table=intra.drop(index="f1")).fit(X)
    assert list(part.get_feature_names_out()) == ["f0", "f4"]
    # nothing passes both: the best of min(inter, intra) is kept (f0: 0.95), not f3 (NaN)
    none = ICCFilter(inter, 0.96, intra=True, intra_table=intra).fit(X)
    assert none.fallback_ and list(none.get_feature_names_out()) == ["f0"]
    # the declarative spec, with the tables as files
    inter.to_csv(tmp_path / "inter.tsv", sep="\t")
    intra.to_csv(tmp_path / "intra.tsv", sep="\t")
    name, step = make_step(
        {"step": "icc", "threshold": 0.9, "intra": True, "icc_table": str(tmp_path / "inter.tsv"),
         "intra_table": str(tmp_path / "intra.tsv")}
    )  # fmt: skip
    assert name == "icc" and list(step.fit(X).get_feature_names_out()) == ["f0"]
    with pytest.raises(ValueError, match="needs an intra_table"):
        ICCFilter(inter, 0.9, intra=True).fit(X)


# ---------------------------------------------------------------------------------------------
# LASSO and RFE


def test_lasso_selects_planted_features_and_scores_linear_predictor():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 30))
    y = (X[:, 0] - X[:, 1] + 0.8 * X[:, 2] + 0.5 * rng.normal(size=150) > 0).astype(int)
    las = LassoSelector(cv=5, seed=0).fit(X, y)
    assert {0, 1, 2} <= set(np.flatnonzero(las.support_))
    assert las.coef_.shape == (30,) and (las.coef_[~las.support_] == 0).all()
    assert las.coef_[0] > 0 and las.coef_[1] < 0
    np.testing.assert_allclose(las.score(X), las.estimator_.decision_function(X), atol=1e-12)
    np.testing.assert_allclose(las.score(X), X @ las.coef_ + las.intercept_, atol=1e-12)
    again = LassoSelector(cv=5, seed=0).fit(X, y)
    np.testing.assert_array_equal(again.coef_, las.coef_)


def test_lasso_degenerate_keeps_best_feature():
    X, y = planted(shift=1.0, seed=4)
    las = LassoSelector(Cs=[1e-8], cv=3, seed=0).fit(X, y)  # penalty zeroes everything
    assert las.fallback_
    j = int(np.argmax(np.abs(univariate_auc(X.to_numpy(), y) - 0.5)))
    assert np.flatnonzero(las.support_).tolist() == [j]
    single = LogisticRegression(C=np.inf, max_iter=5000).fit(X.iloc[:, [j]], y)
    np.testing.assert_allclose(las.coef_[j], single.coef_[0, 0], rtol=1e-6)
    np.testing.assert_allclose(las.intercept_, single.intercept_[0], rtol=1e-6)


def test_lasso_linear_is_lassocv_on_the_0_1_label():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 15))
    y = (X[:, 0] - 0.8 * X[:, 1] + 0.7 * rng.normal(size=120) > 0).astype(int)
    las = LassoSelector(kind="linear", cv=10, seed=4, Cs=100, c_ratio=1000).fit(X, y)
    # scikit-learn's own LassoCV with its default path (100 alphas, eps 1e-3) on the same folds
    folds = list(StratifiedKFold(10, shuffle=True, random_state=4).split(X, y))
    ref = LassoCV(cv=folds, max_iter=5000).fit(X, y.astype(float))
    assert las.C_ * ref.alpha_ == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(las.coef_, ref.coef_, atol=1e-10)
    assert las.intercept_ == pytest.approx(ref.intercept_, abs=1e-10)
    assert las.support_.tolist() == (ref.coef_ != 0).tolist() and las.support_[:2].all()
    np.testing.assert_allclose(las.score(X), ref.predict(X), atol=1e-10)
    # an explicit list of C = 1 / lambda
    fixed = LassoSelector(kind="linear", cv=5, Cs=[1 / 0.05]).fit(X, y)
    from sklearn.linear_model import Lasso

    np.testing.assert_allclose(fixed.coef_, Lasso(alpha=0.05).fit(X, y).coef_, atol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        LassoSelector(kind="ridge").fit(X, y)


def test_lasso_linear_degenerate_keeps_best_feature():
    X, y = planted(shift=1.0, seed=4)
    las = LassoSelector(kind="linear", Cs=[1e-8], cv=3).fit(X, y)
    assert las.fallback_
    j = int(np.argmax(np.abs(univariate_auc(X.to_numpy(), y) - 0.5)))
    assert np.flatnonzero(las.support_).tolist() == [j]
    ols = LinearRegression().fit(X.iloc[:, [j]], y)
    assert las.coef_[j] == pytest.approx(ols.coef_[0]) and las.intercept_ == pytest.approx(
        ols.intercept_
    )


def test_lasso_logistic_scoring_option():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 10))
    y = (X[:, 0] + 0.5 * rng.normal(size=100) > 0).astype(int)
    las = LassoSelector(cv=5, Cs=[0.01, 0.1, 1.0], scoring="neg_log_loss").fit(X, y)
    from sklearn.linear_model import LogisticRegressionCV

    ref = LogisticRegressionCV(
        Cs=[0.01, 0.1, 1.0],
        l1_ratios=(1.0,),
        solver="liblinear",
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="neg_log_loss",
        max_iter=5000,
        random_state=0,
        use_legacy_attributes=False,
    ).fit(X, y)
    assert las.C_ == ref.C_
    np.testing.assert_allclose(las.coef_, ref.coef_.ravel(), atol=1e-12)


def test_lasso_one_se_rule_is_glmnets_lambda_1se():
    """rule="1se": the largest penalty whose mean CV score is within one standard error of the
    best (cv.glmnet's lambda.1se), computed here by hand from the same folds, then a plain L1
    fit at that penalty; sparser than (or as sparse as) rule="min"."""
    from sklearn.linear_model import Lasso, LogisticRegressionCV

    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 40))
    y = (X[:, 0] - 0.7 * X[:, 1] + 0.4 * X[:, 2] + rng.normal(size=90) > 0).astype(int)
    Cs = list(np.logspace(-2, 1, 15)[::-1])  # unsorted on purpose: the rule sorts by penalty
    kw = dict(cv=5, seed=1, Cs=Cs, scoring="neg_log_loss")
    one_se = LassoSelector(rule="1se", **kw).fit(X, y)
    best = LassoSelector(rule="min", **kw).fit(X, y)
    ref = LogisticRegressionCV(
        Cs=Cs,
        l1_ratios=(1.0,),
        solver="liblinear",
        scoring="neg_log_loss",
        max_iter=5000,
        cv=StratifiedKFold(5, shuffle=True, random_state=1),
        random_state=1,
        use_legacy_attributes=False,
    ).fit(X, y)
    c = np.asarray(ref.Cs_)
    scores = np.asarray(ref.scores_)[:, 0, :]
    mean, se = scores.mean(axis=0), scores.std(axis=0, ddof=1) / np.sqrt(5)
    k = int(np.argmax(mean))
    expected = min(c[mean >= mean[k] - se[k]])  # smallest C = largest penalty in the band
    assert pytest.approx(c[k]) == best.C_
    assert pytest.approx(expected) == one_se.C_ and one_se.C_ < best.C_
    single = LogisticRegression(
        C=expected, l1_ratio=1.0, solver="liblinear", max_iter=5000, random_state=1
    ).fit(X, y)
    np.testing.assert_allclose(one_se.coef_, single.coef_.ravel(), atol=1e-10)
    assert one_se.support_.sum() < best.support_.sum() and one_se.support_[:2].all()
    # the least-squares Lasso: the largest alpha within one SE of the smallest CV error
    lin = LassoSelector(kind="linear", rule="1se", cv=5, seed=1, Cs=50).fit(X, y)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=1).split(X, y))
    cv = LassoCV(alphas=lin.estimator_.alphas_, cv=folds, max_iter=5000).fit(X, y.astype(float))
    mse = cv.mse_path_.mean(axis=1)
    band = mse <= mse.min() + cv.mse_path_.std(axis=1, ddof=1)[np.argmin(mse)] / np.sqrt(5)
    alpha = max(cv.alphas_[band])
    assert pytest.approx(1 / alpha) == lin.C_ and alpha > cv.alpha_
    np.testing.assert_allclose(lin.coef_, Lasso(alpha=alpha).fit(X, y).coef_, atol=1e-8)
    with pytest.raises(ValueError, match="rule"):
        LassoSelector(rule="2se").fit(X, y)


def test_rfe_keeps_informative_features():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(120, 12))
    y = (2 * X[:, 3] + 2 * X[:, 7] + 0.3 * rng.normal(size=120) > 0).astype(int)
    r = RFESelector(n_features=2, step=1).fit(frame(X), y)
    assert list(r.get_feature_names_out()) == ["f3", "f7"]
    assert sorted(r.ranking_.tolist())[:3] == [1, 1, 2]
    assert RFESelector(n_features=0.5).fit(X, y).support_.sum() == 6


# ---------------------------------------------------------------------------------------------
# grouped PCA


def subregion_features(n: int = 60, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """Three subregions x 8 correlated deep features (``block__h{i}_deep_{j}``) + one other."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    cols = {}
    for i in (1, 2, 3):
        latent = rng.normal(size=(n, 2)) * [3.0, 1.0] + 0.5 * i * y[:, None]
        mix = rng.normal(size=(2, 8))
        block = latent @ mix + 0.3 * rng.normal(size=(n, 8)) + 10 * i
        cols.update({f"deep_habitat_25d__h{i}_deep_{j}": block[:, j] for j in range(8)})
    cols["age"] = rng.normal(60, 8, n)
    return pd.DataFrame(cols), y


GROUPS = r"^(.+?)_+deep_\d+$"


def test_grouped_pca_equals_pca_of_each_group_alone():
    X, _ = subregion_features()
    A, B = X.iloc[:40], X.iloc[40:]
    gp = GroupedPCA(n_components=3, groups=GROUPS).fit(A)
    out = gp.transform(B)
    assert list(gp.groups_) == [f"deep_habitat_25d__h{i}" for i in (1, 2, 3)]
    assert list(out.columns) == [
        f"deep_habitat_25d__h{i}_pc{m}" for i in (1, 2, 3) for m in (1, 2, 3)
    ] + ["age"]
    assert (out.index == B.index).all()
    for i in (1, 2, 3):
        cols = [c for c in X.columns if f"__h{i}_" in c]
        ref = PCA(n_components=3, svd_solver="full").fit(A[cols])
        got = out[[f"deep_habitat_25d__h{i}_pc{m}" for m in (1, 2, 3)]].to_numpy()
        np.testing.assert_allclose(got, ref.transform(B[cols]), atol=1e-9)
        # the first component of a group: its top eigenvector of the training covariance
        w, v = np.linalg.eigh(np.cov(A[cols].to_numpy(), rowvar=False))
        np.testing.assert_allclose(abs(got[:, 0]), abs((B[cols] - A[cols].mean()) @ v[:, -1]))
        assert ref.explained_variance_[0] == pytest.approx(w[-1])
    pd.testing.assert_series_equal(out["age"], B["age"])
    # standardised within the group on request: StandardScaler -> PCA of that group alone
    st = GroupedPCA(n_components=2, groups=GROUPS, standardize=True).fit(A).transform(B)
    cols = [c for c in X.columns if "__h2_" in c]
    ref = PCA(n_components=2, svd_solver="full").fit(StandardScaler().fit_transform(A[cols]))
    np.testing.assert_allclose(
        st[["deep_habitat_25d__h2_pc1", "deep_habitat_25d__h2_pc2"]].to_numpy(),
        ref.transform(StandardScaler().fit(A[cols]).transform(B[cols])),
        atol=1e-9,
    )


def test_grouped_pca_clips_components_to_the_training_rows():
    X, _ = subregion_features()
    gp = GroupedPCA(n_components=200, groups=GROUPS).fit(X.iloc[:6])
    # 6 centred rows span 5 dimensions; each group has 8 columns
    assert set(gp.n_components_.values()) == {5}
    assert gp.clipped_ == {g: (200, 5) for g in gp.groups_}
    assert gp.transform(X).shape == (60, 3 * 5 + 1)
    wide = GroupedPCA(n_components=200, groups=GROUPS).fit(X)
    assert set(wide.n_components_.values()) == {8} and len(wide.clipped_) == 3
    one = GroupedPCA(n_components=2).fit(X.to_numpy())  # no groups: one PCA of every column
    assert list(one.get_feature_names_out()) == ["pc1", "pc2"]
    ref = PCA(n_components=2, svd_solver="full").fit(X.to_numpy())
    np.testing.assert_allclose(one.transform(X.to_numpy()), ref.transform(X.to_numpy()))
    with pytest.raises(ValueError, match="no column matches"):
        GroupedPCA(groups="^nothing").fit(X)


def test_grouped_pca_in_a_cv_fold_sees_only_the_training_rows():
    X, y = subregion_features(n=80)
    chain = [
        {"step": "pca", "n_components": 3, "groups": GROUPS},
        {"step": "scaler"},
        {"step": "correlation", "method": "spearman", "threshold": 0.9},
    ]
    pipe = build_pipeline(chain, "logistic", seed=0)
    # the paper's order: PCA of the raw features, then the z-score (no scaler first)
    assert [n for n, _ in pipe.steps] == ["pca", "scaler", "correlation", "classifier"]
    assert isinstance(pipe.named_steps["pca"], GroupedPCA)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=1).split(X, y))
    # the held-out rows carry a huge offset: a PCA fitted on them would centre on it
    X = X.copy()
    for _, held in folds[:1]:
        X.iloc[held, :-1] += 1e3
    res = cross_validate(pipe, X, y, cv=folds[:1], return_estimator=True, scoring="roc_auc")
    (train, held) = folds[0]
    fitted = res["estimator"][0].named_steps["pca"]
    for g, idx in fitted.groups_.items():
        cols = X.columns[idx]
        np.testing.assert_allclose(fitted.pcas_[g].mean_, X.iloc[train][cols].mean(), atol=1e-9)
        ref = PCA(n_components=3, svd_solver="full").fit(X.iloc[train][cols])
        np.testing.assert_allclose(
            np.abs(fitted.pcas_[g].components_), np.abs(ref.components_), atol=1e-9
        )
    names = res["estimator"][0][:-1].get_feature_names_out()
    assert all(n.startswith("deep_habitat_25d__h") or n == "age" for n in names)


# ---------------------------------------------------------------------------------------------
# sklearn behaviour shared by all selectors


SELECTORS = [
    lambda: UnivariateFilter(alpha=0.2),
    lambda: CorrelationFilter(threshold=0.3),
    lambda: LassoSelector(cv=3, seed=1),
    lambda: RFESelector(n_features=3),
    lambda: ICCFilter({f"f{i}": 0.5 + 0.05 * i for i in range(10)}, threshold=0.7),
]


@pytest.mark.parametrize("make", SELECTORS)
def test_transform_never_refits(make):
    X, y = planted(n=120, seed=8)
    A, yA, B = X.iloc[::2], y[::2], X.iloc[1::2] * 3.0 + 1.0
    est = make().fit(A, yA)
    before = copy.deepcopy({k: v for k, v in vars(est).items() if k.endswith("_")})
    out = est.transform(B)
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert before.keys() == after.keys()
    for k in before:
        if isinstance(before[k], np.ndarray):
            np.testing.assert_array_equal(before[k], after[k])
        elif k != "estimator_" and k != "rfe_":
            assert before[k] == after[k], k
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, B.loc[:, est.support_])
    if not isinstance(est, ICCFilter):  # ICC needs names; the others also work on arrays
        arr = make().fit(A.to_numpy(), yA)
        res = arr.transform(B.to_numpy())
        assert isinstance(res, np.ndarray) and res.shape[1] == arr.support_.sum()
        assert all(n.startswith("x") for n in arr.get_feature_names_out())
    assert clone(est).get_params() == est.get_params()


def test_make_step():
    assert isinstance(make_step({"step": "univariate", "alpha": 0.01})[1], UnivariateFilter)
    name, las = make_step({"step": "lasso"}, seed=9)
    assert name == "lasso" and las.seed == 9
    _, pca = make_step({"step": "pca", "n_components": 3}, seed=4)
    assert isinstance(pca, PCA) and pca.random_state == 4 and pca.n_components == 3
    _, gp = make_step({"step": "pca", "n_components": 200, "groups": "h(\\d+)_"}, seed=4)
    assert isinstance(gp, GroupedPCA) and gp.random_state == 4 and gp.n_components == 200
    with pytest.raises(ValueError, match="pca groups"):
        make_step({"step": "pca", "groups": "h(\\d+"})
    name, sc = make_step({"step": "scaler"})
    assert name == "scaler" and isinstance(sc, StandardScaler)
    _, lin = make_step({"step": "lasso", "kind": "linear", "cv": 10}, seed=2)
    assert (lin.kind, lin.cv, lin.seed) == ("linear", 10, 2)
    with pytest.raises(ValueError, match="unknown selection step"):
        make_step({"step": "boruta"})


# ---------------------------------------------------------------------------------------------
# leakage canary

CANARY_SPEC = [
    {"step": "univariate", "alpha": 0.05},
    {"step": "correlation", "threshold": 0.9},
    {"step": "lasso", "cv": 5},
]
SEEDS = range(10)


def canary_data(seed: int, signal: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """120 x 300 Gaussian noise; labels a random permutation of 60/60 (so unrelated to X), or
    with 5 planted informative features (shift 0.8 SD in the positives)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 300))
    y = rng.permutation(np.repeat([0, 1], 60))
    if signal:
        X[:, :5] += 0.8 * y[:, None]
    return frame(X), y


def held_out_auc(seed: int, signal: bool, leaky: bool = False) -> float:
    X, y = canary_data(seed, signal)
    spec = CANARY_SPEC
    if leaky:  # the mistake the canary must catch: univariate selection on all patients first
        scaled = StandardScaler().set_output(transform="pandas").fit_transform(X)
        X = X.loc[:, UnivariateFilter(alpha=0.05).fit(scaled, y).support_]
        spec = CANARY_SPEC[1:]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    model = build_pipeline(spec, "logistic", seed=seed).fit(Xtr, ytr)
    return roc_auc_score(yte, model.predict_proba(Xte)[:, 1])


def test_leakage_canary():
    null = np.array([held_out_auc(s, signal=False) for s in SEEDS])
    leaky = np.array([held_out_auc(s, signal=False, leaky=True) for s in SEEDS])
    planted_ = np.array([held_out_auc(s, signal=True) for s in SEEDS])
    print(
        f"held-out AUC, {len(SEEDS)} seeds: permuted {null.mean():.3f} +- {null.std(ddof=1):.3f}"
        f"; leaky {leaky.mean():.3f} +- {leaky.std(ddof=1):.3f}"
        f"; planted {planted_.mean():.3f} +- {planted_.std(ddof=1):.3f}"
    )
    assert 0.4 <= null.mean() <= 0.6
    assert leaky.mean() > 0.6  # the canary has the power to detect selection leakage
    assert planted_.mean() > 0.75
