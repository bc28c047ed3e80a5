"""Inter-reader agreement: the six Shrout & Fleiss ICCs by their short names, and Cohen's kappa.

* :func:`icc`: a thin adapter over :func:`hccrad.icc.icc_anova` (whose definitions and NaN
  rules apply unchanged): ``ICC1 = ICC(1,1)``, ``ICC2 = ICC(2,1)``, ``ICC3 = ICC(3,1)``,
  ``ICC1k = ICC(1,k)``, ``ICC2k = ICC(2,k)``, ``ICC3k = ICC(3,k)`` (pingouin's naming).
* :func:`cohen_kappa`: Cohen's (unweighted) kappa of two readers' categorical scores, with the
  large-sample standard errors of Fleiss, Cohen & Everitt (1969) for its confidence interval
  and for the test of kappa = 0 (SAS PROC FREQ ``AGREE``, statsmodels ``cohens_kappa``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from hccrad.icc import icc_anova

__all__ = ["ICC_NAMES", "KappaResult", "cohen_kappa", "icc"]

#: Short name -> :class:`hccrad.icc.ICCResult` field.
ICC_NAMES = {
    "ICC1": "icc1_1",
    "ICC2": "icc2_1",
    "ICC3": "icc3_1",
    "ICC1k": "icc1_k",
    "ICC2k": "icc2_k",
    "ICC3k": "icc3_k",
}


def icc(data: pd.DataFrame | np.ndarray) -> dict[str, float]:
    """All six ICCs of a ``targets x raters`` matrix, keyed ``ICC1, ICC2, ICC3, ICC1k, ICC2k,
    ICC3k`` (rows with a missing value are dropped; NaN when undefined, see :mod:`hccrad.icc`).
    """
    res = icc_anova(data)
    return {name: float(getattr(res, field)) for name, field in ICC_NAMES.items()}


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa of two readers (see :func:`cohen_kappa`).

    Attributes:
        n: Subjects scored by both readers.
        categories: Categories seen (either reader).
        observed: Observed agreement ``p_o``.
        expected: Chance agreement ``p_e`` from the two readers' marginals.
        kappa: ``(p_o - p_e) / (1 - p_e)``.
        se: Large-sample standard error of kappa (for the confidence interval).
        se0: Standard error under kappa = 0 (for the test).
        lower, upper: Wald confidence interval ``kappa -/+ z se`` at ``level``.
        z: ``kappa / se0``.
        p: Two-sided P of the test of kappa = 0.
        note: Why the result is NaN ('' otherwise).
    """

    n: int
    categories: int
    observed: float
    expected: float
    kappa: float
    se: float
    se0: float
    lower: float
    upper: float
    z: float
    p: float
    note: str = ""

    def as_row(self) -> dict[str, Any]:
        """The fields as a dict (a table row)."""
        return asdict(self)


def _nan_result(n: int, k: int, observed: float, expected: float, note: str) -> KappaResult:
    nan = float("nan")
    return KappaResult(n, k, observed, expected, nan, nan, nan, nan, nan, nan, nan, note)


def cohen_kappa(
    reader1: Sequence[Any] | np.ndarray | pd.Series,
    reader2: Sequence[Any] | np.ndarray | pd.Series,
    *,
    level: float = 0.95,
) -> KappaResult:
    """Cohen's kappa of two readers' scores of the same subjects (Cohen 1960).

    With ``p_ij`` the proportion of subjects put in category ``i`` by reader 1 and ``j`` by
    reader 2, ``p_i.`` and ``p_.j`` the marginals, ``p_o = sum_i p_ii`` and
    ``p_e = sum_i p_i. p_.i``: ``kappa = (p_o - p_e) / (1 - p_e)``. Standard errors (Fleiss,
    Cohen & Everitt 1969, Psychol Bull 72:323)::

        se^2  = [sum_i p_ii (1 - (p_i. + p_.i)(1 - kappa))^2
                 + (1 - kappa)^2 sum_{i != j} p_ij (p_.i + p_j.)^2
                 - (kappa - p_e (1 - kappa))^2] / (n (1 - p_e)^2)
        se0^2 = [p_e + p_e^2 - sum_i p_i. p_.i (p_i. + p_.i)] / (n (1 - p_e)^2)

    the interval ``kappa -/+ z_{1-(1-level)/2} se`` and the two-sided test of kappa = 0 by
    ``z = kappa / se0`` (as SAS PROC FREQ and statsmodels ``cohens_kappa``; scikit-learn's
    ``cohen_kappa_score`` gives the same kappa).

    Args:
        reader1, reader2: One score per subject, same order and length; pairs with a missing
            value (None / NaN) are dropped. Categories are compared as given (0/1, strings...).
        level: Confidence level of the interval.

    Returns:
        :class:`KappaResult`; kappa and its statistics are NaN with a ``note`` when no subject
        is scored by both readers or chance agreement is 1 (both readers used one and the
        same category for everyone).

    Raises:
        ValueError: The two readers' lengths differ, or ``level`` is not in (0, 1).
    """
    a = pd.Series(list(reader1), dtype=object)
    b = pd.Series(list(reader2), dtype=object)
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: readers of different lengths ({len(a)}, {len(b)})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"cohen_kappa: level must be in (0, 1), not {level}")
    both = a.notna() & b.notna()
    a, b = a[both], b[both]
    n = len(a)
    if n == 0:
        return _nan_result(0, 0, float("nan"), float("nan"), "no subject scored by both readers")
    cats = sorted(set(a) | set(b), key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    table = np.zeros((k, k))
    np.add.at(table, (a.map(index).to_numpy(int), b.map(index).to_numpy(int)), 1.0)
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    p_o = float(np.trace(p))
    p_e = float(rows @ cols)
    if p_e >= 1.0 - 1e-12:
        return _nan_result(n, k, p_o, p_e, "chance agreement is 1 (one category only)")
    kappa = (p_o - p_e) / (1.0 - p_e)
    diag = np.diag(p)
    term_a = float(np.sum(diag * (1.0 - (rows + cols) * (1.0 - kappa)) ** 2))
    off = p.copy()
    np.fill_diagonal(off, 0.0)
    # p_ij (p_.i + p_j.)^2: column marginal of the row's category, row marginal of the column's
    weights = (cols[:, None] + rows[None, :]) ** 2
    term_b = (1.0 - kappa) ** 2 * float(np.sum(off * weights))
    term_c = (kappa - p_e * (1.0 - kappa)) ** 2
    denom = n * (1.0 - p_e) ** 2
    se = math.sqrt(max(term_a + term_b - term_c, 0.0) / denom)
    se0 = math.sqrt(max(p_e + p_e**2 - float(np.sum(rows * cols * (rows + cols))), 0.0) / denom)
    q = float(norm.ppf(0.5 + level / 2.0))
    z = kappa / se0 if se0 > 0 else float("nan")
    pval = float(2.0 * norm.sf(abs(z))) if math.isfinite(z) else float("nan")
    return KappaResult(n, k, p_o, p_e, kappa, se, se0, kappa - q * se, kappa + q * se, z, pval)
