"""DICOM image folders as real exports bring them: scan, group, select, check and read a series.

A folder is scanned once with pydicom (headers only, ``stop_before_pixels``). Files that are not
DICOM are ignored; non-image objects (SEG, RTSTRUCT, SR, presentation states, key objects, RT
dose/plan...) and localizers (``ImageType`` containing ``LOCALIZER``) are skipped with a log line.
The remaining images are grouped by SeriesInstanceUID (the real tag, not GDCM's series id), and
one series is selected: by the sheet's ``series`` cell when given (SeriesInstanceUID exact, else
SeriesDescription case-insensitive and matching exactly one series), else the only image series
left after dropping decoys (series of at most :data:`DECOY_MAX_SLICES` slices beside a larger
one, series whose orientation differs from the orientation holding most slices). The selected
slices must be one regular grid: same size, pixel spacing and orientation, positions along the
slice normal (no gantry tilt), no duplicates, no missing slice, even spacing. Pixels are read by
GDCM (SimpleITK), falling back to pydicom's decoders (pylibjpeg, pyjpegls) where GDCM cannot
decode; an enhanced or legacy-converted multi-frame file is read with pydicom and its geometry
taken from the Shared/Per-frame Functional Groups. Rescale slope/intercept are applied per slice
or frame, so CT comes out in HU.

Public: :func:`list_series` (the image series of a folder, for building cohort sheets) and
:func:`read_series` (the volume of one series, used by :func:`hccrad.imageio.read_image`).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any  # pydicom datasets and their values

import numpy as np
import SimpleITK as sitk

from hccrad.errors import InputError

__all__ = ["DECOY_MAX_SLICES", "SeriesInfo", "list_series", "read_series"]

log = logging.getLogger(__name__)

#: A series with at most this many single-frame slices is a decoy (scout, dose screen, key
#: images) when the folder holds a larger series.
DECOY_MAX_SLICES = 3
#: A gap larger than this multiple of the typical (median) spacing is reported as missing slices.
MISSING_SLICE_FACTOR = 1.5
#: Slices whose positions move sideways by more than this fraction of a pixel over the series
#: (relative to the slice normal) are tilted (gantry tilt) and refused.
TILT_TOLERANCE_PX = 0.1
#: Orientation vectors (ImageOrientationPatient) that differ by less than this are the same.
ORIENTATION_TOLERANCE = 1e-3
#: Series whose slice normals differ by more than this angle have different orientations.
ORIENTATION_ANGLE_DEG = 5.0

#: Modalities of DICOM objects that never hold an image volume.
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SR", "PR", "KO", "REG",
     "DOC", "FID", "RWV", "AU", "ECG", "HD", "PLAN", "OT_PDF"}
)  # fmt: skip

_HEADER_TAGS = [
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "SeriesDescription",
    "ImageType",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "RescaleSlope",
    "RescaleIntercept",
    "NumberOfFrames",
    "AcquisitionDate",
    "AcquisitionTime",
    "SeriesTime",
    "ContentTime",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]


@dataclass(frozen=True)
class _Frame:
    """One 2-D slice: a single-frame file or one frame of a multi-frame file."""

    file: str
    index: int | None  # frame index in a multi-frame file; None for a single-frame file
    position: tuple[float, float, float]
    orientation: tuple[float, ...]  # ImageOrientationPatient, 6 values
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing), as in DICOM
    size: tuple[int, int]  # (rows, columns)
    slope: float
    intercept: float


@dataclass(eq=False)
class SeriesInfo:
    """One image series of a folder.

    Attributes:
        uid: SeriesInstanceUID.
        description: SeriesDescription (``""`` when absent).
        modality: Modality (``CT``, ``MR``...).
        n_slices: number of slices (frames, for a multi-frame file).
        orientation: ImageOrientationPatient of the first slice (row then column direction
            cosines, 6 values).
        acquisition_time: AcquisitionDate + AcquisitionTime as written in the header (else
            SeriesTime, else ContentTime; ``""`` when none is there), e.g. ``"20010812 101530"``.
        multiframe: the series is one enhanced / legacy-converted multi-frame file.
        transfer_syntaxes: names of the transfer syntaxes its files use.
        files: its files (unordered).
    """

    uid: str
    description: str
    modality: str
    n_slices: int
    orientation: tuple[float, ...]
    acquisition_time: str
    multiframe: bool
    transfer_syntaxes: tuple[str, ...]
    files: tuple[str, ...]
    _frames: list[_Frame] = field(default_factory=list, repr=False)
    _mixed: str = field(default="", repr=False)  # why its slices do not form one stack

    @property
    def plane(self) -> str:
        """``axial``, ``coronal``, ``sagittal`` (normal within 10° of an axis) or ``oblique``."""
        normal = np.abs(_normal(self.orientation))
        axis = int(np.argmax(normal))
        if normal[axis] < math.cos(math.radians(10)):
            return "oblique"
        return ("sagittal", "coronal", "axial")[axis]

    def summary(self) -> str:
        """One line for error messages: UID, description, slices, modality, plane."""
        return f"{self.uid} ({self.public()})"

    def public(self) -> str:
        """The series without its UID, for log lines of successful jobs (the privacy audit
        refuses identifiers in results/, logs included): description, slices, modality, plane."""
        return (
            f"{self.description or 'no description'!s}; {self.n_slices} slice(s); "
            f"{self.modality or 'no modality'}; {self.plane}"
        )


@dataclass
class _Scan:
    folder: Path
    series: list[SeriesInfo]
    skipped: list[str]  # one line per skipped object or group of objects


# ----------------------------------------------------------------------------- scanning


def _normal(orientation: tuple[float, ...] | np.ndarray) -> np.ndarray:
    o = np.asarray(orientation, float)
    n = np.cross(o[:3], o[3:])
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else n


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _first(ds: Any, *path: str) -> Any:
    """``ds.A[0].B[0].C`` for a path of (sequence, ..., keyword); None if anything is missing."""
    cur = ds
    for i, key in enumerate(path):
        cur = getattr(cur, key, None) if cur is not None else None
        if cur is None:
            return None
        if i < len(path) - 1:
            if len(cur) == 0:
                return None
            cur = cur[0]
    return cur


def _acquisition_time(ds: Any) -> str:
    for date_key, time_key in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("SeriesDate", "SeriesTime"),
        ("ContentDate", "ContentTime"),
    ):
        t = str(getattr(ds, time_key, "") or "").strip()
        if t:
            d = str(getattr(ds, date_key, "") or "").strip()
            return f"{d} {t}".strip()
    return ""


def _multiframe_frames(ds: Any, file: str) -> list[_Frame] | str:
    """Frames of an enhanced / legacy-converted multi-frame file, or why they cannot be read."""
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared[0] if shared else None
    if per_frame is None or len(per_frame) != n:
        return f"multi-frame file of {n} frames without one Per-frame Functional Group per frame"

    def group(item: Any, *path: str) -> Any:
        value = _first(item, *path)
        if value is None and shared is not None:
            value = _first(shared, *path)
        return value

    frames = []
    for i, item in enumerate(per_frame):
        pos = _floats(group(item, "PlanePositionSequence", "ImagePositionPatient"), 3)
        ori = _floats(group(item, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(group(item, "PixelMeasuresSequence", "PixelSpacing"), 2)
        if pos is None or ori is None or spacing is None:
            return f"frame {i + 1} has no plane position, orientation or pixel spacing"
        slope = group(item, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = group(item, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None:  # legacy-converted files may keep them at the top level
            slope = getattr(ds, "RescaleSlope", 1.0)
            intercept = getattr(ds, "RescaleIntercept", 0.0)
        frames.append(
            _Frame(
                file=file,
                index=i,
                position=pos,
                orientation=ori,
                pixel_spacing=spacing,
                size=(int(ds.Rows), int(ds.Columns)),
                slope=float(slope if slope is not None else 1.0),
                intercept=float(intercept if intercept is not None else 0.0),
            )
        )
    return frames


def _read_without_preamble(name: str) -> Any:
    """Header of a DICOM file written without preamble and 'DICM' (older exports), else None."""
    import pydicom

    try:
        ds = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True)
    except Exception as exc:  # force=True reads arbitrary bytes: any failure means "not DICOM"
        log.debug("not a DICOM file, ignored: %s (%s)", name, exc)
        return None
    if "SOPClassUID" not in ds:
        log.debug("not a DICOM file, ignored: %s", name)
        return None
    return ds


def _not_an_image(ds: Any, modality: str) -> str | None:
    """Why the dataset is no slice of an image series (a non-image object, a localizer, a colour
    image), or None."""
    sop = ds.get("SOPClassUID")
    sop_name = getattr(sop, "name", str(sop)) if sop is not None else ""
    if sop is None or "Image Storage" not in sop_name or modality in NON_IMAGE_MODALITIES:
        return f"non-image object ({sop_name or 'no SOP class'}, {modality})"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return f"localizer (ImageType {'/'.join(image_type)})"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return f"colour image ({ds.get('SamplesPerPixel')} samples per pixel)"
    return None


def _frames_of(ds: Any, name: str) -> list[_Frame] | str:
    """The frames of an image file (one for a single-frame file, each frame of a multi-frame
    one with its functional-group geometry), or why it cannot be placed."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _multiframe_frames(ds, name)
    pos = _floats(ds.get("ImagePositionPatient"), 3)
    ori = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if pos is None or ori is None or spacing is None or "Rows" not in ds:
        return "image without position, orientation or pixel spacing"
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        return f"{n_frames} frames without functional groups"
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return [
        _Frame(
            file=name,
            index=None,
            position=pos,
            orientation=ori,
            pixel_spacing=spacing,
            size=(int(ds.Rows), int(ds.Columns)),
            slope=float(slope) if slope is not None else 1.0,
            intercept=float(intercept) if intercept is not None else 0.0,
        )
    ]


