"""Evaluation of binary classifiers: ROC/AUC with DeLong inference, cut-offs, NRI, calibration, DCA.

Conventions used throughout:

* ``y_true`` is binary: 1 (or ``True``) = case / event, 0 = control. A *higher* score or
  probability means *more likely a case* (pROC's ``direction = "<"``: controls < cases);
  negate a score whose direction is the other way.
* A subject is called positive at cut-off ``c`` when ``score >= c``.
* Ties between a case and a control count 1/2 in the AUC (Mann-Whitney), as in pROC.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.errors import InputError
from hccrad.stats._checks import ArrayLike, binary, both_classes, numeric, probabilities

log = logging.getLogger(__name__)

__all__ = [
    "CalibrationResult",
    "DeLongResult",
    "NRIResult",
    "RankSumResult",
    "UnpairedDeLongResult",
    "auc",
    "auc_ci",
    "calibration",
    "classification_metrics",
    "delong_placements",
    "delong_test",
    "delong_unpaired_test",
    "net_benefit",
    "nri",
    "proportion_ci",
    "rank_sum_test",
    "rate_cis",
    "roc_curve",
    "unpaired_auc_test",
    "youden_cutoff",
]


# --------------------------------------------------------------------------- AUC and DeLong


def delong_placements(y_true: ArrayLike, score: ArrayLike) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values by the mid-rank algorithm of Sun & Xu (2014).

    With ``m`` cases ``X``, ``n`` controls ``Y`` and ``psi(x, y) = 1[x > y] + 1/2 1[x = y]``:

    * ``V10_i = (1/n) sum_j psi(X_i, Y_j)`` (case placements) ``= (Tz_i - Tx_i) / n``,
    * ``V01_j = (1/m) sum_i psi(X_i, Y_j)`` (control placements) ``= 1 - (Tz_j - Ty_j) / m``,

    where ``Tz``, ``Tx``, ``Ty`` are mid-ranks in the pooled sample, among the cases and among
    the controls. ``AUC = mean(V10) = mean(V01) = U / (m n)``.

    Returns:
        ``(auc, v10, v01)``.
    """
    y = binary(y_true)
    s = numeric(score, "score", y.size)
    both_classes(y)
    x_case = s[y == 1]
    y_ctrl = s[y == 0]
    m, n = x_case.size, y_ctrl.size
    tz = stats.rankdata(np.concatenate([x_case, y_ctrl]), method="average")
    tx = stats.rankdata(x_case, method="average")
    ty = stats.rankdata(y_ctrl, method="average")
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    return float(v10.mean()), v10, v01


def auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve, ``U / (n1 n0)`` with ties counting 1/2."""
    return delong_placements(y_true, score)[0]


def _delong_var(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong variance ``S10 / m + S01 / n`` (sample variances of the placements, ddof 1)."""
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


