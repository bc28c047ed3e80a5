"""Feature-selection transformers (scikit-learn compatible, leakage-safe).

Every selector learns **only** from the data passed to ``fit`` (which features to keep, and any
statistics) and ``transform`` just picks those columns: it never refits, so in a
:class:`~imblearn.pipeline.Pipeline` evaluated by cross-validation the selection is redone inside
every training fold. ``transform`` returns a DataFrame (same index, selected columns) when given
a DataFrame and an ndarray otherwise; ``get_feature_names_out`` gives the kept names (``x0``,
``x1``... for arrays, as scikit-learn does). The label must be binary (two distinct values; the
larger one is the positive class).

Conventions shared by the selectors:

* **Association with the label** = ``|AUC - 0.5|`` of the feature as a univariate score, with
  ``AUC = (R1 - n1 (n1 + 1) / 2) / (n1 n0)`` (``R1`` = sum of the positives' mid-ranks), i.e.
  the Mann-Whitney estimate, equal to :func:`sklearn.metrics.roc_auc_score`.
* **Zero selected features** never leaves an empty matrix: the single best feature is kept
  (highest ICC for :class:`ICCFilter`, smallest P for :class:`UnivariateFilter` -- the
  ``k_fallback`` best --, largest association for :class:`LassoSelector`), ties going to the
  first column, ``fallback_`` is set to ``True`` and an INFO message is logged (on pure noise
  this is the expected outcome, e.g. in most CV folds of a null model).
* :class:`CorrelationFilter` and :class:`RFESelector` always keep at least one feature by
  construction.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.feature_selection import RFE, SelectorMixin
from sklearn.linear_model import (
    Lasso,
    LassoCV,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC, l1_min_c
from sklearn.utils.validation import check_is_fitted, validate_data

log = logging.getLogger(__name__)

#: Names accepted by :func:`make_step` (``{"step": name, **kwargs}``).
STEP_NAMES = ("icc", "univariate", "correlation", "lasso", "rfe", "pca", "scaler")


def binary_labels(y: Any) -> np.ndarray:
    """``y`` as 0/1 integers (the larger of the two distinct values is 1).

    Raises:
        ValueError: ``y`` is not 1-D, has missing values or not exactly two distinct values.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.ravel() if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise ValueError(f"the label must be 1-D, got shape {np.shape(y)}")
    if pd.isna(arr).any():
        raise ValueError("the label has missing values")
    classes = np.unique(arr)
    if len(classes) != 2:
        raise ValueError(f"the label must have exactly 2 classes, got {classes.tolist()}")
    return (arr == classes[1]).astype(int)


