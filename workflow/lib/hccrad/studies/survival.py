"""Survival analysis of a model's score: the training cut-point (maxstat), Kaplan-Meier
figures, log-rank tests and Cox models of the high-score group and the listed covariates."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.stats import cutpoint_groups, logrank, optimal_cutpoint
from hccrad.stats.figures import plot_km
from hccrad.stats.survival import cox
from hccrad.studies.figures import placeholder
from hccrad.studies.spec import StudySpec

#: Columns of ``cox.parquet``.
COX_COLUMNS = [
    "endpoint",
    "analysis",
    "covariate",
    "coef",
    "se",
    "hr",
    "hr_lower",
    "hr_upper",
    "z",
    "p",
    "concordance",
    "n",
    "n_events",
    "note",
]


def _scope(split: pd.Series, scope: str) -> pd.Series:
    if scope == "all":
        return pd.Series(True, index=split.index)
    if scope == "held_out":
        return split != "train"
    return split == scope


def _cox_rows(df: pd.DataFrame, covariates: list[str], analysis: str) -> pd.DataFrame:
    """One Cox model's table; a failed fit, or a convergence warning (separation: HRs near 0
    or infinite), is reported in ``note``."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            res = cox(df, "time", "event", covariates)
        except Exception as err:  # lifelines raises its own convergence errors
            return pd.DataFrame([{"analysis": analysis, "note": f"Cox failed: {err}"}])
    problems = [
        str(w.message).strip().splitlines()[0]
        for w in caught
        if "Convergence" in w.category.__name__
    ]
    note = f"convergence warning: {problems[0]}" if problems else ""
    return res.table.assign(
        analysis=analysis, concordance=res.concordance, n=res.n, n_events=res.n_events, note=note
    )


