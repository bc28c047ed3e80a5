"""The first step of every study pipeline: imputation and dummy coding learned on training rows.

Kept apart from :mod:`hccrad.studies` so that loading the studies (every Snakemake start, every
cluster job) does not import scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class TableEncoder(TransformerMixin, BaseEstimator):
    """Imputation and dummy coding learned on the training rows (first step of every pipeline).

    Numeric columns: non-finite values -> the training median (a column without any finite
    training value is dropped). Categorical columns (``categorical``): text levels seen in
    training, sorted, the first being the reference; one ``{column}[T.{level}]`` 0/1 column per
    other level; a missing value takes the training mode and a level unseen in training counts
    as the reference. A DataFrame in, a float DataFrame out (same index).
    """

    def __init__(self, categorical: Sequence[str] = ()) -> None:
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: Any = None) -> TableEncoder:
        """Learn medians, levels and modes from ``X`` (the training rows)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("TableEncoder needs a DataFrame")
        cats = set(self.categorical)
        self.columns_in_ = list(X.columns)
        self.medians_: dict[str, float] = {}
        self.levels_: dict[str, list[str]] = {}
        self.modes_: dict[str, str] = {}
        out: list[str] = []
        for col in X.columns:
            if col in cats:
                text = X[col].dropna().astype(str)
                if text.empty:
                    continue
                counts = text.value_counts()
                levels = sorted(counts.index)
                self.levels_[col] = levels
                self.modes_[col] = min(counts.index[counts == counts.max()])
                out += [f"{col}[T.{lv}]" for lv in levels[1:]]
            else:
                v = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size:
                    self.medians_[col] = float(np.median(v))
                    out.append(col)
        self.feature_names_out_ = np.asarray(out, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Apply the training statistics (nothing is refitted)."""
        cols: dict[str, np.ndarray] = {}
        for col in self.columns_in_:
            if col in self.levels_:
                text = X[col].map(lambda v: v if pd.isna(v) else str(v))
                text = text.fillna(self.modes_[col])
                for lv in self.levels_[col][1:]:
                    cols[f"{col}[T.{lv}]"] = (text == lv).to_numpy(dtype=float)
            elif col in self.medians_:
                v = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=float)
                cols[col] = np.where(np.isfinite(v), v, self.medians_[col])
        return pd.DataFrame(cols, index=X.index, columns=list(self.feature_names_out_))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_out_