def univariate_auc(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-column AUC of ``X`` for the 0/1 label ``y`` (mid-ranks; ties count 1/2)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    n1 = int(y.sum())
    n0 = len(y) - n1
    ranks = stats.rankdata(X, axis=0)
    return (ranks[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


class _Selector(SelectorMixin, BaseEstimator):
    """Common plumbing: input validation, names, DataFrame-preserving ``transform``."""

    def _fit_input(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        Xa = validate_data(self, X, reset=True, dtype=np.float64)
        yb = binary_labels(y)
        if len(yb) != Xa.shape[0]:
            raise ValueError(f"X has {Xa.shape[0]} rows but y has {len(yb)} values")
        return Xa, yb

    def _input_names(self) -> np.ndarray:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        return np.asarray(names, dtype=object)

    def _set_support(self, mask: np.ndarray, score: np.ndarray, what: str) -> None:
        """Store ``mask``; when empty keep the feature with the largest ``score`` instead."""
        mask = np.asarray(mask, dtype=bool).copy()
        self.fallback_ = not mask.any()
        if self.fallback_:
            best = int(np.nanargmax(np.where(np.isnan(score), -np.inf, score)))
            mask[best] = True
            log.info(
                "%s selected no feature; keeping the single best one (%s)",
                type(self).__name__,
                self._input_names()[best],
            )
        log.debug(
            "%s kept %d of %d features (%s)", type(self).__name__, mask.sum(), mask.size, what
        )
        self.support_ = mask

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def transform(self, X: Any) -> Any:
        """Keep the fitted columns (no refit). DataFrame in, DataFrame out; ndarray otherwise."""
        check_is_fitted(self, "support_")
        Xa = validate_data(self, X, reset=False, dtype=np.float64)
        if isinstance(X, pd.DataFrame):
            return X.loc[:, self.support_]
        return Xa[:, self.support_]


def _icc_series(icc_table: Any, column: str) -> pd.Series:
    if isinstance(icc_table, pd.Series):
        return icc_table.astype(float)
    if isinstance(icc_table, Mapping):
        return pd.Series(icc_table, dtype=float)
    if isinstance(icc_table, pd.DataFrame):
        table = icc_table.set_index("feature") if "feature" in icc_table.columns else icc_table
        if column not in table.columns:
            raise ValueError(f"ICC table has no column {column!r} (columns: {list(table.columns)})")
        return table[column].astype(float)
    raise TypeError(f"icc_table must be a DataFrame, Series or mapping, got {type(icc_table)}")


class ICCFilter(_Selector):
    """Keep the features whose reader ICC is **strictly above** ``threshold``; with ``intra``,
    whose inter-observer ICC (``icc_table``) **and** intra-observer ICC (``intra_table``: reader
    1 against reader 1's repeat outline) both are.

    Data-independent (``fit`` only reads the feature names). A NaN ICC (constant feature) fails
    the test. Features absent from a table are kept (``missing="keep"``) or dropped
    (``missing="drop"``, default: unassessed reproducibility is not assumed); with ``intra`` a
    feature must pass (or be absent and kept) in both. If no feature passes, the one with the
    highest ICC (with ``intra``: the highest of the smaller of its two ICCs) is kept
    (``fallback_``).

    Args:
        icc_table: :func:`hccrad.icc.feature_icc` output (index or ``feature`` column = feature
            name) or a feature -> ICC Series / mapping.
        threshold: ICC cut-off (of both ICCs with ``intra``).
        column: Column of the tables to use (``icc2_1`` absolute agreement, ``icc3_1``
            consistency).
        missing: What to do with features not in a table.
        intra: Require the intra-observer ICC too.
        intra_table: The intra-observer ICC table (same forms as ``icc_table``); needed with
            ``intra``.

    Attributes:
        icc_: ICC per input feature (NaN when absent from the table).
        intra_icc_: Intra-observer ICC per input feature (None without ``intra``).
        support_: Boolean mask of kept features.
    """

    def __init__(
        self,
        icc_table: Any = None,
        threshold: float = 0.75,
        column: str = "icc2_1",
        missing: Literal["keep", "drop"] = "drop",
        intra: bool = False,
        intra_table: Any = None,
    ) -> None:
        self.icc_table = icc_table
        self.threshold = threshold
        self.column = column
        self.missing = missing
        self.intra = intra
        self.intra_table = intra_table

    def fit(self, X: Any, y: Any = None) -> ICCFilter:
        """Look the input features up in the ICC table (``y`` is ignored)."""
        if self.missing not in ("keep", "drop"):
            raise ValueError(f"missing must be 'keep' or 'drop', got {self.missing!r}")
        if self.icc_table is None:
            raise ValueError("ICCFilter needs an icc_table")
        if self.intra and self.intra_table is None:
            raise ValueError(
                "ICCFilter(intra=True) needs an intra_table (the intra-observer ICC of reader "
                "1's repeat outline)"
            )
        validate_data(self, X, reset=True, dtype=np.float64)
        names = self._input_names()
        self.icc_, mask = self._passing(self.icc_table, names, "ICC table")
        score = self.icc_
        self.intra_icc_ = None
        what = f"ICC > {self.threshold}"
        if self.intra:
            self.intra_icc_, intra_mask = self._passing(
                self.intra_table, names, "intra-observer ICC table"
            )
            mask &= intra_mask
            score = np.minimum(self.icc_, self.intra_icc_)  # NaN (undefined) stays NaN
            what = f"inter- and intra-observer ICC > {self.threshold}"
        self._set_support(mask, score, what)
        return self

    def _passing(
        self, icc_table: Any, names: np.ndarray, what: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per input feature the table's ICC (NaN when absent) and whether it passes (an absent
        feature passes with ``missing="keep"``)."""
        table = _icc_series(icc_table, self.column)
        present = np.isin(names, table.index.astype(str))
        if not present.any():
            raise ValueError(
                f"ICCFilter: none of the input features is in the {what} (pass a DataFrame "
                f"with the table's feature names; first inputs: {list(names[:3])})"
            )
        icc = table.reindex(names).to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            mask = icc > self.threshold
        if self.missing == "keep":
            mask |= ~present
        if not present.all():
            log.info(
                "ICCFilter: %d feature(s) not in the %s (%s)", (~present).sum(), what, self.missing
            )
        return icc, mask


def _binary_columns(X: np.ndarray) -> np.ndarray:
    """Columns with exactly two distinct values (0/1 codes, dummy-coded levels, scaled or not)."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    return (lo < hi) & (np.equal(X, lo) | np.equal(X, hi)).all(axis=0)


def _categorical_p(x: np.ndarray, y: np.ndarray, correction: bool) -> tuple[float, str]:
    """P of the 2 x 2 table label x level: Fisher's exact test when an expected count is < 5,
    else Pearson's chi-squared (Yates-corrected when ``correction``)."""
    level = x == x.max()
    table = np.array([[np.sum(~level & (y == c)), np.sum(level & (y == c))] for c in (0, 1)])
    if (stats.contingency.expected_freq(table) < 5).any():
        return float(stats.fisher_exact(table).pvalue), "fisher"
    return float(stats.chi2_contingency(table, correction=correction).pvalue), "chi2"


def _pvalues(
    X: np.ndarray, y: np.ndarray, test: str, normality_alpha: float, correction: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = X[y == 1], X[y == 0]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        p_t = stats.ttest_ind(pos, neg, axis=0, equal_var=False).pvalue
        p_u = stats.mannwhitneyu(pos, neg, axis=0, alternative="two-sided").pvalue
        if test == "ttest":
            use_t = np.ones(X.shape[1], dtype=bool)
        elif test == "mannwhitney" or min(len(pos), len(neg)) < 3:
            use_t = np.zeros(X.shape[1], dtype=bool)
        else:
            sw_pos = stats.shapiro(pos, axis=0).pvalue
            sw_neg = stats.shapiro(neg, axis=0).pvalue
            use_t = (sw_pos > normality_alpha) & (sw_neg > normality_alpha)
    p = np.where(use_t, p_t, p_u)
    p = np.where(np.isnan(p), 1.0, p)
    names = np.where(use_t, "ttest", "mannwhitney").astype(object)
    if test == "auto":
        for j in np.flatnonzero(_binary_columns(X)):
            p[j], names[j] = _categorical_p(X[:, j], y, correction)
    return p, names


class UnivariateFilter(_Selector):
    """Keep the features with a two-sided P < ``alpha`` between the two label classes.

    Tests: ``"ttest"`` = Welch's t-test (:func:`scipy.stats.ttest_ind`, ``equal_var=False``);
    ``"mannwhitney"`` = Mann-Whitney U (:func:`scipy.stats.mannwhitneyu`, two-sided);
    ``"auto"`` = per feature: a **binary** feature (exactly two distinct values in the fitted
    rows: a 0/1 variable or one dummy-coded level of a categorical one) by the 2 x 2 label x
    level table, Fisher's exact test (:func:`scipy.stats.fisher_exact`) when an expected count
    is < 5, else Pearson's chi-squared (:func:`scipy.stats.chi2_contingency`, Yates' correction
    when ``correction``, as R ``chisq.test`` and :mod:`hccrad.stats.baseline`); a continuous one
    by Welch's t-test when Shapiro-Wilk does not reject normality (P > ``normality_alpha``) in
    **both** classes, Mann-Whitney otherwise (always Mann-Whitney with fewer than 3 patients in
    a class). An undefined P (constant feature) counts as 1. If no feature passes, the
    ``k_fallback`` features with the smallest P are kept (ties: first column), and ``fallback_``
    is ``True``.

    Attributes:
        pvalues_: P per input feature.
        tests_: Test used per input feature (``ttest``, ``mannwhitney``, ``chi2``, ``fisher``).
        support_: Boolean mask of kept features.
    """

    def __init__(
        self,
        alpha: float = 0.05,
        test: Literal["auto", "ttest", "mannwhitney"] = "auto",
        normality_alpha: float = 0.05,
        k_fallback: int = 1,
        correction: bool = True,
    ) -> None:
        self.alpha = alpha
        self.test = test
        self.normality_alpha = normality_alpha
        self.k_fallback = k_fallback
        self.correction = correction

    def fit(self, X: Any, y: Any) -> UnivariateFilter:
        """Compute one P per feature on ``(X, y)`` and keep P < alpha."""
        if self.test not in ("auto", "ttest", "mannwhitney"):
            raise ValueError(f"test must be 'auto', 'ttest' or 'mannwhitney', got {self.test!r}")
        Xa, yb = self._fit_input(X, y)
        self.pvalues_, self.tests_ = _pvalues(
            Xa, yb, self.test, self.normality_alpha, bool(self.correction)
        )
        mask = self.pvalues_ < self.alpha
        self.fallback_ = not mask.any()
        if self.fallback_:
            k = max(1, min(int(self.k_fallback), Xa.shape[1]))
            mask[np.argsort(self.pvalues_, kind="stable")[:k]] = True
            log.info("UnivariateFilter: no P < %g; keeping the %d best feature(s)", self.alpha, k)
        self.support_ = mask
        return self


class CorrelationFilter(_Selector):
    """Drop redundant features: no kept pair has ``|r| > threshold``.

    Greedy in a deterministic order: features are visited by decreasing association with the
    label ``|AUC - 0.5|`` (ties: column order); a feature is kept unless its ``|r|`` with an
    already-kept feature exceeds ``threshold``. So, of every correlated pair, the member less
    associated with the label is the one dropped (unless its partner was itself dropped
    earlier). ``method="spearman"`` uses Pearson's r of the mid-ranks. A constant feature has
    ``r = 0`` with everything. At least one feature is always kept.

    Attributes:
        auc_: Univariate AUC per input feature.
        association_: ``|auc_ - 0.5|``.
        dropped_: ``{dropped feature: kept feature it correlated with}``.
        support_: Boolean mask of kept features.
    """

    def __init__(
        self, threshold: float = 0.9, method: Literal["pearson", "spearman"] = "pearson"
    ) -> None:
        self.threshold = threshold
        self.method = method

    def fit(self, X: Any, y: Any) -> CorrelationFilter:
        """Compute the correlation matrix and label association on ``(X, y)``, prune greedily."""
        if self.method not in ("pearson", "spearman"):
            raise ValueError(f"method must be 'pearson' or 'spearman', got {self.method!r}")
        Xa, yb = self._fit_input(X, y)
        data = stats.rankdata(Xa, axis=0) if self.method == "spearman" else Xa
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.abs(np.corrcoef(data, rowvar=False).reshape(Xa.shape[1], Xa.shape[1]))
        r = np.nan_to_num(r, nan=0.0)
        self.auc_ = univariate_auc(Xa, yb)
        self.association_ = np.abs(self.auc_ - 0.5)
        names = self._input_names()
        kept: list[int] = []
        self.dropped_: dict[str, str] = {}
        for i in np.argsort(-self.association_, kind="stable"):
            hits = [k for k in kept if r[i, k] > self.threshold]
            if hits:
                self.dropped_[str(names[i])] = str(names[hits[0]])
            else:
                kept.append(int(i))
        mask = np.zeros(Xa.shape[1], dtype=bool)
        mask[kept] = True
        self._set_support(mask, self.association_, f"|r| <= {self.threshold}")
        return self


def _folds(y: np.ndarray, cv: int, seed: int | None) -> StratifiedKFold:
    n_min = int(np.bincount(y).min())
    if n_min < 2:
        raise ValueError("cross-validation needs at least 2 patients of each class")
    return StratifiedKFold(n_splits=min(int(cv), n_min), shuffle=True, random_state=seed)


def _one_se_index(score: np.ndarray, sd: np.ndarray, n_folds: int) -> int:
    """glmnet's ``lambda.1se`` on a CV path ordered from the largest penalty (index 0) down:
    the first (most penalised) point whose mean score (higher is better) is within one standard
    error (``sd / sqrt(n_folds)`` at the best point) of the best."""
    score = np.where(np.isfinite(score), score, -np.inf)
    best = int(np.argmax(score))
    se = float(sd[best]) / np.sqrt(max(n_folds, 1)) if np.isfinite(sd[best]) else 0.0
    return int(np.flatnonzero(score >= score[best] - se)[0])


class LassoSelector(_Selector):
    """LASSO with the penalty chosen by stratified CV; keeps the features with a non-zero
    coefficient.

    ``kind="logistic"`` (default): L1-penalised logistic regression,
    ``LogisticRegressionCV(l1_ratios=(1.0,), solver=solver, scoring=scoring)``, ``C`` maximising
    the mean CV ``scoring`` (``"roc_auc"``; ``"neg_log_loss"`` = glmnet's binomial deviance). An
    integer ``Cs`` gives a glmnet-like path of ``Cs`` values log-spaced from
    ``c0 = l1_min_c(X, y)`` (the largest penalty, where every coefficient is 0) to
    ``c_ratio * c0``; a list is used as is.

    ``kind="linear"``: the least-squares Lasso of the 0/1 label
    (:class:`sklearn.linear_model.LassoCV`), ``lambda`` minimising the mean CV squared error.
    An integer ``Cs`` gives ``Cs`` values of ``lambda`` log-spaced from ``lambda_max =
    max |X_c' (y - mean y)| / n`` (every coefficient 0) down to ``lambda_max / c_ratio``
    (``Cs=100, c_ratio=1000`` is ``LassoCV``'s default path); a list gives ``C = 1 / lambda``.

    ``rule="min"`` (default) takes the penalty with the best mean CV score (glmnet's
    ``lambda.min``); ``rule="1se"`` the largest penalty whose mean CV score is within one
    standard error (over the folds) of the best (glmnet's ``lambda.1se``: a sparser model on
    few patients), refitted on all rows at that penalty.

    Both use ``StratifiedKFold(cv, shuffle=True, random_state=seed)`` and expect standardised
    inputs (the pipelines put a :class:`~sklearn.preprocessing.StandardScaler` first). The score
    :meth:`score` ``= X @ coef_ + intercept_`` is the log-odds (logistic) or the fitted 0/1
    regression value (linear). If every coefficient is zero, the feature with the largest
    ``|AUC - 0.5|`` is kept and ``coef_`` / ``intercept_`` come from an unpenalised fit of the
    same kind on that feature alone (``fallback_``).

    Attributes:
        estimator_: The fitted ``LogisticRegressionCV`` or ``LassoCV``.
        C_: The chosen inverse penalty (``1 / lambda`` for ``linear``).
        coef_: Coefficient per input feature (0 for dropped ones).
        intercept_: Intercept.
        support_: Boolean mask of kept features.
    """

    def __init__(
        self,
        cv: int = 5,
        seed: int | None = 0,
        Cs: int | Sequence[float] = 20,
        c_ratio: float = 100.0,
        solver: Literal["liblinear", "saga"] = "liblinear",
        max_iter: int = 5000,
        kind: Literal["logistic", "linear"] = "logistic",
        scoring: str = "roc_auc",
        rule: Literal["min", "1se"] = "min",
    ) -> None:
        self.cv = cv
        self.seed = seed
        self.Cs = Cs
        self.c_ratio = c_ratio
        self.solver = solver
        self.max_iter = max_iter
        self.kind = kind
        self.scoring = scoring
        self.rule = rule

    def _logistic(self, Xa: np.ndarray, yb: np.ndarray) -> tuple[Any, float]:
        if isinstance(self.Cs, int | np.integer):
            c_min = l1_min_c(Xa, yb, loss="log")
            Cs = c_min * np.logspace(0.0, np.log10(self.c_ratio), int(self.Cs))
        else:
            Cs = np.asarray(self.Cs, dtype=float)
        est = LogisticRegressionCV(
            Cs=Cs,
            l1_ratios=(1.0,),
            solver=self.solver,
            cv=_folds(yb, self.cv, self.seed),
            scoring=self.scoring,
            max_iter=self.max_iter,
            random_state=self.seed,
            use_legacy_attributes=False,
        ).fit(Xa, yb)
        if self.rule == "min":
            return est, float(est.C_), np.ravel(est.coef_), float(np.ravel(est.intercept_)[0])
        order = np.argsort(np.asarray(est.Cs_, dtype=float))  # largest penalty first
        folds = np.asarray(est.scores_, dtype=float)[:, 0, order]  # (fold, C)
        i = _one_se_index(folds.mean(axis=0), folds.std(axis=0, ddof=1), len(folds))
        c = float(np.asarray(est.Cs_, dtype=float)[order][i])
        refit = LogisticRegression(
            C=c, l1_ratio=1.0, solver=self.solver, max_iter=self.max_iter, random_state=self.seed
        ).fit(Xa, yb)
        return est, c, np.ravel(refit.coef_), float(np.ravel(refit.intercept_)[0])

    def _linear(self, Xa: np.ndarray, yb: np.ndarray) -> tuple[Any, float]:
        if isinstance(self.Cs, int | np.integer):
            yc = yb - yb.mean()
            lam_max = float(np.abs((Xa - Xa.mean(axis=0)).T @ yc).max()) / len(yb)
            lam_max = lam_max if lam_max > 0 else 1.0
            alphas = lam_max * np.logspace(0.0, -np.log10(self.c_ratio), int(self.Cs))
        else:
            alphas = 1.0 / np.asarray(self.Cs, dtype=float)
        folds = list(_folds(yb, self.cv, self.seed).split(Xa, yb))
        est = LassoCV(alphas=alphas, cv=folds, max_iter=self.max_iter)
        est.fit(Xa, yb.astype(float))
        if self.rule == "min":
            coef, intercept = np.ravel(est.coef_), float(np.ravel(est.intercept_)[0])
            return est, 1.0 / float(est.alpha_), coef, intercept
        # mse_path_: (alpha, fold), alphas_ descending; lower is better
        mse = np.asarray(est.mse_path_, dtype=float)
        i = _one_se_index(-mse.mean(axis=1), mse.std(axis=1, ddof=1), mse.shape[1])
        alpha = float(np.asarray(est.alphas_)[i])
        refit = Lasso(alpha=alpha, max_iter=self.max_iter).fit(Xa, yb.astype(float))
        return est, 1.0 / alpha, np.ravel(refit.coef_), float(np.ravel(refit.intercept_)[0])

    def fit(self, X: Any, y: Any) -> LassoSelector:
        """Fit the CV L1 path on ``(X, y)`` and keep the non-zero coefficients."""
        if self.kind not in ("logistic", "linear"):
            raise ValueError(f"kind must be 'logistic' or 'linear', got {self.kind!r}")
        if self.rule not in ("min", "1se"):
            raise ValueError(f"rule must be 'min' or '1se', got {self.rule!r}")
        Xa, yb = self._fit_input(X, y)
        fit = self._logistic if self.kind == "logistic" else self._linear
        self.estimator_, self.C_, coef, intercept = fit(Xa, yb)
        coef = np.asarray(coef, dtype=float)
        association = np.abs(univariate_auc(Xa, yb) - 0.5)
        self._set_support(coef != 0, association, f"L1 {self.kind}, C={self.C_:.4g}")
        if self.fallback_:
            j = int(np.flatnonzero(self.support_)[0])
            if self.kind == "logistic":
                single: Any = LogisticRegression(C=np.inf, max_iter=self.max_iter)
            else:
                single = LinearRegression()
            single.fit(Xa[:, [j]], yb)
            coef = np.zeros_like(coef)
            coef[j] = float(np.ravel(single.coef_)[0])
            intercept = float(np.ravel(single.intercept_)[0])
        self.coef_ = coef
        self.intercept_ = intercept
        return self

    def score(self, X: Any, y: Any = None) -> np.ndarray:
        """Score ``X @ coef_ + intercept_`` per row (log-odds for ``kind="logistic"``)."""
        check_is_fitted(self, "coef_")
        Xa = validate_data(self, X, reset=False, dtype=np.float64)
        return Xa @ self.coef_ + self.intercept_


class RFESelector(_Selector):
    """Recursive feature elimination with a linear SVM (:class:`sklearn.feature_selection.RFE`
    around ``LinearSVC(C=C)``), down to ``n_features`` (an int, or a fraction of the inputs in
    ``(0, 1)``), removing ``step`` features per round. Always keeps at least one feature.

    Attributes:
        rfe_: The fitted ``RFE``.
        ranking_: RFE ranking per input feature (1 = kept).
        support_: Boolean mask of kept features.
    """

    def __init__(
        self,
        n_features: int | float = 10,
        step: int | float = 1,
        C: float = 1.0,
        seed: int | None = 0,
        max_iter: int = 10000,
    ) -> None:
        self.n_features = n_features
        self.step = step
        self.C = C
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> RFESelector:
        """Run RFE on ``(X, y)``."""
        Xa, yb = self._fit_input(X, y)
        n_in = Xa.shape[1]
        if isinstance(self.n_features, float) and 0 < self.n_features < 1:
            n = round(self.n_features * n_in)
        else:
            n = int(self.n_features)
        n = max(1, min(n, n_in))
        svm = LinearSVC(C=self.C, random_state=self.seed, max_iter=self.max_iter)
        self.rfe_ = RFE(svm, n_features_to_select=n, step=self.step).fit(Xa, yb)
        self.ranking_ = self.rfe_.ranking_
        self._set_support(self.rfe_.support_, -self.ranking_.astype(float), f"RFE to {n}")
        return self


def _column_groups(
    names: Sequence[str], pattern: str | None
) -> tuple[dict[str, list[int]], list[int]]:
    """Column positions per group (in order of first appearance) and the unmatched positions."""
    if pattern is None:
        return {"": list(range(len(names)))}, []
    regex = re.compile(pattern)
    groups: dict[str, list[int]] = {}
    rest: list[int] = []
    for i, name in enumerate(names):
        m = regex.search(str(name))
        if m is None:
            rest.append(i)
        else:
            groups.setdefault(m.group(1) if regex.groups else m.group(0), []).append(i)
    return groups, rest


class GroupedPCA(TransformerMixin, BaseEstimator):
    """One PCA per column group, fitted on the rows passed to ``fit`` only (CV-safe in a
    pipeline); the groups' components side by side, then the unmatched columns unchanged.

    A column's group is the first capture group (else the whole match) of ``re.search(groups,
    name)``; ``groups=None`` makes every column one group. Each group gets
    ``PCA(n_components=k, svd_solver=svd_solver)`` (centred, not scaled; ``standardize`` z-scores
    the group's columns first), with an integer ``k`` clipped to ``min(k, n_rows - 1,
    n_columns)`` (at least 1): beyond ``n_rows - 1`` the components of centred data carry no
    variance (the clip is logged and kept in ``clipped_``). A float ``k`` in (0, 1) is a variance
    fraction (scikit-learn's). Output columns are ``{group}_pc{m}`` (``m`` from 1; ``pc{m}``
    without groups), followed by the unmatched columns.

    Attributes:
        groups_: Input column positions per group.
        passthrough_: Positions of the unmatched columns.
        pcas_: Fitted ``PCA`` per group (after its ``StandardScaler`` when ``standardize``).
        n_components_: Components kept per group.
        clipped_: ``{group: (requested, kept)}`` for the groups whose ``k`` was clipped.
    """

    def __init__(
        self,
        n_components: int | float = 200,
        groups: str | None = None,
        standardize: bool = False,
        svd_solver: str = "full",
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.groups = groups
        self.standardize = standardize
        self.svd_solver = svd_solver
        self.random_state = random_state

    def _k(self, group: str, n_rows: int, n_cols: int) -> int | float:
        k = self.n_components
        if isinstance(k, float) and 0 < k < 1:
            return k
        kept = max(1, min(int(k), n_rows - 1, n_cols))
        if kept != int(k):
            self.clipped_[group] = (int(k), kept)
            log.info("GroupedPCA: group %r keeps %d of %d components", group, kept, int(k))
        return kept

    def fit(self, X: Any, y: Any = None) -> GroupedPCA:
        """Fit one PCA per group on ``X`` (``y`` is ignored)."""
        Xa = validate_data(self, X, reset=True, dtype=np.float64)
        names = getattr(self, "feature_names_in_", None)
        names = [f"x{i}" for i in range(Xa.shape[1])] if names is None else list(names)
        self.groups_, self.passthrough_ = _column_groups(names, self.groups)
        if not self.groups_:
            raise ValueError(f"GroupedPCA: no column matches {self.groups!r}")
        self.clipped_: dict[str, tuple[int, int]] = {}
        self.pcas_: dict[str, Any] = {}
        for g, idx in self.groups_.items():
            pca = PCA(
                n_components=self._k(g, Xa.shape[0], len(idx)),
                svd_solver=self.svd_solver,
                random_state=self.random_state,
            )
            est = make_pipeline(StandardScaler(), pca) if self.standardize else pca
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                self.pcas_[g] = est.fit(Xa[:, idx])
        self.n_components_ = {g: int(_pca_of(e).n_components_) for g, e in self.pcas_.items()}
        names_in = np.asarray(names, dtype=object)
        self._names_out = np.asarray(
            [
                f"{g}_pc{m}" if g else f"pc{m}"
                for g, k in self.n_components_.items()
                for m in range(1, k + 1)
            ]
            + list(names_in[self.passthrough_]),
            dtype=object,
        )
        return self

    def transform(self, X: Any) -> Any:
        """The groups' components then the unmatched columns (no refit); DataFrame in, out."""
        check_is_fitted(self, "pcas_")
        Xa = validate_data(self, X, reset=False, dtype=np.float64)
        with np.errstate(all="ignore"):
            parts = [e.transform(Xa[:, self.groups_[g]]) for g, e in self.pcas_.items()]
        out = np.hstack([*parts, Xa[:, self.passthrough_]])
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=list(self._names_out))
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``{group}_pc{m}`` per kept component, then the unmatched input names."""
        check_is_fitted(self, "pcas_")
        return self._names_out.copy()


def _pca_of(est: Any) -> PCA:
    return est[-1] if hasattr(est, "steps") else est


def _read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    p = Path(path)
    if p.suffix == ".parquet":
        table = pd.read_parquet(p)
    else:
        table = pd.read_csv(p, sep="\t" if p.suffix in (".tsv", ".txt") else ",")
    if "feature" in table.columns:
        table = table.set_index("feature")
    return table


def make_step(spec: Mapping[str, Any], seed: int | None = 0) -> tuple[str, BaseEstimator]:
    """Build one selection step from a declarative spec ``{"step": name, **kwargs}``.

    Names (:data:`STEP_NAMES`): ``icc`` (:class:`ICCFilter`; ``icc_table`` and ``intra_table``
    may be paths to CSV/TSV/parquet tables), ``univariate``, ``correlation``, ``lasso``, ``rfe``,
    ``pca`` (:class:`sklearn.decomposition.PCA`, default ``n_components=0.95`` of the variance;
    with a ``groups`` key one PCA per column group, :class:`GroupedPCA`) and ``scaler``
    (:class:`~sklearn.preprocessing.StandardScaler`: the pipeline's z-score at this place in
    the chain instead of first, :func:`hccrad.stats.models.build_pipeline`). The ``seed`` is
    passed to ``lasso``, ``rfe`` (``seed``) and ``pca`` (``random_state``) unless the spec sets
    it.

    Returns:
        ``(name, transformer)``.
    """
    kwargs = dict(spec)
    name = kwargs.pop("step", None)
    if name not in STEP_NAMES:
        raise ValueError(f"unknown selection step {name!r}; expected one of {STEP_NAMES}")
    if name == "icc":
        for key in ("icc_table", "intra_table"):
            table = kwargs.get(key)
            if isinstance(table, str | os.PathLike):
                kwargs[key] = _read_table(table)
        return name, ICCFilter(**kwargs)
    if name == "univariate":
        return name, UnivariateFilter(**kwargs)
    if name == "correlation":
        return name, CorrelationFilter(**kwargs)
    if name == "lasso":
        kwargs.setdefault("seed", seed)
        return name, LassoSelector(**kwargs)
    if name == "rfe":
        kwargs.setdefault("seed", seed)
        return name, RFESelector(**kwargs)
    if name == "scaler":
        return name, StandardScaler(**kwargs)
    kwargs.setdefault("random_state", seed)
    if "groups" in kwargs:
        if kwargs["groups"] is not None:
            try:
                re.compile(kwargs["groups"])
            except (re.error, TypeError) as err:
                raise ValueError(f"pca groups {kwargs['groups']!r}: {err}") from err
        return name, GroupedPCA(**kwargs)
    kwargs.setdefault("n_components", 0.95)
    return name, PCA(**kwargs)


__all__ = [
    "STEP_NAMES",
    "CorrelationFilter",
    "GroupedPCA",
    "ICCFilter",
    "LassoSelector",
    "RFESelector",
    "UnivariateFilter",
    "binary_labels",
    "make_step",
    "univariate_auc",
]
