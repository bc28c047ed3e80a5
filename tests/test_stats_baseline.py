"""Baseline table rules against scipy / closed forms; the ICC adapter; the hccrad.stats API."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hccrad.stats
from conftest import shared_data
from hccrad.errors import InputError
from hccrad.stats import baseline_table, icc
from hccrad.stats.baseline import welch_anova


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 120
    group = np.where(np.arange(n) < 70, "train", "valid")
    return pd.DataFrame(
        {
            "set": group,
            "age": rng.normal(60, 8, n) + (group == "valid") * 2.0,
            "afp": rng.lognormal(3, 1.5, n),
            "sex": rng.choice(["F", "M"], n, p=[0.2, 0.8]),
            "bclc": pd.Categorical(rng.choice(["A", "B", "C"], n)),
            "cirrhosis": rng.integers(0, 2, n),
        }
    )


def _row(table: pd.DataFrame, variable: str, level: str = "") -> pd.Series:
    sel = table[(table["variable"] == variable) & (table["level"] == level)]
    assert len(sel) == 1, (variable, level)
    return sel.iloc[0]


def test_continuous_rules(cohort):
    tab = baseline_table(cohort, "set", ["age", "afp"])
    assert list(tab.columns) == [
        "variable",
        "level",
        "overall",
        "train",
        "valid",
        "p",
        "test",
        "missing",
    ]
    n_row = _row(tab, "n")
    assert (n_row["overall"], n_row["train"], n_row["valid"]) == ("120", "70", "50")
    test_age = cohort.loc[cohort["set"] == "valid", "age"]
    train_age = cohort.loc[cohort["set"] == "train", "age"]
    # age is normal in both groups -> mean ± SD, Welch t-test
    assert stats.shapiro(test_age).pvalue >= 0.05 and stats.shapiro(train_age).pvalue >= 0.05
    age = _row(tab, "age", "mean ± SD")
    assert age["valid"] == f"{test_age.mean():.1f} ± {test_age.std():.1f}"
    assert age["p"] == pytest.approx(stats.ttest_ind(test_age, train_age, equal_var=False).pvalue)
    assert age["test"] == "Welch t-test"
    # AFP is log-normal -> median [Q1, Q3], Mann-Whitney U
    afp = _row(tab, "afp", "median [IQR]")
    a = cohort.loc[cohort["set"] == "valid", "afp"].to_numpy()
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    assert afp["valid"] == f"{med:.1f} [{q1:.1f}, {q3:.1f}]"
    b = cohort.loc[cohort["set"] == "train", "afp"]
    assert afp["p"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    # forced non-normal
    forced = _row(baseline_table(cohort, "set", ["age"], nonnormal=["age"]), "age", "median [IQR]")
    assert forced["p"] == pytest.approx(stats.mannwhitneyu(test_age, train_age).pvalue)


def test_categorical_rules(cohort):
    tab = baseline_table(cohort, "set", ["sex", "bclc", "cirrhosis"], categorical=["sex", "bclc"])
    # cirrhosis is numeric and not listed -> continuous
    assert _row(tab, "cirrhosis", "median [IQR]")["test"] == "Mann-Whitney U"
    sex = tab[tab["variable"] == "sex"]
    assert sex["level"].tolist() == ["", "F", "M"]
    table = pd.crosstab(cohort["sex"], cohort["set"]).to_numpy()
    header = sex.iloc[0]
    expected = stats.contingency.expected_freq(table)
    if (expected < 5).any():
        assert header["p"] == pytest.approx(stats.fisher_exact(table).pvalue)
    else:
        # Yates-corrected chi-squared in closed form
        chi2 = np.sum((np.abs(table - expected) - 0.5) ** 2 / expected)
        assert header["p"] == pytest.approx(stats.chi2.sf(chi2, 1))
    n_f_test = int(((cohort["sex"] == "F") & (cohort["set"] == "valid")).sum())
    assert sex.iloc[1]["valid"] == f"{n_f_test} ({100 * n_f_test / 50:.1f}%)"
    bclc = tab[tab["variable"] == "bclc"].iloc[0]
    ref = stats.chi2_contingency(pd.crosstab(cohort["bclc"], cohort["set"]).to_numpy())
    assert bclc["p"] == pytest.approx(ref.pvalue) and bclc["test"] == "chi-squared"


def test_fisher_when_small_expected_and_yates_otherwise():
    # Fisher's tea-tasting table [[3, 1], [1, 3]]: two-sided p = 0.4857
    df = pd.DataFrame(
        {"g": ["a"] * 4 + ["b"] * 4, "x": ["milk"] * 3 + ["tea"] + ["milk"] + ["tea"] * 3}
    )
    row = baseline_table(df, "g", ["x"]).iloc[1]
    assert row["test"] == "Fisher exact" and row["p"] == pytest.approx(0.4857, abs=1e-4)
    # large 2x2: Yates' chi-squared by hand
    counts = np.array([[30, 20], [15, 35]])
    df2 = pd.DataFrame(
        {
            "g": ["a"] * 30 + ["b"] * 20 + ["a"] * 15 + ["b"] * 35,
            "x": ["yes"] * 50 + ["no"] * 50,
        }
    )
    exp = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
    chi2 = np.sum((np.abs(counts - exp) - 0.5) ** 2 / exp)
    row2 = baseline_table(df2, "g", ["x"]).iloc[1]
    assert row2["test"] == "chi-squared" and row2["p"] == pytest.approx(stats.chi2.sf(chi2, 1))


def test_missing_and_errors(cohort):
    holed = cohort.copy()
    holed.loc[:4, "age"] = np.nan
    holed.loc[5, "set"] = None
    tab = baseline_table(holed, "set", ["age"], overall=False)
    assert "overall" not in tab.columns
    assert _row(tab, "age", tab.iloc[1]["level"])["missing"] == 5
    assert tab.iloc[0]["train"] == "69"
    with pytest.raises(InputError):
        baseline_table(cohort, "set", ["nope"])
    with pytest.raises(InputError):
        baseline_table(cohort.assign(set="x"), "set", ["age"])
    with pytest.raises(InputError):  # a group label that collides with a result column
        baseline_table(cohort.assign(set=cohort["set"].replace("valid", "test")), "set", ["age"])


def test_three_groups_use_anova_or_kruskal(cohort):
    tab = baseline_table(cohort, "bclc", ["age", "afp"])
    age = tab[tab["variable"] == "age"].iloc[0]
    samples = [cohort.loc[cohort["bclc"] == g, "age"] for g in ["A", "B", "C"]]
    if age["test"] == "ANOVA":
        assert age["p"] == pytest.approx(stats.f_oneway(*samples).pvalue)
    afp = tab[tab["variable"] == "afp"].iloc[0]
    assert afp["test"] == "Kruskal-Wallis"
    s2 = [cohort.loc[cohort["bclc"] == g, "afp"] for g in ["A", "B", "C"]]
    assert afp["p"] == pytest.approx(stats.kruskal(*s2).pvalue)


def _normal_pair(sd_b: float, seed: int) -> pd.DataFrame:
    """Two normal groups (40 and 35 values): group b with SD ``sd_b`` (a: SD 1)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"g": ["a"] * 40 + ["b"] * 35, "x": np.r_[rng.normal(0, 1, 40), rng.normal(0.5, sd_b, 35)]}
    )


