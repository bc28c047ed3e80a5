"""Mask formats and segment selection: DICOM SEG, RTSTRUCT, 3D Slicer ``.seg.nrrd``, label images.

:func:`hccrad.imageio.read_mask` dispatches here. What counts as foreground is chosen by a
*selection*, the sheet's ``{kind}_segment`` cell: a label value or segment number (``2``), a
segment name (``Tumor``, case-insensitive: SEG SegmentLabel, RTSTRUCT ROIName, ``.seg.nrrd``
``Segment{i}_Name``), or several of them joined by ``+`` (their union: ``1+2``, ``liver+tumor``).
Without a selection a label image contributes every nonzero voxel, and a SEG, RTSTRUCT or
``.seg.nrrd`` file its only segment (a file with several segments and no selection is refused with
the list of its segments and the column to fill).

- **DICOM SEG** (binary or fractional; read with highdicom): the selected segments' frames are
  placed onto the reference grid through their physical positions. Every foreground pixel must land
  on a reference voxel: in-plane within ``tolerance_mm``, along the slice normal within
  ``max(tolerance_mm, 1 % of the slice spacing)`` (the slack :func:`hccrad.imageio.read_image`
  allows a DICOM slice gap). Frames may cover some slices or a part of the image, in any order or
  direction. A fractional SEG's foreground is a fraction >= 0.5.
- **RTSTRUCT** (read with pydicom): each ``CLOSED_PLANAR`` contour must lie in one image slice plane
  (same tolerance as above). On a slice, the contours of one ROI are filled with the even-odd rule
  (a contour inside another cuts a hole, a contour inside a hole fills an island again, as
  ``CLOSED_PLANAR_XOR`` and common readers do), voxel centres taken as inside when inside the
  filled area or on a contour line (within 0.001 voxel). Selected ROIs are united.
- **3D Slicer ``.seg.nrrd``** (any NRRD with ``Segment{i}_*`` fields): segments are found through
  ``Segment{i}_Name``, ``Segment{i}_LabelValue`` (default 1) and ``Segment{i}_Layer`` (default 0);
  several layers come as a vector image, one component per layer. Numbers select label values.
- **Label images** (NIfTI, NRRD, MHA...): numbers select label values; names are refused.

The frame of reference of a DICOM mask cannot be compared with the image's, which leaves
:func:`~hccrad.imageio.read_image` without DICOM tags: the geometry is what is checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad.errors import InputError

log = logging.getLogger(__name__)

#: Voxel centres this close (in voxels) to a contour line count as on it.
_ON_LINE = 1e-3
#: Largest accepted absolute difference of a direction-cosine entry (as hccrad.imageio).
_DIRECTION_TOLERANCE = 1e-4
#: Relative slack of a position along the slice normal (as read_image's slice-gap check).
_SLICE_SLACK = 0.01
#: Fraction from which a pixel of a fractional SEG is foreground.
FRACTION_THRESHOLD = 0.5


@dataclass(frozen=True)
class Segment:
    """One segment a mask file holds.

    Attributes:
        number: SEG SegmentNumber, RTSTRUCT ROINumber or ``.seg.nrrd`` label value.
        name: SegmentLabel, ROIName or ``Segment{i}_Name`` (None for a plain label image).
        layer: ``.seg.nrrd`` layer (vector component) holding the segment.
    """

    number: int
    name: str | None = None
    layer: int = 0

    def describe(self) -> str:
        """``2 'Tumor'`` (number and name) for messages."""
        return f"{self.number} {self.name!r}" if self.name is not None else str(self.number)


@dataclass(frozen=True)
class _Context:
    """What every error names: patient, phase, file, the mask's kind."""

    patient: str | None
    phase: str | None
    file: Path
    kind: str

    def error(self, message: str) -> InputError:
        return InputError(
            f"{self.kind} mask: {message}", patient=self.patient, phase=self.phase, file=self.file
        )

    @property
    def column(self) -> str:
        return f"{self.kind}_segment"


