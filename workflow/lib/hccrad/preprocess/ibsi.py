"""IBSI-style image processing: interpolation, intensity rounding, mask interpolation,
re-segmentation and fixed-bin-width binning from the re-segmentation's lower bound.

The steps follow IBSI-1's chapter "Image processing" (the reference for radiomics pipelines
that must agree across centers):

* the interpolation grid is centred on the original grid (*align grid centres*),
  ``ceil(n * old / new)`` points per axis; 2D processing keeps the slice spacing;
* images are interpolated linearly or with cubic splines, and CT intensities are rounded to
  integer HU afterwards;
* the ROI mask is interpolated linearly and thresholded at a partial-volume fraction (0.5):
  this is the *morphological* mask;
* re-segmentation keeps the voxels of the morphological mask within a range and/or within
  mean +- k SD of the morphological mask's intensities (both together = the intersection of the
  two intervals): the *intensity* mask;
* fixed-bin-width discretisation starts its first bin at the re-segmentation range's lower bound
  (PyRadiomics starts it at ``floor(min / width) * width``): :func:`ibsi_binning` adapts
  PyRadiomics' bin edges for the duration of an extraction.

:func:`process` chains the steps for one image and mask (:class:`Processing` holds the settings);
the array-level helpers are public so that each step can be tested alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.preprocess.resample import INTERPOLATORS, resample_to_spacing, round_image


@dataclass(frozen=True)
class Processing:
    """IBSI image-processing settings of one configuration.

    Attributes:
        spacing: New voxel spacing in mm (x, y, z); ``None`` for an axis keeps its spacing (2D
            processing: ``(2, 2, None)``); ``None`` altogether = no interpolation.
        interpolation: Image interpolator: ``linear`` or ``cubic`` (cubic B-spline).
        round_intensities: Round interpolated intensities to integers (CT: HU).
        mask_threshold: Partial-volume threshold of the linearly interpolated mask.
        resegment_range: ``(lower, upper)`` intensity range of the intensity mask, or None.
        outlier_sd: Keep intensities within mean +- ``outlier_sd`` SD (of the morphological
            mask's intensities), or None.
    """

    spacing: tuple[float | None, float | None, float | None] | None = None
    interpolation: str = "linear"
    round_intensities: bool = True
    mask_threshold: float = 0.5
    resegment_range: tuple[float, float] | None = None
    outlier_sd: float | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATORS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATORS)}")
        if not 0 < self.mask_threshold <= 1:
            raise ValueError(f"mask_threshold must be in (0, 1], got {self.mask_threshold}")
        if self.resegment_range is not None and not (
            self.resegment_range[0] < self.resegment_range[1]
        ):
            raise ValueError(f"resegment_range must be (lower, upper): {self.resegment_range}")
        if self.outlier_sd is not None and self.outlier_sd <= 0:
            raise ValueError(f"outlier_sd must be positive, got {self.outlier_sd}")


@dataclass(frozen=True)
class Processed:
    """Result of :func:`process`: the image, both masks (UInt8, same grid) and the range."""

    image: sitk.Image
    morphological_mask: sitk.Image
    intensity_mask: sitk.Image
    #: The intensity interval the intensity mask keeps (``-inf``/``inf`` where open).
    interval: tuple[float, float]


def target_spacing(
    image: sitk.Image, spacing: Sequence[float | None] | None
) -> tuple[float, ...] | None:
    """``spacing`` with ``None`` entries replaced by the image's spacing (None stays None)."""
    if spacing is None:
        return None
    if len(spacing) != image.GetDimension():
        raise ValueError(f"spacing must have {image.GetDimension()} entries, got {spacing}")
    return tuple(
        float(old) if new is None else float(new)
        for new, old in zip(spacing, image.GetSpacing(), strict=True)
    )


def resegment_interval(
    values: np.ndarray,
    resegment_range: tuple[float, float] | None = None,
    outlier_sd: float | None = None,
) -> tuple[float, float]:
    """The intensity interval re-segmentation keeps (IBSI: intersection of the methods).

    Args:
        values: Intensities of the morphological mask's voxels (the outlier statistics use them).
        resegment_range: ``(lower, upper)`` or None.
        outlier_sd: Number of standard deviations (population SD) around the mean, or None.

    Returns:
        ``(lower, upper)``, closed; ``(-inf, inf)`` when neither method is set.
    """
    lower, upper = -math.inf, math.inf
    if resegment_range is not None:
        lower, upper = float(resegment_range[0]), float(resegment_range[1])
    if outlier_sd is not None:
        mean, sd = float(np.mean(values)), float(np.std(values))
        lower = max(lower, mean - outlier_sd * sd)
        upper = min(upper, mean + outlier_sd * sd)
    return lower, upper


def process(image: sitk.Image, mask: sitk.Image, settings: Processing) -> Processed:
    """Interpolate, round, threshold the mask and re-segment (IBSI order).

    Args:
        image: Intensity image (any pixel type; processed as Float32).
        mask: Binary ROI mask on the image's grid (non-zero = ROI).
        settings: The configuration's :class:`Processing`.

    Returns:
        :class:`Processed`; the image is Float32, rounded when ``round_intensities``.
    """
    img = sitk.Cast(image, sitk.sitkFloat32)
    msk = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    msk.CopyInformation(img)
    spacing = target_spacing(img, settings.spacing)
    if spacing is not None:
        img = resample_to_spacing(img, spacing, grid="centre", interpolation=settings.interpolation)
        msk = resample_to_spacing(
            msk, spacing, is_mask=True, grid="centre", mask_threshold=settings.mask_threshold
        )
    if settings.round_intensities:
        img = round_image(img)  # halves to even; interpolated values are practically never halves
    arr = sitk.GetArrayFromImage(img)
    morph = sitk.GetArrayViewFromImage(msk).astype(bool)
    if not morph.any():
        raise ValueError("the ROI mask is empty after interpolation")
    interval = resegment_interval(arr[morph], settings.resegment_range, settings.outlier_sd)
    keep = morph & (arr >= interval[0]) & (arr <= interval[1])
    intensity = sitk.GetImageFromArray(keep.astype(np.uint8))
    intensity.CopyInformation(img)
    return Processed(img, msk, intensity, interval)


def ibsi_bin_edges(
    values: np.ndarray, bin_width: float, lower_bound: float | None = None
) -> np.ndarray:
    """Fixed-bin-width edges starting at ``lower_bound`` (IBSI), or at the ROI minimum.

    IBSI's discretisation ``floor((x - lower) / width) + 1`` expressed as edges for
    ``numpy.digitize`` (which PyRadiomics uses): ``lower, lower + width, ...`` up to past the
    maximum, so that bin 1 is ``[lower, lower + width)``.
    """
    low = float(np.min(values)) if lower_bound is None else float(lower_bound)
    if float(np.min(values)) < low:
        raise ValueError(f"ROI intensities below the binning's lower bound {low}")
    n = math.floor((float(np.max(values)) - low) / bin_width) + 2
    return low + bin_width * np.arange(n, dtype=float)


@contextlib.contextmanager
def ibsi_binning(lower_bound: float | None) -> Iterator[None]:
    """Within the block, PyRadiomics' fixed-bin-width edges start at ``lower_bound``.

    Replaces ``radiomics.imageoperations.getBinEdges`` (which ``binImage`` calls for every
    feature class that discretises) for fixed bin width only; fixed bin count
    (``binCount``) is already IBSI's definition and is passed through. ``lower_bound=None``
    starts at the ROI minimum (IBSI's rule without a re-segmentation range). Not thread-safe:
    the patch is module-global for the duration of the block.
    """
    from radiomics import imageoperations  # lazy: heavy import

    original = imageoperations.getBinEdges

    def edges(parameter_values: np.ndarray, **kwargs: Any) -> np.ndarray:
        if kwargs.get("binCount") is not None:
            return original(parameter_values, **kwargs)
        return ibsi_bin_edges(parameter_values, float(kwargs.get("binWidth", 25)), lower_bound)

    imageoperations.getBinEdges = edges
    try:
        yield
    finally:
        imageoperations.getBinEdges = original
