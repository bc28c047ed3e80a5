"""Intraclass correlation coefficients for reader reproducibility (Shrout & Fleiss 1979).

The data are an ``n targets x k raters`` matrix ``X`` (rows = patients/targets, columns =
readers/judges). With the grand mean ``m``, row means ``r_i`` and column means ``c_j``:

* ``SSR = k * sum_i (r_i - m)^2``, ``MSR = SSR / (n - 1)``  (between targets)
* ``SSC = n * sum_j (c_j - m)^2``, ``MSC = SSC / (k - 1)``  (between raters)
* ``SST = sum_ij (x_ij - m)^2``
* ``SSE = SST - SSR - SSC``, ``MSE = SSE / ((n - 1)(k - 1))``  (residual, two-way)
* ``SSW = SST - SSR``, ``MSW = SSW / (n (k - 1))``  (within targets, one-way)

and the six coefficients

* ICC(1,1) = (MSR - MSW) / (MSR + (k - 1) MSW)  -- one-way random, single rater
* ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)  -- two-way random,
  absolute agreement, single rater
* ICC(3,1) = (MSR - MSE) / (MSR + (k - 1) MSE)  -- two-way mixed, consistency, single rater
* ICC(1,k) = (MSR - MSW) / MSR
* ICC(2,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)
* ICC(3,k) = (MSR - MSE) / MSR  -- the ``k`` forms are for the mean of the k raters.

Undefined cases: when every value is identical (a constant feature) all mean squares are 0 and
every ICC is 0/0; it is returned as NaN (not 0 nor 1), and :func:`feature_icc` reports it as NaN
so a reproducibility filter ``ICC > 0.9`` drops the feature. Targets with a missing value are
dropped (listwise deletion) before the ANOVA.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from hccrad.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

#: The six coefficient names, as used in :class:`ICCResult` and accepted by :func:`icc`.
KINDS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)")

_ALIASES = {
    "icc1": "ICC(1,1)",
    "icc2": "ICC(2,1)",
    "icc3": "ICC(3,1)",
    "icc1k": "ICC(1,k)",
    "icc2k": "ICC(2,k)",
    "icc3k": "ICC(3,k)",
}


@dataclass(frozen=True)
class ICCResult:
    """All six ICCs of one ``n x k`` matrix with the ANOVA behind them.

    Attributes:
        icc1_1: ICC(1,1), one-way random, single rater.
        icc2_1: ICC(2,1), two-way random, absolute agreement, single rater.
        icc3_1: ICC(3,1), two-way mixed, consistency, single rater.
        icc1_k: ICC(1,k), mean of k raters.
        icc2_k: ICC(2,k).
        icc3_k: ICC(3,k).
        msr: Between-targets mean square.
        msc: Between-raters mean square.
        mse: Residual (two-way) mean square.
        msw: Within-targets (one-way) mean square.
        n: Number of targets used (complete rows).
        k: Number of raters.
    """

    icc1_1: float
    icc2_1: float
    icc3_1: float
    icc1_k: float
    icc2_k: float
    icc3_k: float
    msr: float
    msc: float
    mse: float
    msw: float
    n: int
    k: int

    def as_dict(self) -> dict[str, float | int]:
        """The result as a flat dict (field names as keys)."""
        return asdict(self)

    def __getitem__(self, kind: str) -> float:
        """Coefficient by name, e.g. ``result["ICC(2,1)"]`` or ``result["icc2"]``."""
        name = _normalize_kind(kind)
        field = {
            "ICC(1,1)": "icc1_1",
            "ICC(2,1)": "icc2_1",
            "ICC(3,1)": "icc3_1",
            "ICC(1,k)": "icc1_k",
            "ICC(2,k)": "icc2_k",
            "ICC(3,k)": "icc3_k",
        }[name]
        return getattr(self, field)


def _normalize_kind(kind: str) -> str:
    key = kind.strip()
    if key in KINDS:
        return key
    compact = key.lower().replace("(", "").replace(")", "").replace(",", "").replace(" ", "")
    compact = compact.replace("_", "")
    if not compact.startswith("icc"):
        compact = "icc" + compact
    if compact.endswith("1") and len(compact) == 5:  # icc21 -> icc2
        compact = compact[:4]
    if compact in _ALIASES:
        return _ALIASES[compact]
    raise ValueError(f"unknown ICC kind {kind!r}; use one of {KINDS}")


def _as_matrix(data: pd.DataFrame | np.ndarray) -> np.ndarray:
    # a DataFrame by duck typing: this module imports pandas only in feature_icc, where it
    # builds its table, so the per-patient extraction job (which imports it) stays without pandas
    to_numpy = getattr(data, "to_numpy", None)
    X = to_numpy(dtype=float) if callable(to_numpy) else np.asarray(data, float)
    if X.ndim != 2:
        raise InputError(f"ICC needs an n targets x k raters matrix, got shape {X.shape}")
    complete = ~np.isnan(X).any(axis=1)
    if not complete.all():
        log.debug("ICC: dropping %d targets with missing values", int((~complete).sum()))
        X = X[complete]
    return X


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0 else float("nan")


def icc_anova(data: pd.DataFrame | np.ndarray) -> ICCResult:
    """All six Shrout & Fleiss ICCs and the ANOVA mean squares.

    Args:
        data: ``n targets x k raters`` values (a DataFrame's rows are targets, columns raters).
            Rows with any missing value are dropped.

    Returns:
        The :class:`ICCResult`. Coefficients are NaN when undefined: fewer than 2 complete
        targets, fewer than 2 raters, or no variation at all (constant values).

    Raises:
        InputError: When ``data`` is not 2-dimensional.
    """
    X = _as_matrix(data)
    n, k = X.shape
    nan = float("nan")
    if n < 2 or k < 2:
        return ICCResult(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, n, k)
    m = X.mean()
    sst = float(((X - m) ** 2).sum())
    ssr = float(k * ((X.mean(axis=1) - m) ** 2).sum())
    ssc = float(n * ((X.mean(axis=0) - m) ** 2).sum())
    sse = max(sst - ssr - ssc, 0.0)
    ssw = max(sst - ssr, 0.0)
    msr = ssr / (n - 1)
    msc = ssc / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    msw = ssw / (n * (k - 1))
    if sst == 0.0 or np.ptp(X) == 0.0:  # constant: every ICC is 0/0
        return ICCResult(nan, nan, nan, nan, nan, nan, msr, msc, mse, msw, n, k)
    return ICCResult(
        icc1_1=_ratio(msr - msw, msr + (k - 1) * msw),
        icc2_1=_ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        icc3_1=_ratio(msr - mse, msr + (k - 1) * mse),
        icc1_k=_ratio(msr - msw, msr),
        icc2_k=_ratio(msr - mse, msr + (msc - mse) / n),
        icc3_k=_ratio(msr - mse, msr),
        msr=msr,
        msc=msc,
        mse=mse,
        msw=msw,
        n=n,
        k=k,
    )


def icc(data: pd.DataFrame | np.ndarray, kind: str = "ICC(2,1)") -> float:
    """One intraclass correlation coefficient of an ``n targets x k raters`` matrix.

    Args:
        data: Values, rows = targets (patients), columns = raters (readers).
        kind: ``"ICC(1,1)"``, ``"ICC(2,1)"`` (default; two-way random, absolute agreement),
            ``"ICC(3,1)"`` (two-way mixed, consistency), ``"ICC(1,k)"``, ``"ICC(2,k)"``,
            ``"ICC(3,k)"``; pingouin-style aliases ``"ICC1"``, ``"ICC2"``, ``"ICC3k"``... work too.

    Returns:
        The coefficient; NaN when undefined (see :func:`icc_anova`).

    Raises:
        ValueError: Unknown ``kind``.
        InputError: ``data`` is not 2-dimensional.
    """
    return icc_anova(data)[kind]


def feature_icc(reader1: pd.DataFrame, reader2: pd.DataFrame) -> pd.DataFrame:
    """Per-feature inter-reader ICC from two readers' feature tables.

    Args:
        reader1: Rows = patients, columns = features, from the first reader's masks.
        reader2: The same from the second reader's masks. The tables are aligned by index and
            columns; only patients and features present in both are used (the others are
            logged). Per feature, patients with a missing value in either table are dropped.

    Returns:
        DataFrame indexed by feature (index name ``feature``, in ``reader1``'s column order) with
        columns ``icc2_1`` (absolute agreement), ``icc3_1`` (consistency) and ``n`` (patients
        used). ICC is NaN for a feature that is constant over both readers (0/0, undefined) or
        has fewer than 2 complete patients.

    Raises:
        InputError: When the tables share no patient or no feature.
    """
    patients = reader1.index.intersection(reader2.index, sort=False)
    features = reader1.columns.intersection(reader2.columns, sort=False)
    if len(patients) == 0 or len(features) == 0:
        raise InputError(
            f"the two readers' tables share {len(patients)} patients and {len(features)} features"
        )
    dropped_p = len(reader1.index.union(reader2.index)) - len(patients)
    dropped_f = len(reader1.columns.union(reader2.columns)) - len(features)
    if dropped_p or dropped_f:
        log.warning(
            "feature_icc: using %d common patients and %d common features (%d patients and %d "
            "features are in one table only)",
            len(patients),
            len(features),
            dropped_p,
            dropped_f,
        )
    a = reader1.loc[patients, features].to_numpy(dtype=float)
    b = reader2.loc[patients, features].to_numpy(dtype=float)
    rows = []
    for j in range(len(features)):
        res = icc_anova(np.column_stack([a[:, j], b[:, j]]))
        rows.append((res.icc2_1, res.icc3_1, res.n))
    import pandas as pd

    out = pd.DataFrame(
        rows, index=pd.Index(features, name="feature"), columns=["icc2_1", "icc3_1", "n"]
    )
    n_nan = int(out["icc2_1"].isna().sum())
    if n_nan:
        log.info("feature_icc: %d of %d features have an undefined ICC (NaN)", n_nan, len(out))
    return out
