"""Survival analysis of a model's score: the training cut-point (maxstat), Kaplan-Meier
figures, log-rank tests and Cox models (univariable, all covariates, stepwise) of the
high-score group and the listed covariates; outcome cohorts (``survival.outcome_cohorts``:
patients scored by the trained model, labelled or not, with their own cut-point, KM, log-rank,
Cox and response); the score by response and by class (rank-sum tests)."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.fileio import write_png
from hccrad.stats import cutpoint_groups, logrank, optimal_cutpoint
from hccrad.stats.figures import plot_km
from hccrad.stats.roc import rank_sum_test
from hccrad.stats.survival import cox, stepwise_cox
from hccrad.studies.figures import placeholder
from hccrad.studies.spec import StudySpec

#: Columns of ``cox.parquet``.
COX_COLUMNS = [
    "endpoint",
    "cohort",
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


# ---- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeCohort:
    """One outcome cohort (``survival.outcome_cohorts.{name}``): the patients of ``centers``
    (any when empty) in ``splits`` (any when empty) whose label is ``any``, ``missing`` or
    ``present``. A training patient is never in an outcome cohort."""

    name: str
    centers: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    label: str = "any"


@dataclass(frozen=True)
class SurvivalOptions:
    """The survival settings read from the study's ``survival`` section beyond
    :class:`~hccrad.studies.spec.SurvivalSpec`: the outcome cohorts and their cut-point
    (``rule``: ``maxstat`` on the outcome patients, ``training`` maxstat, ``youden`` = the
    classification's training cut-off; ``scope``: per ``cohort`` or ``pooled``), the stepwise
    Cox, the score-by-response test and the score-by-class test."""

    cohorts: tuple[OutcomeCohort, ...] = ()
    cut_rule: str = "maxstat"
    cut_scope: str = "cohort"
    stepwise: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    score_by_class: bool = False


def survival_options(spec: StudySpec) -> SurvivalOptions:
    """The :class:`SurvivalOptions` of a study (defaults where a key is absent)."""
    sv = spec.raw.get("survival") or {}
    cohorts = tuple(
        OutcomeCohort(
            name=name,
            centers=tuple(str(x) for x in c.get("centers", [])),
            splits=tuple(str(x) for x in c.get("splits", [])),
            label=str(c.get("label", "any")),
        )
        for name, c in (sv.get("outcome_cohorts") or {}).items()
    )
    cut = sv.get("outcome_cutpoint") or {}
    stepwise = sv.get("stepwise")
    if stepwise is not None:
        defaults = {"direction": "both", "criterion": "aic", "p_enter": 0.05, "p_remove": 0.10}
        stepwise = {**defaults, **stepwise}
    response = sv.get("response")
    if response is not None:
        response = {"test": "rank_sum", "responders": [1], **response}
    return SurvivalOptions(
        cohorts=cohorts,
        cut_rule=str(cut.get("rule", "maxstat")),
        cut_scope=str(cut.get("scope", "cohort")),
        stepwise=stepwise,
        response=response,
        score_by_class=bool(sv.get("score_by_class", False)),
    )


def outcome_members(
    spec: StudySpec, clinical: pd.DataFrame, split: pd.Series
) -> dict[str, pd.Index]:
    """The patients of each outcome cohort by centre, split and label presence, labelled or
    not (the label only selects, it is never used), never a training patient."""
    opts = survival_options(spec)
    if not opts.cohorts:
        return {}
    col = spec.splits.center_column
    if col not in clinical.columns:
        raise InputError(f"study {spec.name}: outcome cohorts need the column {col!r}")
    center = clinical[col].astype(str)
    sp = split.reindex(clinical.index).astype(str)
    missing = pd.to_numeric(clinical[spec.label], errors="coerce").isna()
    out = {}
    for c in opts.cohorts:
        keep = sp != "train"
        if c.centers:
            keep &= center.isin(c.centers)
        if c.splits:
            keep &= sp.isin(c.splits)
        if c.label != "any":
            keep &= missing if c.label == "missing" else ~missing
        out[c.name] = pd.Index(clinical.index[keep.to_numpy()], name="patient")
    return out


# ---- the analysis --------------------------------------------------------------------------


def survival_analysis(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    out_dir: Path,
    *,
    outcome_score: pd.Series | None = None,
    members: Mapping[str, pd.Index] | None = None,
    youden: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per endpoint: the maxstat cut-point of ``score`` on the **training** patients, groups
    (low = score <= cut) applied to all, log-rank per scope and uni/multivariable/stepwise Cox
    (``cox_scope``); with outcome cohorts (``members``, their scores ``outcome_score``), per
    cohort its cut-point (:class:`SurvivalOptions`), log-rank, response rate by group and Cox.
    The KM figure shows the outcome cohorts when there are any, else ``km_scope``.
    ``youden``: the classification's training cut-off in score units (rule ``youden``)."""
    sv = spec.survival
    assert sv is not None
    rows: list[pd.DataFrame] = []
    cuts: dict[str, Any] = {}
    for ep in sv.endpoints:
        png = out_dir / f"km_{ep}.png"
        cuts[ep], tables, df = _endpoint(spec, clinical, split, score, ep, png)
        rows += tables
        if members:
            oc, tables = _outcome_endpoint(
                spec, clinical, ep, members, outcome_score, cuts[ep].get("cutpoint"), youden, png
            )
            cuts[ep]["outcome_cohorts"] = oc
            rows += tables
        elif df is not None:
            _km_figure(spec, ep, df, png)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=COX_COLUMNS)
    return out.reindex(columns=COX_COLUMNS), cuts


