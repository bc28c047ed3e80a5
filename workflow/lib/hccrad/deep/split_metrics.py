"""A deep model's own performance per split, from its ``predictions.parquet``.

For a slice-level (MIL) model every real instance is scored against its patient's label — the
MIL study's slice-level evaluation (its Table 3: AUC with 95 % CI, accuracy, sensitivity,
specificity per split); padding instances (``z < 0``) are left out. For the other models each
patient's own probability is scored. The AUC CI is DeLong's (:func:`hccrad.stats.roc.auc_ci`);
the classification cut-off is Youden's on the **training** split's samples and is applied
unchanged to the other splits (0.5 when the training split lacks a class), as for the studies'
models. Light module: pandas, NumPy and :mod:`hccrad.stats.roc` only (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from hccrad.stats.roc import auc, auc_ci, classification_metrics, youden_cutoff
from hccrad.stats.splits import SPLITS

#: Columns of the table :func:`split_metrics` returns.
COLUMNS: tuple[str, ...] = (
    "split", "level", "n_patients", "n", "positives", "auc", "auc_lower", "auc_upper", "cutoff",
    "accuracy", "sensitivity", "specificity", "ppv", "npv",
)  # fmt: skip


def scored_samples(
    pred: pd.DataFrame, labels: Mapping[str, float], splits: Mapping[str, str]
) -> pd.DataFrame:
    """The rows of ``pred`` that can be scored: real instances (``z >= 0``) with a probability,
    of patients with a label and a split; columns ``patient, split, y, prob``."""
    rows = pred.copy()
    if "z" in rows:
        rows = rows[rows["z"].to_numpy() >= 0]
    rows["patient"] = rows["patient"].astype(str)
    rows["y"] = pd.to_numeric(rows["patient"].map(labels), errors="coerce")
    rows["split"] = rows["patient"].map(splits)
    rows = rows[rows["y"].notna() & rows["split"].notna() & rows["prob"].notna()]
    return rows.assign(y=rows["y"].astype(int))[["patient", "split", "y", "prob"]]


def _train_cutoff(rows: pd.DataFrame) -> float:
    """Youden's cut-off on the training samples; 0.5 without both classes there."""
    train = rows[rows["split"] == "train"]
    if train["y"].nunique() < 2:
        return 0.5
    return youden_cutoff(train["y"].to_numpy(), train["prob"].to_numpy())


def _row(split: str, level: str, part: pd.DataFrame, cutoff: float) -> dict[str, object]:
    """One split's counts, AUC (CI with 2+ samples per class) and rates at ``cutoff``."""
    y, p = part["y"].to_numpy(), part["prob"].to_numpy(dtype=np.float64)
    n_pos = int(y.sum())
    lo = hi = a = float("nan")
    if 0 < n_pos < len(y):
        a = auc(y, p)
        if min(n_pos, len(y) - n_pos) >= 2:
            a, lo, hi = auc_ci(y, p)
    rates = classification_metrics(y, p, cutoff)
    return {
        "split": split, "level": level, "n_patients": int(part["patient"].nunique()),
        "n": len(y), "positives": n_pos, "auc": a, "auc_lower": lo, "auc_upper": hi,
        "cutoff": cutoff, **{k: rates[k] for k in COLUMNS[9:]},
    }  # fmt: skip


def split_metrics(
    pred: pd.DataFrame, labels: Mapping[str, float], splits: Mapping[str, str]
) -> pd.DataFrame:
    """Per split (in :data:`~hccrad.stats.splits.SPLITS` order, the splits present): the network's
    discrimination and classification of its samples (see the module docstring).

    Args:
        pred: ``predictions.parquet`` of one model (``patient, prob``; slice models also
            ``instance, z``).
        labels: Patient → 0/1 label (NaN: unlabelled, left out).
        splits: Patient → split name.

    Returns:
        One row per split with :data:`COLUMNS`; ``level`` is ``instance`` or ``patient``.
    """
    level = "instance" if "instance" in pred else "patient"
    rows = scored_samples(pred, labels, splits)
    cutoff = _train_cutoff(rows)
    order = [s for s in SPLITS if s in set(rows["split"])]
    order += sorted(set(rows["split"]) - set(order))
    out = [_row(s, level, rows[rows["split"] == s], cutoff) for s in order]
    return pd.DataFrame(out, columns=list(COLUMNS))
