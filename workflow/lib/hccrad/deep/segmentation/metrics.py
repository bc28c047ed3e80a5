"""Dice coefficients of label maps (per label, and liver / tumor on the training grid)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk


def dice(
    a: sitk.Image | np.ndarray,
    b: sitk.Image | np.ndarray,
    labels: Sequence[int] | None = None,
) -> dict[int, float]:
    """Dice coefficient per label between two label maps (or binary masks) of equal shape.

    Args:
        a, b: label maps (SimpleITK images or arrays).
        labels: labels to score; default every nonzero label present in ``a`` or ``b`` (``[1]``
            when both are empty).

    Returns:
        ``{label: dice}``; 1.0 for a label absent from both maps.
    """
    A = sitk.GetArrayViewFromImage(a) if isinstance(a, sitk.Image) else np.asarray(a)
    B = sitk.GetArrayViewFromImage(b) if isinstance(b, sitk.Image) else np.asarray(b)
    if A.shape != B.shape:
        raise ValueError(f"label maps differ in shape: {A.shape} vs {B.shape}")
    if labels is None:
        labels = [int(v) for v in np.union1d(np.unique(A), np.unique(B)) if v != 0] or [1]
    out: dict[int, float] = {}
    for lab in labels:
        ma, mb = np.equal(A, lab), np.equal(B, lab)
        denom = int(ma.sum()) + int(mb.sum())
        out[int(lab)] = 1.0 if denom == 0 else 2.0 * int(np.logical_and(ma, mb).sum()) / denom
    return out


def _grid_dice(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(liver incl. tumor, tumor) Dice on the grid."""
    liver = dice(pred >= 1, truth >= 1, [1])[1]
    tumor = dice(pred == 2, truth == 2, [1])[1]
    return liver, tumor