def parse_selection(selection: str | float | None) -> list[str] | None:
    """Split a ``{kind}_segment`` cell into its parts (``'liver + 2'`` -> ``['liver', '2']``).

    Args:
        selection: the cell; None, NaN (an empty cell of a typed table) or blank means no
            selection; a number (``2``, ``2.0``) selects that number.

    Returns:
        The stripped parts, or None for no selection.

    Raises:
        ValueError: an empty part (``'1++2'``, ``'+'``).
    """
    if selection is None or (isinstance(selection, float) and np.isnan(selection)):
        return None
    if not str(selection).strip():
        return None
    parts = [part.strip() for part in str(selection).split("+")]
    if any(not part for part in parts):
        raise ValueError(f"empty part in segment selection {selection!r}")
    return parts


def _as_number(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        try:
            value = float(token)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _listing(segments: Sequence[Segment]) -> str:
    return ", ".join(s.describe() for s in segments)


def _tokens(selection: str | None, ctx: _Context) -> list[str] | None:
    try:
        return parse_selection(selection)
    except ValueError as exc:
        raise ctx.error(f"{exc} (column {ctx.column})") from exc


def select_segments(
    segments: Sequence[Segment], tokens: list[str] | None, ctx: _Context, what: str
) -> list[Segment]:
    """The segments ``tokens`` names: a number matches ``number`` (else a name), a name matches
    case-insensitively, surrounding blanks ignored.

    Raises:
        InputError: no selection while the file has several segments, a part that matches no
            segment or several; the message lists the file's segments and names the column.
    """
    listing = f"the {what} holds segment(s) {_listing(segments)}"
    if not segments:
        raise ctx.error(f"the {what} holds no segment")
    if tokens is None:
        if len(segments) == 1:
            return list(segments)
        raise ctx.error(
            f"{listing}; choose one or several (joined by '+') by number or name in the "
            f"column {ctx.column}"
        )
    chosen: list[Segment] = []
    for token in tokens:
        number = _as_number(token)
        matches = [s for s in segments if number is not None and s.number == number]
        if not matches:  # a name (also one that looks like a number: an ROI named "2")
            key = token.casefold()
            matches = [s for s in segments if s.name and s.name.strip().casefold() == key]
        if not matches:
            raise ctx.error(f"no segment {token!r} ({ctx.column}); {listing}")
        if len(matches) > 1:
            raise ctx.error(
                f"segment {token!r} ({ctx.column}) is ambiguous: {_listing(matches)}; {listing}"
            )
        chosen.extend(s for s in matches if s not in chosen)
    return chosen


def _describe_choice(chosen: Sequence[Segment]) -> str:
    return "segment " + " + ".join(s.describe() for s in chosen)


# ---------------------------------------------------------------------------------------------
# label images and .seg.nrrd
# ---------------------------------------------------------------------------------------------


def slicer_segments(image: sitk.Image) -> list[Segment]:
    """The segments a 3D Slicer ``.seg.nrrd`` declares in its ``Segment{i}_*`` fields (empty list
    for any other image).

    A missing ``Segment{i}_LabelValue`` is 1; a missing ``Segment{i}_Layer`` is 0 in a one-layer
    file and ``i`` in a file with several layers (Slicer before 4.11 wrote one layer per segment
    without these fields).

    Raises:
        ValueError: a label value or layer that is not an integer.
    """
    keys = set(image.GetMetaDataKeys())
    several_layers = image.GetNumberOfComponentsPerPixel() > 1
    segments = []
    i = 0
    while any(k.startswith(f"Segment{i}_") for k in keys):

        def get(field: str, default: str, i: int = i) -> str:
            key = f"Segment{i}_{field}"
            return image.GetMetaData(key).strip() if key in keys else default

        try:
            number = int(get("LabelValue", "1"))
            layer = int(get("Layer", str(i) if several_layers else "0"))
        except ValueError as exc:
            raise ValueError(f"Segment{i}_LabelValue / Segment{i}_Layer: {exc}") from exc
        segments.append(
            Segment(number=number, name=get("Name", get("ID", f"Segment_{i}")), layer=layer)
        )
        i += 1
    return segments


def label_foreground(
    image: sitk.Image,
    selection: str | None,
    *,
    patient: str | None = None,
    phase: str | None = None,
    file: str | Path = "",
    kind: str = "tumor",
) -> tuple[np.ndarray, str]:
    """Foreground of a label image or ``.seg.nrrd`` on its own grid.

    Args:
        image: the image as read (a vector image for a ``.seg.nrrd`` with several layers).
        selection: the ``{kind}_segment`` cell (see the module docstring).
        patient: for error messages.
        phase: for error messages.
        file: for error messages.
        kind: "tumor", "liver", ...: for error messages and the column name.

    Returns:
        Boolean array (z, y, x) and a description of what was selected, for messages.

    Raises:
        InputError: bad selection (see :func:`select_segments`), names on a plain label image, a
            vector image without segment fields, a layer the image does not have.
    """
    ctx = _Context(patient, phase, Path(file), kind)
    tokens = _tokens(selection, ctx)
    n_comp = image.GetNumberOfComponentsPerPixel()
    try:
        segments = slicer_segments(image)
    except ValueError as exc:
        raise ctx.error(f"bad 3D Slicer segment field {exc}") from exc
    arr = sitk.GetArrayViewFromImage(image)
    if segments:
        chosen = select_segments(segments, tokens, ctx, "segmentation (.seg.nrrd)")
        fg = np.zeros(image.GetSize()[::-1], dtype=bool)
        for seg in chosen:
            if seg.layer >= n_comp or seg.layer < 0:
                raise ctx.error(
                    f"segment {seg.describe()} is in layer {seg.layer}, the image has {n_comp}"
                )
            layer = arr[..., seg.layer] if n_comp > 1 else arr
            fg |= layer == seg.number
        return fg, _describe_choice(chosen)
    if n_comp != 1:
        raise ctx.error(
            f"expected a scalar label image, got {n_comp} components per voxel and no "
            "Segment{i}_* fields of a 3D Slicer segmentation"
        )
    if tokens is None:
        return arr != 0, "no foreground voxel"
    values = []
    for token in tokens:
        number = _as_number(token)
        if number is None:
            present = np.unique(arr[arr != 0])
            raise ctx.error(
                f"segment {token!r} ({ctx.column}) is a name, but a label image has only label "
                f"values: {', '.join(str(v) for v in present[:20].tolist()) or 'none'}"
            )
        values.append(number)
    fg = np.isin(arr, values)
    what = "label " + " + ".join(str(v) for v in values)
    if not fg.any():
        present = np.unique(arr[arr != 0])
        what += f"; the file holds label(s) {', '.join(str(v) for v in present[:20].tolist())}"
    return fg, what


# ---------------------------------------------------------------------------------------------
# DICOM: detection, folders
# ---------------------------------------------------------------------------------------------


def is_dicom_file(path: str | Path) -> bool:
    """True for a file ending in ``.dcm`` or carrying the DICOM preamble (``DICM`` at 128)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() == ".dcm":
        return True
    with open(p, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def _dicom_header(path: Path, ctx: _Context):  # -> pydicom.Dataset
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise ctx.error(f"cannot read DICOM file {path.name}: {exc}") from exc


def _mask_file_in_folder(folder: Path, ctx: _Context) -> Path:
    """The one SEG or RTSTRUCT file of a mask folder (hidden files are ignored)."""
    entries = sorted(e for e in folder.iterdir() if not e.name.startswith("."))
    found, other = [], []
    for entry in entries:
        if not entry.is_file() or not is_dicom_file(entry):
            other.append(entry.name)
            continue
        modality = str(_dicom_header(entry, ctx).get("Modality", ""))
        (found if modality in ("SEG", "RTSTRUCT") else other).append(
            entry.name if modality in ("SEG", "RTSTRUCT") else f"{entry.name} ({modality})"
        )
    if len(found) == 1 and not other:
        return folder / found[0]
    parts = []
    if found:
        parts.append(f"{len(found)} SEG/RTSTRUCT files ({', '.join(found[:5])})")
    if other:
        more = f" and {len(other) - 5} more" if len(other) > 5 else ""
        parts.append(f"other entries: {', '.join(other[:5])}{more}")
    raise InputError(
        f"{ctx.kind} mask is a folder, which must hold exactly one DICOM SEG or RTSTRUCT file "
        f"and nothing else; it holds {' and '.join(parts) or 'nothing'}",
        patient=ctx.patient,
        phase=ctx.phase,
        file=ctx.file,
    )


def read_dicom_mask(
    path: str | Path,
    reference: sitk.Image,
    selection: str | None,
    *,
    patient: str | None = None,
    phase: str | None = None,
    kind: str = "tumor",
    tolerance_mm: float = 1e-3,
) -> tuple[np.ndarray, str]:
    """Read a DICOM SEG or RTSTRUCT file (or a folder holding exactly one) onto ``reference``.

    Args:
        path: the file or folder.
        reference: the image the mask belongs to; the result lies on its grid.
        selection: the ``{kind}_segment`` cell (see the module docstring).
        patient: for error messages.
        phase: for error messages.
        kind: "tumor", "liver", ...: for error messages and the column name.
        tolerance_mm: geometry tolerance (see the module docstring).

    Returns:
        Boolean array (z, y, x) on ``reference``'s grid and a description of the selection.

    Raises:
        InputError: a folder not holding exactly one SEG/RTSTRUCT, another kind of DICOM, an
            unreadable file, a bad selection, frames or contours off the image grid.
    """
    p = Path(path)
    ctx = _Context(patient, phase, p, kind)
    if p.is_dir():
        p = _mask_file_in_folder(p, ctx)
        ctx = _Context(patient, phase, p, kind)
    header = _dicom_header(p, ctx)
    modality = str(header.get("Modality", ""))
    tokens = _tokens(selection, ctx)
    if modality == "SEG":
        return _read_seg(p, reference, tokens, ctx, tolerance_mm)
    if modality == "RTSTRUCT":
        return _read_rtstruct(p, reference, tokens, ctx, tolerance_mm)
    sop = header.get("SOPClassUID")
    sop_name = getattr(sop, "name", str(sop)) if sop is not None else "unknown SOP class"
    raise ctx.error(
        f"a DICOM file of modality {modality or '?'} ({sop_name}) is neither a SEG nor an "
        "RTSTRUCT; a mask must be a SEG, an RTSTRUCT or a label image"
    )


# ---------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------


def _index_matrix(reference: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(M, origin)`` with continuous index (x, y, z) = ``M @ (point - origin)``."""
    direction = np.asarray(reference.GetDirection(), float).reshape(3, 3)
    spacing = np.asarray(reference.GetSpacing(), float)
    return np.linalg.inv(direction * spacing), np.asarray(reference.GetOrigin(), float)


def _axis_tolerances(reference: sitk.Image, tolerance_mm: float) -> np.ndarray:
    """Tolerance in mm per reference axis (x, y, z): ``tolerance_mm`` in plane, the slice slack
    along z."""
    spacing = np.asarray(reference.GetSpacing(), float)
    return np.array(
        [tolerance_mm, tolerance_mm, max(tolerance_mm, _SLICE_SLACK * spacing[2])], float
    )


def _plain(values: np.ndarray, decimals: int = 4) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.asarray(values, float).ravel(), decimals))


