"""Per-patient input tensors for the deep models, from a registered image and a region mask.

All arrays are LPS-oriented ``(z, y, x)`` (axial slices along ``z``). The builders return a
:class:`DeepInput` written as ``.npz`` (contract in :mod:`hccrad.deep`):

* :func:`build_slices` — axial slices at offsets from the region's largest cross-section: the
  habitat study's 5 slices (``neighbours=2``: offsets -2..2) or the MIL study's 11
  (``offsets=MIL_OFFSETS``); one instance per slice, ``x`` of shape ``(N, 1, size, size)``.
* :func:`build_multiphase` — the early-recurrence input: the ``k`` consecutive slices with the
  largest total region area, taken from every phase; one instance per phase with the ``k`` slices
  as channels, ``x`` of shape ``(P, k, size, size)``.
* :func:`build_cube` — a cube around the region resized to ``size³``, ``x`` of shape
  ``(1, size, size, size)``.

**Crop.** The in-plane box is the region's bounding box over all its slices (so every instance of
a patient shares it), grown by ``margin_mm`` on each side, then made square around its centre
(the longer side wins); the cube uses the 3-D bounding box made cubic the same way. Parts of a box
outside the image are filled with ``pad_value``.

**Offsets outside the volume.** An offset whose slice lies outside the image is kept as an
all-``pad_value`` instance with ``z = -1`` (the instance count stays fixed; MIL features ignore
such instances, see :mod:`hccrad.deep.mil`). Offsets outside the *region* but inside the image are
real slices (peritumoral context), as in the study.

**Intensities.** ``x = image / scale`` (e.g. ``scale=100`` turns the MR "z x 100" normalisation
back into standard deviations; CT windowed to [0, 1] uses 1). An intensity ``window`` ``(lo, hi)``
(in those units) then clips to ``[lo, hi]`` and maps it linearly to ``[0, 1]`` (as MONAI's
``ScaleIntensityRanged`` with ``clip``), before padding, so that ``pad_value`` keeps its meaning;
with ``mask_to_region`` voxels outside the region become ``pad_value``. Resizing is linear
(``scipy.ndimage.zoom``, order 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hccrad import fileio

#: The MIL study's slice offsets from the largest cross-section.
MIL_OFFSETS: tuple[int, ...] = (0, -1, 1, -2, 2, -4, 4, -7, 7, -9, 9)


@dataclass
class DeepInput:
    """One patient's input tensor and its provenance (see :mod:`hccrad.deep`)."""

    x: np.ndarray
    kind: str
    z: np.ndarray
    offsets: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write as ``.npz`` atomically."""
        # the temporary name ends in .npz, or numpy would append one
        with fileio.atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(
                tmp,
                x=self.x.astype(np.float32),
                kind=np.array(self.kind),
                z=self.z.astype(np.int64),
                offsets=self.offsets.astype(np.int64),
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
            )

    @classmethod
    def load(cls, path: str | Path) -> DeepInput:
        """Read a file written by :meth:`save`."""
        with np.load(path) as data:
            return cls(
                x=data["x"],
                kind=str(data["kind"]),
                z=data["z"],
                offsets=data["offsets"],
                meta=json.loads(str(data["meta"])),
            )


def to_array(image: sitk.Image) -> np.ndarray:
    """LPS-oriented ``(z, y, x)`` float array of an image or mask."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def region_areas(mask: np.ndarray) -> np.ndarray:
    """Number of region voxels on every axial slice."""
    return (mask != 0).reshape(mask.shape[0], -1).sum(1)


def largest_slice(mask: np.ndarray) -> int:
    """Axial index of the largest cross-section (the lowest index among equal maxima).

    Raises:
        ValueError: For an empty mask.
    """
    area = region_areas(mask)
    if not area.any():
        raise ValueError("empty region mask")
    return int(np.argmax(area))


def largest_consecutive(mask: np.ndarray, k: int) -> list[int]:
    """The ``k`` consecutive axial slices with the largest total region area.

    Among windows with the same total the lowest start wins. When the volume has fewer than ``k``
    slices, all slices are returned.
    """
    area = region_areas(mask)
    if not area.any():
        raise ValueError("empty region mask")
    k = min(k, len(area))
    sums = np.convolve(area, np.ones(k, dtype=np.int64), mode="valid")
    start = int(np.argmax(sums))
    return list(range(start, start + k))


