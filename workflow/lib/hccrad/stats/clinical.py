"""Clinical logistic models (statsmodels ``Logit``) and their points nomograms.

* :func:`clinical_model`: univariable logistic regressions, then one multivariable model of the
  candidates with P < alpha, optionally pruned (backward elimination by P or by AIC).
* :func:`nomogram` / :func:`plot_nomogram`: points-based nomogram of a fitted logistic model.

Re-exported by :mod:`hccrad.stats.models` and :mod:`hccrad.stats`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.special import expit, logit

from hccrad.fileio import write_png
from hccrad.stats.selection import binary_labels

__all__ = [
    "ClinicalModel",
    "Nomogram",
    "NomogramAxis",
    "clinical_model",
    "nomogram",
    "plot_nomogram",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Clinical model (statsmodels Logit)
# --------------------------------------------------------------------------------------------

_TERM = re.compile(r"^(?P<var>.+)\[T\.(?P<level>.+)\]$")


def _is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind in "OSU" or s.dtype == "string"


def _learn_levels(s: pd.Series) -> list[str] | None:
    """Levels of a categorical column (reference first), ``None`` for a numeric one."""
    if not _is_categorical(s):
        return None
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [str(c) for c in s.cat.categories if (s == c).any()]
    return sorted(s.dropna().astype(str).unique().tolist())


def _design(df: pd.DataFrame, levels: Mapping[str, list[str] | None]) -> pd.DataFrame:
    """Encode ``df``: numeric columns as floats, categorical ones as ``var[T.level]`` dummies
    (reference = first level). Missing values stay NaN on every column of the variable."""
    cols: dict[str, pd.Series] = {}
    for var, lv in levels.items():
        s = df[var]
        if lv is None:
            cols[var] = pd.to_numeric(s, errors="raise").astype(float)
            continue
        text = s.astype(str).where(s.notna())
        unknown = sorted(set(text.dropna()) - set(lv))
        if unknown:
            raise ValueError(f"variable {var!r}: level(s) {unknown} not seen when fitting ({lv})")
        for level in lv[1:]:
            cols[f"{var}[T.{level}]"] = (text == level).astype(float).where(s.notna())
    return pd.DataFrame(cols, index=df.index)


def _fit_logit(y: np.ndarray, X: pd.DataFrame) -> Any:
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    exog = sm.add_constant(X, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            res = sm.Logit(y, exog).fit(disp=0, method="newton", maxiter=100)
        except (
            PerfectSeparationWarning,
            PerfectSeparationError,
            ConvergenceWarning,
            np.linalg.LinAlgError,
        ) as err:
            raise ValueError(f"logistic fit failed ({type(err).__name__}: {err})") from err
    if not np.all(np.isfinite(res.bse)):
        raise ValueError("logistic fit failed (non-finite standard errors)")
    return res


def _or_table(res: Any, level: float) -> pd.DataFrame:
    ci = res.conf_int(alpha=1 - level)
    terms = [t for t in res.params.index if t != "const"]
    return pd.DataFrame(
        {
            "term": terms,
            "coef": res.params[terms].to_numpy(),
            "se": res.bse[terms].to_numpy(),
            "OR": np.exp(res.params[terms].to_numpy()),
            "ci_low": np.exp(ci.loc[terms, 0].to_numpy()),
            "ci_high": np.exp(ci.loc[terms, 1].to_numpy()),
            "p": res.pvalues[terms].to_numpy(),
        }
    )


@dataclass
class ClinicalModel:
    """Result of :func:`clinical_model`.

    Attributes:
        label: Outcome column.
        univariable: One row per term: ``variable, term, n, events, coef, se, OR, ci_low,
            ci_high, p, p_variable, selected`` (``note`` says why a fit failed).
        multivariable: One row per term of the multivariable model: ``variable, term, coef,
            se, OR, ci_low, ci_high, p``.
        selected: Variables in the multivariable model.
        result: The fitted statsmodels ``LogitResults`` of the multivariable model.
        levels: ``{variable: levels (reference first) or None for numeric}``.
        fallback: ``True`` when no candidate had P < alpha and the best one was used.
        entered: Variables of the first multivariable model (before any pruning).
        pruning: One row per elimination step: ``step, removed, p, aic`` (the removed
            variable's P in the model it left, and the AIC of the model without it).
    """

    label: str
    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    selected: list[str]
    result: Any
    levels: dict[str, list[str] | None] = field(default_factory=dict)
    fallback: bool = False
    entered: list[str] = field(default_factory=list)
    pruning: pd.DataFrame = field(default_factory=pd.DataFrame)

    def design(self, df: pd.DataFrame) -> pd.DataFrame:
        """Model matrix of ``df`` (``const`` + encoded variables, the fit's column order)."""
        X = _design(df, {v: self.levels[v] for v in self.selected})
        X.insert(0, "const", 1.0)
        return X[list(self.result.model.exog_names)]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted probability per row of ``df`` (NaN where a variable is missing)."""
        X = self.design(df)
        out = np.full(len(X), np.nan)
        ok = X.notna().all(axis=1).to_numpy()
        out[ok] = np.asarray(self.result.predict(X[ok]))
        return out


#: Multivariable strategies of :func:`clinical_model`.
MULTIVARIABLE = ("all", "backward_p", "backward_aic")


def clinical_model(
    df: pd.DataFrame,
    label: str,
    candidates: Sequence[str],
    alpha: float = 0.05,
    level: float = 0.95,
    *,
    multivariable: str = "all",
    keep: Sequence[str] = (),
    alpha_stay: float | None = None,
) -> ClinicalModel:
    """Univariable then multivariable logistic regression (statsmodels ``Logit``, Newton).

    Rules: every candidate is fitted alone on the patients with both the label and the
    candidate (OR = ``exp(coef)``, CI = ``exp(conf_int())`` (Wald), P = Wald P). A candidate is
    selected when its variable P < ``alpha``: the Wald P of its coefficient, or for a
    categorical variable with more than 2 levels the likelihood-ratio P of the univariable
    model against the intercept-only one. The selected candidates (and ``keep``) enter one
    multivariable model fitted on the complete cases. Categorical columns (object, string,
    category) are dummy-coded with the first level (sorted text, or the category order) as
    reference; term names follow the ``var[T.level]`` convention. A univariable fit that fails
    (perfect separation, no convergence) is reported with NaN and a ``note`` and is not
    selected. If no candidate passes (and ``keep`` is empty), the one with the smallest
    variable P is used alone (``fallback=True``).

    ``multivariable`` prunes that model (``keep`` variables are never removed; every step refits
    on the complete cases of the remaining variables):

    * ``all``: no pruning;
    * ``backward_p``: while some variable has multivariable P >= ``alpha_stay`` (default
      ``alpha``; Wald, or the
      likelihood-ratio P of dropping all its terms for a multi-level categorical one), remove
      the one with the largest P (ties: the later candidate);
    * ``backward_aic``: while removing a variable lowers the AIC, remove the one whose removal
      gives the lowest AIC (R's ``step(direction = "backward")`` on a fixed sample: the complete
      cases of the entered variables).

    Pruning never removes the last variable.

    Raises:
        ValueError: Missing columns, a label that is not binary, no usable candidate, a failed
            multivariable fit, or an unknown ``multivariable``.
    """
    if multivariable not in MULTIVARIABLE:
        raise ValueError(f"clinical_model: multivariable must be one of {MULTIVARIABLE}")
    missing = [c for c in [label, *candidates, *keep] if c not in df.columns]
    if missing:
        raise ValueError(f"clinical_model: missing column(s) {missing}")
    if not candidates:
        raise ValueError("clinical_model: no candidate variable")
    candidates = [*candidates, *(k for k in keep if k not in candidates)]
    levels = {v: _learn_levels(df[v]) for v in candidates}
    uni, p_var = _univariable_fits(df, label, candidates, levels, level)
    selected, fallback = _select_candidates(candidates, p_var, alpha, keep)
    uni["selected"] = uni["variable"].isin(selected)
    cols = ["variable", "term", "n", "events", "coef", "se", "OR", "ci_low", "ci_high", "p"]
    uni = uni.reindex(columns=[*cols, "p_variable", "selected", "note"])

    entered = list(selected)
    sample = df[[label, *entered]].dropna()
    if multivariable == "all":
        res, steps = _multivariable_fit(df, label, selected, levels), []
    else:
        stay = alpha if alpha_stay is None else alpha_stay
        selected, res, steps = _backward(sample, label, selected, levels, stay, keep, multivariable)
        res = _multivariable_fit(df, label, selected, levels)  # the final model's own cases
    multi = _or_table(res, level)
    multi.insert(0, "variable", [_variable_of(t) for t in multi["term"]])
    return ClinicalModel(
        label=label,
        univariable=uni,
        multivariable=multi,
        selected=selected,
        result=res,
        levels={v: levels[v] for v in candidates},
        fallback=fallback,
        entered=entered,
        pruning=pd.DataFrame(steps, columns=["step", "removed", "p", "aic"]),
    )


def _multivariable_fit(
    df: pd.DataFrame, label: str, variables: Sequence[str], levels: Mapping[str, Any]
) -> Any:
    """The logistic model of ``variables`` on their complete cases."""
    sub = df[[label, *variables]].dropna()
    X = _design(sub, {v: levels[v] for v in variables})
    try:
        return _fit_logit(binary_labels(sub[label]), X)
    except ValueError as err:
        raise ValueError(f"clinical_model: multivariable model {list(variables)}: {err}") from err


def _variable_p(res: Any, sample: pd.DataFrame, label: str, var: str, levels: Any) -> float:
    """Multivariable P of ``var``: Wald P of its single term, else the likelihood-ratio P of
    the model without its terms (same sample)."""
    terms = [t for t in res.params.index if t != "const" and _variable_of(t) == var]
    if len(terms) == 1:
        return float(res.pvalues[terms[0]])
    from scipy.stats import chi2

    rest = [v for v in levels if v != var]
    y = binary_labels(sample[label])
    reduced = _fit_logit(y, _design(sample, {v: levels[v] for v in rest}))
    return float(chi2.sf(2 * (res.llf - reduced.llf), len(terms)))


def _backward(
    sample: pd.DataFrame,
    label: str,
    variables: Sequence[str],
    levels: Mapping[str, Any],
    alpha: float,
    keep: Sequence[str],
    how: str,
) -> tuple[list[str], Any, list[tuple[int, str, float, float]]]:
    """Backward elimination on ``sample`` (by P or AIC); the kept variables, the last fit and
    the steps ``(step, removed, p, aic)``."""
    current = list(variables)
    y = binary_labels(sample[label])

    def fit(vs: Sequence[str]) -> Any:
        return _fit_logit(y, _design(sample, {v: levels[v] for v in vs}))

    res = fit(current)
    steps: list[tuple[int, str, float, float]] = []
    while True:
        removable = [v for v in current if v not in keep]
        if not removable or len(current) == 1:  # the model keeps at least one variable
            break
        sub_levels = {v: levels[v] for v in current}
        p = {v: _variable_p(res, sample, label, v, sub_levels) for v in removable}
        if how == "backward_p":
            worst = max(reversed(removable), key=lambda v: p[v])
            if p[worst] < alpha:
                break
            drop, nxt = worst, fit([v for v in current if v != worst])
        else:
            fits = {v: fit([u for u in current if u != v]) for v in removable}
            drop = min(reversed(removable), key=lambda v: fits[v].aic)
            if not fits[drop].aic < res.aic:
                break
            nxt = fits[drop]
        current.remove(drop)
        res = nxt
        steps.append((len(steps) + 1, drop, p[drop], float(res.aic)))
    return current, res, steps


def _univariable_fits(
    df: pd.DataFrame,
    label: str,
    candidates: Sequence[str],
    levels: Mapping[str, list[str] | None],
    level: float,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """One logistic fit per candidate on its complete cases: the term table (``p_variable``
    column included) and each variable's P (NaN where the fit failed)."""
    rows: list[pd.DataFrame] = []
    p_var: dict[str, float] = {}
    for var in candidates:
        sub = df[[label, var]].dropna()
        y = binary_labels(sub[label])
        X = _design(sub, {var: levels[var]})
        base = {"variable": var, "n": len(sub), "events": int(y.sum())}
        try:
            if X.shape[1] == 0:
                raise ValueError("a single level")
            res = _fit_logit(y, X)
        except ValueError as err:
            log.warning("clinical_model: univariable %s not estimable: %s", var, err)
            rows.append(pd.DataFrame([{**base, "term": var, "p": np.nan, "note": str(err)}]))
            p_var[var] = np.nan
            continue
        table = _or_table(res, level)
        p_var[var] = float(res.llr_pvalue) if X.shape[1] > 1 else float(table["p"].iloc[0])
        rows.append(table.assign(**base, note=""))
    uni = pd.concat(rows, ignore_index=True)
    uni["p_variable"] = uni["variable"].map(p_var)
    return uni, p_var


def _select_candidates(
    candidates: Sequence[str], p_var: Mapping[str, float], alpha: float, keep: Sequence[str] = ()
) -> tuple[list[str], bool]:
    """Candidates with variable P < ``alpha`` (then ``keep``), else the one with the smallest
    P (``True``: that fallback was used; never with ``keep``)."""
    screened = [v for v in candidates if v not in keep]
    selected = [v for v in screened if np.isfinite(p_var[v]) and p_var[v] < alpha]
    if selected or keep:
        return [*selected, *keep], False
    finite = {v: p for v, p in p_var.items() if np.isfinite(p)}
    if not finite:
        raise ValueError("clinical_model: no candidate could be estimated")
    selected = [min(finite, key=lambda v: (finite[v], candidates.index(v)))]
    log.warning("clinical_model: no P < %g; using the best candidate %s", alpha, selected[0])
    return selected, True


# --------------------------------------------------------------------------------------------
# Nomogram
# --------------------------------------------------------------------------------------------


def _variable_of(term: str) -> str:
    m = _TERM.match(term)
    return m.group("var") if m else term


@dataclass(frozen=True)
class NomogramAxis:
    """One covariate axis: its model terms, tick values and their contributions ``b . x``."""

    variable: str
    terms: tuple[str, ...]
    coefs: tuple[float, ...]
    kind: str  # "continuous", "binary" or "categorical"
    tick_labels: tuple[str, ...]
    tick_contrib: tuple[float, ...]
    contrib_min: float
    contrib_max: float


@dataclass(frozen=True)
class Nomogram:
    """Points scale of a logistic model ``LP = b0 + sum_v c_v`` (``c_v`` = contribution of
    covariate ``v``, ``sum_j b_j x_j`` over its terms).

    ``points_v = scale * (c_v - min c_v)`` with ``scale = 100 / max_v (max c_v - min c_v)``
    (min/max over the training range of continuous covariates and over the levels of
    categorical ones), so the most influential covariate spans 0-100 points; ``total = sum_v
    points_v`` and ``LP = b0 + sum_v min c_v + total / scale``, ``P = 1 / (1 + exp(-LP))``.
    """

    intercept: float
    scale: float
    axes: tuple[NomogramAxis, ...]

    @property
    def max_total(self) -> float:
        """Largest possible total points (every covariate at its maximum contribution)."""
        return float(sum(a.contrib_max - a.contrib_min for a in self.axes) * self.scale)

    def points(self, design: pd.DataFrame) -> pd.DataFrame:
        """Points per covariate and ``total`` for the rows of a model matrix (``design``: the
        model's term columns, e.g. :meth:`ClinicalModel.design`; ``const`` is ignored)."""
        out = {}
        for a in self.axes:
            absent = [t for t in a.terms if t not in design.columns]
            if absent:
                raise ValueError(f"nomogram points: design lacks column(s) {absent}")
            c = design[list(a.terms)].to_numpy(dtype=float) @ np.asarray(a.coefs)
            out[a.variable] = self.scale * (c - a.contrib_min)
        table = pd.DataFrame(out, index=design.index)
        table["total"] = table.sum(axis=1, skipna=False)
        return table

    def linear_predictor(self, total: Any) -> np.ndarray:
        """Log-odds of a total-points value."""
        offset = self.intercept + sum(a.contrib_min for a in self.axes)
        return offset + np.asarray(total, dtype=float) / self.scale

    def probability(self, total: Any) -> np.ndarray:
        """Predicted probability of a total-points value."""
        return expit(self.linear_predictor(total))

    def total_for(self, p: Any) -> np.ndarray:
        """Total points giving probability ``p``."""
        offset = self.intercept + sum(a.contrib_min for a in self.axes)
        return (logit(np.asarray(p, dtype=float)) - offset) * self.scale


def _nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    ticks = MaxNLocator(nbins=n).tick_values(lo, hi)
    ticks = ticks[(ticks >= lo - 1e-9 * abs(hi - lo)) & (ticks <= hi + 1e-9 * abs(hi - lo))]
    return ticks if ticks.size else np.array([lo, hi])


def nomogram(model: Any) -> Nomogram:
    """The points scale of a fitted logistic model.

    Args:
        model: A :class:`ClinicalModel` (categorical level names taken from it) or a statsmodels
            ``LogitResults`` with named exog columns (``const`` = intercept; ``var[T.level]``
            columns grouped into one categorical axis whose reference is labelled ``ref``).
            Continuous ranges are the min/max of the model's own (training) exog columns.

    Raises:
        ValueError: Every coefficient is zero (nothing to scale).
    """
    levels: Mapping[str, list[str] | None] = {}
    if isinstance(model, ClinicalModel):
        levels = model.levels
        model = model.result
    names = [str(n) for n in model.model.exog_names]
    params = np.asarray(model.params, dtype=float)
    exog = np.asarray(model.model.exog, dtype=float)
    intercept = 0.0
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name in ("const", "Intercept"):
            intercept += params[j]
        else:
            groups.setdefault(_variable_of(name), []).append(j)
    axes = []
    for var, idx in groups.items():
        terms = tuple(names[j] for j in idx)
        coefs = tuple(float(params[j]) for j in idx)
        if all(_TERM.match(t) for t in terms):
            lv = levels.get(var)
            labels = (lv[0] if lv else "ref", *(_TERM.match(t).group("level") for t in terms))
            contrib = (0.0, *coefs)
            span = contrib
            kind = "categorical"
        elif len(idx) == 1:
            x = exog[:, idx[0]]
            values = np.unique(x)
            kind = "binary" if values.size <= 2 else "continuous"
            ticks = values if kind == "binary" else _nice_ticks(float(x.min()), float(x.max()))
            labels = tuple(f"{v:g}" for v in ticks)
            contrib = tuple(float(coefs[0] * v) for v in ticks)
            span = (coefs[0] * x.min(), coefs[0] * x.max())  # the data range, not the ticks
        else:
            raise ValueError(f"nomogram: cannot group terms {terms} of {var!r}")
        axes.append(
            NomogramAxis(
                variable=var,
                terms=terms,
                coefs=coefs,
                kind=kind,
                tick_labels=tuple(labels),
                tick_contrib=tuple(contrib),
                contrib_min=float(min(span)),
                contrib_max=float(max(span)),
            )
        )
    widest = max((a.contrib_max - a.contrib_min for a in axes), default=0.0)
    if not widest > 0:
        raise ValueError("nomogram: every coefficient is zero")
    return Nomogram(intercept=float(intercept), scale=100.0 / widest, axes=tuple(axes))


def plot_nomogram(
    model: Any, out_png: str | os.PathLike[str], *, title: str | None = None
) -> Nomogram:
    """Draw the points nomogram of a fitted logistic model (see :func:`nomogram`) to a PNG.

    Rows: a 0-100 ``Points`` ruler, one axis per covariate (tick labels in the covariate's
    units, or its levels), ``Total points`` and ``Predicted probability`` (ticks at 0.01-0.99
    within reach). Matplotlib Agg canvas; atomic write.

    Returns:
        The :class:`Nomogram` drawn.
    """
    nomo = nomogram(model)
    rows = len(nomo.axes) + 3
    fig = Figure(figsize=(10.0, 0.62 * rows + 0.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(-32, 104)
    ax.set_ylim(-rows + 0.4, 0.8)
    ax.axis("off")

    def ruler(y: float, label: str, xs: Sequence[float], texts: Sequence[str]) -> None:
        ax.text(-3, y, label, ha="right", va="center", fontsize=9, fontweight="bold")
        if len(xs):
            ax.plot([min(xs), max(xs)], [y, y], color="black", lw=1)
        for x, t in zip(xs, texts, strict=True):
            ax.plot([x, x], [y, y + 0.12], color="black", lw=1)
            ax.text(x, y + 0.18, t, ha="center", va="bottom", fontsize=7)

    ticks = np.arange(0, 101, 10)
    ruler(0, "Points", ticks.tolist(), [f"{t:g}" for t in ticks])
    for i, a in enumerate(nomo.axes, start=1):
        xs = [nomo.scale * (c - a.contrib_min) for c in a.tick_contrib]
        ruler(-i, a.variable, xs, list(a.tick_labels))
        span = [0.0, nomo.scale * (a.contrib_max - a.contrib_min)]
        ax.plot(span, [-i, -i], color="black", lw=1)
    tmax = nomo.max_total
    to_x = 100.0 / tmax
    tt = _nice_ticks(0.0, tmax, 8)
    ruler(-(rows - 2), "Total points", (tt * to_x).tolist(), [f"{t:g}" for t in tt])
    probs = np.array([0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    tp = nomo.total_for(probs)
    ok = (tp >= 0) & (tp <= tmax)
    ruler(
        -(rows - 1),
        "Predicted probability",
        (tp[ok] * to_x).tolist(),
        [f"{p:g}" for p in probs[ok]],
    )
    if title:
        ax.set_title(title, fontsize=11)
    write_png(fig, out_png, dpi=120, bbox_inches="tight")
    return nomo