# ---------------------------------------------------------------------------------------------
# DICOM SEG
# ---------------------------------------------------------------------------------------------


def _read_seg(
    path: Path, reference: sitk.Image, tokens: list[str] | None, ctx: _Context, tol: float
) -> tuple[np.ndarray, str]:
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise ctx.error(f"cannot read DICOM SEG: {exc}") from exc
    segments = [
        Segment(int(d.SegmentNumber), str(d.get("SegmentLabel", ""))) for d in seg.SegmentSequence
    ]
    chosen = select_segments(segments, tokens, ctx, "DICOM SEG")
    try:
        volume = seg.get_volume(
            segment_numbers=[s.number for s in chosen],
            combine_segments=False,
            rescale_fractional=True,
            allow_missing_positions=True,
        )
    except Exception as exc:
        raise ctx.error(
            f"the SEG's frames do not form a regular stack of parallel slices: {exc}"
        ) from exc
    arr = np.asarray(volume.array)
    if arr.ndim == 4:
        fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
        fg = np.any(arr >= FRACTION_THRESHOLD if fractional else arr > 0, axis=-1)
    else:
        fg = arr > 0
    what = _describe_choice(chosen)
    return _place_frames(fg, np.asarray(volume.affine, float), reference, ctx, tol), what


def _place_frames(
    fg: np.ndarray, affine: np.ndarray, reference: sitk.Image, ctx: _Context, tol: float
) -> np.ndarray:
    """``fg`` (slice, row, column of a volume with ``affine``, as highdicom's ``Volume``) on
    ``reference``'s grid; every foreground voxel must land on a reference voxel."""
    M, origin = _index_matrix(reference)
    spacing = np.asarray(reference.GetSpacing(), float)
    steps = M @ affine[:3, :3]  # reference index steps (x, y, z) per slice, row, column step
    shift = M @ (affine[:3, 3] - origin)
    diffs = []
    for name, col in (("row", 1), ("column", 2)):
        step = steps[:, col]
        unit = np.zeros(3)
        unit[np.argmax(np.abs(step))] = np.sign(step[np.argmax(np.abs(step))])
        err_mm = np.abs(step - unit) * spacing
        if np.max(err_mm) > tol:
            seg_step = affine[:3, col]
            diffs.append(
                f"the SEG's step along a {name} ({_plain(seg_step)} mm, "
                f"{np.linalg.norm(seg_step):.4g} mm long) is not one image voxel along an image "
                f"axis (image spacing {_plain(spacing, 6)} mm, direction "
                f"{_plain(reference.GetDirection())})"
            )
    if diffs:
        raise ctx.error("the SEG's frames do not lie on the image grid: " + "; ".join(diffs))
    out = np.zeros(reference.GetSize()[::-1], dtype=bool)
    where = np.argwhere(fg)
    if not len(where):
        return out
    cont = where.astype(float) @ steps.T + shift  # continuous (x, y, z) reference indices
    index = np.round(cont).astype(np.int64)
    off_mm = np.abs(cont - index) * spacing
    limits = _axis_tolerances(reference, tol)
    if (off_mm > limits).any():
        worst = np.max(off_mm, axis=0)
        raise ctx.error(
            "the SEG's frames do not lie on the image grid: frame pixels fall between image "
            f"voxels by up to {_plain(worst)} mm along the image's x, y, z (accepted "
            f"{_plain(limits)} mm)"
        )
    size = np.asarray(reference.GetSize())
    outside = ((index < 0) | (index >= size)).any(axis=1)
    if outside.any():
        raise ctx.error(
            f"{int(outside.sum())} foreground pixel(s) of the SEG lie outside the image "
            f"(image size {tuple(int(s) for s in size)}; indices from "
            f"{tuple(int(v) for v in index.min(axis=0))} to "
            f"{tuple(int(v) for v in index.max(axis=0))})"
        )
    out[index[:, 2], index[:, 1], index[:, 0]] = True
    return out