def slice_indices(center: int, offsets: Sequence[int], depth: int) -> np.ndarray:
    """``center + offset`` per offset, -1 where the slice lies outside ``[0, depth)``."""
    z = np.array([center + o for o in offsets], dtype=np.int64)
    z[(z < 0) | (z >= depth)] = -1
    return z


def square_box(
    lo: Sequence[int], hi: Sequence[int], margin: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Grow the box ``[lo, hi)`` by ``margin`` voxels and make it cubic (square) about its centre.

    Returns:
        ``(start, stop)`` voxel indices (may extend beyond the image; see :func:`crop`).
    """
    lo = np.asarray(lo) - np.asarray(margin)
    hi = np.asarray(hi) + np.asarray(margin)
    side = int((hi - lo).max())
    centre2 = lo + hi  # twice the centre, integer
    start = (centre2 - side) // 2
    return start, start + side


def crop(
    arr: np.ndarray, start: Sequence[int], stop: Sequence[int], pad_value: float
) -> np.ndarray:
    """``arr[start:stop]`` on its last ``len(start)`` axes, padded with ``pad_value`` outside."""
    nd = len(start)
    lead = arr.shape[: arr.ndim - nd]
    shape = lead + tuple(int(b - a) for a, b in zip(start, stop, strict=True))
    out = np.full(shape, pad_value, dtype=np.float32)
    src, dst = [slice(None)] * len(lead), [slice(None)] * len(lead)
    for axis, (a, b) in enumerate(zip(start, stop, strict=True)):
        n = arr.shape[len(lead) + axis]
        s0, s1 = max(int(a), 0), min(int(b), n)
        if s1 <= s0:
            return out
        src.append(slice(s0, s1))
        dst.append(slice(s0 - int(a), s1 - int(a)))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def resize(arr: np.ndarray, size: int, spatial: int) -> np.ndarray:
    """Linear resize of the last ``spatial`` axes to ``size`` each."""
    factors = [1.0] * (arr.ndim - spatial) + [size / n for n in arr.shape[-spatial:]]
    out = ndimage.zoom(arr, factors, order=1, mode="nearest", grid_mode=True)
    return out.astype(np.float32)


def _margin_vox(margin_mm: float, spacing: Sequence[float]) -> list[int]:
    """Margin in voxels per axis of an LPS ``(z, y, x)`` array (spacing given as x, y, z)."""
    sx, sy, sz = spacing
    return [round(margin_mm / s) for s in (sz, sy, sx)]


def _planar_box(region: np.ndarray, margin: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(region.any(0))
    return square_box([ys.min(), xs.min()], [ys.max() + 1, xs.max() + 1], margin[1:])


def apply_window(img: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Clip to ``[lo, hi]`` and map that range linearly to ``[0, 1]`` (float32).

    Raises:
        ValueError: Unless ``window`` is two finite numbers with ``lo < hi``.
    """
    if len(window) != 2 or not np.all(np.isfinite(window)) or not window[0] < window[1]:
        raise ValueError(f"an intensity window is [lo, hi] with lo < hi, got {list(window)}")
    lo, hi = (np.float32(v) for v in window)
    return ((np.clip(img, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def _prepare(
    image: sitk.Image,
    mask: sitk.Image,
    scale: float,
    mask_to_region: bool,
    pad_value: float,
    window: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    img = to_array(image).astype(np.float32) / np.float32(scale)
    if window is not None:
        img = apply_window(img, window)
    region = to_array(mask) != 0
    if img.shape != region.shape:
        raise ValueError(f"image {img.shape} and mask {region.shape} differ in size")
    if not region.any():
        raise ValueError("empty region mask")
    if mask_to_region:
        img = np.where(region, img, np.float32(pad_value))
    return img, region


def build_slices(
    image: sitk.Image,
    mask: sitk.Image,
    *,
    offsets: Sequence[int] | None = None,
    neighbours: int = 2,
    size: int = 224,
    margin_mm: float = 10.0,
    scale: float = 1.0,
    mask_to_region: bool = False,
    pad_value: float = 0.0,
    window: Sequence[float] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> DeepInput:
    """Axial slices around the region's largest cross-section (see the module docstring).

    Args:
        image: Registered image.
        mask: Region mask on the image grid.
        offsets: Slice offsets from the largest cross-section; default ``-neighbours..neighbours``.
        neighbours: Slices on each side when ``offsets`` is None.
        size: Output height and width.
        margin_mm: In-plane margin around the region's bounding box.
        scale: Intensity divisor.
        mask_to_region: Blank voxels outside the region.
        pad_value: Fill value outside the image / region.
        window: Intensity window ``(lo, hi)`` applied after ``scale``; ``None``: none.
        meta: Extra provenance stored with the tensor.

    Returns:
        ``x`` of shape ``(len(offsets), 1, size, size)``.
    """
    if offsets is None:
        offsets = list(range(-neighbours, neighbours + 1))
    img, region = _prepare(image, mask, scale, mask_to_region, pad_value, window)
    centre = largest_slice(region)
    z = slice_indices(centre, offsets, img.shape[0])
    margin = _margin_vox(margin_mm, image.GetSpacing())
    start, stop = _planar_box(region, margin)
    planes = []
    for zi in z:
        if zi < 0:
            planes.append(np.full((size, size), pad_value, dtype=np.float32))
        else:
            planes.append(resize(crop(img[zi], start, stop, pad_value), size, 2))
    info = {
        **(meta or {}),
        "largest_slice": centre,
        "box_yx": [start.tolist(), stop.tolist()],
        "spacing": list(image.GetSpacing()),
    }
    return DeepInput(np.stack(planes)[:, None], "slices", z, np.asarray(offsets), info)


def build_multiphase(
    images: Mapping[str, sitk.Image],
    mask: sitk.Image,
    *,
    k: int = 3,
    size: int = 256,
    margin_mm: float = 10.0,
    scale: float = 1.0,
    mask_to_region: bool = False,
    pad_value: float = 0.0,
    window: Sequence[float] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> DeepInput:
    """The ``k`` consecutive largest slices of every phase (registered to one grid).

    Returns:
        ``x`` of shape ``(n_phases, k, size, size)``, phases in the mapping's order.
    """
    phases = list(images)
    first = images[phases[0]]
    _, region = _prepare(first, mask, scale, False, pad_value)
    zs = largest_consecutive(region, k)
    margin = _margin_vox(margin_mm, first.GetSpacing())
    start, stop = _planar_box(region, margin)
    stack = []
    for phase in phases:
        img, _ = _prepare(images[phase], mask, scale, mask_to_region, pad_value, window)
        planes = [resize(crop(img[zi], start, stop, pad_value), size, 2) for zi in zs]
        stack.append(np.stack(planes))
    info = {**(meta or {}), "phases": phases, "box_yx": [start.tolist(), stop.tolist()]}
    z = np.asarray(zs)
    offsets = z - z[0]
    return DeepInput(np.stack(stack), "slices", z, offsets, info)


def build_cube(
    image: sitk.Image,
    mask: sitk.Image,
    *,
    size: int = 64,
    margin_mm: float = 10.0,
    scale: float = 1.0,
    mask_to_region: bool = False,
    pad_value: float = 0.0,
    window: Sequence[float] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> DeepInput:
    """A cube around the region's 3-D bounding box (plus margin), resized to ``size³``.

    The cube is cubic in voxels; on the workflow's isotropic grid that is cubic in mm.

    Returns:
        ``x`` of shape ``(1, size, size, size)``.
    """
    img, region = _prepare(image, mask, scale, mask_to_region, pad_value, window)
    idx = np.nonzero(region)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    start, stop = square_box(lo, hi, _margin_vox(margin_mm, image.GetSpacing()))
    cube = resize(crop(img, start, stop, pad_value), size, 3)
    info = {**(meta or {}), "box_zyx": [start.tolist(), stop.tolist()]}
    empty = np.zeros(0, dtype=np.int64)
    return DeepInput(cube[None], "volume", empty, empty, info)