def _scan(folder: Path) -> _Scan:
    """Read the headers of every file in ``folder`` (not recursive) and group the images."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, dict] = {}
    skipped: list[str] = []
    with os.scandir(folder) as it:
        names = sorted(e.path for e in it if e.is_file() and not e.name.startswith("."))
    for name in names:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except InvalidDicomError:
            ds = _read_without_preamble(name)
        except (OSError, ValueError, EOFError, KeyError) as exc:
            ds = None
            log.debug("unreadable DICOM file, ignored: %s (%s)", name, exc)
        if ds is None:
            continue
        base = os.path.basename(name)
        modality = str(ds.get("Modality", "") or "").upper()
        reason = _not_an_image(ds, modality)
        frames = _frames_of(ds, name) if reason is None else reason
        if isinstance(frames, str):
            skipped.append(f"{base}: {frames}")
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        g = groups.setdefault(
            uid,
            {
                "description": str(ds.get("SeriesDescription", "") or "").strip(),
                "modality": modality,
                "time": _acquisition_time(ds),
                "frames": [],
                "files": [],
                "syntaxes": set(),
                "multiframe": False,
            },
        )
        g["frames"].extend(frames)
        g["files"].append(name)
        ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        g["syntaxes"].add(getattr(ts, "name", str(ts)))
        g["multiframe"] |= "PerFrameFunctionalGroupsSequence" in ds
    series = [_make_series(uid, g, skipped) for uid, g in groups.items()]
    series.sort(key=lambda s: (-s.n_slices, s.uid))
    return _Scan(folder=folder, series=series, skipped=skipped)


def _same_orientation(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return bool(np.max(np.abs(np.asarray(a) - np.asarray(b))) < ORIENTATION_TOLERANCE)


def _make_series(uid: str, g: dict, skipped: list[str]) -> SeriesInfo:
    """A SeriesInfo from a header group; a handful of slices of another orientation is dropped."""
    frames: list[_Frame] = g["frames"]
    by_orientation: list[list[_Frame]] = []
    for f in frames:
        for grp in by_orientation:
            if _same_orientation(grp[0].orientation, f.orientation):
                grp.append(f)
                break
        else:
            by_orientation.append([f])
    by_orientation.sort(key=len, reverse=True)
    mixed = ""
    main = by_orientation[0]
    for other in by_orientation[1:]:
        if len(other) <= DECOY_MAX_SLICES and len(main) > len(other):
            skipped.append(
                f"{len(other)} slice(s) of series '{g['description']}' in another orientation "
                f"than its other {len(main)} "
                f"({', '.join(sorted(os.path.basename(f.file) for f in other))})"
            )
        else:
            mixed = (
                f"its slices have {len(by_orientation)} different orientations "
                f"({', '.join(str(len(o)) for o in by_orientation)} slices)"
            )
            main = frames
            break
    files = tuple(sorted({f.file for f in main}))
    return SeriesInfo(
        uid=uid,
        description=g["description"],
        modality=g["modality"],
        n_slices=len(main),
        orientation=main[0].orientation,
        acquisition_time=g["time"],
        multiframe=g["multiframe"],
        transfer_syntaxes=tuple(sorted(g["syntaxes"])),
        files=files,
        _frames=main,
        _mixed=mixed,
    )


def list_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """The image series of a DICOM folder (not recursive), largest first.

    Non-DICOM files, non-image objects (SEG, RTSTRUCT, SR, ...) and localizers are left out;
    decoys (small series, other orientations) are listed: the caller decides.

    Args:
        folder: a folder of DICOM files.

    Returns:
        One :class:`SeriesInfo` per SeriesInstanceUID (uid, description, modality, n_slices,
        orientation, plane, acquisition_time, multiframe, transfer_syntaxes, files).
    """
    return _scan(Path(folder)).series


# ----------------------------------------------------------------------------- selecting


def _listing(series: list[SeriesInfo]) -> str:
    return "; ".join(s.summary() for s in series)


def _select(scan: _Scan, wanted: str | None, patient: str | None, phase: str | None) -> SeriesInfo:
    folder = scan.folder
    for line in scan.skipped:
        log.info("DICOM folder %s: skipped %s", folder, line)
    if not scan.series:
        extra = f" (skipped: {'; '.join(scan.skipped)})" if scan.skipped else ""
        raise InputError(
            f"folder holds no DICOM series of images{extra}",
            patient=patient,
            phase=phase,
            file=folder,
        )
    if wanted is not None and str(wanted).strip():
        key = str(wanted).strip()
        exact = [s for s in scan.series if s.uid == key]
        if exact:
            return exact[0]
        named = [s for s in scan.series if s.description.strip().lower() == key.lower()]
        if len(named) == 1:
            return named[0]
        if not named:
            raise InputError(
                f"no DICOM image series with SeriesInstanceUID or SeriesDescription {key!r} "
                f"(column 'series'); the folder holds: {_listing(scan.series)}",
                patient=patient,
                phase=phase,
                file=folder,
            )
        raise InputError(
            f"{len(named)} DICOM image series have the SeriesDescription {key!r}; put the "
            f"SeriesInstanceUID of one into the sheet's 'series' column: {_listing(named)}",
            patient=patient,
            phase=phase,
            file=folder,
        )
    candidates = list(scan.series)
    if len(candidates) > 1:
        largest = max(s.n_slices for s in candidates)
        small = [s for s in candidates if s.n_slices <= DECOY_MAX_SLICES < largest]
        candidates = [s for s in candidates if s not in small]
        clusters: list[list[SeriesInfo]] = []  # series of about the same orientation
        for s in candidates:
            for c in clusters:
                if _angle_deg(c[0].orientation, s.orientation) <= ORIENTATION_ANGLE_DEG:
                    c.append(s)
                    break
            else:
                clusters.append([s])
        main = max(clusters, key=lambda c: sum(s.n_slices for s in c))
        other = [s for s in candidates if s not in main]
        candidates = [s for s in candidates if s not in other]
        for s in small:
            log.info("DICOM folder %s: skipped small series (%s)", folder, s.public())
        for s in other:
            log.info(
                "DICOM folder %s: skipped series of another orientation (%s)", folder, s.public()
            )
    if len(candidates) > 1:
        raise InputError(
            f"folder holds {len(candidates)} DICOM series of images; put the SeriesInstanceUID "
            "or SeriesDescription of the one to read into the sheet's 'series' column: "
            + _listing(candidates),
            patient=patient,
            phase=phase,
            file=folder,
        )
    return candidates[0]


def _angle_deg(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Angle between the slice normals of two orientations (0-90 degrees)."""
    c = abs(float(np.dot(_normal(a), _normal(b))))
    return math.degrees(math.acos(min(1.0, c)))


