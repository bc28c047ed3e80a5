"""Mask operations: index lesion, peritumoral ring, mask statistics."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)


def _binary(mask: sitk.Image) -> sitk.Image:
    return sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)


def largest_component(mask: sitk.Image, *, fully_connected: bool = False) -> sitk.Image:
    """Keep the largest connected component of a binary mask (the index lesion).

    Args:
        mask: binary mask (any nonzero voxel is foreground).
        fully_connected: ``False`` (default): 6-connectivity (faces only);
            ``True``: 26-connectivity (faces, edges and corners).

    Returns:
        ``UInt8`` mask of the largest component (ties: the component met first in voxel order);
        an all-zero mask when ``mask`` is empty.
    """
    labels = sitk.ConnectedComponent(_binary(mask), fully_connected)
    relabeled = sitk.RelabelComponent(labels, sortByObjectSize=True)
    return sitk.Cast(sitk.Equal(relabeled, 1), sitk.sitkUInt8)


def count_components(mask: sitk.Image, *, fully_connected: bool = False) -> int:
    """Number of connected components of a binary mask (6-connectivity by default)."""
    cc = sitk.ConnectedComponentImageFilter()
    cc.SetFullyConnected(fully_connected)
    cc.Execute(_binary(mask))
    return int(cc.GetObjectCount())


def peritumoral_ring(
    tumor: sitk.Image,
    liver: sitk.Image | None = None,
    *,
    distance_mm: float = 10.0,
) -> sitk.Image:
    """Peritumoral ring: voxels within ``distance_mm`` of the tumor, tumor excluded.

    A voxel belongs to the ring when the Euclidean distance (physical mm, anisotropic spacing
    respected) from its centre to the nearest tumor voxel centre is in ``(0, distance_mm]``
    (``SignedMaurerDistanceMap`` with ``useImageSpacing=True``); the ring is then intersected with
    ``liver`` when given. The distance map is computed on the tumor's bounding box padded by the
    distance, so large images stay cheap.

    Args:
        tumor: binary tumor mask.
        liver: binary liver mask on the same grid, or ``None`` for no clipping.
        distance_mm: ring thickness in mm (> 0).

    Returns:
        ``UInt8`` binary ring mask on the tumor's grid.

    Raises:
        ValueError: empty tumor, non-positive distance or liver on another grid.
    """
    if distance_mm <= 0:
        raise ValueError(f"distance_mm must be > 0, got {distance_mm}")
    tumor = _binary(tumor)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(tumor)
    if not stats.HasLabel(1):
        raise ValueError("cannot build a peritumoral ring around an empty tumor mask")
    bbox = stats.GetBoundingBox(1)  # (x0, y0, z0, sx, sy, sz)
    dim = tumor.GetDimension()
    size = np.asarray(tumor.GetSize())
    pad = np.ceil(distance_mm / np.asarray(tumor.GetSpacing())).astype(int) + 1
    lo = np.maximum(0, np.asarray(bbox[:dim]) - pad)
    hi = np.minimum(size, np.asarray(bbox[:dim]) + np.asarray(bbox[dim:]) + pad)
    roi = sitk.RegionOfInterest(tumor, [int(v) for v in hi - lo], [int(v) for v in lo])
    dist = sitk.SignedMaurerDistanceMap(
        roi, insideIsPositive=False, squaredDistance=False, useImageSpacing=True, backgroundValue=0
    )
    d = sitk.GetArrayViewFromImage(dist)
    t = sitk.GetArrayViewFromImage(roi) != 0
    ring_roi = ((d > 0) & (d <= distance_mm) & ~t).astype(np.uint8)
    ring_arr = np.zeros(sitk.GetArrayViewFromImage(tumor).shape, np.uint8)
    ring_arr[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = ring_roi
    if liver is not None:
        if liver.GetSize() != tumor.GetSize():
            raise ValueError(
                f"liver size {liver.GetSize()} differs from tumor size {tumor.GetSize()}"
            )
        ring_arr &= (sitk.GetArrayViewFromImage(liver) != 0).astype(np.uint8)
    ring = sitk.GetImageFromArray(ring_arr)
    ring.CopyInformation(tumor)
    if not ring_arr.any():
        log.warning("peritumoral ring is empty (tumor outside the liver?)")
    return ring


def mask_stats(mask: sitk.Image) -> dict[str, Any]:
    """Size and position of a binary mask.

    Args:
        mask: binary mask (nonzero = foreground).

    Returns:
        ``voxels`` (count), ``volume_ml``, ``bbox_index`` ([x, y, z] start), ``bbox_size``
        ([x, y, z] voxels), ``centroid_mm`` (physical centroid, [x, y, z]) and ``components``
        (6-connected); bounding box and centroid are ``None`` for an empty mask.
    """
    m = _binary(mask)
    voxel_ml = math.prod(m.GetSpacing()) / 1000.0
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(m)
    if not stats.HasLabel(1):
        return {
            "voxels": 0,
            "volume_ml": 0.0,
            "bbox_index": None,
            "bbox_size": None,
            "centroid_mm": None,
            "components": 0,
        }
    n = int(stats.GetNumberOfPixels(1))
    bbox = stats.GetBoundingBox(1)
    dim = m.GetDimension()
    return {
        "voxels": n,
        "volume_ml": n * voxel_ml,
        "bbox_index": [int(v) for v in bbox[:dim]],
        "bbox_size": [int(v) for v in bbox[dim:]],
        "centroid_mm": [float(v) for v in stats.GetCentroid(1)],
        "components": count_components(m),
    }
