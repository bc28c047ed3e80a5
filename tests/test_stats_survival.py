"""hccrad.stats.survival against R references, lifelines and from-scratch implementations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from hccrad.errors import InputError
from hccrad.stats.survival import (
    cox,
    cutpoint_groups,
    kaplan_meier,
    logrank,
    logrank_scores,
    multivariable_cox,
    null_log_likelihood,
    optimal_cutpoint,
    stepwise_cox,
    survival_at,
    univariable_cox,
)

#: R coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio), Efron ties
ROSSI_COEF = {
    "fin": -0.3794222,
    "age": -0.0574377,
    "race": 0.3138998,
    "wexp": -0.1497957,
    "mar": -0.4337039,
    "paro": -0.0848711,
    "prio": 0.0914971,
}
#: survminer vignette (surv_cutpoint on myeloma, minprop = 0.1): cut-point and statistic
SURVMINER_MYELOMA = {
    "DEPDC1": (279.8, 4.275452),
    "WHSC1": (3205.6, 3.361330),
    "CRIM1": (82.3, 1.968317),
}


@pytest.fixture(scope="module")
def stats_dir():
    return shared_data("stats")


def _random_survival(seed: int, n: int = 60, k: int = 3):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, k, n)
    time = np.round(rng.exponential(10 / (1 + 0.5 * group)), 0) + 1  # many ties
    event = (rng.random(n) < 0.7).astype(int)
    return time, event, group


# --------------------------------------------------------------------------- Kaplan-Meier


def test_km_anderson_reference(stats_dir):
    df = pd.read_csv(stats_dir / "anderson.csv", sep=" ")
    sub = df[df["Rx"] == 0]
    km = kaplan_meier(sub["t"], sub["status"])
    assert list(km.columns) == [
        "time",
        "survival",
        "ci_lower",
        "ci_upper",
        "at_risk",
        "events",
        "censored",
    ]
    got = survival_at(km, [6, 7, 10, 13, 16, 22, 23])
    want = [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448]
    np.testing.assert_allclose(got, want, atol=5e-4)
    assert km.loc[km["time"] == 6, "at_risk"].item() == 21
    assert survival_at(km, [0, 5.9, 100]).tolist()[:2] == [1.0, 1.0]


def test_km_product_limit_from_scratch():
    time, event, _ = _random_survival(4, n=50)
    km = kaplan_meier(time, event)
    s = 1.0
    for t in np.unique(time):
        n = np.sum(time >= t)
        d = np.sum((time == t) & (event == 1))
        s *= 1 - d / n
        row = km[km["time"] == t].iloc[0]
        assert row["survival"] == pytest.approx(s, abs=1e-12)
        assert row["at_risk"] == n and row["events"] == d
        assert row["ci_lower"] <= row["survival"] <= row["ci_upper"]
    assert km["at_risk"].iloc[0] == 50 and km["time"].iloc[0] == 0.0


# --------------------------------------------------------------------------- log-rank


def test_logrank_references(stats_dir):
    lym = pd.read_csv(stats_dir / "lymphoma.csv")
    r = logrank(lym["Time"], lym["Censor"], lym["Stage_group"])
    assert r.statistic == pytest.approx(6.70971, abs=1e-5)
    assert r.p == pytest.approx(0.0096, abs=5e-5)
    assert r.df == 1
    assert r.table["observed"].sum() == pytest.approx(r.table["expected"].sum())
    and_ = pd.read_csv(stats_dir / "anderson.csv", sep=" ")
    r2 = logrank(and_["t"], and_["status"], and_["Rx"])
    assert r2.statistic == pytest.approx(16.79, abs=5e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_logrank_k_groups_matches_lifelines(seed):
    from lifelines.statistics import multivariate_logrank_test

    time, event, group = _random_survival(seed, n=80, k=3)
    ours = logrank(time, event, group)
    ref = multivariate_logrank_test(time, group, event)
    assert ours.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert ours.p == pytest.approx(ref.p_value, rel=1e-9)
    assert ours.df == 2
    with pytest.raises(InputError):
        logrank(time, event, np.zeros_like(group))


# --------------------------------------------------------------------------- optimal cut-point


def _scores_from_definition(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """exactRankTests::cscores.Surv written as an explicit double loop."""
    n = len(time)
    r = [int(np.sum(time <= t)) for t in time]
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for j in range(n):
            if time[j] <= time[i]:
                acc += event[j] / (n - r[j] + 1)
        out[i] = event[i] - acc
    return out


def _maxstat_brute(time, event, x, min_prop=0.1, max_prop=0.9):
    """The standardized log-rank statistic of every allowed cut, computed from scratch."""
    time, event, x = (np.asarray(v, dtype=float) for v in (time, event, x))
    n = len(x)
    a = _scores_from_definition(time, event)
    out = []
    for cut in np.unique(x)[:-1]:
        low = x <= cut
        m = int(low.sum())
        if not (math.floor(n * min_prop) <= m <= math.floor(n * max_prop)):
            continue
        s = a[low].sum()
        e = m / n * a.sum()
        v = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(a**2) - a.sum() ** 2)
        out.append((cut, m, abs(s - e) / math.sqrt(v)))
    return pd.DataFrame(out, columns=["cutpoint", "n_low", "statistic"])


def test_logrank_scores_definition_and_nelson_aalen():
    time, event, _ = _random_survival(3, n=40)
    np.testing.assert_allclose(
        logrank_scores(time, event), _scores_from_definition(time, event), atol=1e-12
    )
    # without ties the scores are event - Nelson-Aalen cumulative hazard
    rng = np.random.default_rng(9)
    t = rng.exponential(5, 30)
    e = (rng.random(30) < 0.6).astype(float)
    na = np.array([sum(e[j] / np.sum(t >= t[j]) for j in range(30) if t[j] <= ti) for ti in t])
    np.testing.assert_allclose(logrank_scores(t, e), e - na, atol=1e-12)


@pytest.mark.parametrize("marker", ["DEPDC1", "WHSC1", "CRIM1"])
def test_optimal_cutpoint_myeloma_brute_force_and_survminer(stats_dir, marker):
    df = pd.read_csv(stats_dir / "myeloma.csv")
    res = optimal_cutpoint(df["time"], df["event"], df[marker], min_prop=0.1)
    brute = _maxstat_brute(df["time"], df["event"], df[marker])
    cand = res.candidates
    np.testing.assert_allclose(cand["cutpoint"], brute["cutpoint"])
    np.testing.assert_array_equal(cand["n_low"], brute["n_low"])
    np.testing.assert_allclose(cand["statistic"], brute["statistic"], rtol=1e-10)
    best = brute.loc[brute["statistic"].idxmax()]
    assert res.statistic == pytest.approx(best["statistic"], rel=1e-10)
    assert res.cutpoint == best["cutpoint"]
    # invariants: low = x <= cut, proportions within [floor(.1 N), floor(.9 N)] / N
    x = df[marker].to_numpy()
    n = len(x)
    assert res.n_low == int(np.sum(x <= res.cutpoint)) and res.n_low + res.n_high == n
    assert cand["n_low"].min() >= math.floor(0.1 * n)
    assert cand["n_low"].max() <= math.floor(0.9 * n)
    assert (cand["n_low"] == [int(np.sum(x <= c)) for c in cand["cutpoint"]]).all()
    assert (cutpoint_groups(x, res.cutpoint) == np.where(x <= res.cutpoint, "low", "high")).all()
    # survminer's published values
    cut, stat = SURVMINER_MYELOMA[marker]
    assert res.cutpoint == pytest.approx(cut, abs=1e-9)
    assert res.statistic == pytest.approx(stat, abs=1e-6)
    # the reference log-rank chi-squared at the cut
    lr = logrank(df["time"], df["event"], x <= res.cutpoint)
    assert res.logrank_chisq == pytest.approx(lr.statistic, rel=1e-12)
    assert 0 <= res.p_lausen92 <= 1 and 0 <= res.p_lausen94 <= 1


def test_optimal_cutpoint_ties_in_marker_and_errors():
    time, event, _ = _random_survival(12, n=50)
    x = np.round(np.random.default_rng(12).normal(0, 1, 50), 1)  # tied marker values
    res = optimal_cutpoint(time, event, x, min_prop=0.2)
    brute = _maxstat_brute(time, event, x, 0.2, 0.8)
    assert res.statistic == pytest.approx(brute["statistic"].max(), rel=1e-10)
    assert res.cutpoint == brute.loc[brute["statistic"].idxmax(), "cutpoint"]
    with pytest.raises(InputError):
        optimal_cutpoint(time, event, np.ones(50))
    with pytest.raises(InputError):
        optimal_cutpoint(time, event, x, min_prop=0.6)


# --------------------------------------------------------------------------- Cox


def test_cox_rossi_matches_r_coxph(stats_dir):
    df = pd.read_csv(stats_dir / "rossi.csv")
    res = cox(df, "week", "arrest", list(ROSSI_COEF))
    tab = res.table.set_index("covariate")
    for name, coef in ROSSI_COEF.items():
        assert tab.loc[name, "coef"] == pytest.approx(coef, abs=1e-6), name
    np.testing.assert_allclose(tab["hr"], np.exp(tab["coef"]))
    assert (tab["hr_lower"] < tab["hr"]).all() and (tab["hr"] < tab["hr_upper"]).all()
    assert res.n == 432 and res.n_events == 114
    # Harrell's C of the linear predictor, from lifelines' independent utility
    from lifelines.utils import concordance_index

    lp = df[list(ROSSI_COEF)].to_numpy() @ tab.loc[list(ROSSI_COEF), "coef"].to_numpy()
    assert res.concordance == pytest.approx(concordance_index(df["week"], -lp, df["arrest"]))
    assert res.log_likelihood == pytest.approx(-658.748, abs=1e-3)  # R: loglik -658.7477


def test_univariable_and_multivariable_cox(stats_dir):
    df = pd.read_csv(stats_dir / "rossi.csv")
    uni = univariable_cox(df, "week", "arrest", ["fin", "age", "prio"])
    assert uni["covariate"].tolist() == ["fin", "age", "prio"]
    single = cox(df, "week", "arrest", ["age"]).table.iloc[0]
    assert uni.loc[1, "coef"] == pytest.approx(single["coef"], abs=1e-12)
    four = ["fin", "age", "race", "prio"]
    multi = multivariable_cox(df, "week", "arrest", four, screen_p=0.05)
    uni4 = univariable_cox(df, "week", "arrest", four)
    assert multi.table["covariate"].tolist() == uni4.loc[uni4["p"] < 0.05, "covariate"].tolist()
    assert "race" not in multi.table["covariate"].tolist()
    with pytest.raises(InputError):
        multivariable_cox(df, "week", "arrest", ["race"], screen_p=1e-9)
    with pytest.raises(InputError):
        cox(df.assign(fin=df["fin"].map({0: "no", 1: "yes"})), "week", "arrest", ["fin"])
    # complete cases only
    holed = df.copy()
    holed.loc[:9, "age"] = np.nan
    assert cox(holed, "week", "arrest", ["age"]).n == 422


# --------------------------------------------------------------------------- stepwise Cox

ROSSI_COVS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


def _lifelines_aic(df: pd.DataFrame, covs: list[str]) -> float:
    """Partial AIC of an independent lifelines fit (the null model from lifelines' own
    ``_ll_null_``)."""
    from lifelines import CoxPHFitter

    if not covs:
        one = CoxPHFitter().fit(df[["week", "arrest", "fin"]], "week", "arrest")
        return -2 * one._ll_null_
    return CoxPHFitter().fit(df[["week", "arrest", *covs]], "week", "arrest").AIC_partial_


def _reference_step(df: pd.DataFrame, covs: list[str], direction: str) -> list[str]:
    """R ``step()`` written out with lifelines: the single add/drop of lowest AIC until none
    lowers it."""
    current = [] if direction == "forward" else list(covs)
    while True:
        now = _lifelines_aic(df, current)
        moves = []
        if direction != "forward":
            moves += [[c for c in current if c != d] for d in current]
        if direction != "backward":
            moves += [[c for c in covs if c in current or c == a] for a in covs if a not in current]
        scored = [(_lifelines_aic(df, m), m) for m in moves]
        if not scored or min(a for a, _ in scored) >= now - 1e-9:
            return current
        current = min(scored, key=lambda x: x[0])[1]


def test_null_log_likelihood_closed_form_and_lifelines(stats_dir):
    # no ties: -sum log(n at risk) over the events; times 1..4, events at 1, 3, 4
    assert null_log_likelihood([1, 2, 3, 4], [1, 0, 1, 1]) == pytest.approx(
        -(math.log(4) + math.log(2) + math.log(1))
    )
    # two tied events among 3 at risk (Efron): -(log 3 + log 2)
    assert null_log_likelihood([5, 5, 6], [1, 1, 0]) == pytest.approx(-math.log(6))
    from lifelines import CoxPHFitter

    df = pd.read_csv(stats_dir / "rossi.csv")  # many tied weeks
    ref = CoxPHFitter().fit(df[["week", "arrest", "age"]], "week", "arrest")._ll_null_
    assert null_log_likelihood(df["week"], df["arrest"]) == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("direction", ["both", "backward", "forward"])
def test_stepwise_cox_aic_matches_lifelines_step(stats_dir, direction):
    df = pd.read_csv(stats_dir / "rossi.csv")
    res = stepwise_cox(df, "week", "arrest", ROSSI_COVS, direction=direction)
    expected = _reference_step(df, ROSSI_COVS, direction)
    assert res.selected == expected
    assert 0 < len(expected) < len(ROSSI_COVS)  # the data make the selection non-trivial
    from lifelines import CoxPHFitter

    ref = CoxPHFitter().fit(df[["week", "arrest", *expected]], "week", "arrest")
    tab = res.model.table.set_index("covariate")
    for c in expected:
        assert tab.loc[c, "coef"] == pytest.approx(ref.params_[c], abs=1e-6)
        assert tab.loc[c, "p"] == pytest.approx(ref.summary.loc[c, "p"], rel=1e-5)
    # the trace: AIC falls at every move, and ends at the final model's AIC
    aics = res.steps["criterion"].to_numpy()
    assert (np.diff(aics) < 0).all()
    assert aics[-1] == pytest.approx(_lifelines_aic(df, expected), abs=1e-6)
    assert res.n == 432


def test_stepwise_cox_backward_by_p_and_a_planted_covariate():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(7)
    n = 200
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(4)})
    df["time"] = rng.exponential(np.exp(-1.0 * df["x0"] - 0.6 * df["x1"]))
    df["event"] = (rng.random(n) < 0.8).astype(int)
    covs = ["x0", "x1", "x2", "x3"]
    res = stepwise_cox(df, "time", "event", covs, direction="backward", criterion="p", p_remove=0.1)
    # reference: refit with lifelines, drop the largest Wald P above 0.1, repeat
    current = list(covs)
    while True:
        p = CoxPHFitter().fit(df[["time", "event", *current]], "time", "event").summary["p"]
        if p.max() <= 0.1:
            break
        current.remove(p.idxmax())
    assert res.selected == current
    assert {"x0", "x1"} <= set(res.selected)  # the planted effects stay
    with pytest.raises(InputError):
        stepwise_cox(df, "time", "event", covs, direction="sideways")
