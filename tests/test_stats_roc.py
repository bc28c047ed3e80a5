"""hccrad.stats.roc against pROC's published aSAH results, brute force and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import shared_data
from hccrad.errors import InputError
from hccrad.stats.roc import (
    auc,
    auc_ci,
    calibration,
    classification_metrics,
    delong_placements,
    delong_test,
    delong_unpaired_test,
    net_benefit,
    nri,
    proportion_ci,
    rank_sum_test,
    rate_cis,
    roc_curve,
    unpaired_auc_test,
    youden_cutoff,
)

# pROC on aSAH (../shared/data/README.md, "Reference results")
ASAH_AUC_WFNS = 0.823678861788618
ASAH_VAR_WFNS = 0.00146991470882363
ASAH_Z = 2.20898359144091
ASAH_P = 0.0271757822291882
# pROC's tests/testthat/test-roc.test.R, "unpaired roc.test statistic and p are as expected":
# roc.test(r.a, r.b, paired = FALSE) on aSAH (D and p of DeLong's unpaired test)
ASAH_UNPAIRED = {
    ("wfns", "s100b"): (1.43490640926908, 0.152825378808796),
    ("wfns", "ndka"): (3.10125096778969, 0.00220950791756457),
    ("ndka", "s100b"): (-1.55995743389685, 0.120192832430845),
}


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    return pd.read_csv(shared_data("stats") / "aSAH.csv")


def _tied_sample(rng: np.random.Generator, n1: int, n0: int) -> tuple[np.ndarray, ...]:
    """Small data with many ties (integer scores) and a correlated second score."""
    y = np.r_[np.ones(n1), np.zeros(n0)]
    a = np.round(rng.normal(y * 0.8, 1.0) * 2)
    b = np.round(a + rng.normal(0, 1.5, y.size))
    return y, a, b


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


# --------------------------------------------------------------------------- pROC references


def test_asah_auc_variance_and_paired_delong(asah):
    y = asah["outcome"] == "Poor"
    res = delong_test(y, asah["wfns"], asah["s100b"])
    assert res.auc_a == pytest.approx(ASAH_AUC_WFNS, abs=1e-6)
    assert res.var_a == pytest.approx(ASAH_VAR_WFNS, abs=1e-6)
    assert res.z == pytest.approx(ASAH_Z, abs=1e-6)
    assert res.p == pytest.approx(ASAH_P, abs=1e-6)
    assert auc(y, asah["wfns"]) == pytest.approx(ASAH_AUC_WFNS, abs=1e-12)
    # the frozen result
    with pytest.raises(AttributeError):
        res.z = 0.0  # type: ignore[misc]


def test_asah_ci_is_delong_normal_interval(asah):
    y = asah["outcome"] == "Poor"
    a, lo, hi = auc_ci(y, asah["wfns"])
    half = stats.norm.ppf(0.975) * math.sqrt(ASAH_VAR_WFNS)
    assert a == pytest.approx(ASAH_AUC_WFNS, abs=1e-9)
    assert lo == pytest.approx(ASAH_AUC_WFNS - half, abs=1e-6)
    assert hi == pytest.approx(ASAH_AUC_WFNS + half, abs=1e-6)
    # pROC prints "95% CI: 0.7485-0.8988 (DeLong)" for wfns
    assert (round(lo, 4), round(hi, 4)) == (0.7485, 0.8988)


@pytest.mark.parametrize("pair", list(ASAH_UNPAIRED))
def test_asah_unpaired_delong_matches_proc(asah, pair):
    y = asah["outcome"] == "Poor"
    a, b = pair
    d, p = ASAH_UNPAIRED[pair]
    res = delong_unpaired_test(y, asah[a], y, asah[b])
    assert res.z == pytest.approx(d, abs=1e-9)
    assert res.p == pytest.approx(p, rel=1e-9)
    assert res.n_a == res.n_b == 113
    # each AUC's variance is the one-sample DeLong variance; reversed order flips the sign only
    if a == "wfns":
        assert res.var_a == pytest.approx(ASAH_VAR_WFNS, abs=1e-12)
    rev = delong_unpaired_test(y, asah[b], y, asah[a])
    assert (rev.z, rev.p, rev.df) == pytest.approx((-res.z, res.p, res.df), rel=1e-12)


# --------------------------------------------------------------------------- brute force DeLong


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_against_explicit_placement_values(seed):
    rng = np.random.default_rng(seed)
    n1, n0 = 9, 13
    y, a, b = _tied_sample(rng, n1, n0)
    ra = delong_test(y, a, b)

    def brute(s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        xs, ys = s[y == 1], s[y == 0]
        psi = np.array([[_psi(xi, yj) for yj in ys] for xi in xs])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    auc_a, v10a, v01a = brute(a)
    auc_b, v10b, v01b = brute(b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var_a = s10[0, 0] / n1 + s01[0, 0] / n0
    var_b = s10[1, 1] / n1 + s01[1, 1] / n0
    cov = s10[0, 1] / n1 + s01[0, 1] / n0
    z = (auc_a - auc_b) / math.sqrt(var_a + var_b - 2 * cov)
    assert ra.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert ra.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert ra.var_a == pytest.approx(var_a, abs=1e-12)
    assert ra.var_b == pytest.approx(var_b, abs=1e-12)
    assert ra.cov == pytest.approx(cov, abs=1e-12)
    assert ra.z == pytest.approx(z, abs=1e-9)
    assert ra.p == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-12)
    # the placements themselves
    _, v10, v01 = delong_placements(y, a)
    np.testing.assert_allclose(v10, v10a, atol=1e-12)
    np.testing.assert_allclose(v01, v01a, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_unpaired_delong_against_explicit_placement_values(seed):
    """Two independent tied samples of different sizes: AUCs and variances by double loops,
    ``z = (A1 - A2) / sqrt(V1 + V2)``, the Welch-Satterthwaite df and the t tail probability
    as a regularized incomplete beta ``I_{df/(df+z^2)}(df/2, 1/2)``."""
    from scipy import special

    rng = np.random.default_rng(seed)
    ya, a, _ = _tied_sample(rng, 9, 13)
    yb, b, _ = _tied_sample(rng, 16, 7)
    b = b + 1.0  # shift: a different AUC

    def brute(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
        xs, ys = s[y == 1], s[y == 0]
        psi = np.array([[_psi(xi, yj) for yj in ys] for xi in xs])
        v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
        var = (
            np.sum((v10 - psi.mean()) ** 2) / (xs.size - 1) / xs.size
            + np.sum((v01 - psi.mean()) ** 2) / (ys.size - 1) / ys.size
        )
        return psi.mean(), var

    auc_a, var_a = brute(ya, a)
    auc_b, var_b = brute(yb, b)
    z = (auc_a - auc_b) / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 / (22 - 1) + var_b**2 / (23 - 1))
    p = special.betainc(df / 2, 0.5, df / (df + z * z))
    res = delong_unpaired_test(ya, a, yb, b)
    assert (res.auc_a, res.auc_b) == pytest.approx((auc_a, auc_b), abs=1e-12)
    assert (res.var_a, res.var_b) == pytest.approx((var_a, var_b), abs=1e-12)
    assert res.z == pytest.approx(z, abs=1e-9) and abs(res.z) > 0.1
    assert res.df == pytest.approx(df, rel=1e-9)
    assert res.p == pytest.approx(p, rel=1e-9)
    assert res.p_normal == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert (res.n_a, res.n_b) == (22, 23)


def test_unpaired_delong_closed_form():
    """Sample a: cases {1, 3}, controls {0, 2}: AUC 3/4, placements V10 = (1/2, 1),
    V01 = (1, 1/2), Var = 1/8. Sample b separates perfectly: AUC 1, Var 0. So
    ``z = -1/4 / sqrt(1/8) = -1/sqrt(2)``, ``df = 3`` and, with Student's t(3) CDF
    ``F(t) = 1/2 + (t/sqrt3 / (1 + t^2/3) + atan(t/sqrt3)) / pi``,
    ``p = 1 - 2/pi (x/sqrt3 / (1 + x^2/3) + atan(x/sqrt3))`` at ``x = 1/sqrt2``."""
    res = delong_unpaired_test([1, 1, 0, 0], [1, 3, 0, 2], [1, 1, 0, 0], [5, 6, 1, 2])
    assert (res.auc_a, res.var_a, res.auc_b, res.var_b) == pytest.approx((0.75, 0.125, 1, 0))
    x = 1 / math.sqrt(2)
    assert res.z == pytest.approx(-x, abs=1e-12)
    assert res.df == pytest.approx(3.0, abs=1e-12)
    u = x / math.sqrt(3)
    p = 1 - 2 / math.pi * (u / (1 + x * x / 3) + math.atan(u))
    assert res.p == pytest.approx(p, abs=1e-12)
    assert p == pytest.approx(0.5304778, abs=1e-7)
    assert res.p_normal == pytest.approx(math.erfc(0.5), abs=1e-12)


def test_unpaired_auc_test_zero_variance_and_small_samples():
    same = unpaired_auc_test(1.0, 0.0, 10, 1.0, 0.0, 12)
    assert (same.z, same.p, same.p_normal) == (0.0, 1.0, 1.0) and math.isnan(same.df)
    apart = unpaired_auc_test(1.0, 0.0, 10, 0.0, 0.0, 12)
    assert apart.z == math.inf and apart.p == 0.0
    # one variance 0: df = (n - 1) of the other sample
    one = unpaired_auc_test(0.8, 0.01, 30, 0.6, 0.0, 5)
    assert one.df == pytest.approx(29.0) and one.z == pytest.approx(2.0)
    with pytest.raises(InputError):
        unpaired_auc_test(0.8, 0.01, 1, 0.6, 0.01, 5)


def test_auc_is_mann_whitney_u():
    rng = np.random.default_rng(5)
    y, a, _ = _tied_sample(rng, 30, 45)
    u = stats.mannwhitneyu(a[y == 1], a[y == 0]).statistic
    assert auc(y, a) == pytest.approx(u / (30 * 45), abs=1e-12)
    assert auc(y.astype(bool), a) == auc(y, a)


def test_auc_ci_clipped_and_degenerate():
    y = np.array([0, 0, 0, 1, 1, 1])
    a, lo, hi = auc_ci(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert (a, lo, hi) == (1.0, 1.0, 1.0)
    a, lo, hi = auc_ci(y, [0.1, 0.2, 0.75, 0.7, 0.8, 0.9])
    assert hi == 1.0 and lo < a < 1.0
    res = delong_test(y, [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])
    assert (res.z, res.p) == (0.0, 1.0)
    with pytest.raises(InputError):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError):
        auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(InputError):
        auc_ci(y, [0.1] * 6, level=1.5)


# --------------------------------------------------------------------------- ROC, cut-offs


def test_roc_curve_matches_sklearn():
    from sklearn.metrics import roc_curve as sk_roc

    rng = np.random.default_rng(3)
    y, a, _ = _tied_sample(rng, 20, 25)
    ours = roc_curve(y, a)
    fpr, tpr, thr = sk_roc(y, a, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr)
    np.testing.assert_allclose(ours["tpr"], tpr)
    np.testing.assert_allclose(ours["threshold"].to_numpy()[1:], thr[1:])
    # trapezoidal area of the empirical curve = AUC with ties counted 1/2
    assert np.trapezoid(ours["tpr"], ours["fpr"]) == pytest.approx(auc(y, a), abs=1e-12)


def test_youden_cutoff_brute_force_and_tie_rule():
    rng = np.random.default_rng(11)
    y, a, _ = _tied_sample(rng, 25, 30)
    cut = youden_cutoff(y, a)
    best = max(
        classification_metrics(y, a, c)["sensitivity"]
        + classification_metrics(y, a, c)["specificity"]
        - 1
        for c in np.unique(a)
    )
    m = classification_metrics(y, a, cut)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(best, abs=1e-12)
    # two optimal rules (J = 0.5 at cut-offs 2 and 4): the largest wins
    y2 = np.array([0, 0, 1, 0, 1, 1])
    s2 = np.array([1, 1, 2, 3, 4, 5])
    assert youden_cutoff(y2, s2) == 4.0


def test_classification_metrics_hand_counted():
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.5, 0.2, 0.5, 0.3, 0.1, 0.6]
    m = classification_metrics(y, s, 0.5)  # score >= 0.5 is positive
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 2, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["ppv"] == pytest.approx(2 / 4)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 7)
    none = classification_metrics(y, s, 2.0)
    assert math.isnan(none["ppv"]) and none["specificity"] == 1.0


# --------------------------------------------------------------------------- NRI


def test_continuous_nri_closed_form():
    # events: 3 up, 1 down, 1 unchanged; non-events: 1 up, 3 down, 1 unchanged
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    old = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.2, 0.3, 0.4, 0.5, 0.6])
    new = np.array([0.3, 0.4, 0.5, 0.4, 0.6, 0.3, 0.2, 0.3, 0.4, 0.6])
    r = nri(y, old, new)
    assert (r.up_events, r.down_events, r.up_nonevents, r.down_nonevents) == (3, 1, 1, 3)
    assert r.nri_events == pytest.approx(2 / 5)
    assert r.nri_nonevents == pytest.approx(2 / 5)
    assert r.nri == pytest.approx(4 / 5)
    se = math.sqrt((3 + 1) / 25 + (1 + 3) / 25)
    assert r.se == pytest.approx(se)
    assert r.z == pytest.approx(0.8 / se)
    assert r.p == pytest.approx(2 * stats.norm.sf(0.8 / se))
    assert r.cutoffs == ()


def test_categorical_nri_three_categories():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    old = np.array([0.05, 0.15, 0.25, 0.15, 0.05, 0.15, 0.25, 0.25])
    new = np.array([0.25, 0.20, 0.15, 0.10, 0.10, 0.05, 0.15, 0.30])
    # categories: [0, .1) -> 0, [.1, .2) -> 1, [.2, 1] -> 2 (0.20 and 0.10 move up a category)
    r = nri(y, old, new, cutoffs=[0.2, 0.1])
    # events: 0->2 up, 1->2 up, 2->1 down, 1->1 none ; non-events: 0->1 up, 1->0 down,
    # 2->1 down, 2->2 none
    assert (r.up_events, r.down_events, r.up_nonevents, r.down_nonevents) == (2, 1, 1, 2)
    assert r.nri == pytest.approx((2 - 1) / 4 + (2 - 1) / 4)
    assert r.cutoffs == (0.1, 0.2)


def test_categorical_nri_one_cutoff_equals_reclassification_table():
    rng = np.random.default_rng(8)
    n = 400
    y = rng.integers(0, 2, n)
    old = rng.uniform(0, 1, n)
    new = np.clip(old + rng.normal(0.05 * (2 * y - 1), 0.2), 0, 1)
    c = 0.4
    r = nri(y, old, new, cutoffs=[c])
    table = pd.crosstab([y, old >= c], new >= c)
    up_e = table.loc[(1, False), True]
    down_e = table.loc[(1, True), False]
    up_ne = table.loc[(0, False), True]
    down_ne = table.loc[(0, True), False]
    assert (r.up_events, r.down_events, r.up_nonevents, r.down_nonevents) == (
        up_e,
        down_e,
        up_ne,
        down_ne,
    )
    n_e, n_ne = int(y.sum()), int(n - y.sum())
    assert r.nri_events == pytest.approx((up_e - down_e) / n_e)
    assert r.nri_nonevents == pytest.approx((down_ne - up_ne) / n_ne)
    # with one cut-off the components are the changes in sensitivity and specificity
    sens = (
        classification_metrics(y, new, c)["sensitivity"]
        - classification_metrics(y, old, c)["sensitivity"]
    )
    spec = (
        classification_metrics(y, new, c)["specificity"]
        - classification_metrics(y, old, c)["specificity"]
    )
    assert r.nri_events == pytest.approx(sens)
    assert r.nri_nonevents == pytest.approx(spec)


def test_nri_nobody_reclassified():
    r = nri([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.8])
    assert (r.nri, r.se, r.z, r.p) == (0.0, 0.0, 0.0, 1.0)


# --------------------------------------------------------------------------- calibration


def test_calibration_perfectly_calibrated_simulation():
    rng = np.random.default_rng(2024)
    n = 20000
    p = 1 / (1 + np.exp(-rng.normal(-0.5, 1.2, n)))
    y = rng.random(n) < p
    res = calibration(y, p)
    assert res.slope == pytest.approx(1.0, abs=0.08)
    assert res.intercept == pytest.approx(0.0, abs=0.05)
    assert res.recalibration_intercept == pytest.approx(0.0, abs=0.08)
    # overconfident predictions (logit doubled) -> slope about 1/2
    over = 1 / (1 + np.exp(-2 * np.log(p / (1 - p))))
    assert calibration(y, over).slope == pytest.approx(0.5, abs=0.05)


def test_calibration_estimating_equations_match_statsmodels_glm():
    import statsmodels.api as sm

    rng = np.random.default_rng(7)
    n = 60
    p = 1 / (1 + np.exp(-rng.normal(0, 1.5, n)))
    y = (rng.random(n) < np.clip(p * 1.2, 0, 1)).astype(float)
    res = calibration(y, p)
    lp = np.log(p / (1 - p))
    glm = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)
    assert res.recalibration_intercept == pytest.approx(glm.params[0], abs=1e-8)
    assert res.slope == pytest.approx(glm.params[1], abs=1e-8)
    citl = sm.GLM(y, np.ones((n, 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-12)
    assert res.intercept == pytest.approx(citl.params[0], abs=1e-8)
    # the score equations hold at the solution
    mu = 1 / (1 + np.exp(-(res.recalibration_intercept + res.slope * lp)))
    assert abs(np.sum(y - mu)) < 1e-8 and abs(np.sum(lp * (y - mu))) < 1e-8
    mu0 = 1 / (1 + np.exp(-(res.intercept + lp)))
    assert abs(np.sum(y - mu0)) < 1e-8
    assert res.brier == pytest.approx(np.mean((p - y) ** 2))


def test_calibration_curve_bins():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200)
    y = (rng.random(200) < p).astype(int)
    res = calibration(y, p, n_bins=5)
    assert list(res.curve.columns) == ["bin", "mean_predicted", "observed", "n"]
    assert res.curve["n"].tolist() == [40] * 5
    order = np.argsort(p)
    for b, idx in enumerate(np.array_split(order, 5)):
        assert res.curve.loc[b, "mean_predicted"] == pytest.approx(p[idx].mean())
        assert res.curve.loc[b, "observed"] == pytest.approx(y[idx].mean())
    uni = calibration(y, p, n_bins=4, strategy="uniform").curve
    for _, row in uni.iterrows():
        sel = np.minimum((p * 4).astype(int), 3) == row["bin"]
        assert row["n"] == sel.sum() and row["observed"] == pytest.approx(y[sel].mean())
    with pytest.raises(InputError):
        calibration(y, p, strategy="nope")
    with pytest.raises(InputError):
        calibration(y, p * 2)


# --------------------------------------------------------------------------- net benefit


@pytest.mark.parametrize("marker", ["famhistory", "cancerpredmarker"])
def test_net_benefit_dca_tutorial_data(marker):
    df = pd.read_csv(shared_data("stats") / "dca_df_binary.csv")
    y = df["cancer"].astype(bool).to_numpy()
    x = df[marker].to_numpy(dtype=float)
    thresholds = np.round(np.arange(0.0, 0.51, 0.01), 2)
    nb = net_benefit(y, x, thresholds)
    assert list(nb.columns) == ["threshold", "strategy", "net_benefit"]
    n = len(y)
    prevalence = y.mean()
    for t in thresholds:
        tp = fp = 0
        for yi, xi in zip(y, x, strict=True):
            if xi >= t:
                tp += int(yi)
                fp += int(not yi)
        want = {
            "model": tp / n - fp / n * t / (1 - t),
            "all": prevalence - (1 - prevalence) * t / (1 - t),
            "none": 0.0,
        }
        got = nb[nb["threshold"] == t].set_index("strategy")["net_benefit"]
        for strategy, value in want.items():
            assert got[strategy] == pytest.approx(value, abs=1e-12), (t, strategy)
    # treating everyone at t = 0 has net benefit = prevalence for every strategy but none
    first = nb[nb["threshold"] == 0.0].set_index("strategy")["net_benefit"]
    assert first["model"] == pytest.approx(prevalence) and first["all"] == pytest.approx(prevalence)


def test_net_benefit_rejects_bad_thresholds():
    with pytest.raises(InputError):
        net_benefit([0, 1], [0.2, 0.8], [1.0])
    with pytest.raises(InputError):
        net_benefit([0, 1], [0.2, 0.8], [0.1], model_name="all")


def test_calibration_of_in_sample_logistic_predictions_is_perfect():
    # cancerpredmarker is the tutorial's in-sample logistic-regression prediction: its score
    # equations force recalibration slope 1 and intercept 0 exactly
    df = pd.read_csv(shared_data("stats") / "dca_df_binary.csv")
    res = calibration(df["cancer"], df["cancerpredmarker"])
    assert res.slope == pytest.approx(1.0, abs=1e-6)
    assert res.intercept == pytest.approx(0.0, abs=1e-6)
    assert res.recalibration_intercept == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- rate CIs, rank-sum


def test_proportion_ci_closed_forms_and_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    z = stats.norm.ppf(0.975)
    # Wilson for 8 / 10 written out
    p, n = 0.8, 10
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert proportion_ci(8, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)
    for k, n in [(0, 7), (3, 7), (7, 7), (45, 126), (1, 1)]:
        assert proportion_ci(k, n) == pytest.approx(
            proportion_confint(k, n, alpha=0.05, method="wilson"), abs=1e-10
        )
        assert proportion_ci(k, n, method="clopper_pearson") == pytest.approx(
            proportion_confint(k, n, alpha=0.05, method="beta"), abs=1e-10
        )
    # Clopper-Pearson at the edges: [0, 1 - (a/2)^(1/n)] and [(a/2)^(1/n), 1]
    assert proportion_ci(0, 10, 0.9, "clopper_pearson") == pytest.approx((0, 1 - 0.05**0.1))
    assert proportion_ci(10, 10, 0.9, "clopper_pearson") == pytest.approx((0.05**0.1, 1))
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    with pytest.raises(InputError):
        proportion_ci(3, 2)
    with pytest.raises(InputError):
        proportion_ci(1, 2, method="wald")


def test_rate_cis_use_each_rates_denominator():
    y = np.array([1] * 8 + [0] * 12)
    s = np.r_[np.linspace(0.6, 0.9, 8), np.linspace(0.1, 0.7, 12)]
    m = classification_metrics(y, s, 0.65)
    ci = rate_cis(m)
    assert (ci["sensitivity_lower"], ci["sensitivity_upper"]) == proportion_ci(m["tp"], 8)
    assert (ci["specificity_lower"], ci["specificity_upper"]) == proportion_ci(m["tn"], 12)
    n_pos = m["tp"] + m["fp"]
    assert (ci["ppv_lower"], ci["ppv_upper"]) == proportion_ci(m["tp"], n_pos)
    assert (ci["npv_lower"], ci["npv_upper"]) == proportion_ci(m["tn"], 20 - n_pos)
    assert (ci["accuracy_lower"], ci["accuracy_upper"]) == proportion_ci(m["tp"] + m["tn"], 20)
    for rate in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert ci[f"{rate}_lower"] <= m[rate] <= ci[f"{rate}_upper"]


def test_rank_sum_exact_by_enumeration():
    from itertools import combinations

    cases = np.array([3.1, 4.5, 6.0])
    controls = np.array([1.0, 2.2, 3.5, 0.4])
    y = np.r_[np.ones(3), np.zeros(4)]
    r = rank_sum_test(y, np.r_[cases, controls])
    u = sum((c > d) for c in cases for d in controls)  # no ties
    assert r.u == u == 11 and r.auc == pytest.approx(11 / 12)
    # exact two-sided P: 2 min(P(U <= u), P(U >= u)) over all C(7, 3) rank sets
    us = [sum(i - k for k, i in enumerate(sorted(c))) for c in combinations(range(7), 3)]
    us = np.array(us)
    p = min(1.0, 2 * min(np.mean(us <= u), np.mean(us >= u)))
    assert r.method == "exact" and r.p == pytest.approx(p, abs=1e-12)
    assert (r.median_pos, r.median_neg) == (4.5, pytest.approx(1.6))


def test_rank_sum_ties_normal_approximation_written_out():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([2, 3, 3, 5, 1, 2, 2, 3, 4], dtype=float)
    r = rank_sum_test(y, s)
    n1, n0, n = 4, 5, 9
    ranks = stats.rankdata(s)
    u = ranks[y == 1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(s, return_counts=True)
    var = n1 * n0 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1)))
    mu = n1 * n0 / 2
    z = (abs(u - mu) - 0.5) / math.sqrt(var)  # continuity correction towards the mean
    assert r.method == "normal"
    assert r.u == pytest.approx(u)
    assert r.p == pytest.approx(2 * stats.norm.sf(z), abs=1e-12)
