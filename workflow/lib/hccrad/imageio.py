"""Reading and writing images, masks and JSON files.

Every image leaves :func:`read_image` as a 3-D ``Float32`` :class:`SimpleITK.Image` without any
metadata (no DICOM tag is ever carried into an output, for privacy); every mask leaves
:func:`read_mask` as a binary ``UInt8`` image on the grid of its reference image. Writers are
atomic: they write a temporary file in the destination folder and move it into place with
:func:`os.replace`, so a crashed or killed job never leaves a partial output behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad import dicomio, maskio
from hccrad.errors import InputError
from hccrad.fileio import atomic_path, write_json

__all__ = ["write_json"]  # re-exported: JSON writing lives in hccrad.fileio

log = logging.getLogger(__name__)

#: File name endings read as single image files.
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Endings :func:`write_image` accepts (single-file formats only, so the write can be atomic).
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")

_DIRECTION_TOLERANCE = 1e-4


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def strip_metadata(image: sitk.Image) -> sitk.Image:
    """Remove every metadata entry (DICOM tags, file notes) from ``image`` in place.

    Args:
        image: any SimpleITK image.

    Returns:
        The same image object, for chaining.
    """
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    return image


def _check_3d(image: sitk.Image, path: Path, patient: str | None, phase: str | None) -> None:
    if image.GetDimension() != 3:
        raise InputError(
            f"expected a 3-D image, got {image.GetDimension()}-D (size {image.GetSize()})",
            patient=patient,
            phase=phase,
            file=path,
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components "
            "per voxel",
            patient=patient,
            phase=phase,
            file=path,
        )


def _nifti_bytes_needed(head: bytes) -> int:
    """Bytes a NIfTI-1/-2 file must hold (voxel offset + voxel data), from its header bytes."""
    import struct

    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr == 348:  # NIfTI-1
            dims = struct.unpack(endian + "8h", head[40:56])
            (bitpix,) = struct.unpack(endian + "h", head[72:74])
            (offset,) = struct.unpack(endian + "f", head[108:112])
            break
        if sizeof_hdr == 540:  # NIfTI-2
            (bitpix,) = struct.unpack(endian + "h", head[14:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            (offset,) = struct.unpack(endian + "q", head[168:176])
            break
    else:
        raise ValueError("not a NIfTI-1 or NIfTI-2 header")
    n_dims = dims[0]
    if not 1 <= n_dims <= 7:
        raise ValueError(f"invalid number of dimensions {n_dims}")
    n_voxels = int(np.prod([max(1, d) for d in dims[1 : n_dims + 1]], dtype=np.int64))
    offset = int(offset) if int(offset) > 0 else (352 if sizeof_hdr == 348 else 544)
    return offset + n_voxels * bitpix // 8


def _check_nifti_complete(path: Path, patient: str | None, phase: str | None) -> None:
    """Raise when a NIfTI file holds fewer voxel bytes than its header announces.

    ITK's NIfTI reader silently fills a truncated file with zeros; this catches it. The header is
    parsed directly (no nibabel import on every job's hot path). For ``.nii.gz`` the gzip
    trailer's uncompressed size (ISIZE, the size modulo 2**32) is compared first; only when it
    disagrees (a truncated or multi-member stream) is the whole stream decompressed to count.
    """
    import gzip

    try:
        if _suffix(path) == ".nii.gz":
            with gzip.open(path, "rb") as fh:
                head = fh.read(544)
            need = _nifti_bytes_needed(head)
            with open(path, "rb") as raw:
                raw.seek(-4, os.SEEK_END)
                isize = int.from_bytes(raw.read(4), "little")
            if isize == need % (1 << 32):
                return
            have = 0
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    have += len(chunk)
        else:
            with open(path, "rb") as fh:
                need = _nifti_bytes_needed(fh.read(544))
            have = path.stat().st_size
    except Exception as exc:
        raise InputError(
            f"cannot read image: corrupt NIfTI file ({exc})",
            patient=patient,
            phase=phase,
            file=path,
        ) from exc
    if have < need:
        raise InputError(
            f"cannot read image: truncated NIfTI file ({have} of {need} bytes)",
            patient=patient,
            phase=phase,
            file=path,
        )


def _sitk_read(path: Path, what: str, patient: str | None, phase: str | None) -> sitk.Image:
    """``sitk.ReadImage`` with ITK's error turned into an InputError naming patient/phase/file."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"cannot read {what}: {str(exc).strip().splitlines()[-1]}",
            patient=patient,
            phase=phase,
            file=path,
        ) from exc


