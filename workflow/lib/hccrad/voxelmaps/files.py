"""Voxel-map files: NIfTI maps cropped to the ROI, the voxel table, and reading a map back.

A map folder holds one Float32 NIfTI per map, ``{class}_{feature}.nii.gz``, on the ROI's
bounding box widened by the kernel radius (clipped to the image) — the box PyRadiomics' voxel
mode returns its maps on — with that box's true origin, so every map overlays the image in any
viewer; 0 outside the mask. Beside them ``voxels.parquet``: one row per mask voxel with its
``z, y, x`` index on the full image grid and the exact value of every map (NaN where a kernel's
feature is undefined). ``docs/voxelmaps.md`` describes the format.

Every map of a folder shares one grid and one data type, so the NIfTI header SimpleITK writes
for the box is written once and reused: each map file is that header followed by the map's
voxels, gzip-compressed in a thread pool (zlib releases the GIL). A map file is byte for byte
what ``sitk.WriteImage`` writes uncompressed, then compressed (tested).
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad import imageio
from hccrad.fileio import atomic_path

#: zlib level of the map files: the maps are mostly zeros outside the ROI and float noise
#: inside, where higher levels save little and cost several times the time.
COMPRESS_LEVEL = 1

#: One slice per array axis (z, y, x).
Box = tuple[slice, ...]


def roi_box(inside: np.ndarray, margin: int) -> Box:
    """The bounding box of ``inside`` (z, y, x) widened by ``margin`` voxels, clipped to the
    array (PyRadiomics' ``cropToTumorMask`` with ``padDistance = kernelRadius``)."""
    box = []
    for axes, n in zip(((1, 2), (0, 2), (0, 1)), inside.shape, strict=True):
        hit = np.flatnonzero(inside.any(axis=axes))
        if hit.size == 0:
            raise ValueError("the mask is empty")
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, n)))
    return tuple(box)


def box_image(reference: sitk.Image, box: Box) -> sitk.Image:
    """An empty Float32 image on ``box`` of ``reference``'s grid (its origin at the box's first
    voxel, same spacing and direction)."""
    shape = tuple(s.stop - s.start for s in box)
    img = sitk.GetImageFromArray(np.zeros(shape, dtype=np.float32))
    img.SetSpacing(reference.GetSpacing())
    img.SetDirection(reference.GetDirection())
    start = tuple(int(s.start) for s in box[::-1])  # x, y, z
    img.SetOrigin(reference.TransformIndexToPhysicalPoint(start))
    return img


def write_maps(
    maps: Mapping[str, np.ndarray],
    mask: sitk.Image,
    out: Path,
    margin: int,
    *,
    threads: int = 1,
    images: Mapping[str | Path, sitk.Image] | None = None,
) -> dict[str, Path]:
    """Write every map as a cropped Float32 ``{name}.nii.gz`` and ``voxels.parquet``, atomically.

    Args:
        maps: ``{name: values}`` of the mask voxels in ``np.nonzero`` order of ``mask``'s array.
        mask: the ROI (non-zero) on the image grid.
        out: output folder (created).
        margin: voxels added around the ROI's bounding box (the kernel radius).
        threads: files written at a time.
        images: further images to write meanwhile, ``{path: image}``
            (:func:`hccrad.imageio.write_image`), e.g. the resampled image the maps belong to.

    Returns:
        ``{map name or "voxels": path}``, the maps in the order of ``maps``.
    """
    out.mkdir(parents=True, exist_ok=True)
    inside = sitk.GetArrayViewFromImage(mask) != 0
    box = roi_box(inside, margin)
    header = _nifti_header(box_image(mask, box), out)
    in_box = inside[box]
    names = list(maps)

    def one(name: str) -> Path:
        arr = np.zeros(in_box.shape, dtype="<f4")
        arr[in_box] = maps[name]
        path = out / f"{name}.nii.gz"
        if header is None:  # not a plain NIfTI-1 header: let SimpleITK write it
            img = sitk.GetImageFromArray(arr)
            img.CopyInformation(box_image(mask, box))
            with atomic_path(path, suffix=".nii.gz") as tmp:
                sitk.WriteImage(img, str(tmp), True)
            return path
        data = gzip.compress(header + arr.tobytes(), compresslevel=COMPRESS_LEVEL, mtime=0)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path

    with ThreadPoolExecutor(max(1, threads)) as pool:
        # the largest files first; SimpleITK and zlib release the GIL while they write
        others = [pool.submit(imageio.write_image, im, p) for p, im in (images or {}).items()]
        others.append(pool.submit(write_table, maps, inside, out))
        paths = list(pool.map(one, names))
        for task in others:
            task.result()
    written = dict(zip(names, paths, strict=True))
    written["voxels"] = out / "voxels.parquet"
    return written


def _nifti_header(template: sitk.Image, out: Path) -> bytes | None:
    """The bytes SimpleITK writes before the voxels of ``template`` as uncompressed NIfTI-1
    (little-endian, voxels right after the header), or None for any other layout."""
    fd, name = tempfile.mkstemp(prefix=".header.", suffix=".nii", dir=out)
    os.close(fd)
    try:
        sitk.WriteImage(template, name, False)
        raw = Path(name).read_bytes()
    finally:
        Path(name).unlink(missing_ok=True)
    if len(raw) < 352 or struct.unpack("<i", raw[:4])[0] != 348:
        return None
    offset = int(struct.unpack("<f", raw[108:112])[0])
    size = template.GetNumberOfPixels() * 4
    if template.GetPixelID() != sitk.sitkFloat32 or len(raw) != offset + size:
        return None
    return raw[:offset]


def write_table(maps: Mapping[str, np.ndarray], inside: np.ndarray, out: Path) -> Path:
    """Write ``voxels.parquet`` (z, y, x on the full grid and the exact value of every map)."""
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
    path = out / "voxels.parquet"
    with atomic_path(path) as tmp:
        # float maps hardly repeat: dictionary encoding only costs time (and space)
        pq.write_table(table, tmp, use_dictionary=False)
    return path


def map_on_grid(map_image: sitk.Image, reference: sitk.Image, fill: float = 0.0) -> np.ndarray:
    """The array of a (cropped) map file on ``reference``'s full grid, ``fill`` outside its box.

    Raises:
        ValueError: When the map's grid is not a box of ``reference``'s (spacing, direction,
            origin on a voxel).
    """
    start_xyz = reference.TransformPhysicalPointToContinuousIndex(map_image.GetOrigin())
    start = np.rint(start_xyz).astype(int)[::-1]
    same = np.allclose(map_image.GetSpacing(), reference.GetSpacing(), rtol=1e-5)
    same &= np.allclose(map_image.GetDirection(), reference.GetDirection(), atol=1e-5)
    same &= bool(np.allclose(start_xyz, start[::-1], atol=1e-3))
    arr = sitk.GetArrayFromImage(map_image)
    stop = start + arr.shape
    if not same or (start < 0).any() or (stop > reference.GetSize()[::-1]).any():
        raise ValueError("the map's grid is not a box of the reference grid")
    full = np.full(reference.GetSize()[::-1], fill, dtype=arr.dtype)
    full[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = arr
    return full
