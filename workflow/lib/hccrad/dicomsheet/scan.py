"""Header scan of a DICOM tree for ``hccrad sheet``: image series, SEG / RTSTRUCT objects and
other files (pixel data never read)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np

from hccrad.errors import InputError

#: Header tags read from every file (pixel data never).
_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "ImageType",
    "InstitutionName",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageOrientationPatient",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "SeriesDate",
    "SeriesTime",
    "StudyDate",
    "StudyTime",
    "SharedFunctionalGroupsSequence",
]
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima"}


@dataclass
class Series:
    """One image series found in the tree (headers of its files) and what happened to it."""

    uid: str
    patient_id: str
    study: str
    modality: str
    description: str
    number: int | None
    image_type: tuple[str, ...]
    rows: int
    columns: int
    thickness: float | None
    orientation: str
    institution: str
    files: list[Path] = field(default_factory=list)
    images: int = 0
    time: datetime | None = None
    outcome: str = ""
    phase: str = ""
    reason: str = ""

    @property
    def folders(self) -> set[Path]:
        """Folders holding the series' files."""
        return {f.parent for f in self.files}

    @property
    def original(self) -> bool:
        """ImageType says ORIGINAL (not DERIVED) and PRIMARY (not SECONDARY)."""
        return not self.derived

    @property
    def derived(self) -> bool:
        """ImageType says DERIVED, or SECONDARY."""
        it = [v.upper() for v in self.image_type]
        return (len(it) > 0 and it[0] == "DERIVED") or (len(it) > 1 and it[1] == "SECONDARY")

    def label(self) -> str:
        """``series 5 'AX T1 ART'`` for messages."""
        num = f"series {self.number}" if self.number is not None else f"series {self.uid}"
        return f"{num} {self.description!r}"


@dataclass
class MaskObject:
    """A DICOM SEG or RTSTRUCT found in the tree and what happened to it."""

    path: Path
    kind: str
    uid: str
    patient_id: str
    study: str
    description: str
    number: int | None
    segments: list[tuple[int, str]]
    referenced_series: list[str]
    referenced_sops: list[str]
    outcome: str = ""
    phase: str = ""
    reason: str = ""


@dataclass
class Scan:
    """Everything :func:`scan_tree` found under a root folder."""

    root: Path
    series: dict[str, Series]
    objects: list[MaskObject]
    other_files: list[tuple[Path, str]]
    #: every SeriesInstanceUID per folder (image series and objects), for the sheet's series column
    folder_series: dict[Path, set[str]]
    sop_series: dict[str, str]


def _read_header(path: Path) -> Any | None:
    """The header of ``path`` (no pixel data), or None when it is not a DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        if path.suffix.lower() not in _DICOM_SUFFIXES:
            return None
    except (OSError, ValueError, EOFError):
        return None
    # no DICM preamble: try a raw data set, accepted only when it names its SOP class and series
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True)
    except Exception:  # forced parsing of an arbitrary file may fail in any way
        return None
    return ds if "SOPClassUID" in ds and "SeriesInstanceUID" in ds else None


def _text(ds: Any, tag: str) -> str:
    value = ds.get(tag)
    return "" if value is None else str(value).strip()


def _int(ds: Any, tag: str) -> int | None:
    try:
        value = ds.get(tag)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float(ds: Any, tag: str) -> float | None:
    try:
        value = ds.get(tag)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _acquisition_time(ds: Any) -> datetime | None:
    """AcquisitionDateTime, else AcquisitionTime, else SeriesTime (with the acquisition, series or
    study date when there is one); None when no time can be read."""
    from pydicom.valuerep import DA, DT, TM

    try:
        dt = _text(ds, "AcquisitionDateTime")
        if dt:
            value = DT(dt)
            return datetime(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        tm = _text(ds, "AcquisitionTime") or _text(ds, "SeriesTime")
        if not tm:
            return None
        day_text = _text(ds, "AcquisitionDate") or _text(ds, "SeriesDate") or _text(ds, "StudyDate")
        day: date = DA(day_text) if day_text else date(1900, 1, 1)
        t: time = TM(tm)
        return datetime.combine(day, time(t.hour, t.minute, t.second, t.microsecond))
    except (ValueError, TypeError):
        return None


def _shared_group(ds: Any, name: str) -> Any | None:
    """The first item of sequence ``name`` in a multi-frame image's shared functional groups."""
    for group in ds.get("SharedFunctionalGroupsSequence", []):
        for item in group.get(name, []):
            return item
    return None


def _thickness(ds: Any) -> float | None:
    """SliceThickness, else SpacingBetweenSlices (top level or shared pixel measures)."""
    measures = _shared_group(ds, "PixelMeasuresSequence")
    for source in (ds, measures):
        if source is None:
            continue
        value = _float(source, "SliceThickness") or _float(source, "SpacingBetweenSlices")
        if value is not None:
            return value
    return None