# ---------------------------------------------------------------------------------------------
# RTSTRUCT
# ---------------------------------------------------------------------------------------------


def _read_rtstruct(
    path: Path, reference: sitk.Image, tokens: list[str] | None, ctx: _Context, tol: float
) -> tuple[np.ndarray, str]:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ctx.error(f"cannot read RTSTRUCT: {exc}") from exc
    segments = [
        Segment(int(r.ROINumber), str(r.get("ROIName", "")))
        for r in ds.get("StructureSetROISequence", [])
    ]
    chosen = select_segments(segments, tokens, ctx, "RTSTRUCT")
    numbers = {s.number for s in chosen}
    contours: dict[int, list] = {n: [] for n in numbers}
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        if number in numbers:
            contours[number].extend(roi.get("ContourSequence", []))
    out = np.zeros(reference.GetSize()[::-1], dtype=bool)
    for seg in chosen:
        out |= _rasterise_roi(contours[seg.number], seg, reference, ctx, tol)
    return out, _describe_choice(chosen)


def _contour_points(contour, where: str, ctx: _Context) -> np.ndarray:
    """ContourData as an (n, 3) array; parsed from the raw bytes where possible (pydicom's DS
    objects cost ~0.1 ms per contour, and a liver ROI can have thousands)."""
    raw = contour.get_item("ContourData") if "ContourData" in contour else None
    value = getattr(raw, "value", None)
    try:
        if isinstance(value, bytes):
            flat = np.array(value.split(b"\\"), dtype=float)
        else:
            flat = np.asarray(contour.get("ContourData", []), dtype=float)
    except ValueError as exc:
        raise ctx.error(f"{where}: unreadable ContourData ({exc})") from exc
    if flat.size % 3:
        raise ctx.error(f"{where}: ContourData holds {flat.size} numbers, not x, y, z triplets")
    return flat.reshape(-1, 3)


