"""Resampling onto a new voxel spacing or onto the grid of another image.

:func:`resample_to_spacing` keeps the origin by default (``grid="origin"``, nearest-neighbour
masks). IBSI's image processing (IBSI-1, "Interpolation grid") uses ``grid="centre"``: the new
grid has ``ceil(n * old / new)`` points and is centred on the original grid, images may be
interpolated with cubic splines, and masks are interpolated linearly and thresholded at a
partial-volume fraction (``mask_threshold=0.5``); see :mod:`hccrad.preprocess.ibsi`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

#: Image interpolators by name (``cubic`` = SimpleITK's cubic B-spline, an interpolating spline).
INTERPOLATORS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "cubic": sitk.sitkBSpline,
}

#: Grid placements of :func:`resample_to_spacing`.
GRIDS = ("origin", "centre")


def _default_value(image: sitk.Image, is_mask: bool, default_value: float | None) -> float:
    if default_value is not None:
        return float(default_value)
    if is_mask:
        return 0.0
    return float(np.min(sitk.GetArrayViewFromImage(image)))


def _prepare(image: sitk.Image, is_mask: bool) -> tuple[sitk.Image, int, int]:
    """Cast the input and pick interpolator and output pixel type."""
    if is_mask:
        arr = sitk.GetArrayViewFromImage(image)
        if not np.all((arr == 0) | (arr == 1)):
            image = sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)
        elif image.GetPixelID() != sitk.sitkUInt8:
            image = sitk.Cast(image, sitk.sitkUInt8)
        return image, sitk.sitkNearestNeighbor, sitk.sitkUInt8
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image, sitk.sitkLinear, sitk.sitkFloat32


def _output_grid(
    image: sitk.Image, new_spacing: np.ndarray, grid: str
) -> tuple[np.ndarray, np.ndarray]:
    """Size and origin of the resampled grid (``grid``: ``origin`` or ``centre``)."""
    old_spacing = np.asarray(image.GetSpacing())
    old_size = np.asarray(image.GetSize())
    origin = np.asarray(image.GetOrigin(), dtype=float)
    extent = old_size * old_spacing / new_spacing
    if grid == "origin":
        return np.maximum(1, np.round(extent)).astype(int), origin
    # ceil, robust to binary noise (60 * 3.0 / 3.0 must stay 60)
    new_size = np.array([max(1, math.ceil(e - 1e-9)) for e in extent], dtype=int)
    shift = (old_spacing * (old_size - 1) - new_spacing * (new_size - 1)) / 2.0
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    return new_size, origin + direction @ shift


def resample_to_spacing(
    image: sitk.Image,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    is_mask: bool = False,
    default_value: float | None = None,
    grid: str = "origin",
    interpolation: str | None = None,
    mask_threshold: float | None = None,
) -> sitk.Image:
    """Resample ``image`` onto a grid with the given voxel spacing.

    With ``grid="origin"`` (the default) the origin (centre of the first voxel) and direction are
    kept; the number of voxels along each axis is ``round(size * old_spacing / new_spacing)`` (at
    least 1), so the grid covers the same physical extent up to less than one new voxel.

    With ``grid="centre"`` (IBSI's *align grid centres*) the number of voxels is
    ``ceil(size * old_spacing / new_spacing)`` and the new grid's centre coincides with the old
    one's: the first voxel centre moves by ``(old * (n_old - 1) - new * (n_new - 1)) / 2`` along
    each axis; image values beyond the original grid are extrapolated from the nearest voxel.
    An axis whose spacing does not change keeps its voxel positions exactly.

    Args:
        image: 3-D image or binary mask.
        spacing: output spacing in mm, (x, y, z).
        is_mask: ``UInt8`` 0/1 output; nearest-neighbour interpolation unless ``mask_threshold``
            is given. Otherwise ``Float32`` output.
        default_value: value of voxels mapped outside the input; the image minimum for images,
            0 for masks, unless given.
        grid: ``"origin"`` or ``"centre"`` (see above).
        interpolation: image interpolator, one of :data:`INTERPOLATORS` (default linear); not
            for masks.
        mask_threshold: masks only: interpolate the 0/1 mask linearly and keep voxels whose
            value is at least this partial-volume fraction (IBSI: 0.5).

    Returns:
        The resampled image.
    """
    new_spacing = np.asarray(spacing, dtype=float)
    if new_spacing.shape != (image.GetDimension(),) or np.any(new_spacing <= 0):
        raise ValueError(f"spacing must be {image.GetDimension()} positive numbers, got {spacing}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    _check_interpolation(is_mask, interpolation, mask_threshold)
    old_spacing = np.asarray(image.GetSpacing())
    old_size = np.asarray(image.GetSize())
    new_size, origin = _output_grid(image, new_spacing, grid)
    src, interpolator, pixel_type = _prepare(image, is_mask)
    if interpolation is not None:
        interpolator = INTERPOLATORS[interpolation]
    if mask_threshold is not None:
        src, interpolator, pixel_type = sitk.Cast(src, sitk.sitkFloat32), sitk.sitkLinear, None
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in new_size])
    resampler.SetOutputOrigin([float(o) for o in origin])
    resampler.SetOutputSpacing([float(s) for s in new_spacing])
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(_default_value(src, is_mask, default_value))
    resampler.SetOutputPixelType(pixel_type if pixel_type is not None else sitk.sitkFloat32)
    resampler.SetUseNearestNeighborExtrapolator(grid == "centre" and not is_mask)
    out = resampler.Execute(src)
    if mask_threshold is not None:
        out = _threshold(out, mask_threshold)
    log.debug(
        "resampled %s @ %s -> %s @ %s",
        tuple(old_size),
        tuple(old_spacing),
        tuple(new_size),
        tuple(new_spacing),
    )
    return out


def resample_like(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    transform: sitk.Transform | None = None,
    is_mask: bool = False,
    default_value: float | None = None,
    interpolation: str | None = None,
    mask_threshold: float | None = None,
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference``, optionally through ``transform``.

    Args:
        image: image or binary mask to resample.
        reference: image whose size, spacing, origin and direction the output takes.
        transform: maps a physical point of the reference (output) grid to the corresponding
            point of ``image`` (SimpleITK's resampling convention); identity when ``None``.
        is_mask: ``UInt8`` 0/1 output; nearest-neighbour interpolation unless ``mask_threshold``
            is given.
        default_value: value of voxels mapped outside the input (see
            :func:`resample_to_spacing`).
        interpolation: image interpolator, one of :data:`INTERPOLATORS` (default linear); not
            for masks.
        mask_threshold: masks only: interpolate the 0/1 mask linearly and keep the voxels whose
            value is at least this partial-volume fraction (IBSI: 0.5).

    Returns:
        The resampled image on the reference grid.
    """
    _check_interpolation(is_mask, interpolation, mask_threshold)
    src, interpolator, pixel_type = _prepare(image, is_mask)
    if interpolation is not None:
        interpolator = INTERPOLATORS[interpolation]
    tx = transform if transform is not None else sitk.Transform()
    if mask_threshold is not None:
        fraction = sitk.Resample(
            sitk.Cast(src, sitk.sitkFloat32), reference, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        return _threshold(fraction, mask_threshold)
    return sitk.Resample(
        src,
        reference,
        tx,
        interpolator,
        _default_value(src, is_mask, default_value),
        pixel_type,
    )


def _threshold(fraction: sitk.Image, mask_threshold: float) -> sitk.Image:
    """The ``UInt8`` mask of a linearly interpolated 0/1 mask: voxels at or above the
    partial-volume fraction ``mask_threshold`` (a hair below it, for float rounding)."""
    return sitk.Cast(fraction >= float(mask_threshold) - 1e-6, sitk.sitkUInt8)


def round_image(image: sitk.Image) -> sitk.Image:
    """``image`` with its intensities rounded to the nearest integer (half to even), Float32,
    same grid (CT in integer HU after an interpolation, IBSI-1)."""
    arr = np.round(sitk.GetArrayViewFromImage(image)).astype(np.float32)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def _check_interpolation(
    is_mask: bool, interpolation: str | None, mask_threshold: float | None
) -> None:
    """ValueError for an interpolator given for a mask or unknown, or a threshold for an
    image or outside (0, 1]."""
    if interpolation is not None and (is_mask or interpolation not in INTERPOLATORS):
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATORS)} and only for images, "
            f"got {interpolation!r} (is_mask={is_mask})"
        )
    if mask_threshold is not None and (not is_mask or not 0 < mask_threshold <= 1):
        raise ValueError(f"mask_threshold must be in (0, 1] and only for masks: {mask_threshold}")