# ----------------------------------------------------------------------------- checking


def _check_grid(
    s: SeriesInfo,
    folder: Path,
    patient: str | None,
    phase: str | None,
    rel_tolerance: float = 0.01,
    abs_tolerance_mm: float = 0.01,
) -> tuple[list[_Frame], float]:
    """The frames of ``s`` sorted along the slice normal, and the checked slice spacing (mm)."""

    def fail(message: str) -> InputError:
        return InputError(
            f"DICOM series {s.uid}: {message}", patient=patient, phase=phase, file=folder
        )

    if s._mixed:
        raise fail(s._mixed)
    frames = s._frames
    if len(frames) < 2:
        raise fail(f"{len(frames)} slice(s); a 3-D volume needs at least 2")
    sizes = Counter(f.size for f in frames)
    if len(sizes) > 1:
        raise fail(f"slices of different sizes (rows, columns): {dict(sizes)}")
    spacings = {f.pixel_spacing for f in frames}
    if max(np.ptp(np.asarray(list(spacings)), axis=0)) > 1e-4:
        raise fail(f"slices of different pixel spacings: {sorted(spacings)}")
    normal = _normal(frames[0].orientation)
    along = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    along = along[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-6):
        dup = sorted({round(float(along[i]), 3) for i in np.flatnonzero(gaps < 1e-6)})
        raise fail(
            f"slices at duplicate positions ({', '.join(f'{v:g}' for v in dup[:5])} mm along the "
            "slice normal); several stacks or time points in one series are not read"
        )
    positions = np.asarray([f.position for f in frames], float)
    offsets = positions - positions[0]
    lateral = offsets - np.outer(offsets @ normal, normal)
    lateral_mm = float(np.max(np.linalg.norm(lateral, axis=1)))
    if lateral_mm > TILT_TOLERANCE_PX * min(frames[0].pixel_spacing):
        tilt = math.degrees(
            math.atan2(float(np.linalg.norm(lateral[-1])), float(along[-1] - along[0]))
        )
        raise fail(
            f"gantry tilt: the slices are tilted by {tilt:.2f} degrees from the slice normal "
            f"(positions move {lateral_mm:.3g} mm sideways over the series); tilted series are "
            "not read: export a tilt-corrected reconstruction"
        )
    median = float(np.median(gaps))
    if np.any(gaps > MISSING_SLICE_FACTOR * median):
        holes = [
            f"between {along[i]:.4g} and {along[i + 1]:.4g} mm ({gaps[i]:.4g} mm, about "
            f"{round(gaps[i] / median) - 1} slice(s) missing)"
            for i in np.flatnonzero(gaps > MISSING_SLICE_FACTOR * median)
        ]
        raise fail(
            f"inconsistent slice spacing: missing slices, gap(s) {'; '.join(holes)} along the "
            f"slice normal (typical spacing {median:.4g} mm)"
        )
    deviation = float(np.max(np.abs(gaps - median)))
    if deviation > max(abs_tolerance_mm, rel_tolerance * median):
        raise fail(
            f"inconsistent slice spacing: gaps between {np.min(gaps):.4g} and "
            f"{np.max(gaps):.4g} mm (median {median:.4g} mm)"
        )
    return frames, median