def _endpoint(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    ep: str,
    png: Path,
) -> tuple[dict[str, Any], list[pd.DataFrame], pd.DataFrame | None]:
    """One endpoint: its ``cutpoint.json`` entry, its Cox tables and the grouped patients
    (None without a training cut-point: ``km_{ep}.png`` is then a placeholder)."""
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
        return info, [pd.DataFrame([{"endpoint": ep, "note": note}])], None
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
    cdf = df[_scope(df["split"], sv.cox_scope)].copy()
    tables = [t.assign(endpoint=ep, cohort=sv.cox_scope) for t in _cox_tables(spec, clinical, cdf)]
    return info, tables, df


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
    return {
        scope: _groups(df[_scope(df["split"], scope)]) for scope in ("train", "held_out", "all")
    }


def _groups(sub: pd.DataFrame) -> dict[str, Any]:
    """``n_low, n_high`` and the log-rank test when both groups are present."""
    g: dict[str, Any] = {
        "n_low": int((sub["group"] == "low").sum()),
        "n_high": int((sub["group"] == "high").sum()),
    }
    if g["n_low"] and g["n_high"]:
        lr = logrank(sub["time"], sub["event"], sub["group"])
        g.update(logrank_chisq=lr.statistic, logrank_p=lr.p)
    return g


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


# ---- outcome cohorts ----------------------------------------------------------------------


def _outcome_endpoint(
    spec: StudySpec,
    clinical: pd.DataFrame,
    ep: str,
    members: Mapping[str, pd.Index],
    score: pd.Series | None,
    train_cut: float | None,
    youden: float | None,
    png: Path,
) -> tuple[dict[str, Any], list[pd.DataFrame]]:
    """Per outcome cohort: patients, cut-point, groups, log-rank, response by group and the
    Cox tables (``cohort`` = its name); draws the cohorts' KM panels into ``png``."""
    sv = spec.survival
    assert sv is not None
    opts = survival_options(spec)
    tcol, ecol = sv.endpoints[ep]
    scored = score if score is not None else pd.Series(dtype=float)
    labelled = pd.to_numeric(clinical[spec.label], errors="coerce").notna()
    frames = {}
    for name, idx in members.items():
        s = scored.reindex(idx).dropna()
        frames[name] = _survival_frame(spec, clinical, pd.Series("outcome", idx), s, tcol, ecol)
    cuts = _outcome_cuts(opts, frames, sv.min_prop, train_cut, youden)
    info: dict[str, Any] = {}
    tables: list[pd.DataFrame] = []
    for name, df in frames.items():
        entry: dict[str, Any] = {"n_members": len(members[name]), "n": len(df)}
        entry.update(n_unlabelled=int((~labelled.reindex(df.index)).sum()))
        entry.update(n_events=int(df["event"].sum()), **cuts[name])
        info[name] = entry
        if entry.get("cutpoint") is None:
            tables.append(pd.DataFrame([{"endpoint": ep, "cohort": name, "note": entry["note"]}]))
            continue
        df["group"] = cutpoint_groups(df["score"], entry["cutpoint"])
        df["score_high"] = (df["group"] == "high").astype(float)
        entry.update(_groups(df))
        if opts.response is not None:
            entry["response"] = _response_by_group(clinical, df, opts.response)
        cox_tables = _cox_tables(spec, clinical, df.copy())
        tables += [t.assign(endpoint=ep, cohort=name) for t in cox_tables]
    _km_panels(spec, ep, frames, png)
    return info, tables


def _maxstat(df: pd.DataFrame, min_prop: float) -> dict[str, Any]:
    """The maxstat cut-point of ``df``'s scores (or the reason there is none)."""
    try:
        cp = optimal_cutpoint(df["time"], df["event"], df["score"], min_prop=min_prop)
    except (InputError, ValueError) as err:
        return {"cutpoint": None, "note": f"no cut-point: {err}"}
    return {
        "cutpoint": cp.cutpoint,
        "statistic": cp.statistic,
        "p_lausen94": cp.p_lausen94,
        "n_cut": len(df),
        "note": "",
    }