def _rasterise_roi(
    contours: Sequence, seg: Segment, reference: sitk.Image, ctx: _Context, tol: float
) -> np.ndarray:
    """One ROI's contours filled on ``reference``'s grid (even-odd per slice plane)."""
    M, origin = _index_matrix(reference)
    spacing = np.asarray(reference.GetSpacing(), float)
    size = np.asarray(reference.GetSize())
    limits = _axis_tolerances(reference, tol)
    planes: dict[tuple[int, int], list[np.ndarray]] = {}
    for n, contour in enumerate(contours, start=1):
        ctype = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
        where = f"ROI {seg.describe()}, contour {n}"
        if ctype not in ("CLOSED_PLANAR", "CLOSED_PLANAR_XOR"):
            raise ctx.error(f"{where} is {ctype}; only CLOSED_PLANAR contours describe an area")
        points = _contour_points(contour, where, ctx)
        if not len(points):
            continue
        cont = (points - origin) @ M.T  # continuous (x, y, z) reference indices
        centre = np.round(np.median(cont, axis=0))
        off_mm = np.abs(cont - centre) * spacing
        fits = [a for a in range(3) if np.max(off_mm[:, a]) <= limits[a]]
        if not fits:
            axis = 2
            z_mm = cont[:, axis] * spacing[axis]
            raise ctx.error(
                f"{where} does not lie in an image slice plane: its points are off the nearest "
                f"slice by up to {np.max(off_mm[:, axis]):.4g} mm (accepted {limits[axis]:.4g} "
                f"mm; they span {np.ptp(z_mm):.4g} mm along the slice normal, slice spacing "
                f"{spacing[axis]:.4g} mm)"
            )
        axis = fits[-1]
        k = int(centre[axis])
        if not 0 <= k < size[axis]:
            raise ctx.error(
                f"{where} lies in slice {k} along image axis {'xyz'[axis]}, outside the image "
                f"(size {tuple(int(s) for s in size)})"
            )
        planes.setdefault((axis, k), []).append(cont)
    out = np.zeros(size[::-1], dtype=bool)
    for (axis, k), polys in planes.items():
        u, v = [a for a in range(3) if a != axis]
        # fill in (v, u) order = array order of the two remaining axes (z, y, x reversed)
        filled = fill_polygons([p[:, [v, u]] for p in polys], (int(size[v]), int(size[u])))
        index: list[slice | int] = [slice(None)] * 3
        index[2 - axis] = k
        out[tuple(index)] |= filled
    return out


