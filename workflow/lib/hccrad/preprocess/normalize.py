"""Intensity normalisation: MR z-score / percentile scaling, CT windowing."""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)


def otsu_foreground(image: sitk.Image, *, bins: int = 128) -> sitk.Image:
    """Binary ``UInt8`` foreground mask of ``image`` by Otsu thresholding (bright = foreground).

    Args:
        image: scalar image.
        bins: histogram bins used by the Otsu filter.

    Returns:
        Mask with 1 above the Otsu threshold.
    """
    return sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1, bins)


def _mask_values(image: sitk.Image, mask: sitk.Image | None) -> tuple[np.ndarray, np.ndarray]:
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    if mask is None:
        mask = otsu_foreground(image)
    m = sitk.GetArrayViewFromImage(mask)
    if m.shape != arr.shape:
        raise ValueError(f"mask size {mask.GetSize()} differs from image size {image.GetSize()}")
    values = arr[m != 0]
    if values.size == 0:
        raise ValueError("normalisation mask is empty")
    return arr, values


def _to_image(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(like)
    return out


def normalize_mr(
    image: sitk.Image,
    mask: sitk.Image | None = None,
    *,
    method: str = "zscore",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> sitk.Image:
    """Normalise MR intensities with statistics taken inside ``mask``.

    Args:
        image: MR image.
        mask: region whose statistics define the scaling (typically the liver); Otsu foreground
            of ``image`` when ``None``.
        method: ``"zscore"``: ``(x - mean) / std`` (population std); ``"percentile"``:
            ``(x - p_lo) / (p_hi - p_lo)`` with the percentiles of the masked voxels (no clipping).
        percentiles: (low, high) percentiles for ``"percentile"``.

    Returns:
        ``Float32`` image on the same grid.

    Raises:
        ValueError: unknown method, empty mask, or zero spread inside the mask.
    """
    arr, values = _mask_values(image, mask)
    if method == "zscore":
        centre, spread = float(values.mean()), float(values.std())
    elif method == "percentile":
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        p_lo, p_hi = np.percentile(values, [lo, hi])
        centre, spread = float(p_lo), float(p_hi - p_lo)
    else:
        raise ValueError(f"unknown MR normalisation method {method!r} (zscore, percentile)")
    if not np.isfinite(spread) or spread <= 0:
        raise ValueError(f"zero intensity spread inside the mask ({method}); cannot normalise")
    log.debug(
        "normalize_mr %s: centre %.4g spread %.4g over %d voxels",
        method,
        centre,
        spread,
        values.size,
    )
    return _to_image((arr - centre) / spread, image)


def window_ct(
    image: sitk.Image,
    *,
    width: float = 259.0,
    level: float = 40.0,
    rescale: bool = True,
) -> sitk.Image:
    """Apply a CT window: clip HU to ``[level - width/2, level + width/2]``.

    Args:
        image: CT image in HU.
        width: window width (HU), > 0.
        level: window centre (HU).
        rescale: map the window linearly to [0, 1]; otherwise keep HU.

    Returns:
        ``Float32`` image on the same grid.
    """
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    lo, hi = level - width / 2.0, level + width / 2.0
    arr = np.clip(sitk.GetArrayFromImage(image).astype(np.float64), lo, hi)
    if rescale:
        arr = (arr - lo) / width
    return _to_image(arr, image)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a sample: the upper edge of the histogram bin that maximises the
    between-class variance (the registration's body box and the U-Net grid's field of view)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    mu0 = s0 / np.maximum(w0, 1)
    mu1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])
