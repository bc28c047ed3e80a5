"""Survival analysis: Kaplan-Meier, k-group log-rank, optimal cut-point (maxstat), Cox models.

``time`` is the follow-up time (>= 0) and ``event`` is 1 for an observed event, 0 for censoring.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.errors import InputError
from hccrad.stats._checks import ArrayLike, numeric, survival_data

log = logging.getLogger(__name__)

__all__ = [
    "CoxResult",
    "CutpointResult",
    "LogRankResult",
    "StepwiseResult",
    "cox",
    "cutpoint_groups",
    "kaplan_meier",
    "logrank",
    "logrank_scores",
    "multivariable_cox",
    "null_log_likelihood",
    "optimal_cutpoint",
    "stepwise_cox",
    "survival_at",
    "univariable_cox",
]


# --------------------------------------------------------------------------- Kaplan-Meier


def kaplan_meier(time: ArrayLike, event: ArrayLike, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier estimate (lifelines ``KaplanMeierFitter``) as a tidy table.

    The pointwise confidence interval is lifelines' default, the exponential Greenwood
    ("log-log") interval, i.e. R ``survfit(..., conf.type = "log-log")`` (R's default is
    ``"log"``).

    Returns:
        DataFrame ``time, survival, ci_lower, ci_upper, at_risk, events, censored``: one row
        per distinct observed time, preceded by ``time = 0`` (``survival = 1``) when no time is 0.
        ``at_risk`` counts subjects with ``time >= t``.
    """
    from lifelines import KaplanMeierFitter

    t, e = survival_data(time, event)
    if t.size == 0:
        raise InputError("kaplan_meier needs at least one subject")
    kmf = KaplanMeierFitter(alpha=1.0 - level).fit(t, e)
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_survival_function_
    out = pd.DataFrame(
        {
            "time": sf.index.to_numpy(dtype=float),
            "survival": sf.to_numpy(dtype=float),
            "ci_lower": ci.iloc[:, 0].to_numpy(dtype=float),
            "ci_upper": ci.iloc[:, 1].to_numpy(dtype=float),
        }
    )
    uniq = np.unique(t)
    out = out[out["time"].isin(uniq) | (out["time"] == 0)].reset_index(drop=True)
    ts = out["time"].to_numpy()
    out["at_risk"] = (t[None, :] >= ts[:, None]).sum(axis=1)
    out["events"] = ((t[None, :] == ts[:, None]) & (e[None, :] == 1)).sum(axis=1)
    out["censored"] = ((t[None, :] == ts[:, None]) & (e[None, :] == 0)).sum(axis=1)
    return out


def survival_at(km: pd.DataFrame, times: ArrayLike) -> np.ndarray:
    """Read the Kaplan-Meier step function of :func:`kaplan_meier` at ``times``.

    ``S(t)`` is the survival of the last row with ``time <= t`` (right-continuous steps).
    """
    grid = km["time"].to_numpy(dtype=float)
    surv = km["survival"].to_numpy(dtype=float)
    idx = np.searchsorted(grid, np.asarray(times, dtype=float), side="right") - 1
    return np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)


# --------------------------------------------------------------------------- log-rank


@dataclass(frozen=True, eq=False)
class LogRankResult:
    """k-group log-rank test.

    Attributes:
        statistic: Chi-squared statistic ``(O - E)' V^- (O - E)``.
        p: Upper-tail chi-squared p-value with ``df`` degrees of freedom.
        df: Number of groups - 1.
        table: Per group ``group, n, observed, expected``.
    """

    statistic: float
    p: float
    df: int
    table: pd.DataFrame


