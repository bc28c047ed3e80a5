"""Resampling onto a new voxel spacing or onto the grid of another image."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)


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


def resample_to_spacing(
    image: sitk.Image,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    is_mask: bool = False,
    default_value: float | None = None,
) -> sitk.Image:
    """Resample ``image`` onto a grid with the given voxel spacing.

    The origin (centre of the first voxel) and direction are kept; the number of voxels along each
    axis is ``round(size * old_spacing / new_spacing)`` (at least 1), so the grid covers the same
    physical extent up to less than one new voxel.

    Args:
        image: 3-D image or binary mask.
        spacing: output spacing in mm, (x, y, z).
        is_mask: nearest-neighbour interpolation and ``UInt8`` output (masks are never linearly
            interpolated); otherwise linear interpolation and ``Float32`` output.
        default_value: value of voxels mapped outside the input; the image minimum for images,
            0 for masks, unless given.

    Returns:
        The resampled image.
    """
    new_spacing = np.asarray(spacing, dtype=float)
    if new_spacing.shape != (image.GetDimension(),) or np.any(new_spacing <= 0):
        raise ValueError(f"spacing must be {image.GetDimension()} positive numbers, got {spacing}")
    old_spacing = np.asarray(image.GetSpacing())
    old_size = np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    src, interpolator, pixel_type = _prepare(image, is_mask)
    out = sitk.Resample(
        src,
        [int(s) for s in new_size],
        sitk.Transform(),
        interpolator,
        image.GetOrigin(),
        [float(s) for s in new_spacing],
        image.GetDirection(),
        _default_value(src, is_mask, default_value),
        pixel_type,
    )
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
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference``, optionally through ``transform``.

    Args:
        image: image or binary mask to resample.
        reference: image whose size, spacing, origin and direction the output takes.
        transform: maps a physical point of the reference (output) grid to the corresponding
            point of ``image`` (SimpleITK's resampling convention); identity when ``None``.
        is_mask: nearest-neighbour interpolation and ``UInt8`` output.
        default_value: value of voxels mapped outside the input (see
            :func:`resample_to_spacing`).

    Returns:
        The resampled image on the reference grid.
    """
    src, interpolator, pixel_type = _prepare(image, is_mask)
    tx = transform if transform is not None else sitk.Transform()
    return sitk.Resample(
        src,
        reference,
        tx,
        interpolator,
        _default_value(src, is_mask, default_value),
        pixel_type,
    )