# ----------------------------------------------------------------------------- reading


def _read_gdcm(files: list[str]) -> np.ndarray:
    """Rescaled Float32 voxels (z, y, x) of single-frame files in the given order, by GDCM."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetOutputPixelType(sitk.sitkFloat32)
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    return sitk.GetArrayFromImage(reader.Execute())


def _read_pydicom(frames: list[_Frame]) -> np.ndarray:
    """Rescaled Float32 voxels (z, y, x) of the given frames, decoded by pydicom."""
    import pydicom

    out = np.empty((len(frames), *frames[0].size), np.float32)
    cache: dict[str, np.ndarray] = {}
    for k, f in enumerate(frames):
        if f.file not in cache:
            cache.clear()  # one file at a time: a multi-frame file is read once
            cache[f.file] = pydicom.dcmread(f.file, force=True).pixel_array
        arr = cache[f.file]
        plane = arr if f.index is None else (arr[f.index] if arr.ndim == 3 else arr)
        out[k] = plane.astype(np.float64) * f.slope + f.intercept
    return out


def read_series(
    folder: str | os.PathLike[str],
    *,
    series: str | None = None,
    patient: str | None = None,
    phase: str | None = None,
) -> sitk.Image:
    """Read one image series of a DICOM folder as a Float32 volume with its DICOM geometry.

    Args:
        folder: folder of DICOM files (not searched recursively).
        series: SeriesInstanceUID (exact) or SeriesDescription (case-insensitive, exactly one
            match) of the series to read; None: the folder's only image series after decoys.
        patient: patient id, only used in error messages.
        phase: phase name, only used in error messages.

    Returns:
        Rescaled voxels (CT in HU) on the grid given by the slices: origin at the first slice
        along the normal, spacing (column spacing, row spacing, slice spacing), direction (row,
        column, normal). No metadata.

    Raises:
        InputError: no image series, several without a selection, a selection matching none or
            several, mixed orientations or sizes, duplicate positions, gantry tilt, missing
            slices, uneven spacing, or pixel data no decoder can read (its transfer syntax named).
    """
    path = Path(folder)
    scan = _scan(path)
    chosen = _select(scan, series, patient, phase)
    frames, spacing = _check_grid(chosen, path, patient, phase)
    if chosen.multiframe:
        try:
            voxels = _read_pydicom(frames)
        except Exception as exc:
            raise _decode_error(chosen, exc, path, patient, phase) from exc
    else:
        try:
            voxels = _read_gdcm([f.file for f in frames])
        except RuntimeError as gdcm_exc:
            log.info(
                "GDCM cannot decode the series (%s; %s): decoding with pydicom",
                chosen.public(),
                ", ".join(chosen.transfer_syntaxes),
            )
            try:
                voxels = _read_pydicom(frames)
            except Exception as exc:
                raise _decode_error(chosen, exc, path, patient, phase) from gdcm_exc
    first = frames[0]
    image = sitk.GetImageFromArray(voxels)
    row, col = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    direction = np.column_stack([row, col, _normal(first.orientation)])
    image.SetOrigin(first.position)
    image.SetSpacing((first.pixel_spacing[1], first.pixel_spacing[0], spacing))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    log.info(
        "read DICOM series '%s' (%d slices%s) from %s",
        chosen.description or "no description",
        len(frames),
        ", multi-frame" if chosen.multiframe else "",
        path,
    )
    return image


def _decode_error(
    s: SeriesInfo, exc: Exception, folder: Path, patient: str | None, phase: str | None
) -> InputError:
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"cannot decode the pixel data of DICOM series {s.uid} (transfer syntax "
        f"{', '.join(s.transfer_syntaxes)}): {reason}",
        patient=patient,
        phase=phase,
        file=folder,
    )