def logrank(time: ArrayLike, event: ArrayLike, group: ArrayLike) -> LogRankResult:
    """The (Mantel-Haenszel) log-rank test of equal survival in k groups (R ``survdiff``).

    At each distinct event time ``tau`` with ``n`` at risk and ``d`` events (``n_g``, ``d_g``
    in group g): ``O_g = sum d_g``, ``E_g = sum n_g d / n`` and
    ``V_gh = sum d (n - d) / (n - 1) * n_g / n * (1[g = h] - n_h / n)``. The statistic is
    ``u' V^-1 u`` with ``u = O - E`` and ``V`` restricted to the first k - 1 groups (groups in
    sorted order); ``df = k - 1``.
    """
    t, e = survival_data(time, event)
    g = np.asarray(group)
    if g.shape != t.shape:
        raise InputError(f"group has {g.shape[0] if g.ndim else 0} values, time has {t.size}")
    if pd.isna(g).any():
        raise InputError("group has missing values")
    levels, codes = np.unique(g, return_inverse=True)
    k = levels.size
    if k < 2:
        raise InputError(f"log-rank needs at least 2 groups, got {k}")
    taus = np.unique(t[e == 1])
    at_risk = (t[None, :] >= taus[:, None]).astype(float)  # (T, N)
    died = ((t[None, :] == taus[:, None]) & (e[None, :] == 1)).astype(float)
    onehot = np.eye(k)[codes]  # (N, k)
    n_g = at_risk @ onehot  # (T, k)
    d_g = died @ onehot
    n = n_g.sum(axis=1)
    d = d_g.sum(axis=1)
    observed = d_g.sum(axis=0)
    expected = (n_g * (d / n)[:, None]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
    frac = n_g / n[:, None]
    V = np.einsum("t,tg,gh->gh", factor, frac, np.eye(k)) - np.einsum(
        "t,tg,th->gh", factor, frac, frac
    )
    u = (observed - expected)[: k - 1]
    Vr = V[: k - 1, : k - 1]
    stat = float(u @ np.linalg.pinv(Vr) @ u) if np.any(Vr) else 0.0
    df = k - 1
    table = pd.DataFrame(
        {
            "group": levels,
            "n": np.bincount(codes, minlength=k),
            "observed": observed,
            "expected": expected,
        }
    )
    return LogRankResult(stat, float(stats.chi2.sf(stat, df)), df, table)


# --------------------------------------------------------------------------- optimal cut-point


def logrank_scores(time: ArrayLike, event: ArrayLike) -> np.ndarray:
    """Log-rank scores of ``exactRankTests::cscores.Surv``, the scores ``maxstat`` uses.

    With ``r_i = #{j : t_j <= t_i}`` (the "max" rank of ``t_i``)::

        a_i = delta_i - sum_{j : t_j <= t_i} delta_j / (N - r_j + 1)

    Without tied times ``N - r_j + 1`` is the number at risk at ``t_j``, so
    ``a_i = delta_i - Lambda_NA(t_i)``, the event indicator minus the Nelson-Aalen cumulative
    hazard (1 minus the Savage score for an event). With tied times each of ``d`` tied events at
    ``t`` contributes ``1 / (n(t) - s + 1)`` (``s`` = size of the tie group) instead of
    ``1 / n(t)``; this is reproduced exactly so cut-points match maxstat / survminer.
    """
    t, e = survival_data(time, event)
    n = t.size
    order = np.argsort(t, kind="stable")
    r = np.searchsorted(np.sort(t), t, side="right")  # number of t_j <= t_i
    fact = e / (n - r + 1)
    cums = np.cumsum(fact[order])
    return e - cums[r - 1]


def _p_lausen92(b: float, min_prop: float, max_prop: float) -> float:
    """Lausen & Schumacher (1992) approximation of ``P(M >= b)`` (maxstat ``pLausen92``)."""
    db = stats.norm.pdf(b)
    p = 4 * db / b + db * (b - 1 / b) * math.log(
        (max_prop * (1 - min_prop)) / ((1 - max_prop) * min_prop)
    )
    return float(min(max(p, 0.0), 1.0))


def _p_lausen94(b: float, n: int, m: np.ndarray) -> float:
    """Lausen, Sauerbrei & Schumacher (1994) improved Bonferroni bound (maxstat ``pLausen94``)."""
    if m.size < 2:
        return float(2 * stats.norm.sf(b))
    m1, m2 = m[:-1].astype(float), m[1:].astype(float)
    tt = np.sqrt(1 - m1 * (n - m2) / ((n - m1) * m2))
    dsum = np.sum(1 / math.pi * math.exp(-(b**2) / 2) * (tt - (b**2 / 4 - 1) * tt**3 / 6))
    return float(min(max(1 - (stats.norm.cdf(b) - stats.norm.cdf(-b)) + dsum, 0.0), 1.0))


@dataclass(frozen=True, eq=False)
class CutpointResult:
    """Optimal cut-point by the maximally selected standardized log-rank statistic.

    Attributes:
        cutpoint: Estimated cut-point (low = ``x <= cutpoint``, high = ``x > cutpoint``).
        statistic: Maximal standardized statistic ``M`` (maxstat's ``statistic``).
        n_low, n_high: Group sizes at the cut-point.
        logrank_chisq: Ordinary two-group log-rank chi-squared (:func:`logrank`) at the cut.
        logrank_p: Its naive p-value (ignores the selection of the cut-point!).
        p_lausen92: Selection-adjusted p-value, Lausen & Schumacher (1992).
        p_lausen94: Selection-adjusted p-value, Lausen et al. (1994) with the candidate sizes.
        min_prop, max_prop: The proportions used.
        candidates: ``cutpoint, n_low, prop_low, statistic`` for every candidate cut-point.
    """

    cutpoint: float
    statistic: float
    n_low: int
    n_high: int
    logrank_chisq: float
    logrank_p: float
    p_lausen92: float
    p_lausen94: float
    min_prop: float
    max_prop: float
    candidates: pd.DataFrame


def optimal_cutpoint(
    time: ArrayLike,
    event: ArrayLike,
    x: ArrayLike,
    min_prop: float = 0.1,
    max_prop: float | None = None,
) -> CutpointResult:
    """Maximally selected standardized log-rank statistic, exactly as R's
    ``maxstat::maxstat.test(Surv(time, event) ~ x, smethod = "LogRank", minprop, maxprop)``
    and ``survminer::surv_cutpoint`` (which calls it with ``maxprop = 1 - minprop``).

    Definition. With the log-rank scores ``a_i`` of :func:`logrank_scores`, ``N`` subjects and
    ``A = sum a_i``, ``Q = sum a_i^2``, a cut-point ``mu`` defines the low group ``x <= mu`` of
    size ``m``; its linear statistic ``S_m = sum_{x_i <= mu} a_i`` has permutation mean and
    variance ``E_m = m A / N`` and ``V_m = m (N - m) / (N^2 (N - 1)) (N Q - A^2)``, and the
    standardized statistic is ``T_m = |S_m - E_m| / sqrt(V_m)``. Candidates are the distinct
    values of ``x`` except the largest, with ``floor(N min_prop) <= m <= floor(N max_prop)``
    (maxstat's rule). ``M = max T_m``; the estimate is the smallest candidate attaining ``M``.

    Args:
        time, event: Survival data.
        x: Continuous marker.
        min_prop: Minimal proportion of subjects in the low group.
        max_prop: Maximal proportion in the low group; default ``1 - min_prop``.

    Raises:
        InputError: No candidate cut-point in the allowed range, or bad input.
    """
    t, e = survival_data(time, event)
    xv = numeric(x, "x", t.size)
    if max_prop is None:
        max_prop = 1.0 - min_prop
    if not 0 <= min_prop < max_prop <= 1:
        raise InputError(f"need 0 <= min_prop < max_prop <= 1, got {min_prop}, {max_prop}")
    n = t.size
    scores = logrank_scores(t, e)
    order = np.argsort(xv, kind="stable")
    xs, ys = xv[order], scores[order]
    # m = size of the low group when cutting at the value just before each new distinct value
    m = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    m = m[m > 0]
    m = m[(m >= math.floor(n * min_prop)) & (m <= math.floor(n * max_prop))]
    if m.size == 0:
        raise InputError("no candidate cut-point leaves min_prop..max_prop in the low group")
    total = ys.sum()
    var_term = n * np.sum(ys**2) - total**2
    if var_term <= 0:
        raise InputError("the log-rank scores are constant (no events?); no cut-point")
    E = m / n * total
    V = m * (n - m) / (n**2 * (n - 1)) * var_term
    T = np.abs((np.cumsum(ys)[m - 1] - E) / np.sqrt(V))
    best = int(np.argmax(T))  # first maximum = smallest cut-point
    cut = float(xs[m[best] - 1])
    low = xv <= cut
    lr = logrank(t, e, np.where(low, "low", "high"))
    statistic = float(T[best])
    candidates = pd.DataFrame(
        {"cutpoint": xs[m - 1], "n_low": m, "prop_low": m / n, "statistic": T}
    )
    return CutpointResult(
        cutpoint=cut,
        statistic=statistic,
        n_low=int(low.sum()),
        n_high=int((~low).sum()),
        logrank_chisq=lr.statistic,
        logrank_p=lr.p,
        p_lausen92=_p_lausen92(statistic, min_prop, max_prop),
        p_lausen94=_p_lausen94(statistic, n, m),
        min_prop=float(min_prop),
        max_prop=float(max_prop),
        candidates=candidates,
    )


def cutpoint_groups(x: ArrayLike, cutpoint: float) -> np.ndarray:
    """``"low"`` where ``x <= cutpoint``, ``"high"`` where ``x > cutpoint`` (survminer's rule)."""
    xv = np.asarray(x, dtype=float)
    return np.where(xv <= cutpoint, "low", "high")


# --------------------------------------------------------------------------- Cox


@dataclass(frozen=True, eq=False)
class CoxResult:
    """A fitted Cox proportional-hazards model.

    Attributes:
        table: ``covariate, coef, se, hr, hr_lower, hr_upper, z, p`` (Wald).
        concordance: Harrell's C of the linear predictor.
        log_likelihood: Partial log-likelihood at the estimate.
        n: Subjects used (complete cases).
        n_events: Events among them.
    """

    table: pd.DataFrame
    concordance: float
    log_likelihood: float
    n: int
    n_events: int


def _complete(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"columns not in the table: {missing}")
    sub = df[columns]
    for c in columns:
        if not (pd.api.types.is_numeric_dtype(sub[c]) or pd.api.types.is_bool_dtype(sub[c])):
            raise InputError(f"column {c!r} is not numeric; encode it (e.g. 0/1 dummies) first")
    sub = sub.astype(float)
    complete = sub.dropna()
    if len(complete) < len(sub):
        log.info("cox: dropped %d rows with missing values", len(sub) - len(complete))
    return complete


def cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    level: float = 0.95,
) -> CoxResult:
    """Cox proportional-hazards model (lifelines ``CoxPHFitter``, Efron ties, no penalizer).

    Equivalent to R ``coxph(Surv(duration, event) ~ covariates)`` (Efron is the default of
    both). Rows with a missing value in any used column are dropped. Wald intervals
    ``exp(coef +/- z se)``.
    """
    from lifelines import CoxPHFitter

    covs = list(covariates)
    if not covs:
        raise InputError("cox needs at least one covariate")
    data = _complete(df, [duration_col, event_col, *covs])
    survival_data(data[duration_col], data[event_col])
    cph = CoxPHFitter(penalizer=0.0, alpha=1.0 - level)
    cph.fit(
        data,
        duration_col=duration_col,
        event_col=event_col,
        fit_options={"precision": 1e-10, "r_precision": 1e-14, "max_steps": 500},
    )
    summ = cph.summary
    z = stats.norm.ppf(0.5 + level / 2)
    coef = summ["coef"].to_numpy(dtype=float)
    se = summ["se(coef)"].to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "covariate": list(summ.index),
            "coef": coef,
            "se": se,
            "hr": np.exp(coef),
            "hr_lower": np.exp(coef - z * se),
            "hr_upper": np.exp(coef + z * se),
            "z": coef / se,
            "p": 2 * stats.norm.sf(np.abs(coef / se)),
        }
    )
    return CoxResult(
        table=table,
        concordance=float(cph.concordance_index_),
        log_likelihood=float(cph.log_likelihood_),
        n=len(data),
        n_events=int(data[event_col].sum()),
    )


