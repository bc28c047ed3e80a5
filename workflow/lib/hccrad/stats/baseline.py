"""Baseline characteristics table ("Table 1") with group comparisons.

Rules (per variable, missing values excluded and counted in ``missing``):

* Continuous variables are summarized as ``mean ± SD`` when they look normal: the Shapiro-Wilk
  test has ``p >= normal_alpha`` in *every* group (each group needs >= 3 values). They are then
  compared, with ``variance_test="none"`` (default), by Welch's t-test (2 groups) or one-way
  ANOVA (> 2 groups); with ``variance_test="bartlett"``, Bartlett's test of equal variances
  decides: ``p >= variance_alpha`` -> Student's t-test / one-way ANOVA, else Welch's t-test /
  Welch's ANOVA (R ``oneway.test(var.equal = FALSE)``). Otherwise - or when the
  variable is listed in ``nonnormal`` - as ``median [Q1, Q3]`` (linear quantiles, R type 7) with
  the Mann-Whitney U test (2 groups; scipy's ``method="auto"``: exact for small samples without
  ties, else normal approximation with continuity correction, as R ``wilcox.test``) or
  Kruskal-Wallis (> 2 groups).
* Categorical variables are shown as ``n (%)`` per level (percentage of the group's
  non-missing values) and compared by Pearson's chi-squared test (with Yates' continuity
  correction for 2x2 tables, as R ``chisq.test``), or by Fisher's exact test when the table is
  2x2 and any expected count is < 5. Larger tables with small expected counts keep the
  chi-squared test (flagged in ``test`` as ``"chi-squared (expected < 5)"``).
* A variable is categorical when listed in ``categorical`` or when its dtype is not numeric
  (object, category, bool, string); numeric codes (e.g. 0/1, BCLC as 0-4) must be listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.errors import InputError

__all__ = ["VARIANCE_TESTS", "baseline_table", "welch_anova"]

#: Result columns a group label must not shadow.
_RESERVED = frozenset({"overall", "variable", "level", "p", "test", "missing"})
#: How normal variables' variances are treated: ``none`` = Welch t / ANOVA, ``bartlett`` =
#: Bartlett's test picks the equal- or unequal-variance test.
VARIANCE_TESTS = ("none", "bartlett")


def _is_categorical(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series)


def _normal(samples: list[np.ndarray], alpha: float) -> bool:
    for s in samples:
        if s.size < 3 or np.ptp(s) == 0:
            return False
        if stats.shapiro(s[:5000]).pvalue < alpha:
            return False
    return True


def welch_anova(*samples: np.ndarray) -> tuple[float, float, float, float]:
    """Welch's one-way ANOVA (unequal variances; R ``oneway.test(var.equal = FALSE)``):
    ``(F, df1, df2, p)``. Each sample needs >= 2 values and a positive variance."""
    n = np.array([s.size for s in samples], dtype=float)
    m = np.array([s.mean() for s in samples])
    w = n / np.array([s.var(ddof=1) for s in samples])
    k = len(samples)
    grand = np.sum(w * m) / w.sum()
    a = np.sum(w * (m - grand) ** 2) / (k - 1)
    h = np.sum((1.0 - w / w.sum()) ** 2 / (n - 1))
    f = a / (1.0 + 2.0 * (k - 2) * h / (k**2 - 1))
    df2 = (k**2 - 1) / (3.0 * h)
    return float(f), float(k - 1), float(df2), float(stats.f.sf(f, k - 1, df2))


def _normal_p(usable: list[np.ndarray], variance_test: str, alpha: float) -> tuple[float, str]:
    """The test of normal samples: Welch t / ANOVA, or Bartlett's choice (module docstring)."""
    equal = variance_test == "bartlett" and stats.bartlett(*usable).pvalue >= alpha
    if len(usable) == 2:
        res = stats.ttest_ind(*usable, equal_var=equal)
        return float(res.pvalue), "Student t-test" if equal else "Welch t-test"
    if variance_test == "bartlett" and not equal:
        return welch_anova(*usable)[3], "Welch ANOVA"
    return float(stats.f_oneway(*usable).pvalue), "ANOVA"