def fill_polygons(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise closed polygons on a pixel grid with the even-odd rule.

    A pixel (centre at integer coordinates) is inside when its centre lies inside an odd number
    of the polygons (scanline crossings, half-open in the row coordinate) or on one of their
    edges (within 0.001 pixel): a polygon through the centres of a region's border pixels (as
    OpenCV's ``findContours`` traces them) gives the region back.

    Args:
        polygons: arrays of vertices ``(n, 2)`` in (row, column) pixel coordinates; each is
            closed implicitly (last vertex to first).
        shape: (rows, columns) of the output.

    Returns:
        Boolean array of ``shape``.
    """
    rows, cols = shape
    out = np.zeros(shape, dtype=bool)
    polys = [np.asarray(p, float) for p in polygons if len(p)]
    if not polys:
        return out
    a0 = np.concatenate([p[:, 0] for p in polys])
    b0 = np.concatenate([p[:, 1] for p in polys])
    a1 = np.concatenate([np.roll(p[:, 0], -1) for p in polys])
    b1 = np.concatenate([np.roll(p[:, 1], -1) for p in polys])
    # interior: even-odd scanline on integer rows
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    first = max(int(np.ceil(lo.min())), 0)
    last = min(int(np.floor(hi.max())), rows - 1)
    if first <= last:
        r = np.arange(first, last + 1, dtype=float)[:, None]
        crosses = (lo[None, :] <= r) & (r < hi[None, :])
        ri, ei = np.nonzero(crosses)
        if len(ri):
            with np.errstate(divide="ignore", invalid="ignore"):
                b = b0[ei] + (r[ri, 0] - a0[ei]) * (b1[ei] - b0[ei]) / (a1[ei] - a0[ei])
            order = np.lexsort((b, ri))
            ri, b = ri[order], b[order]
            start = np.clip(np.ceil(b[0::2] - _ON_LINE), 0, cols).astype(int)
            stop = np.clip(np.floor(b[1::2] + _ON_LINE) + 1, 0, cols).astype(int)
            keep = stop > start
            diff = np.zeros((last - first + 1, cols + 1), dtype=np.int32)
            np.add.at(diff, (ri[0::2][keep], start[keep]), 1)
            np.add.at(diff, (ri[0::2][keep], stop[keep]), -1)
            out[first : last + 1] |= np.cumsum(diff[:, :cols], axis=1) > 0
    # boundary: pixel centres on an edge
    for d0, d1, o0, o1, dom_is_row in (
        (a0, a1, b0, b1, True),
        (b0, b1, a0, a1, False),
    ):
        span = np.abs(d1 - d0)
        other_span = np.abs(o1 - o0)
        sel = span >= other_span if dom_is_row else span > other_span
        if not sel.any():
            continue
        d0s, d1s, o0s, o1s = d0[sel], d1[sel], o0[sel], o1[sel]
        start = np.ceil(np.minimum(d0s, d1s) - _ON_LINE).astype(np.int64)
        stop = np.floor(np.maximum(d0s, d1s) + _ON_LINE).astype(np.int64)
        count = np.maximum(stop - start + 1, 0)
        if not count.sum():
            continue
        edge = np.repeat(np.arange(len(start)), count)
        step = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        d = (start[edge] + step).astype(float)
        denom = d1s[edge] - d0s[edge]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(denom != 0, (d - d0s[edge]) / denom, 0.0)
        o = o0s[edge] + t * (o1s[edge] - o0s[edge])
        on = np.abs(o - np.round(o)) <= _ON_LINE
        di, oi = d[on].astype(np.int64), np.round(o[on]).astype(np.int64)
        ri_, ci_ = (di, oi) if dom_is_row else (oi, di)
        inside = (ri_ >= 0) & (ri_ < rows) & (ci_ >= 0) & (ci_ < cols)
        out[ri_[inside], ci_[inside]] = True
    return out