def _outcome_cuts(
    opts: SurvivalOptions,
    frames: Mapping[str, pd.DataFrame],
    min_prop: float,
    train_cut: float | None,
    youden: float | None,
) -> dict[str, dict[str, Any]]:
    """The cut-point of each outcome cohort by the configured rule and scope."""
    rule = f"{opts.cut_rule} ({opts.cut_scope})" if opts.cut_rule == "maxstat" else opts.cut_rule
    if opts.cut_rule in ("training", "youden"):
        cut = train_cut if opts.cut_rule == "training" else youden
        fixed = {"cutpoint": cut, "note": "" if cut is not None else f"no {opts.cut_rule} cut"}
        return {name: {**fixed, "cut_rule": rule} for name in frames}
    if opts.cut_scope == "pooled":
        pooled = pd.concat(list(frames.values()))
        pooled = pooled[~pooled.index.duplicated()]
        shared = _maxstat(pooled, min_prop)
        return {name: {**shared, "cut_rule": rule} for name in frames}
    return {name: {**_maxstat(df, min_prop), "cut_rule": rule} for name, df in frames.items()}


def _response_by_group(
    clinical: pd.DataFrame, df: pd.DataFrame, response: Mapping[str, Any]
) -> dict[str, Any]:
    """Responders per score group and Fisher's exact test of the 2 x 2 table."""
    from scipy.stats import fisher_exact  # scipy.stats: only a study with outcome cohorts

    resp = _responders(clinical, df.index, response)
    ok = resp.notna()
    out: dict[str, Any] = {}
    table = []
    for g in ("high", "low"):
        sel = ok & (df["group"] == g)
        k, n = int(resp[sel].sum()), int(sel.sum())
        out[f"responders_{g}"], out[f"n_{g}"] = k, n
        table.append([k, n - k])
    out["fisher_p"] = float(fisher_exact(table)[1]) if all(sum(r) for r in table) else None
    return out


def _responders(
    clinical: pd.DataFrame, patients: pd.Index, response: Mapping[str, Any]
) -> pd.Series:
    """1 for a responder (value in ``responders``), 0 otherwise, NaN where missing."""
    col = str(response["column"])
    if col not in clinical.columns:
        raise InputError(f"response column {col!r} not in the clinical table")
    v = clinical[col].reindex(patients)
    wanted = {str(x) for x in response["responders"]}
    hit = v.map(lambda x: float(_text(x) in wanted) if pd.notna(x) else np.nan)
    return hit.astype(float)


def _text(x: Any) -> str:
    """A value as text, ``1.0`` as ``1`` (numeric columns read as float)."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _km_panels(spec: StudySpec, ep: str, frames: Mapping[str, pd.DataFrame], png: Path) -> None:
    """One KM panel (:func:`~hccrad.stats.figures.plot_km`) per outcome cohort with both score
    groups, side by side in ``png`` (a placeholder when none has both)."""
    sv = spec.survival
    assert sv is not None
    drawable = {n: df for n, df in frames.items() if "group" in df and df["group"].nunique() == 2}
    if not drawable:
        placeholder(png, f"Kaplan-Meier: {ep}", "no outcome cohort with both score groups")
        return
    # matplotlib: only the survival figures need it (kept off the module's import)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(drawable), figsize=(6.4 * len(drawable), 5.6), squeeze=False)
    with tempfile.TemporaryDirectory() as tmp:
        for ax, (name, df) in zip(axes[0], drawable.items(), strict=True):
            part = Path(tmp) / f"{name}.png"
            title = f"{spec.name}: {ep} by {sv.model} score ({name})"
            plot_km(
                df["time"], df["event"], df["group"], part, title=title, xlabel=sv.endpoints[ep][0]
            )
            ax.imshow(plt.imread(part))
            ax.set_axis_off()
    fig.tight_layout()
    try:
        write_png(fig, png, dpi=100)
    finally:
        plt.close(fig)


# ---- Cox --------------------------------------------------------------------------------


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


def _cox_tables(spec: StudySpec, clinical: pd.DataFrame, cdf: pd.DataFrame) -> list[pd.DataFrame]:
    """Univariable Cox per covariate, the multivariable model of those entered (``screen_p``:
    univariable p below it; else all) and, when ``survival.stepwise`` is set, the stepwise
    model (analysis ``stepwise``) selected from the entered covariates."""
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
    stepwise = survival_options(spec).stepwise
    if stepwise is None or not entered:
        return [uni, multi]
    return [uni, multi, _stepwise_rows(cdf, entered, stepwise)]


def _stepwise_rows(cdf: pd.DataFrame, covs: list[str], opts: Mapping[str, Any]) -> pd.DataFrame:
    """The stepwise Cox model's table; ``note`` names the rule and the moves (or the failure)."""
    rule = f"stepwise {opts['criterion']} ({opts['direction']})"
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            res = stepwise_cox(
                cdf,
                "time",
                "event",
                covs,
                direction=opts["direction"],
                criterion=opts["criterion"],
                p_enter=float(opts["p_enter"]),
                p_remove=float(opts["p_remove"]),
            )
        except Exception as err:  # lifelines raises its own convergence errors
            return pd.DataFrame([{"analysis": "stepwise", "note": f"{rule} failed: {err}"}])
    if any("Convergence" in w.category.__name__ for w in caught):
        rule += " (convergence warnings on the way)"
    moves = "; ".join(
        f"{r.action} {r.covariate} ({r.criterion:.4g})" for r in res.steps.iloc[1:].itertuples()
    )
    note = f"{rule}: {moves or 'no move'}"
    if res.model is None:
        return pd.DataFrame(
            [{"analysis": "stepwise", "n": res.n, "note": f"{note}; no covariate kept"}]
        )
    m = res.model
    return m.table.assign(
        analysis="stepwise", concordance=m.concordance, n=m.n, n_events=m.n_events, note=note
    )


