"""Reader reproducibility summary of the radiomics features (inter- and intra-reader ICC).

``results/cohort/radiomics/reader_icc.parquet`` holds one ICC per feature computed from the two
readers' tumor masks, ``reader_icc_intra.parquet`` (when the cohort sheet has reader 1's repeat
outlines) the same from reader 1's two outlines (``icc2_1``: two-way random effects, absolute
agreement, single rater; ``icc3_1``: two-way mixed, consistency). This module counts, per phase x
region x image type x feature class (and over all features), how many features exceed each
threshold — by default 0.75 ("good") and 0.9 ("excellent", Koo & Li 2016, J Chiropr Med 15:155).
Features whose ICC is undefined (NaN: e.g. constant over patients) count as not reproducible:
shares are over all features of the group, ``n_finite`` says how many had an ICC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

#: Default ICC thresholds ("good", "excellent").
DEFAULT_THRESHOLDS = (0.75, 0.9)
GROUP_COLUMNS = ["phase", "region", "image_type", "feature_class"]
#: ``agreement`` of the rows of :func:`reader_icc_summary` from each table.
AGREEMENTS = {"inter": "inter-reader", "intra": "intra-reader"}


def split_feature_name(name: str) -> dict[str, str]:
    """Parts of a feature name ``{phase}_{region}_{imageType}_{class}_{feature}``."""
    parts = str(name).split("_", 4)
    if len(parts) < 5:
        parts = parts + [""] * (5 - len(parts))
    return dict(zip([*GROUP_COLUMNS, "feature"], parts, strict=True))


def _label(t: float) -> str:
    return f"{t:g}"


def icc_summary(
    icc: pd.DataFrame,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    column: str = "icc2_1",
) -> pd.DataFrame:
    """Counts and shares of features with ICC above each threshold, per group and overall.

    Args:
        icc: the reader-ICC table (index: feature name; ``column`` holds the ICC).
        thresholds: ICC values to count features above (strictly greater).
        column: the ICC column.

    Returns:
        One row per phase x region x image type x class plus a last row ``all`` (every group
        column ``all``): ``n_features, n_finite, median_icc`` and for each threshold t
        ``n_above_{t}, share_above_{t}``.
    """
    cols = [*GROUP_COLUMNS, "n_features", "n_finite", "median_icc"]
    for t in thresholds:
        cols += [f"n_above_{_label(t)}", f"share_above_{_label(t)}"]
    if icc is None or icc.empty:
        return pd.DataFrame(columns=cols)
    if column not in icc.columns:
        raise ValueError(f"reader ICC table has no column {column!r} ({list(icc.columns)})")
    parts = pd.DataFrame([split_feature_name(n) for n in icc.index], index=icc.index)
    table = parts.assign(icc=pd.to_numeric(icc[column], errors="coerce").to_numpy())

    def summarise(g: pd.DataFrame) -> dict[str, float]:
        values = g["icc"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        row: dict[str, float] = {
            "n_features": len(values),
            "n_finite": len(finite),
            "median_icc": float(np.median(finite)) if len(finite) else np.nan,
        }
        for t in thresholds:
            n = int((finite > t).sum())
            row[f"n_above_{_label(t)}"] = n
            row[f"share_above_{_label(t)}"] = n / len(values) if len(values) else np.nan
        return row

    rows = [
        {**dict(zip(GROUP_COLUMNS, key, strict=True)), **summarise(g)}
        for key, g in table.groupby(GROUP_COLUMNS, sort=True)
    ]
    rows.append({**dict.fromkeys(GROUP_COLUMNS, "all"), **summarise(table)})
    out = pd.DataFrame(rows, columns=cols)
    int_cols = ["n_features", "n_finite", *[f"n_above_{_label(t)}" for t in thresholds]]
    out[int_cols] = out[int_cols].astype(int)
    return out


def reader_icc_summary(
    tables: Mapping[str, pd.DataFrame | None],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    column: str = "icc2_1",
) -> pd.DataFrame:
    """:func:`icc_summary` of each reader-ICC table, stacked under a first column ``agreement``.

    Args:
        tables: ``{"inter": second-reader table, "intra": repeat-outline table}``; a table that is
            None or empty adds no row.
        thresholds: as :func:`icc_summary`.
        column: as :func:`icc_summary`.

    Returns:
        ``agreement`` (:data:`AGREEMENTS`: ``inter-reader`` rows first) then the columns of
        :func:`icc_summary`.
    """
    unknown = set(tables) - set(AGREEMENTS)
    if unknown:
        raise ValueError(f"unknown reader agreement {sorted(unknown)}; known: {sorted(AGREEMENTS)}")
    parts = [
        icc_summary(table, thresholds=thresholds, column=column).assign(agreement=label)
        for key, label in AGREEMENTS.items()
        if (table := tables.get(key)) is not None and not table.empty
    ]
    empty = icc_summary(None, thresholds=thresholds, column=column)
    columns = ["agreement", *empty.columns]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