def _orientation(ds: Any) -> str:
    """``axial``, ``coronal`` or ``sagittal``: the axis the slice normal is closest to
    (ImageOrientationPatient, or that of a multi-frame image's shared functional groups)."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None:
        shared = _shared_group(ds, "PlaneOrientationSequence")
        iop = None if shared is None else shared.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return "axial"
    row, col = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float)
    normal = np.cross(row, col)
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def _object_references(ds: Any) -> tuple[list[str], list[str]]:
    """Referenced SeriesInstanceUIDs and SOPInstanceUIDs of a SEG or RTSTRUCT."""
    series: list[str] = []
    sops: list[str] = []
    if ds.Modality == "SEG":
        series = [str(i.SeriesInstanceUID) for i in ds.get("ReferencedSeriesSequence", [])]
        groups = list(ds.get("SharedFunctionalGroupsSequence", [])) + list(
            ds.get("PerFrameFunctionalGroupsSequence", [])
        )
        sources = list(ds.get("SourceImageSequence", []))
        for g in groups:
            for d in g.get("DerivationImageSequence", []):
                sources.extend(d.get("SourceImageSequence", []))
        sops = [str(s.ReferencedSOPInstanceUID) for s in sources if "ReferencedSOPInstanceUID" in s]
    else:
        for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
            for study in ref.get("RTReferencedStudySequence", []):
                for s in study.get("RTReferencedSeriesSequence", []):
                    series.append(str(s.SeriesInstanceUID))
                    sops.extend(
                        str(c.ReferencedSOPInstanceUID) for c in s.get("ContourImageSequence", [])
                    )
        for roi in ds.get("ROIContourSequence", []):
            for c in roi.get("ContourSequence", []):
                sops.extend(
                    str(i.ReferencedSOPInstanceUID) for i in c.get("ContourImageSequence", [])
                )
    return list(dict.fromkeys(series)), list(dict.fromkeys(sops))


def _mask_object(path: Path, header: Any) -> MaskObject:
    """A SEG or RTSTRUCT read in full (without pixel data)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if ds.Modality == "SEG":
        segments = [
            (int(s.SegmentNumber), str(s.get("SegmentLabel", "")).strip())
            for s in ds.get("SegmentSequence", [])
        ]
        description = _text(ds, "SeriesDescription") or _text(ds, "ContentLabel")
    else:
        segments = [
            (int(r.ROINumber), str(r.get("ROIName", "")).strip())
            for r in ds.get("StructureSetROISequence", [])
        ]
        description = _text(ds, "SeriesDescription") or _text(ds, "StructureSetLabel")
    series, sops = _object_references(ds)
    return MaskObject(
        path=path,
        kind=str(ds.Modality),
        uid=_text(header, "SeriesInstanceUID"),
        patient_id=_text(header, "PatientID"),
        study=_text(header, "StudyInstanceUID"),
        description=description,
        number=_int(header, "SeriesNumber"),
        segments=segments,
        referenced_series=series,
        referenced_sops=sops,
    )


def _walk(root: Path) -> Iterator[Path]:
    """Every file under ``root`` in sorted order; symbolic links to folders are followed once
    (a link loop is not walked twice)."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def scan_tree(root: str | Path) -> Scan:
    """Read the header of every file under ``root`` (sorted walk, symbolic links followed).

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("DICOM root is not a folder", file=root)
    scan = Scan(root, {}, [], [], defaultdict(set), {})
    for path in _walk(root):
        ds = _read_header(path)
        if ds is None:
            scan.other_files.append((path, "not a DICOM file"))
            continue
        uid = _text(ds, "SeriesInstanceUID")
        if not uid:
            scan.other_files.append((path, "DICOM file without a series (e.g. a DICOMDIR)"))
            continue
        scan.folder_series[path.parent].add(uid)
        modality = _text(ds, "Modality").upper()
        if modality in ("SEG", "RTSTRUCT"):
            try:
                scan.objects.append(_mask_object(path, ds))
            except Exception as exc:  # a broken object is reported, not fatal
                scan.other_files.append((path, f"unreadable {modality} ({exc})"))
            continue
        sop = _text(ds, "SOPInstanceUID")
        if sop in scan.sop_series:
            scan.other_files.append((path, f"second copy of SOP instance {sop} (series {uid})"))
            continue
        if sop:
            scan.sop_series[sop] = uid
        _add_image(scan.series, path, ds, uid, modality)
    scan.folder_series = dict(scan.folder_series)
    return scan


def _add_image(series: dict[str, Series], path: Path, ds: Any, uid: str, modality: str) -> None:
    """Add one image file to its series (created from this file's header when new)."""
    s = series.get(uid)
    if s is None:
        s = series[uid] = Series(
            uid=uid,
            patient_id=_text(ds, "PatientID"),
            study=_text(ds, "StudyInstanceUID"),
            modality=modality,
            description=_text(ds, "SeriesDescription"),
            number=_int(ds, "SeriesNumber"),
            image_type=tuple(str(v) for v in (ds.get("ImageType") or [])),
            rows=_int(ds, "Rows") or 0,
            columns=_int(ds, "Columns") or 0,
            thickness=_thickness(ds),
            orientation=_orientation(ds),
            institution=_text(ds, "InstitutionName"),
        )
    s.files.append(path)
    s.images += _int(ds, "NumberOfFrames") or 1
    t = _acquisition_time(ds)
    if t is not None and (s.time is None or t < s.time):
        s.time = t
