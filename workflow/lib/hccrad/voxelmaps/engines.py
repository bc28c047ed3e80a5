"""Voxel-map engines behind one interface, and writing maps to disk.

``fast`` is :func:`hccrad.voxelmaps.compute_voxel_maps`; ``pyradiomics`` runs PyRadiomics' own
voxel mode with the same settings (the reference the fast engine is tested against, and a
fallback for feature classes the fast engine does not have yet).
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad import imageio
from hccrad.fileio import atomic_path
from hccrad.voxelmaps.core import VoxelMapSettings, available_cpus, can_fork, compute_voxel_maps

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
    """Maps from the chosen engine (``fast`` or ``pyradiomics``)."""
    if engine == "fast":
        return compute_voxel_maps(image, mask, settings)
    if engine == "pyradiomics":
        return pyradiomics_voxel_maps(image, mask, settings)
    raise ValueError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")


def write_voxel_maps(
    image_path: str | Path,
    mask_path: str | Path,
    out_dir: str | Path,
    settings: VoxelMapSettings,
    *,
    engine: str = "fast",
    patient: str | None = None,
    phase: str | None = None,
) -> dict[str, Path]:
    """Compute the maps of one image and write them.

    Writes one Float32 NIfTI per map, ``{class}_{feature}.nii.gz`` (0 outside the mask, as
    PyRadiomics writes its maps: SimpleITK's NIfTI round trip does not keep NaN), and
    ``voxels.parquet``: one row per mask voxel with its ``z, y, x`` array index and one column
    per map (exact values, NaN where a kernel's feature is undefined). Every file is written
    atomically. The NIfTI files are written by ``settings.n_jobs`` forked processes (one map at
    a time each, so memory stays at a few full-size images) while this one writes the table.

    Returns:
        ``{map name or "voxels": path}``.
    """
    image = imageio.read_image(image_path, patient=patient, phase=phase)
    mask = imageio.read_mask(mask_path, image, patient=patient, phase=phase)
    maps = voxel_maps(image, mask, settings, engine)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inside = sitk.GetArrayFromImage(mask) != 0
    names = list(maps)
    jobs = min(settings.n_jobs or available_cpus(), len(names))
    written: dict[str, Path] = {}
    if jobs > 1 and can_fork():
        from concurrent.futures import ProcessPoolExecutor

        call = id(maps)
        _WRITE[call] = (maps, inside, mask, out)
        try:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                tasks = [(call, names[j::jobs]) for j in range(jobs)]
                parts = pool.map(_write_images_worker, tasks)
                _write_table(maps, inside, out)  # meanwhile
                for part in parts:
                    written.update(part)
        finally:
            del _WRITE[call]
    else:
        written = _write_images(names, maps, inside, mask, out)
        _write_table(maps, inside, out)
    written = {name: written[name] for name in names}
    written["voxels"] = out / "voxels.parquet"
    log.info("%d maps of %d voxels (%s engine) in %s", len(maps), inside.sum(), engine, out)
    return written


def _write_images(
    names: list[str],
    maps: dict[str, np.ndarray],
    inside: np.ndarray,
    reference: sitk.Image,
    out: Path,
) -> dict[str, Path]:
    """Write the maps ``names`` as Float32 NIfTI files, 0 outside the mask."""
    written = {}
    for name in names:
        arr = np.zeros(inside.shape, dtype=np.float32)
        arr[inside] = maps[name]
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(reference)
        path = out / f"{name}.nii.gz"
        imageio.write_image(img, path)
        written[name] = path
    return written


#: What the forked NIfTI writers need (maps, mask, output folder) by call, inherited from the
#: parent.
_WRITE: dict[int, tuple[dict[str, np.ndarray], np.ndarray, sitk.Image, Path]] = {}


def _write_images_worker(task: tuple[int, list[str]]) -> dict[str, Path]:
    call, names = task
    maps, inside, mask, out = _WRITE[call]
    return _write_images(names, maps, inside, mask, out)


def _write_table(maps: dict[str, np.ndarray], inside: np.ndarray, out: Path) -> None:
    """Write ``voxels.parquet`` (z, y, x and the exact value of every map), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def column(values: np.ndarray) -> pa.Array:
        # zero-copy; unlike pa.array, this does not import pandas (0.2 s) on first use. NaN
        # stays a value (not null), as pandas writes it
        values = np.ascontiguousarray(values)
        dtype = pa.from_numpy_dtype(values.dtype)
        return pa.Array.from_buffers(dtype, values.size, [None, pa.py_buffer(values)])

    z, y, x = np.nonzero(inside)
    columns = {"z": z, "y": y, "x": x, **maps}
    table = pa.table({name: column(values) for name, values in columns.items()})
    with atomic_path(out / "voxels.parquet") as tmp:
        # float maps hardly repeat: dictionary encoding only costs time (and space)
        pq.write_table(table, tmp, use_dictionary=False)