def read_image(
    path: str | os.PathLike[str],
    *,
    patient: str | None = None,
    phase: str | None = None,
    series: str | None = None,
) -> sitk.Image:
    """Read a 3-D image file or one image series of a DICOM folder.

    A DICOM folder is read by :func:`hccrad.dicomio.read_series`: non-image objects,
    localizers and small or differently oriented decoy series are skipped, slices are sorted
    along the slice normal, RescaleSlope/RescaleIntercept are applied per slice (CT comes out in
    HU), the grid is checked (no gantry tilt, no missing slice, even spacing); enhanced or
    legacy multi-frame files and compressed transfer syntaxes are read (docs/inputs.md).

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` file, or a folder
            of DICOM files (files that are not DICOM are ignored).
        patient: patient id, only used in error messages.
        phase: phase name, only used in error messages.
        series: for a DICOM folder holding several image series, the one to read: its
            SeriesInstanceUID, or else its SeriesDescription (case-insensitive, exactly one
            match); the sheet's ``series`` column. Ignored for a file.

    Returns:
        The image as ``Float32`` with its metadata dictionary cleared.

    Raises:
        InputError: missing path, unreadable or corrupt file, folder without DICOM images or
            with several series and no ``series``, non-3-D or non-scalar image, a DICOM series
            that is not one regular grid (tilt, missing slices, uneven spacing) or whose pixel
            data cannot be decoded.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", patient=patient, phase=phase, file=p)
    if p.is_dir():
        image = dicomio.read_series(p, series=series, patient=patient, phase=phase)
    else:
        if _suffix(p) not in IMAGE_SUFFIXES:
            log.warning("unexpected image file ending %r for %s; trying anyway", _suffix(p), p)
        if _suffix(p) in (".nii", ".nii.gz"):
            _check_nifti_complete(p, patient, phase)
        image = _sitk_read(p, "image", patient, phase)
    _check_3d(image, p, patient, phase)
    image = sitk.Cast(image, sitk.sitkFloat32)
    strip_metadata(image)
    arr = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(arr)):
        raise InputError("image holds NaN or infinite values", patient=patient, phase=phase, file=p)
    return image


def _plain(values: np.ndarray, decimals: int) -> tuple[float, ...]:
    """Rounded values as plain floats (for messages)."""
    return tuple(float(v) for v in np.round(values, decimals))


def check_geometry(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    tolerance_mm: float = 1e-3,
    direction_tolerance: float = _DIRECTION_TOLERANCE,
) -> list[str]:
    """Describe how the voxel grid of ``image`` differs from that of ``reference``.

    Args:
        image: image to check.
        reference: image whose grid ``image`` should share.
        tolerance_mm: largest accepted difference of spacing (per axis) and origin (distance).
        direction_tolerance: largest accepted absolute difference of a direction-cosine entry.

    Returns:
        Human-readable differences; an empty list when the grids agree.
    """
    diffs: list[str] = []
    if image.GetDimension() != reference.GetDimension():
        return [f"dimension {image.GetDimension()} != {reference.GetDimension()}"]
    if image.GetSize() != reference.GetSize():
        diffs.append(f"size {image.GetSize()} != {reference.GetSize()}")
    sp, rsp = np.asarray(image.GetSpacing()), np.asarray(reference.GetSpacing())
    if np.max(np.abs(sp - rsp)) > tolerance_mm:
        diffs.append(
            f"spacing {_plain(sp, 6)} != {_plain(rsp, 6)} "
            f"(max difference {np.max(np.abs(sp - rsp)):.4g} mm)"
        )
    org, rorg = np.asarray(image.GetOrigin()), np.asarray(reference.GetOrigin())
    dist = float(np.linalg.norm(org - rorg))
    if dist > tolerance_mm:
        diffs.append(f"origin {_plain(org, 4)} != {_plain(rorg, 4)} (off by {dist:.4g} mm)")
    d, rd = np.asarray(image.GetDirection()), np.asarray(reference.GetDirection())
    if np.max(np.abs(d - rd)) > direction_tolerance:
        diffs.append(
            f"direction {_plain(d, 4)} != {_plain(rd, 4)} "
            f"(max difference {np.max(np.abs(d - rd)):.4g})"
        )
    return diffs


def _place_on_grid(
    fg: np.ndarray, mask: sitk.Image, reference: sitk.Image, *, tolerance_mm: float
) -> np.ndarray | None:
    """``fg`` (the foreground of ``mask``, array order z, y, x) on the grid of ``reference`` when
    ``mask``'s grid is a part of it: same spacing and direction, an origin on one of its voxels
    (a cropped mask, a segmentation covering some slices) and every foreground voxel inside it.
    None when the grids are not compatible so (another spacing or orientation, an origin between
    voxels, foreground outside the image)."""
    sp, rsp = np.asarray(mask.GetSpacing()), np.asarray(reference.GetSpacing())
    d, rd = np.asarray(mask.GetDirection()), np.asarray(reference.GetDirection())
    if np.max(np.abs(sp - rsp)) > tolerance_mm or np.max(np.abs(d - rd)) > _DIRECTION_TOLERANCE:
        return None
    index = np.asarray(reference.TransformPhysicalPointToContinuousIndex(mask.GetOrigin()))
    offset = np.round(index).astype(int)
    residual = (index - offset) * rsp  # mm along each axis
    if np.linalg.norm(residual) > tolerance_mm:
        return None
    out = np.zeros(reference.GetSize()[::-1], dtype=bool)
    where = np.argwhere(fg) + offset[::-1]  # (z, y, x) indices on the reference grid
    if len(where) and ((where < 0).any() or (where >= np.asarray(out.shape)).any()):
        return None
    out[tuple(where.T)] = True
    return out


def _read_label_mask(
    p: Path,
    reference: sitk.Image,
    selection: str | None,
    *,
    patient: str | None,
    phase: str | None,
    kind: str,
    tolerance_mm: float,
) -> tuple[np.ndarray, str]:
    """The selected foreground of a label image or ``.seg.nrrd`` on ``reference``'s grid (array
    order z, y, x; placed there when the file covers a part of it) and what was selected."""
    raw = _sitk_read(p, f"{kind} mask", patient, phase)
    if raw.GetNumberOfComponentsPerPixel() == 1 or raw.GetDimension() != 3:
        _check_3d(raw, p, patient, phase)
    fg, what = maskio.label_foreground(
        raw, selection, patient=patient, phase=phase, file=p, kind=kind
    )
    diffs = check_geometry(raw, reference, tolerance_mm=tolerance_mm)
    if diffs:
        fg = _place_on_grid(fg, raw, reference, tolerance_mm=tolerance_mm)
        if fg is None:
            raise InputError(
                f"{kind} mask does not lie on the image grid, nor on a part of it: "
                + "; ".join(diffs),
                patient=patient,
                phase=phase,
                file=p,
            )
        log.info(
            "%s %s: %s mask on a part of the image grid (%s), placed onto it",
            patient,
            phase,
            kind,
            "; ".join(diffs),
        )
    return fg, what


def read_mask(
    path: str | os.PathLike[str],
    reference: sitk.Image,
    *,
    patient: str | None = None,
    phase: str | None = None,
    kind: str = "tumor",
    tolerance_mm: float = 1e-3,
    allow_empty: bool = False,
    label: int | None = None,
    segment: str | None = None,
) -> sitk.Image:
    """Read a mask in any supported format onto the grid of ``reference``.

    Formats (details in :mod:`hccrad.maskio` and ``docs/inputs.md``): a label image (NIfTI, NRRD,
    MHA...), a 3D Slicer ``.seg.nrrd``, a DICOM SEG, a DICOM RTSTRUCT, or a folder holding exactly
    one SEG or RTSTRUCT file. A label image whose grid is a part of the image's (same spacing and
    orientation, its origin on one of the image's voxels, its foreground inside the image: a mask
    cropped to the lesion, a segmentation covering some slices) is placed onto the image's grid;
    any other grid is refused. SEG frames and RTSTRUCT contours are placed through their physical
    positions, which must fall on the image's voxels and slice planes.

    Args:
        path: mask file or folder.
        reference: image the mask belongs to.
        patient: patient id, for error messages.
        phase: phase name, for error messages.
        kind: what the mask is ("tumor", "liver"...), for error messages and the name of the
            sheet column ``{kind}_segment`` they point to.
        tolerance_mm: geometry tolerance, see :func:`check_geometry`.
        allow_empty: accept a mask without any foreground voxel.
        label: keep only voxels equal to this label (multi-label files); same as
            ``segment=str(label)``.
        segment: the sheet's ``{kind}_segment`` cell: a label value or segment number, a segment
            name (case-insensitive), or several joined by ``+`` (their union). None: every nonzero
            voxel of a label image, the only segment of a SEG / RTSTRUCT / ``.seg.nrrd``.

    Returns:
        Binary ``UInt8`` image (0/1) without metadata.

    Raises:
        InputError: unreadable file, unknown or missing segment selection, grid neither
            ``reference``'s nor a part of it, empty mask.
        ValueError: ``label`` and ``segment`` both given and different.
    """
    p = Path(path)
    if label is not None and segment is not None and str(segment).strip() != str(label):
        raise ValueError(f"read_mask: label={label} and segment={segment!r} disagree")
    selection = segment if segment is not None else (str(label) if label is not None else None)
    if not p.exists():
        raise InputError(f"{kind} mask: no such file", patient=patient, phase=phase, file=p)
    if p.is_dir() or maskio.is_dicom_file(p):
        fg, what = maskio.read_dicom_mask(
            p,
            reference,
            selection,
            patient=patient,
            phase=phase,
            kind=kind,
            tolerance_mm=tolerance_mm,
        )
    else:
        fg, what = _read_label_mask(
            p,
            reference,
            selection,
            patient=patient,
            phase=phase,
            kind=kind,
            tolerance_mm=tolerance_mm,
        )
    mask = sitk.GetImageFromArray(fg.astype(np.uint8))
    mask.CopyInformation(reference)
    if not allow_empty and not fg.any():
        raise InputError(f"{kind} mask is empty ({what})", patient=patient, phase=phase, file=p)
    return mask


def write_image(image: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True) -> None:
    """Write ``image`` atomically, without metadata.

    Args:
        image: image to write.
        path: destination; ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.mha`` (two-file formats such as
            ``.mhd``/``.nhdr`` cannot be replaced atomically and are refused). Parent folders are
            created.
        compress: compress the voxel data where the format allows it.

    Raises:
        ValueError: unsupported file ending.
        RuntimeError: SimpleITK failed to write (no partial file is left behind).
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"cannot write {p}: use one of {', '.join(WRITE_SUFFIXES)}")
    out = sitk.Image(image)
    strip_metadata(out)
    # the temporary name ends like the destination: SimpleITK picks the format from it
    with atomic_path(p, suffix=suffix) as tmp:
        sitk.WriteImage(out, str(tmp), compress)
    log.debug("wrote %s", p)
