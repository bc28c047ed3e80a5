"""Voxel-map engines behind one interface, and writing maps to disk.

``fast`` is :func:`hccrad.voxelmaps.compute_voxel_maps`; ``pyradiomics`` runs PyRadiomics' own
voxel mode with the same settings (the reference the fast engine is tested against, and a
fallback for feature classes the fast engine does not have yet).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad import imageio
from hccrad.voxelmaps.core import VoxelMapSettings, available_cpus, compute_voxel_maps
from hccrad.voxelmaps.files import roi_box, write_maps

log = logging.getLogger(__name__)

ENGINES = ("fast", "pyradiomics")


def pyradiomics_voxel_maps(
    image: sitk.Image, mask: sitk.Image, settings: VoxelMapSettings
) -> dict[str, np.ndarray]:
    """PyRadiomics voxel-mode maps in the fast engine's format.

    Returns:
        ``{"{class}_{feature}": values}`` of the mask voxels in ``np.nonzero(mask)`` order
        (PyRadiomics' maps cover the ROI's bounding box; they are placed back on the full grid).
    """
    from radiomics import featureextractor

    kwargs: dict[str, object] = {
        "kernelRadius": settings.kernel_radius,
        "maskedKernel": True,
        "voxelArrayShift": settings.voxel_array_shift,
        "voxelBatch": settings.voxel_batch,
        "label": 1,
    }
    if settings.bin_count is not None:
        kwargs["binCount"] = settings.bin_count
    else:
        kwargs["binWidth"] = settings.bin_width
    extractor = featureextractor.RadiomicsFeatureExtractor(**kwargs)
    extractor.disableAllFeatures()
    for cls in settings.classes:
        names = settings.features.get(cls) if settings.features else None
        extractor.enableFeaturesByName(**{cls: list(names) if names else []})
    binary = sitk.Cast(mask != 0, sitk.sitkUInt8)
    result = extractor.execute(image, binary, voxelBased=True)
    inside = sitk.GetArrayViewFromImage(binary) != 0
    out: dict[str, np.ndarray] = {}
    for key, value in result.items():
        if not isinstance(value, sitk.Image):
            continue
        start = image.TransformPhysicalPointToIndex(value.GetOrigin())[::-1]
        arr = sitk.GetArrayFromImage(value)
        full = np.full(inside.shape, np.nan)
        full[
            start[0] : start[0] + arr.shape[0],
            start[1] : start[1] + arr.shape[1],
            start[2] : start[2] + arr.shape[2],
        ] = arr
        out[key.removeprefix("original_")] = full[inside]
    return out


def voxel_maps(
    image: sitk.Image, mask: sitk.Image, settings: VoxelMapSettings, engine: str = "fast"
) -> dict[str, np.ndarray]:
    """Maps from the chosen engine (``fast`` or ``pyradiomics``).

    The fast engine gets the image and mask cropped to the ROI's bounding box plus the kernel
    radius (the same values in the same order: kernels only see mask voxels), so that it neither
    converts nor copies into its worker processes the rest of the field of view.
    """
    if engine == "fast":
        box = roi_box(sitk.GetArrayViewFromImage(mask) != 0, settings.kernel_radius)
        xyz = box[::-1]
        image = image[xyz[0], xyz[1], xyz[2]]
        mask = mask[xyz[0], xyz[1], xyz[2]]
        return compute_voxel_maps(image, mask, settings)
    if engine == "pyradiomics":
        return pyradiomics_voxel_maps(image, mask, settings)
    raise ValueError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")


def write_voxel_maps(
    image: str | Path | sitk.Image,
    mask: str | Path | sitk.Image,
    out_dir: str | Path,
    settings: VoxelMapSettings,
    *,
    engine: str = "fast",
    patient: str | None = None,
    phase: str | None = None,
    images: Mapping[str | Path, sitk.Image] | None = None,
) -> dict[str, Path]:
    """Compute the maps of one image and write them (format: :mod:`hccrad.voxelmaps.files`).

    Writes one Float32 NIfTI per map, ``{class}_{feature}.nii.gz``, cropped to the ROI's
    bounding box plus the kernel radius (the box PyRadiomics returns its maps on) with the box's
    true origin, 0 outside the mask (as PyRadiomics writes its maps: SimpleITK's NIfTI round trip
    does not keep NaN), and ``voxels.parquet``: one row per mask voxel with its ``z, y, x`` index
    on the full image grid and one column per map (exact values, NaN where a kernel's feature is
    undefined). Every file is written atomically, ``settings.n_jobs`` (default: all CPUs) at a
    time.

    Args:
        image: image file (read by :func:`hccrad.imageio.read_image`) or an image in memory.
        mask: mask file (read onto the image's grid by :func:`hccrad.imageio.read_mask`) or a
            mask in memory on the image's grid (non-zero = ROI).
        images: further images written while the maps are, ``{path: image}`` (the habitat step's
            resampled image and mask).

    Returns:
        ``{map name or "voxels": path}``.
    """
    if not isinstance(image, sitk.Image):
        image = imageio.read_image(image, patient=patient, phase=phase)
    if not isinstance(mask, sitk.Image):
        mask = imageio.read_mask(mask, image, patient=patient, phase=phase)
    maps = voxel_maps(image, mask, settings, engine)
    jobs = settings.n_jobs or available_cpus()
    out = Path(out_dir)
    written = write_maps(maps, mask, out, settings.kernel_radius, threads=jobs, images=images)
    log.info("%d maps (%s engine) in %s", len(maps), engine, out_dir)
    return written
