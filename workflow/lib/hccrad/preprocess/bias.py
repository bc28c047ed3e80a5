"""N4 bias-field correction (MR)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from hccrad.preprocess.normalize import otsu_foreground

log = logging.getLogger(__name__)


def n4_correct(
    image: sitk.Image,
    mask: sitk.Image | None = None,
    *,
    shrink_factor: int = 4,
    iterations: Sequence[int] = (50,),
    convergence_threshold: float = 1e-6,
    spline_distance_mm: float | None = None,
    seed: int | None = None,
) -> tuple[sitk.Image, sitk.Image]:
    """Correct the multiplicative bias field of an MR image with N4.

    N4 runs on a copy shrunk by ``shrink_factor`` (per axis, never below 8 voxels); the log bias
    field is then reconstructed at full resolution from the fitted B-spline
    (``GetLogBiasFieldAsImage(full-resolution image)``) and the full-resolution image is divided by
    ``exp(log bias)``.

    Args:
        image: MR image (intensities > 0 inside the mask; non-positive voxels are left out of the
            fit).
        mask: voxels used to fit the field; Otsu foreground when ``None``.
        shrink_factor: shrink factor of the fitting copy.
        iterations: maximum iterations per fitting level (one entry per level).
        convergence_threshold: N4 convergence threshold.
        spline_distance_mm: B-spline control-point distance in mm; N4's default mesh (4 control
            points per axis at level 0) when ``None``.
        seed: unused by N4 itself (it is deterministic); accepted so that every preprocessing
            step takes a seed.

    Returns:
        ``(corrected, bias_field)``, both ``Float32`` at the resolution of ``image``; the bias
        field is multiplicative (``corrected = image / bias_field``) with geometric mean 1 over
        the fitted voxels.

    Each fitting level doubles the B-spline mesh resolution: with 4 control points (one span) per
    axis, ``len(iterations)`` levels end at ``2**(levels-1)`` spans per axis. On a liver-cropped
    field of view (~100 mm) 3-4 levels give 12-25 mm spans, fine enough to absorb a lesion's
    contrast. Measured on the synthetic cohort (24 MR phases with known fields), one level fitted
    within the liver mask left a median 32 % of the true field's variation in the liver (never
    more than 100 %), within the Otsu foreground 43 %; three levels made it worse than no
    correction in most phases.
    """
    del seed  # N4 draws no random numbers
    img = sitk.Cast(image, sitk.sitkFloat32)
    fit_mask, n_fit = _fit_mask(img, mask)

    size = np.asarray(img.GetSize())
    factors = [int(max(1, min(shrink_factor, s // 8))) for s in size]
    small = sitk.Shrink(img, factors)
    small_mask = sitk.Shrink(fit_mask, factors)

    corrector = _n4_filter(img, iterations, convergence_threshold, spline_distance_mm)
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(img)
    # N4's field has an arbitrary scale; fix its geometric mean over the fitted voxels to 1 so
    # that the corrected image keeps the original intensity range.
    log_arr = sitk.GetArrayViewFromImage(log_bias)
    offset = float(log_arr[sitk.GetArrayViewFromImage(fit_mask) > 0].mean())
    bias = sitk.Cast(sitk.Exp(log_bias - offset), sitk.sitkFloat32)
    corrected = sitk.Cast(sitk.Divide(img, bias), sitk.sitkFloat32)
    log.debug(
        "N4: shrink %s, %d fit voxels, bias range %.3g-%.3g",
        factors,
        n_fit,
        float(np.min(sitk.GetArrayViewFromImage(bias))),
        float(np.max(sitk.GetArrayViewFromImage(bias))),
    )
    return corrected, bias


def _fit_mask(img: sitk.Image, mask: sitk.Image | None) -> tuple[sitk.Image, int]:
    """Voxels N4 fits the field on (``mask``, Otsu foreground when ``None``, with positive
    intensity) and their count; ValueError when there is none."""
    if mask is None:
        mask = otsu_foreground(img)
    mask = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    positive = sitk.Cast(sitk.Greater(img, 0), sitk.sitkUInt8)
    fit_mask = sitk.And(mask, positive)
    n_fit = int(np.count_nonzero(sitk.GetArrayViewFromImage(fit_mask)))
    if n_fit == 0:
        raise ValueError("N4 mask holds no voxel with positive intensity")
    if n_fit < int(np.count_nonzero(sitk.GetArrayViewFromImage(mask))):
        log.warning("N4: non-positive voxels inside the mask left out of the bias fit")
    return fit_mask, n_fit


def _n4_filter(
    img: sitk.Image,
    iterations: Sequence[int],
    convergence_threshold: float,
    spline_distance_mm: float | None,
) -> sitk.N4BiasFieldCorrectionImageFilter:
    """The N4 filter with its schedule and, when asked, a control-point mesh of about
    ``spline_distance_mm`` spacing over the extent of ``img``."""
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    corrector.SetConvergenceThreshold(float(convergence_threshold))
    if spline_distance_mm is not None:
        extent = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
        order = corrector.GetSplineOrder()
        n_points = [max(order + 1, math.ceil(e / spline_distance_mm) + order) for e in extent]
        corrector.SetNumberOfControlPoints(n_points)
    return corrector