def survival_analysis(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    out_dir: Path,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per endpoint: the maxstat cut-point of ``score`` on the **training** patients, groups
    (low = score <= cut) applied to all, KM figure (``km_scope``), log-rank per scope and
    uni/multivariable Cox (``cox_scope``) of the high-score group and the listed covariates."""
    sv = spec.survival
    assert sv is not None
    rows: list[pd.DataFrame] = []
    cuts: dict[str, Any] = {}
    for ep in sv.endpoints:
        cuts[ep], tables = _endpoint(spec, clinical, split, score, ep, out_dir / f"km_{ep}.png")
        rows += tables
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=COX_COLUMNS)
    return out.reindex(columns=COX_COLUMNS), cuts


def _endpoint(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    ep: str,
    png: Path,
) -> tuple[dict[str, Any], list[pd.DataFrame]]:
    """One endpoint: its ``cutpoint.json`` entry and its Cox tables; draws ``km_{ep}.png``."""
    sv = spec.survival
    assert sv is not None
    tcol, ecol = sv.endpoints[ep]
    info: dict[str, Any] = {"model": sv.model, "score": "linear_predictor", "time": tcol}
    info.update(event=ecol, min_prop=sv.min_prop, km_scope=sv.km_scope, cox_scope=sv.cox_scope)
    df = _survival_frame(spec, clinical, split, score, tcol, ecol)
    train = df[df["split"] == "train"]
    try:
        cp = optimal_cutpoint(train["time"], train["event"], train["score"], min_prop=sv.min_prop)
    except (InputError, ValueError) as err:
        note = f"no training cut-point: {err}"
        info.update(cutpoint=None, note=note)
        placeholder(png, f"Kaplan-Meier: {ep}", note)
        return info, [pd.DataFrame([{"endpoint": ep, "note": note}])]
    info.update(
        cutpoint=cp.cutpoint,
        statistic=cp.statistic,
        n_low_train=cp.n_low,
        n_high_train=cp.n_high,
        logrank_p_train=cp.logrank_p,
        p_lausen94=cp.p_lausen94,
        note="",
    )
    df["group"] = cutpoint_groups(df["score"], cp.cutpoint)
    df["score_high"] = (df["group"] == "high").astype(float)
    info["groups"] = _logrank_by_scope(df)
    _km_figure(spec, ep, df, png)
    uni, multi = _cox_tables(spec, clinical, df[_scope(df["split"], sv.cox_scope)].copy())
    return info, [uni.assign(endpoint=ep), multi.assign(endpoint=ep)]


def _survival_frame(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    tcol: str,
    ecol: str,
) -> pd.DataFrame:
    """``time, event, score, split`` of the scored patients with a time, an event and a score."""
    missing = [c for c in (tcol, ecol) if c not in clinical.columns]
    if missing:
        raise InputError(f"study {spec.name}: survival columns {missing} not in the table")
    return pd.DataFrame(
        {
            "time": pd.to_numeric(clinical[tcol].reindex(score.index), errors="coerce"),
            "event": pd.to_numeric(clinical[ecol].reindex(score.index), errors="coerce"),
            "score": score,
            "split": split.reindex(score.index),
        }
    ).dropna(subset=["time", "event", "score"])


def _logrank_by_scope(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Group sizes and the log-rank test (when both groups are present) per scope."""
    groups_info = {}
    for scope in ("train", "held_out", "all"):
        sub = df[_scope(df["split"], scope)]
        g = {
            "n_low": int((sub["group"] == "low").sum()),
            "n_high": int((sub["group"] == "high").sum()),
        }
        if g["n_low"] and g["n_high"]:
            lr = logrank(sub["time"], sub["event"], sub["group"])
            g.update(logrank_chisq=lr.statistic, logrank_p=lr.p)
        groups_info[scope] = g
    return groups_info


def _km_figure(spec: StudySpec, ep: str, df: pd.DataFrame, png: Path) -> None:
    """Kaplan-Meier curves of the two score groups in ``km_scope`` (else a placeholder)."""
    sv = spec.survival
    assert sv is not None
    km = df[_scope(df["split"], sv.km_scope)]
    if km["group"].nunique() == 2:
        plot_km(
            km["time"],
            km["event"],
            km["group"],
            png,
            title=f"{spec.name}: {ep} by {sv.model} score ({sv.km_scope})",
            xlabel=f"{sv.endpoints[ep][0]}",
        )
    else:
        placeholder(png, f"Kaplan-Meier: {ep}", f"one score group in {sv.km_scope}")


def _cox_covariates(spec: StudySpec, clinical: pd.DataFrame, cdf: pd.DataFrame) -> list[str]:
    """Add the listed covariates to ``cdf`` (text ones dummy-coded, first level dropped);
    returns the Cox covariates, ``score_high`` first."""
    assert spec.survival is not None
    covs = ["score_high"]
    for c in spec.survival.covariates:
        if c not in clinical.columns:
            raise InputError(f"study {spec.name}: survival covariate {c!r} not in the table")
        v = clinical[c].reindex(cdf.index)
        if pd.api.types.is_numeric_dtype(v):
            cdf[c] = v.astype(float)
            covs.append(c)
        else:
            d = pd.get_dummies(
                v.astype("string"), prefix=c, prefix_sep="=", drop_first=True, dtype=float
            )
            cdf[d.columns] = d
            covs += list(d.columns)
    return covs


def _cox_tables(
    spec: StudySpec, clinical: pd.DataFrame, cdf: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Univariable Cox per covariate, then the multivariable model of those entered
    (``screen_p``: univariable p below it; else all)."""
    assert spec.survival is not None
    covs = _cox_covariates(spec, clinical, cdf)
    uni = pd.concat([_cox_rows(cdf, [c], "univariable") for c in covs], ignore_index=True)
    entered = covs
    if spec.survival.screen_p is not None:
        entered = uni.loc[uni["p"] < spec.survival.screen_p, "covariate"].tolist()
    if entered:
        multi = _cox_rows(cdf, entered, "multivariable")
    else:
        note = f"no covariate has univariable p < {spec.survival.screen_p}"
        multi = pd.DataFrame([{"analysis": "multivariable", "note": note}])
    return uni, multi