def univariable_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    level: float = 0.95,
) -> pd.DataFrame:
    """One Cox model per covariate.

    Returns:
        The rows of each model's :attr:`CoxResult.table` stacked, plus ``concordance``, ``n``
        and ``n_events`` of that model (each uses its own complete cases).
    """
    rows = []
    for c in covariates:
        res = cox(df, duration_col, event_col, [c], level=level)
        tab = res.table.assign(concordance=res.concordance, n=res.n, n_events=res.n_events)
        rows.append(tab)
    if not rows:
        raise InputError("univariable_cox needs at least one covariate")
    return pd.concat(rows, ignore_index=True)


def multivariable_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    screen_p: float | None = None,
    level: float = 0.95,
) -> CoxResult:
    """Multivariable Cox model, optionally after univariable screening.

    Args:
        screen_p: When given, only covariates with univariable Wald ``p < screen_p`` enter the
            model (a common, if crude, practice; the screening is reported in the log).

    Raises:
        InputError: When no covariate passes the screening.
    """
    covs = list(covariates)
    if screen_p is not None:
        uni = univariable_cox(df, duration_col, event_col, covs, level=level)
        covs = uni.loc[uni["p"] < screen_p, "covariate"].tolist()
        log.info(
            "multivariable_cox: %d of %d covariates pass p < %g", len(covs), len(uni), screen_p
        )
        if not covs:
            raise InputError(f"no covariate has univariable p < {screen_p}")
    return cox(df, duration_col, event_col, covs, level=level)