def auc_ci(y_true: ArrayLike, score: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """AUC with its DeLong confidence interval, as pROC's ``ci.auc(method = "delong")``.

    ``AUC +/- z_{(1+level)/2} sqrt(Var_DeLong)``, clipped to ``[0, 1]``.

    Returns:
        ``(auc, lower, upper)``.
    """
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    a, v10, v01 = delong_placements(y_true, score)
    se = math.sqrt(_delong_var(v10, v01))
    z = stats.norm.ppf(0.5 + level / 2)
    return a, float(max(0.0, a - z * se)), float(min(1.0, a + z * se))


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two correlated AUCs (same subjects).

    Attributes:
        auc_a, auc_b: The two AUCs.
        var_a, var_b: Their DeLong variances.
        cov: DeLong covariance of the two AUC estimates.
        z: ``(auc_a - auc_b) / sqrt(var_a + var_b - 2 cov)``.
        p: Two-sided p-value ``2 Phi(-|z|)``.
    """

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    cov: float
    z: float
    p: float


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> DeLongResult:
    """Paired two-sided DeLong test of ``AUC(score_a) = AUC(score_b)`` (pROC ``roc.test``).

    ``cov = Cov(V10_a, V10_b) / m + Cov(V01_a, V01_b) / n`` with the placement values of
    :func:`delong_placements`. When the variance of the difference is 0 (identical scores) the
    result has ``z = 0`` and ``p = 1``.
    """
    a_auc, a10, a01 = delong_placements(y_true, score_a)
    b_auc, b10, b01 = delong_placements(y_true, score_b)
    var_a = _delong_var(a10, a01)
    var_b = _delong_var(b10, b01)
    cov = float(
        np.cov(a10, b10, ddof=1)[0, 1] / a10.size + np.cov(a01, b01, ddof=1)[0, 1] / a01.size
    )
    var_diff = var_a + var_b - 2.0 * cov
    if var_diff <= 1e-15 * max(var_a + var_b, 1e-300):
        z, p = 0.0, 1.0
    else:
        z = (a_auc - b_auc) / math.sqrt(var_diff)
        p = float(2.0 * stats.norm.sf(abs(z)))
    return DeLongResult(a_auc, b_auc, var_a, var_b, cov, float(z), p)


@dataclass(frozen=True)
class UnpairedDeLongResult:
    """Unpaired DeLong test of two AUCs from independent samples (different subjects).

    Attributes:
        auc_a, auc_b: The two AUCs.
        var_a, var_b: Their DeLong variances (:func:`auc_ci`'s).
        z: ``(auc_a - auc_b) / sqrt(var_a + var_b)`` (pROC's ``D``).
        df: Welch-Satterthwaite degrees of freedom
            ``(var_a + var_b)^2 / (var_a^2 / (N_a - 1) + var_b^2 / (N_b - 1))``, ``N`` = subjects.
        p: Two-sided ``2 P(T_df > |z|)`` (pROC ``roc.test(paired = FALSE)``).
        p_normal: Two-sided ``2 Phi(-|z|)`` (the large-sample normal reference).
        n_a, n_b: Subjects in each sample.
    """

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    z: float
    df: float
    p: float
    p_normal: float
    n_a: int
    n_b: int


def unpaired_auc_test(
    auc_a: float, var_a: float, n_a: int, auc_b: float, var_b: float, n_b: int
) -> UnpairedDeLongResult:
    """Two-sided test of two independent AUCs from their variances and sample sizes (``n``:
    subjects, cases and controls together), pROC's ``delong.unpaired.test`` formulas.

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b)``; ``p`` refers ``z`` to Student's t with the
    Welch-Satterthwaite ``df = (var_a + var_b)^2 / (var_a^2 / (n_a - 1) + var_b^2 / (n_b - 1))``,
    ``p_normal`` to the standard normal. When both variances are 0: ``z = 0, p = 1`` for equal
    AUCs, else ``z = +/-inf, p = 0``.
    """
    if n_a < 2 or n_b < 2:
        raise InputError(f"each sample needs at least 2 subjects, got {n_a} and {n_b}")
    var = var_a + var_b
    if var <= 0.0:
        z = 0.0 if auc_a == auc_b else math.copysign(math.inf, auc_a - auc_b)
        df, p, p_norm = math.nan, float(z == 0.0), float(z == 0.0)
    else:
        z = (auc_a - auc_b) / math.sqrt(var)
        df = var**2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
        p = float(2.0 * stats.t.sf(abs(z), df))
        p_norm = float(2.0 * stats.norm.sf(abs(z)))
    return UnpairedDeLongResult(
        float(auc_a), float(auc_b), float(var_a), float(var_b), float(z), float(df), p, p_norm,
        int(n_a), int(n_b),
    )  # fmt: skip


def delong_unpaired_test(
    y_a: ArrayLike, score_a: ArrayLike, y_b: ArrayLike, score_b: ArrayLike
) -> UnpairedDeLongResult:
    """Two-sided DeLong test of ``AUC_a = AUC_b`` for two independent samples (e.g. training
    vs validation patients, 1.5 T vs 3.0 T), as pROC's ``roc.test(method = "delong",
    paired = FALSE)``: :func:`unpaired_auc_test` of each sample's AUC and DeLong variance
    (:func:`auc_ci`'s); there is no covariance term."""
    a_auc, a10, a01 = delong_placements(y_a, score_a)
    b_auc, b10, b01 = delong_placements(y_b, score_b)
    return unpaired_auc_test(
        a_auc, _delong_var(a10, a01), a10.size + a01.size,
        b_auc, _delong_var(b10, b01), b10.size + b01.size,
    )  # fmt: skip


# --------------------------------------------------------------------------- ROC and cut-offs


def roc_curve(y_true: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """Empirical ROC curve.

    Returns:
        DataFrame ``threshold, fpr, tpr`` with one row per distinct score (positive =
        ``score >= threshold``), in decreasing threshold order, preceded by ``threshold = inf``
        (``fpr = tpr = 0``); the last row has ``fpr = tpr = 1``.
    """
    y = binary(y_true)
    s = numeric(score, "score", y.size)
    n1, n0 = both_classes(y)
    thr = np.unique(s)[::-1]
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp_cum = np.cumsum(y_sorted)
    fp_cum = np.cumsum(1 - y_sorted)
    # last index of each threshold in descending order
    idx = np.searchsorted(-s_sorted, -thr, side="right") - 1
    return pd.DataFrame(
        {
            "threshold": np.r_[np.inf, thr],
            "fpr": np.r_[0.0, fp_cum[idx] / n0],
            "tpr": np.r_[0.0, tp_cum[idx] / n1],
        }
    )


def youden_cutoff(y_true: ArrayLike, score: ArrayLike) -> float:
    """The cut-off maximizing Youden's ``J = sensitivity + specificity - 1``.

    Candidates are the observed distinct scores (positive = ``score >= cutoff``), so the cut-off
    is always an observed value (pROC reports midpoints between neighbours instead; both give the
    same classification of the data). Ties in ``J`` are broken towards the *largest* cut-off,
    i.e. the most specific of the optimal rules.
    """
    curve = roc_curve(y_true, score).iloc[1:]
    j = (curve["tpr"] - curve["fpr"]).to_numpy()
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    return float(curve["threshold"].to_numpy()[best].max())


def classification_metrics(y_true: ArrayLike, score: ArrayLike, cutoff: float) -> dict[str, float]:
    """Confusion matrix and derived rates at ``cutoff`` (positive = ``score >= cutoff``).

    Returns:
        ``accuracy, sensitivity, specificity, ppv, npv`` (NaN when the denominator is 0) and the
        counts ``tp, fp, tn, fn``.
    """
    y = binary(y_true)
    s = numeric(score, "score", y.size)
    pos = s >= cutoff
    tp = int(np.sum(pos & (y == 1)))
    fp = int(np.sum(pos & (y == 0)))
    tn = int(np.sum(~pos & (y == 0)))
    fn = int(np.sum(~pos & (y == 1)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "accuracy": ratio(tp + tn, y.size),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


#: The classification rates of :func:`classification_metrics` with their (successes, trials).
RATE_COUNTS = {
    "accuracy": (("tp", "tn"), ("tp", "tn", "fp", "fn")),
    "sensitivity": (("tp",), ("tp", "fn")),
    "specificity": (("tn",), ("tn", "fp")),
    "ppv": (("tp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
}


def proportion_ci(
    k: int, n: int, level: float = 0.95, method: str = "wilson"
) -> tuple[float, float]:
    """Confidence interval of a binomial proportion ``k / n``.

    * ``wilson``: the score interval ``(p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) /
      (1 + z^2/n)`` (R ``prop.test(correct = FALSE)``, statsmodels ``method="wilson"``);
    * ``clopper_pearson``: the exact interval ``[Beta_{a/2}(k, n-k+1), Beta_{1-a/2}(k+1, n-k)]``
      (R ``binom.test``), 0 for ``k = 0`` and 1 for ``k = n``.

    Returns ``(nan, nan)`` when ``n == 0``.
    """
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if not 0 <= k <= n:
        raise InputError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    if method == "wilson":
        z = stats.norm.ppf(1 - alpha / 2)
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
        return float(max(0.0, centre - half)), float(min(1.0, centre + half))
    if method == "clopper_pearson":
        lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
        hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
        return lo, hi
    raise InputError(f"unknown proportion CI method {method!r} (wilson, clopper_pearson)")


def rate_cis(
    counts: dict[str, float], level: float = 0.95, method: str = "wilson"
) -> dict[str, float]:
    """``{rate}_lower, {rate}_upper`` of accuracy, sensitivity, specificity, PPV and NPV from
    the confusion counts ``tp, fp, tn, fn`` (:func:`proportion_ci`; NaN for an empty
    denominator)."""
    out = {}
    for rate, (num, den) in RATE_COUNTS.items():
        k = int(sum(counts[c] for c in num))
        n = int(sum(counts[c] for c in den))
        out[f"{rate}_lower"], out[f"{rate}_upper"] = proportion_ci(k, n, level, method)
    return out


@dataclass(frozen=True)
class RankSumResult:
    """Wilcoxon rank-sum (Mann-Whitney) test of a score between cases and controls.

    Attributes:
        u: ``U`` of the cases, ``sum_{i,j} psi(X_i, Y_j)`` (ties 1/2) = ``AUC n1 n0``.
        auc: ``U / (n1 n0)``.
        p: Two-sided p-value.
        method: ``exact`` or ``normal`` (with continuity and tie corrections).
        n_pos, n_neg: Group sizes.
        median_pos, median_neg: Group medians of the score.
    """

    u: float
    auc: float
    p: float
    method: str
    n_pos: int
    n_neg: int
    median_pos: float
    median_neg: float


def rank_sum_test(y_true: ArrayLike, score: ArrayLike) -> RankSumResult:
    """Two-sided Wilcoxon rank-sum test of ``score`` between ``y = 1`` and ``y = 0``, as R's
    ``wilcox.test(x, y)``: the exact null distribution when both groups have fewer than 50
    subjects and there are no ties, else the normal approximation with continuity correction
    and the tie-corrected variance."""
    y = binary(y_true)
    s = numeric(score, "score", y.size)
    n1, n0 = both_classes(y)
    a = delong_placements(y, s)[0]
    u = a * n1 * n0
    exact = n1 < 50 and n0 < 50 and np.unique(s).size == s.size
    method = "exact" if exact else "asymptotic"
    res = stats.mannwhitneyu(
        s[y == 1], s[y == 0], alternative="two-sided", method=method, use_continuity=True
    )
    return RankSumResult(
        u=float(u),
        auc=float(a),
        p=float(res.pvalue),
        method="exact" if exact else "normal",
        n_pos=n1,
        n_neg=n0,
        median_pos=float(np.median(s[y == 1])),
        median_neg=float(np.median(s[y == 0])),
    )


# --------------------------------------------------------------------------- NRI


@dataclass(frozen=True)
class NRIResult:
    """Net reclassification improvement of a new model over an old one.

    Attributes:
        nri: ``nri_events + nri_nonevents`` (range -2 to 2).
        nri_events: ``P(up | event) - P(down | event)``.
        nri_nonevents: ``P(down | nonevent) - P(up | nonevent)``.
        se: Pencina (2008) standard error (see :func:`nri`).
        z: ``nri / se``.
        p: Two-sided p-value ``2 Phi(-|z|)``.
        up_events, down_events, up_nonevents, down_nonevents: The reclassification counts.
        n_events, n_nonevents: Group sizes.
        cutoffs: The risk cut-offs (empty for the continuous NRI).
    """

    nri: float
    nri_events: float
    nri_nonevents: float
    se: float
    z: float
    p: float
    up_events: int
    down_events: int
    up_nonevents: int
    down_nonevents: int
    n_events: int
    n_nonevents: int
    cutoffs: tuple[float, ...] = field(default=())


def nri(
    y_true: ArrayLike,
    p_old: ArrayLike,
    p_new: ArrayLike,
    cutoffs: ArrayLike | None = None,
) -> NRIResult:
    """Categorical or continuous (category-free) NRI (Pencina et al. 2008, 2011).

    * Categorical (``cutoffs`` given, e.g. ``[0.1, 0.2]``): the risk category is the number of
      cut-offs ``<= p`` (so ``p = c`` falls in the higher category); "up" = the new category is
      higher than the old one, "down" = lower.
    * Continuous (``cutoffs=None``, Pencina 2011 "category-free" NRI>0): "up" = ``p_new > p_old``,
      "down" = ``p_new < p_old``; equal risks count as neither.

    ``NRI = (up_e - down_e) / n_e + (down_ne - up_ne) / n_ne``. Standard error of Pencina et al.
    (2008), the McNemar-type estimate under the null hypothesis:
    ``se^2 = (up_e + down_e) / n_e^2 + (up_ne + down_ne) / n_ne^2``; ``z = NRI / se``.
    (Hmisc's ``improveProb`` instead subtracts ``(up - down)^2 / n^3`` per group.) When nobody is
    reclassified, ``se = 0`` and ``z = 0, p = 1``.
    """
    y = binary(y_true)
    old = numeric(p_old, "p_old", y.size)
    new = numeric(p_new, "p_new", y.size)
    n_e, n_ne = both_classes(y)
    if cutoffs is None:
        cuts: tuple[float, ...] = ()
        up = new > old
        down = new < old
    else:
        c = np.sort(np.asarray(cutoffs, dtype=float).ravel())
        if c.size == 0 or not np.isfinite(c).all():
            raise InputError("cutoffs must be finite numbers (or None for the continuous NRI)")
        cuts = tuple(float(v) for v in c)
        cat_old = np.searchsorted(c, old, side="right")
        cat_new = np.searchsorted(c, new, side="right")
        up = cat_new > cat_old
        down = cat_new < cat_old
    ev = y == 1
    up_e, down_e = int(np.sum(up & ev)), int(np.sum(down & ev))
    up_ne, down_ne = int(np.sum(up & ~ev)), int(np.sum(down & ~ev))
    nri_e = (up_e - down_e) / n_e
    nri_ne = (down_ne - up_ne) / n_ne
    total = nri_e + nri_ne
    se = math.sqrt((up_e + down_e) / n_e**2 + (up_ne + down_ne) / n_ne**2)
    if se == 0:
        z, p = 0.0, 1.0
    else:
        z = total / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    return NRIResult(
        nri=total,
        nri_events=nri_e,
        nri_nonevents=nri_ne,
        se=se,
        z=z,
        p=p,
        up_events=up_e,
        down_events=down_e,
        up_nonevents=up_ne,
        down_nonevents=down_ne,
        n_events=n_e,
        n_nonevents=n_ne,
        cutoffs=cuts,
    )


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Calibration of predicted probabilities (see :func:`calibration`).

    Attributes:
        slope: Calibration slope ``b`` of ``logit P(y=1) = a + b logit(p)``.
        intercept: Calibration-in-the-large ``a`` of ``logit P(y=1) = a + offset(logit(p))``.
        recalibration_intercept: The ``a`` of the slope model (rms ``val.prob``'s "Intercept").
        brier: Brier score ``mean((p - y)^2)``.
        curve: Binned calibration curve ``bin, mean_predicted, observed, n``.
        n: Number of subjects.
    """

    slope: float
    intercept: float
    recalibration_intercept: float
    brier: float
    curve: pd.DataFrame
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """The scalar results as a dict."""
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "recalibration_intercept": self.recalibration_intercept,
            "brier": self.brier,
            "n": self.n,
        }


def _logistic_fit(
    y: np.ndarray, X: np.ndarray, offset: np.ndarray, max_iter: int = 100, tol: float = 1e-12
) -> np.ndarray:
    """Maximum-likelihood logistic regression by Newton-Raphson (no penalty).

    Solves the score equations ``X' (y - expit(X b + offset)) = 0``. Returns NaNs (with a
    warning) when it does not converge, e.g. under complete separation.
    """
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        eta = X @ beta + offset
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        grad = X.T @ (y - mu)
        hess = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if not np.isfinite(beta).all():
            break
        if np.max(np.abs(step)) < tol * (1.0 + np.max(np.abs(beta))):
            return beta
    log.warning("calibration: logistic recalibration did not converge (separation?)")
    return np.full(X.shape[1], np.nan)


def calibration(
    y_true: ArrayLike,
    prob: ArrayLike,
    n_bins: int = 10,
    strategy: str = "quantile",
    eps: float = 1e-12,
) -> CalibrationResult:
    """Logistic recalibration, Brier score and a binned calibration curve.

    With ``lp = logit(p)`` (``p`` clipped to ``[eps, 1 - eps]``), both by maximum likelihood:

    * slope: ``b`` in ``logit P(y=1) = a + b lp`` (``lp`` the only covariate; ideal 1);
    * intercept (calibration-in-the-large): ``a`` in ``logit P(y=1) = a + offset(lp)``
      (ideal 0; ``> 0`` means risks are underestimated on average);
    * ``brier = mean((p - y)^2)`` on the unclipped ``p``.

    The curve groups subjects into ``n_bins`` bins of predicted probability: ``"quantile"``
    (``pandas.qcut``; equal-count bins, tied probabilities kept together, so fewer bins may
    result) or ``"uniform"`` (``[0, 1/k), ..., [(k-1)/k, 1]``; empty bins dropped); per bin the
    mean prediction, the observed event fraction and the count.
    """
    y = binary(y_true)
    p = probabilities(prob, "prob", y.size)
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}")
    pc = np.clip(p, eps, 1.0 - eps)
    lp = np.log(pc / (1.0 - pc))
    ones = np.ones_like(lp)
    recal = _logistic_fit(y, np.column_stack([ones, lp]), np.zeros_like(lp))
    citl = _logistic_fit(y, ones[:, None], lp)
    brier = float(np.mean((p - y) ** 2))
    if strategy == "quantile":
        bins = pd.qcut(p, q=n_bins, labels=False, duplicates="drop")
    elif strategy == "uniform":
        bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    frame = pd.DataFrame({"bin": np.asarray(bins, dtype=int), "p": p, "y": y})
    curve = (
        frame.groupby("bin", sort=True)
        .agg(mean_predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
        .reset_index()
    )
    return CalibrationResult(
        slope=float(recal[1]),
        intercept=float(citl[0]),
        recalibration_intercept=float(recal[0]),
        brier=brier,
        curve=curve,
        n=int(y.size),
    )


# --------------------------------------------------------------------------- decision curves


def net_benefit(
    y_true: ArrayLike,
    prob: ArrayLike,
    thresholds: ArrayLike,
    model_name: str = "model",
) -> pd.DataFrame:
    """Decision-curve net benefit (Vickers & Elkin 2006).

    At threshold probability ``t`` (treat when ``prob >= t``, as R ``dcurves``):
    ``NB = TP/n - FP/n * t / (1 - t)``. Reference strategies: treat all
    ``NB = prevalence - (1 - prevalence) t / (1 - t)``; treat none ``NB = 0``.

    Args:
        y_true: Binary outcome.
        prob: Predicted probabilities (or any score on the probability scale, e.g. a 0/1 test).
        thresholds: Threshold probabilities in ``[0, 1)``.
        model_name: Label of the model's strategy.

    Returns:
        Long DataFrame ``threshold, strategy, net_benefit`` (strategies ``model_name``, ``all``,
        ``none`` for each threshold, in that order).
    """
    y = binary(y_true)
    p = numeric(prob, "prob", y.size)
    t = np.asarray(thresholds, dtype=float).ravel()
    if t.size == 0 or not np.isfinite(t).all() or (t < 0).any() or (t >= 1).any():
        raise InputError("thresholds must be finite and in [0, 1)")
    if model_name in ("all", "none"):
        raise InputError(f"model_name {model_name!r} clashes with a reference strategy")
    n = y.size
    prevalence = y.mean()
    odds = t / (1.0 - t)
    treat = p[None, :] >= t[:, None]
    tp = (treat & (y[None, :] == 1)).sum(axis=1)
    fp = (treat & (y[None, :] == 0)).sum(axis=1)
    nb_model = tp / n - fp / n * odds
    nb_all = prevalence - (1.0 - prevalence) * odds
    rows = pd.DataFrame(
        {
            "threshold": np.repeat(t, 3),
            "strategy": np.tile([model_name, "all", "none"], t.size),
            "net_benefit": np.column_stack([nb_model, nb_all, np.zeros_like(t)]).ravel(),
        }
    )
    return rows