# ---- score tests ------------------------------------------------------------------------


def score_tests(
    spec: StudySpec,
    clinical: pd.DataFrame,
    split: pd.Series,
    score: pd.Series,
    label: pd.Series,
    outcome_score: pd.Series | None = None,
    members: Mapping[str, pd.Index] | None = None,
) -> list[dict[str, Any]]:
    """The score (the survival model's linear predictor) by class per evaluated split
    (``score_by_class``: Wilcoxon rank-sum, :func:`~hccrad.stats.roc.rank_sum_test`) and by
    response (``response``) per outcome cohort, or in ``km_scope`` without outcome cohorts:
    rank-sum of responders vs non-responders, or Kruskal-Wallis over the response levels."""
    opts = survival_options(spec)
    rows = []
    if opts.score_by_class:
        for s in spec.splits.names:
            idx = split.reindex(label.index)[lambda v, s=s: v == s].index
            rows.append(_rank_sum_row("class", s, label.loc[idx], score.reindex(idx)))
    if opts.response is not None:
        assert spec.survival is not None
        if members and outcome_score is not None:
            groups = {n: outcome_score.reindex(idx).dropna() for n, idx in members.items()}
        else:
            sc = spec.survival.km_scope
            groups = {sc: score[_scope(split.reindex(score.index), sc).to_numpy()]}
        for name, sub in groups.items():
            rows.append(_response_row(clinical, name, sub, opts.response))
    return rows


def _rank_sum_row(test: str, cohort: str, y: pd.Series, score: pd.Series) -> dict[str, Any]:
    """One rank-sum test as a ``score_tests`` row (a note when a group is empty)."""
    row: dict[str, Any] = {"test": test, "cohort": cohort, "method": "rank_sum"}
    row["groups"] = "responders vs non-responders" if test == "response" else "cases vs controls"
    ok = y.notna() & score.notna()
    y, score = y[ok], score[ok]
    row.update(n_pos=int((y == 1).sum()), n_neg=int((y == 0).sum()))
    if not row["n_pos"] or not row["n_neg"]:
        return {**row, "p": None, "note": "one group is empty"}
    r = rank_sum_test(y.to_numpy(float), score.to_numpy(float))
    row.update(statistic=r.u, auc=r.auc, p=r.p, exact=r.method == "exact")
    row.update(median_pos=r.median_pos, median_neg=r.median_neg, note="")
    return row


def _response_row(
    clinical: pd.DataFrame, cohort: str, score: pd.Series, response: Mapping[str, Any]
) -> dict[str, Any]:
    """Score by response in one cohort: rank-sum (responders = 1) or Kruskal-Wallis."""
    if response["test"] == "rank_sum":
        return _rank_sum_row(
            "response", cohort, _responders(clinical, score.index, response), score
        )
    from scipy.stats import kruskal  # scipy.stats: only a study with a response test

    v = clinical[str(response["column"])].reindex(score.index)
    levels = {_text(k): score[(v == k).to_numpy()] for k in v.dropna().unique()}
    row: dict[str, Any] = {"test": "response", "cohort": cohort, "method": "kruskal_wallis"}
    row["n"] = {k: len(x) for k, x in sorted(levels.items())}
    row["median"] = {k: float(x.median()) for k, x in sorted(levels.items())}
    if len(levels) < 2:
        return {**row, "p": None, "note": "fewer than 2 response levels"}
    res = kruskal(*levels.values())
    return {**row, "statistic": float(res.statistic), "p": float(res.pvalue), "note": ""}