def test_bartlett_picks_student_or_welch():
    # equal variances: Bartlett p >= 0.05 -> Student's t (pooled variance)
    eq = _normal_pair(1.0, 3)
    a, b = (eq.loc[eq["g"] == g, "x"].to_numpy() for g in "ab")
    assert min(stats.shapiro(a).pvalue, stats.shapiro(b).pvalue) >= 0.05
    assert stats.bartlett(a, b).pvalue >= 0.05
    row = _row(baseline_table(eq, "g", ["x"], variance_test="bartlett"), "x", "mean ± SD")
    assert row["test"] == "Student t-test"
    assert row["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-12)
    # pooled-variance t by hand
    sp2 = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    t = (a.mean() - b.mean()) / np.sqrt(sp2 * (1 / a.size + 1 / b.size))
    assert row["p"] == pytest.approx(2 * stats.t.sf(abs(t), a.size + b.size - 2), rel=1e-10)
    # the default keeps Welch's t for the same data
    default = _row(baseline_table(eq, "g", ["x"]), "x", "mean ± SD")
    assert default["test"] == "Welch t-test"
    assert default["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert default["p"] != pytest.approx(row["p"], rel=1e-6)
    # unequal variances (SD 1 vs 4): Bartlett p < 0.05 -> Welch's t
    uneq = _normal_pair(4.0, 3)
    a, b = (uneq.loc[uneq["g"] == g, "x"].to_numpy() for g in "ab")
    assert min(stats.shapiro(a).pvalue, stats.shapiro(b).pvalue) >= 0.05
    assert stats.bartlett(a, b).pvalue < 0.05
    row = _row(baseline_table(uneq, "g", ["x"], variance_test="bartlett"), "x", "mean ± SD")
    assert row["test"] == "Welch t-test"
    assert row["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    # a Bartlett level of 0 always takes the equal-variance test
    row0 = _row(
        baseline_table(uneq, "g", ["x"], variance_test="bartlett", variance_alpha=0.0),
        "x",
        "mean ± SD",
    )
    assert row0["test"] == "Student t-test"
    # non-normal variables keep Mann-Whitney whatever the variance test
    afp = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 35, "x": np.exp(4 * uneq["x"].to_numpy())})
    rank = _row(baseline_table(afp, "g", ["x"], variance_test="bartlett"), "x", "median [IQR]")
    xa, xb = afp["x"][:40], afp["x"][40:]
    assert rank["test"] == "Mann-Whitney U"
    assert rank["p"] == pytest.approx(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    with pytest.raises(InputError):
        baseline_table(eq, "g", ["x"], variance_test="levene")


def test_bartlett_with_three_groups_anova_or_welch_anova():
    from statsmodels.stats.oneway import anova_oneway

    rng = np.random.default_rng(11)
    sizes, sds = (30, 25, 20), (1.0, 1.0, 5.0)
    x = np.concatenate(
        [rng.normal(i * 0.6, sd, n) for i, (n, sd) in enumerate(zip(sizes, sds, strict=True))]
    )
    g = np.repeat(["a", "b", "c"], sizes)
    samples = [x[g == k] for k in "abc"]
    assert min(stats.shapiro(s).pvalue for s in samples) >= 0.05
    assert stats.bartlett(*samples).pvalue < 0.05
    df = pd.DataFrame({"g": g, "x": x})
    row = _row(baseline_table(df, "g", ["x"], variance_test="bartlett"), "x", "mean ± SD")
    ref = anova_oneway(samples, use_var="unequal", welch_correction=True)
    assert row["test"] == "Welch ANOVA" and row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    f, df1, df2, p = welch_anova(*samples)
    want = (ref.statistic, ref.df[0], ref.df[1], ref.pvalue)
    assert (f, df1, df2, p) == pytest.approx(want, rel=1e-10)
    # the default keeps the classic ANOVA
    classic = _row(baseline_table(df, "g", ["x"]), "x", "mean ± SD")
    assert classic["test"] == "ANOVA"
    assert classic["p"] == pytest.approx(stats.f_oneway(*samples).pvalue)
    # equal variances: Bartlett keeps the classic ANOVA
    eq = df.assign(
        x=np.concatenate([s if k != "c" else s / 5 for k, s in zip("abc", samples, strict=True)])
    )
    eq_samples = [eq.loc[eq["g"] == k, "x"].to_numpy() for k in "abc"]
    assert stats.bartlett(*eq_samples).pvalue >= 0.05
    row = _row(baseline_table(eq, "g", ["x"], variance_test="bartlett"), "x", "mean ± SD")
    assert row["test"] == "ANOVA"
    assert row["p"] == pytest.approx(stats.f_oneway(*eq_samples).pvalue)


def test_real_hcc_clinical_table_smoke():
    df = pd.read_csv(shared_data("hcc_tace_clinical") / "clinical.csv")
    tab = baseline_table(df, "Sex", ["age", "AFP", "hepatitis", "BCLC"], categorical=["BCLC"])
    assert set(tab["variable"]) == {"n", "age", "AFP", "hepatitis", "BCLC"}
    assert tab.loc[tab["level"] == "", "p"].iloc[1:].between(0, 1).all()


# --------------------------------------------------------------------------- ICC adapter


def test_icc_adapter_shrout_fleiss():
    table = pd.read_csv(shared_data("stats") / "shrout_fleiss_1979.csv", index_col="target")
    got = icc(table)
    want = {
        "ICC1": 0.165742,
        "ICC2": 0.289764,
        "ICC3": 0.714841,
        "ICC1k": 0.442797,
        "ICC2k": 0.620051,
        "ICC3k": 0.909316,
    }
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    assert all(math.isnan(v) for v in icc(np.ones((4, 3))).values())


def test_public_api():
    for name in hccrad.stats.__all__:
        assert hasattr(hccrad.stats, name), name
    assert hccrad.stats.icc is icc