# --------------------------------------------------------------------------- stepwise Cox


def null_log_likelihood(time: ArrayLike, event: ArrayLike) -> float:
    """Partial log-likelihood of the Cox model with no covariate (all ``beta = 0``), Efron ties:
    ``-sum_t sum_{j=0}^{d_t - 1} log(n_t - j)`` over the distinct event times ``t`` with
    ``n_t`` at risk and ``d_t`` events (Breslow's ``-sum_t d_t log n_t`` without ties)."""
    t, e = survival_data(time, event)
    total = 0.0
    for tau in np.unique(t[e == 1]):
        n_t = int(np.sum(t >= tau))
        d_t = int(np.sum((t == tau) & (e == 1)))
        total -= float(np.sum(np.log(n_t - np.arange(d_t))))
    return total


@dataclass(frozen=True, eq=False)
class StepwiseResult:
    """Stepwise Cox selection.

    Attributes:
        selected: Covariates of the final model, in the order of ``covariates``.
        model: The final model (None when no covariate is kept).
        steps: ``step, action, covariate, criterion`` (AIC, or the Wald P that decided), one
            row per move, the start model as step 0.
        n: Subjects used (the complete cases of *all* candidate covariates, so that every
            model compared has the same patients, as R's ``step`` requires).
    """

    selected: list[str]
    model: CoxResult | None
    steps: pd.DataFrame
    n: int


