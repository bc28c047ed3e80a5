"""Multivariable pruning of hccrad.stats.clinical_model (backward elimination by P or AIC, forced
variables) against statsmodels Logit fits done here, independently of the package."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from hccrad.stats.clinical import clinical_model


def cohort(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two true predictors (a, b), one correlated with a (c: passes the univariable screen,
    redundant given a), a weak one (d) and noise (e)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.binomial(1, 0.4, n).astype(float)
    c = a + rng.normal(scale=0.8, size=n)
    d = rng.normal(size=n)
    e = rng.normal(size=n)
    lp = -0.3 + 1.0 * a + 1.0 * b + 0.12 * d
    y = rng.binomial(1, 1 / (1 + np.exp(-lp)))
    return pd.DataFrame({"y": y, "a": a, "b": b, "c": c, "d": d, "e": e})


def sm_fit(df: pd.DataFrame, cols: list[str]):
    return sm.Logit(df["y"], sm.add_constant(df[cols], has_constant="add")).fit(disp=0)


def reference_backward_p(df: pd.DataFrame, cols: list[str], alpha: float) -> list[str]:
    cols = list(cols)
    while len(cols) > 1:
        p = sm_fit(df, cols).pvalues.drop("const")
        if p.max() < alpha:
            break
        cols.remove(p.idxmax())
    return cols


def reference_backward_aic(df: pd.DataFrame, cols: list[str]) -> list[str]:
    cols = list(cols)
    aic = sm_fit(df, cols).aic
    while len(cols) > 1:
        trial = {c: sm_fit(df, [x for x in cols if x != c]).aic for c in cols}
        best = min(trial, key=trial.get)
        if trial[best] >= aic:
            break
        cols.remove(best)
        aic = trial[best]
    return cols


CANDIDATES = ["a", "b", "c", "d", "e"]


def test_all_enters_every_univariable_survivor():
    df = cohort()
    cm = clinical_model(df, "y", CANDIDATES, alpha=0.05)
    uni = {v: sm_fit(df, [v]).pvalues[v] for v in CANDIDATES}
    entered = [v for v in CANDIDATES if uni[v] < 0.05]
    assert cm.selected == cm.entered == entered
    assert {"a", "b", "c"} <= set(entered) and cm.pruning.empty
    ref = sm_fit(df, entered)
    np.testing.assert_allclose(cm.result.params.to_numpy(), ref.params.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backward_p_matches_statsmodels_elimination(seed):
    df = cohort(seed=seed)
    cm = clinical_model(df, "y", CANDIDATES, alpha=0.05, multivariable="backward_p")
    expected = reference_backward_p(df, cm.entered, 0.05)
    assert cm.selected == expected
    assert "c" not in cm.selected and {"a", "b"} <= set(cm.selected)
    ref = sm_fit(df, expected)
    np.testing.assert_allclose(cm.result.params.to_numpy(), ref.params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(cm.multivariable["p"], ref.pvalues.drop("const"), rtol=1e-6)
    assert (cm.multivariable["p"] < 0.05).all()
    # each step removed the entered variable with the largest P, which was >= alpha
    assert list(cm.pruning["removed"]) == [v for v in cm.entered if v not in expected]
    assert (cm.pruning["p"] >= 0.05).all()


@pytest.mark.parametrize("seed", [0, 3])
def test_backward_aic_matches_statsmodels_elimination(seed):
    df = cohort(seed=seed)
    cm = clinical_model(df, "y", CANDIDATES, alpha=1.0, multivariable="backward_aic")
    expected = reference_backward_aic(df, cm.entered)
    assert cm.selected == expected
    assert cm.result.aic == pytest.approx(sm_fit(df, expected).aic, rel=1e-9)
    assert cm.entered == CANDIDATES and len(cm.pruning) >= 1
    if len(cm.pruning):
        assert cm.pruning["aic"].iloc[-1] == pytest.approx(cm.result.aic, rel=1e-9)
        assert cm.pruning["aic"].is_monotonic_decreasing


def test_kept_variables_skip_the_screen_and_are_never_removed():
    df = cohort()
    cm = clinical_model(df, "y", ["a", "b", "c", "d"], keep=["e"], multivariable="backward_p")
    assert "e" in cm.entered and "e" in cm.selected  # noise, forced in
    # the same elimination done here with e held in the model
    cols = list(cm.entered)
    while True:
        p = sm_fit(df, cols).pvalues.drop(["const", "e"])
        if p.empty or p.max() < 0.05:
            break
        cols.remove(p.idxmax())
    assert cm.selected == cols and cm.pruning["removed"].tolist() == ["c"]
    # a forced variable absent from the candidates enters too, without the screen
    only = clinical_model(df, "y", ["a"], keep=["e"])
    assert only.selected == ["a", "e"] and not only.fallback


def test_categorical_variable_pruned_by_likelihood_ratio():
    df = cohort(600, seed=4)
    rng = np.random.default_rng(9)
    df["grp"] = rng.choice(["x", "y", "z"], size=len(df))
    cm = clinical_model(
        df, "y", ["a", "b", "grp"], alpha=1.0, alpha_stay=0.05, multivariable="backward_p"
    )
    # grp is noise: its 2-df likelihood-ratio P (statsmodels, same sample) is >= 0.05
    X = pd.get_dummies(df["grp"], drop_first=True, dtype=float)
    full = sm.Logit(df["y"], sm.add_constant(pd.concat([df[["a", "b"]], X], axis=1))).fit(disp=0)
    reduced = sm_fit(df, ["a", "b"])
    from scipy.stats import chi2

    p_lr = chi2.sf(2 * (full.llf - reduced.llf), 2)
    assert p_lr >= 0.05
    assert cm.selected == ["a", "b"]
    assert cm.pruning["removed"].tolist() == ["grp"]
    assert cm.pruning["p"].iloc[0] == pytest.approx(p_lr, rel=1e-6)


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="multivariable"):
        clinical_model(cohort(), "y", CANDIDATES, multivariable="forward")