def _continuous_p(
    samples: list[np.ndarray], normal: bool, variance_test: str = "none", alpha: float = 0.05
) -> tuple[float, str]:
    usable = [s for s in samples if s.size > 0]
    if len(usable) < 2:
        return float("nan"), ""
    if normal:
        return _normal_p(usable, variance_test, alpha)
    if np.ptp(np.concatenate(usable)) == 0:
        return float("nan"), ""
    if len(usable) == 2:
        res = stats.mannwhitneyu(*usable, alternative="two-sided", method="auto")
        return float(res.pvalue), "Mann-Whitney U"
    return float(stats.kruskal(*usable).pvalue), "Kruskal-Wallis"


def _categorical_p(table: np.ndarray) -> tuple[float, str]:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return float("nan"), ""
    expected = stats.contingency.expected_freq(table)
    if table.shape == (2, 2) and (expected < 5).any():
        return float(stats.fisher_exact(table).pvalue), "Fisher exact"
    res = stats.chi2_contingency(table, correction=True)
    name = "chi-squared" if not (expected < 5).any() else "chi-squared (expected < 5)"
    return float(res.pvalue), name


def baseline_table(
    df: pd.DataFrame,
    group_col: str,
    variables: Sequence[str],
    categorical: Sequence[str] | None = None,
    nonnormal: Sequence[str] | None = None,
    normal_alpha: float = 0.05,
    digits: int = 1,
    overall: bool = True,
    variance_test: Literal["none", "bartlett"] = "none",
    variance_alpha: float = 0.05,
) -> pd.DataFrame:
    """Baseline table of ``variables`` by ``group_col`` (see the module docstring for the rules).

    Args:
        df: One row per subject.
        group_col: Grouping column (e.g. training/validation, or outcome); rows with a missing
            group are dropped. Groups appear in sorted order.
        variables: Variables to summarize, in row order.
        categorical: Numeric variables to treat as categorical (non-numeric ones always are).
        nonnormal: Continuous variables always shown as median [IQR] with a rank test.
        normal_alpha: Shapiro-Wilk level for the normality decision.
        digits: Decimals of means, SDs, medians, quartiles and percentages.
        overall: Add an ``overall`` column (all subjects).
        variance_test: ``none``: normal variables by Welch's t-test / one-way ANOVA;
            ``bartlett``: Bartlett's test (level ``variance_alpha``) picks Student's t-test /
            ANOVA (equal variances) or Welch's t-test / Welch's ANOVA.
        variance_alpha: Bartlett level for the equal-variance decision.

    Returns:
        DataFrame ``variable, level, [overall,] <one column per group>, p, test, missing``. The
        first row (``variable = "n"``) gives the group sizes. A categorical variable has a
        header row (``level = ""``, carrying ``p``) followed by one row per level.

    Raises:
        InputError: Unknown column, fewer than 2 groups or an unknown ``variance_test``.
    """
    if variance_test not in VARIANCE_TESTS:
        raise InputError(f"variance_test must be one of {VARIANCE_TESTS}, got {variance_test!r}")
    data, groups = _grouped_rows(df, group_col, variables)
    names = [str(g) for g in groups]
    cat_set = set(categorical or ())
    nonnormal_set = set(nonnormal or ())
    value_cols = (["overall"] if overall else []) + names
    masks = [data[group_col] == g for g in groups]
    sizes = ([str(len(data))] if overall else []) + [str(int(m.sum())) for m in masks]
    rows = [_row(value_cols, "n", "", sizes, float("nan"), "", 0)]
    for var in variables:
        col = data[var]
        if var in cat_set or _is_categorical(col):
            rows += _categorical_rows(var, col, masks, value_cols, overall, digits)
        else:
            alpha = None if var in nonnormal_set else normal_alpha
            test = (variance_test, variance_alpha)
            rows.append(_continuous_row(var, col, masks, value_cols, overall, digits, alpha, test))
    return pd.DataFrame(rows, columns=["variable", "level", *value_cols, "p", "test", "missing"])