def _aic(data: pd.DataFrame, covs: list[str], level: float) -> float:
    """Partial AIC ``-2 logL + 2 k`` (R ``extractAIC`` of a ``coxph`` fit)."""
    if not covs:
        return -2 * null_log_likelihood(data["_time"], data["_event"])
    return -2 * cox(data, "_time", "_event", covs, level).log_likelihood + 2 * len(covs)


def _wald_p(data: pd.DataFrame, covs: list[str], level: float) -> dict[str, float]:
    tab = cox(data, "_time", "_event", covs, level).table
    return dict(zip(tab["covariate"], tab["p"], strict=True))


def _aic_move(
    data: pd.DataFrame, current: list[str], candidates: list[str], direction: str, level: float
) -> tuple[str, str, float] | None:
    """The move (``drop``/``add``, covariate, AIC) of lowest AIC among those ``direction``
    allows, when it is lower than the current model's; else None."""
    best = ("", "", _aic(data, current, level))
    moves = []
    if direction in ("backward", "both"):
        moves += [("drop", c) for c in current]
    if direction in ("forward", "both"):
        moves += [("add", c) for c in candidates if c not in current]
    for action, c in moves:
        covs = [x for x in current if x != c] if action == "drop" else [*current, c]
        value = _aic(data, [x for x in candidates if x in covs], level)
        if value < best[2] - 1e-9:
            best = (action, c, value)
    return best if best[0] else None


