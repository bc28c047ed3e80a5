"""Cases of the segmentation U-Net and their preparation on the cubic training grid.

Grid and normalisation conventions: see :mod:`hccrad.deep.segmentation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.deep.segmentation.config import SegConfig
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.imageio import read_image, read_mask
from hccrad.preprocess.normalize import otsu_threshold


@dataclass
class SegCase:
    """One training/evaluation case: an image and its given masks (images or file paths).

    Training needs both masks; :func:`evaluate` reports NaN Dice for a missing one.
    """

    patient: str
    image: sitk.Image | PathLike
    liver: sitk.Image | PathLike | None = None
    tumor: sitk.Image | PathLike | None = None
    phase: str | None = None

    def load(self) -> tuple[sitk.Image, sitk.Image | None, sitk.Image | None]:
        """The image and masks as SimpleITK images (files read with :mod:`hccrad.imageio`)."""
        image = self.image
        if not isinstance(image, sitk.Image):
            image = read_image(image, patient=self.patient, phase=self.phase)
        masks: list[sitk.Image | None] = []
        for kind, m in (("liver", self.liver), ("tumor", self.tumor)):
            if m is not None and not isinstance(m, sitk.Image):
                m = read_mask(
                    m, image, patient=self.patient, phase=self.phase, kind=kind, allow_empty=True
                )
            masks.append(m)
        return image, masks[0], masks[1]


@dataclass
class PreparedCase:
    """A case on the training grid: ``x`` float32 ``(z, y, x)``, ``y`` uint8 labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    grid: sitk.Image
    meta: dict[str, Any] = field(default_factory=dict)


def make_grid(image: sitk.Image, config: SegConfig) -> sitk.Image:
    """The (empty, ``UInt8``) cubic grid of ``config`` for ``image`` (see module doc)."""
    n = config.grid_size
    size = np.asarray(image.GetSize(), float)
    spacing = np.asarray(image.GetSpacing(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    s = config.grid_spacing_mm or float(np.max(size * spacing) / n)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    origin = centre - direction @ np.full(3, (n - 1) / 2 * s)
    grid = sitk.Image([n, n, n], sitk.sitkUInt8)
    grid.SetSpacing([s, s, s])
    grid.SetOrigin([float(v) for v in origin])
    grid.SetDirection(image.GetDirection())
    return grid


def _to_grid(image: sitk.Image, grid: sitk.Image, default: float) -> np.ndarray:
    """Anti-aliased linear resampling of a float image onto ``grid`` → array ``(z, y, x)``."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    s_in = np.asarray(image.GetSpacing(), float)
    s_out = np.asarray(grid.GetSpacing(), float)
    variance = np.maximum(s_out**2 - s_in**2, 0.0) / 4.0
    if np.any(variance > 0):
        image = sitk.DiscreteGaussian(image, [float(v) for v in variance], 32, 0.01, True)
    out = sitk.Resample(
        image, grid, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(out)


def normalize_on_grid(
    x: np.ndarray, fov: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, dict[str, float]]:
    """Percentile clip + z-score within the Otsu body of the FOV (see module doc).

    Args:
        x: intensities on the grid.
        fov: boolean, grid voxels inside the image's field of view.
        percentiles: clipping percentiles.

    Returns:
        The normalised float32 array and the statistics used (``lo``, ``hi``, ``mean``, ``std``,
        ``body_fraction``).
    """
    values = x[fov] if fov.any() else x.ravel()
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    clipped = np.clip(x, lo, hi)
    v = np.clip(values, lo, hi)
    body = v > otsu_threshold(v, bins=128) if hi > lo else np.ones_like(v, bool)
    if body.sum() < 0.05 * v.size:
        body = np.ones_like(v, bool)
    mean, std = float(v[body].mean()), float(v[body].std())
    if not np.isfinite(std) or std <= 1e-12:
        std = 1.0
    out = (clipped - mean) / std
    out[~fov] = (lo - mean) / std
    stats = {"lo": lo, "hi": hi, "mean": mean, "std": std, "body_fraction": float(body.mean())}
    return out.astype(np.float32), stats


def prepare_case(
    image: sitk.Image,
    liver: sitk.Image | None,
    tumor: sitk.Image | None,
    config: SegConfig,
) -> PreparedCase:
    """Resample and normalise an image (and its masks) onto the training grid.

    Args:
        image: the 3-D image (any modality).
        liver: liver mask on the image grid (liver envelope incl. tumors), or ``None``.
        tumor: tumor mask on the image grid, or ``None`` (taken as empty when ``liver`` is given).
        config: grid and normalisation settings.

    Returns:
        :class:`PreparedCase` with ``x`` (normalised intensities) and ``y`` (labels 0/1/2, tumor
        overriding liver; ``None`` when no liver mask is given) as ``(z, y, x)`` arrays.
    """
    if image.GetDimension() != 3:
        raise InputError(f"segmentation needs a 3-D image, got {image.GetDimension()}-D")
    grid = make_grid(image, config)
    raw = _to_grid(image, grid, default=float(np.min(sitk.GetArrayViewFromImage(image))))
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    # a copy, not a view: a view of the temporary resampled image may be read after SimpleITK
    # freed it (the field of view then differed from run to run)
    fov = sitk.GetArrayFromImage(
        sitk.Resample(ones, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ).astype(bool)
    x, stats = normalize_on_grid(raw, fov, config.clip_percentiles)
    y = None
    if liver is not None:
        y = (_to_grid(sitk.NotEqual(liver, 0), grid, 0.0) >= 0.5).astype(np.uint8)
        if tumor is not None:
            y[_to_grid(sitk.NotEqual(tumor, 0), grid, 0.0) >= 0.5] = 2
    meta = {"spacing_mm": grid.GetSpacing()[0], "fov_fraction": float(fov.mean()), **stats}
    return PreparedCase(x=x, y=y, grid=grid, meta=meta)