def _grouped_rows(
    df: pd.DataFrame, group_col: str, variables: Sequence[str]
) -> tuple[pd.DataFrame, list]:
    """The rows with a group and the sorted groups; InputError for unknown columns, fewer than
    2 groups or group labels that clash as column names."""
    cols = [group_col, *variables]
    missing_cols = [c for c in cols if c not in df.columns]
    if missing_cols:
        raise InputError(f"columns not in the table: {missing_cols}")
    data = df[df[group_col].notna()]
    groups = sorted(data[group_col].unique().tolist())
    if len(groups) < 2:
        raise InputError(f"need at least 2 groups in {group_col!r}, got {groups}")
    names = [str(g) for g in groups]
    if len(set(names)) < len(names) or _RESERVED & set(names):
        raise InputError(f"group labels {names} are ambiguous as column names")
    return data, groups


def _row(
    value_cols: list[str],
    variable: str,
    level: str,
    cells: list[str],
    p: float,
    test: str,
    miss: int,
) -> dict:
    """One result row: ``variable, level``, the value cells, ``p, test, missing``."""
    out: dict = {"variable": variable, "level": level}
    out.update(dict(zip(value_cols, cells, strict=True)))
    out.update({"p": p, "test": test, "missing": miss})
    return out


def _categorical_rows(
    var: str,
    col: pd.Series,
    masks: list[pd.Series],
    value_cols: list[str],
    overall: bool,
    d: int,
) -> list[dict]:
    """Header row (with the test) and one ``n (%)`` row per level of a categorical variable."""
    miss = int(col.isna().sum())
    levels = sorted(col.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    parts = ([col] if overall else []) + [col[m] for m in masks]
    counts = np.array([[int((s == lev).sum()) for s in parts] for lev in levels])
    denom = np.array([int(s.notna().sum()) for s in parts])
    group_table = counts[:, 1:] if overall else counts
    p, test = _categorical_p(group_table)
    rows = [_row(value_cols, var, "", [""] * len(value_cols), p, test, miss)]
    for lev, cnt in zip(levels, counts, strict=True):
        cells = [
            f"{c} ({100.0 * c / n:.{d}f}%)" if n else f"{c} (-)"
            for c, n in zip(cnt, denom, strict=True)
        ]
        rows.append(_row(value_cols, var, str(lev), cells, float("nan"), "", 0))
    return rows


def _continuous_row(
    var: str,
    col: pd.Series,
    masks: list[pd.Series],
    value_cols: list[str],
    overall: bool,
    d: int,
    normal_alpha: float | None,
    variance: tuple[str, float] = ("none", 0.05),
) -> dict:
    """``mean ± SD`` (normal in every group at ``normal_alpha``) or ``median [IQR]`` (always
    when ``normal_alpha`` is ``None``) row of a continuous variable, with its test
    (``variance``: the variance test and its level, see :func:`baseline_table`)."""
    miss = int(col.isna().sum())
    samples = [col[m].dropna().to_numpy(dtype=float) for m in masks]
    allv = col.dropna().to_numpy(dtype=float)
    normal = normal_alpha is not None and _normal(samples, normal_alpha)
    p, test = _continuous_p(samples, normal, *variance)
    cells = ([_summary(allv, normal, d)] if overall else []) + [
        _summary(s, normal, d) for s in samples
    ]
    label = "mean ± SD" if normal else "median [IQR]"
    return _row(value_cols, var, label, cells, p, test, miss)


def _summary(v: np.ndarray, normal: bool, d: int) -> str:
    """``mean ± SD`` or ``median [Q1, Q3]`` of ``v`` with ``d`` decimals (``-`` when empty)."""
    if v.size == 0:
        return "-"
    if normal:
        sd = v.std(ddof=1) if v.size > 1 else float("nan")
        return f"{v.mean():.{d}f} ± {sd:.{d}f}"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.{d}f} [{q1:.{d}f}, {q3:.{d}f}]"