def _p_move(
    data: pd.DataFrame,
    current: list[str],
    candidates: list[str],
    direction: str,
    p_enter: float,
    p_remove: float,
    level: float,
) -> tuple[str, str, float] | None:
    """Backward: drop the largest Wald P above ``p_remove``; forward: add the covariate of
    smallest Wald P (in the enlarged model) below ``p_enter``; both: drop first, then add."""
    if direction in ("backward", "both") and current:
        ps = _wald_p(data, current, level)
        worst = max(current, key=lambda c: ps[c])
        if ps[worst] > p_remove:
            return ("drop", worst, ps[worst])
    if direction in ("forward", "both"):
        trial = {c: _wald_p(data, [*current, c], level)[c] for c in candidates if c not in current}
        if trial:
            best = min(trial, key=lambda c: trial[c])
            if trial[best] < p_enter:
                return ("add", best, trial[best])
    return None


def stepwise_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    direction: str = "both",
    criterion: str = "aic",
    p_enter: float = 0.05,
    p_remove: float = 0.10,
    level: float = 0.95,
) -> StepwiseResult:
    """Stepwise Cox model selection on the complete cases of all ``covariates``.

    * ``criterion="aic"`` (R ``step(coxph(...), direction=...)``): start from the full model
      (``backward``, ``both``; R's default is ``both`` from the full model) or the empty one
      (``forward``), and take the single drop or add that lowers the partial AIC
      (``-2 logL + 2 k``) most, until none does.
    * ``criterion="p"``: the same starts, Wald P: drop the largest P above ``p_remove``, add
      the smallest P below ``p_enter`` (``p_enter < p_remove`` keeps it from cycling).
    """
    covs = list(dict.fromkeys(covariates))
    if not covs:
        raise InputError("stepwise_cox needs at least one covariate")
    if direction not in ("backward", "forward", "both") or criterion not in ("aic", "p"):
        raise InputError(f"unknown stepwise direction/criterion {direction!r}/{criterion!r}")
    data = _complete(df, [duration_col, event_col, *covs]).rename(
        columns={duration_col: "_time", event_col: "_event"}
    )
    current = [] if direction == "forward" else list(covs)
    start = _aic(data, current, level) if criterion == "aic" else float("nan")
    rows = [{"step": 0, "action": "start", "covariate": ", ".join(current), "criterion": start}]
    for step in range(1, 2 * len(covs) + 2):
        if criterion == "aic":
            move = _aic_move(data, current, covs, direction, level)
        else:
            move = _p_move(data, current, covs, direction, p_enter, p_remove, level)
        if move is None:
            break
        action, c, value = move
        current = [x for x in current if x != c] if action == "drop" else [*current, c]
        current = [x for x in covs if x in current]
        rows.append({"step": step, "action": action, "covariate": c, "criterion": value})
    model = cox(data, "_time", "_event", current, level) if current else None
    return StepwiseResult(current, model, pd.DataFrame(rows), len(data))
