"""Deterministic writing of synthetic DICOM series and TSV tables (NIfTI and NRRD images are
written by :func:`hccrad.imageio.write_image`)."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from hccrad.fileio import atomic_path, write_text

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: Intercept of stored CT values: HU = stored - 1024.
CT_RESCALE_INTERCEPT = -1024

_SURNAMES = (
    "ZHANG",
    "WANG",
    "LI",
    "LIU",
    "CHEN",
    "YANG",
    "HUANG",
    "ZHAO",
    "WU",
    "ZHOU",
    "SMITH",
    "MULLER",
    "ROSSI",
    "GARCIA",
    "TANAKA",
    "NGUYEN",
    "KIM",
    "DUBOIS",
    "COHEN",
    "SILVA",
)
_GIVEN_M = ("WEI", "JUN", "MING", "HAO", "JIAN", "JOHN", "PETER", "LUCA", "HIRO", "MINH")
_GIVEN_F = ("LI", "FANG", "MEI", "YING", "XIU", "MARY", "ANNA", "SOFIA", "YUKI", "LAN")
_PHYSICIANS = (
    "HOUSE^GREGORY",
    "GREY^MEREDITH",
    "STRANGE^STEPHEN",
    "QUINN^MICHAELA",
    "WATSON^JOHN",
    "ZHIVAGO^YURI",
)
_PHASE_DESCRIPTION = {
    "AP": "arterial phase",
    "PVP": "portal venous phase",
    "DP": "delayed phase",
    "HBP": "hepatobiliary phase 20 min",
}


def _ds(v: float) -> str:
    """A DICOM DS string that round-trips the value (geometry values are pre-rounded to 1e-4)."""
    s = repr(round(float(v), 4))
    s = s[:-2] if s.endswith(".0") else s
    return "0" if s == "-0" else s


def identity(
    rng: np.random.Generator, patient: str, sex: str, age: int, acquisition_date: str
) -> dict[str, str]:
    """Fake identifying DICOM values (name, MRN, birth date, accession, physician) for one patient.

    The MRN is deliberately different from the cohort patient id so that a de-identification check
    has
    something to find.
    """
    given = _GIVEN_M if sex == "M" else _GIVEN_F
    name = f"{_SURNAMES[rng.integers(len(_SURNAMES))]}^{given[rng.integers(len(given))]}"
    acq = _dt.date.fromisoformat(acquisition_date)
    birth = acq - _dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
    return {
        "PatientName": name,
        "PatientID": f"MRN{rng.integers(10**6, 10**7)}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "AccessionNumber": f"ACC{rng.integers(10**7, 10**8)}",
        "ReferringPhysicianName": _PHYSICIANS[rng.integers(len(_PHYSICIANS))],
        "OtherPatientIDs": f"OPID{rng.integers(10**5, 10**6)}",
    }


def _stored_values(arr: np.ndarray, modality: str) -> tuple[np.ndarray, int]:
    """The uint16 stored values of an int16 HU / MR array and their RescaleIntercept."""
    if modality == "CT":
        stored = np.clip(arr.astype(np.int32) - CT_RESCALE_INTERCEPT, 0, 4095).astype(np.uint16)
        return stored, CT_RESCALE_INTERCEPT
    return np.clip(arr.astype(np.int32), 0, 65535).astype(np.uint16), 0


@dataclass(frozen=True)
class _Series:
    """What every slice file of one series shares."""

    modality: str
    phase: str
    entropy: tuple[str, ...]  # UID entropy: (seed, patient)
    study: Mapping[str, Any]
    series_number: int
    study_uid: str
    series_uid: str
    frame_uid: str
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    intercept: int


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["hccrad.synth"])
    return meta


def _study_tags(ds: Dataset, s: _Series) -> None:
    """Dates and times, institution, patient identity and study/series descriptions."""
    study, modality = s.study, s.modality
    ident = study["identity"]
    date = study["acquisition_date"].replace("-", "")
    minutes = {"AP": 0, "PVP": 1, "DP": 3, "HBP": 20}[s.phase]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = "093000"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = f"09{31 + minutes:02d}00"
    ds.AccessionNumber = ident["AccessionNumber"]
    ds.Modality = modality
    ds.Manufacturer = study["vendor"]
    ds.InstitutionName = study["institution"]
    ds.InstitutionAddress = "1 Hospital Road"
    ds.ReferringPhysicianName = ident["ReferringPhysicianName"]
    ds.StationName = f"{modality}01"
    ds.StudyDescription = "LIVER MULTIPHASE"
    ds.SeriesDescription = _PHASE_DESCRIPTION[s.phase]
    ds.ManufacturerModelName = study["model"]
    ds.PatientName = ident["PatientName"]
    ds.PatientID = ident["PatientID"]
    ds.OtherPatientIDs = ident["OtherPatientIDs"]
    ds.PatientBirthDate = ident["PatientBirthDate"]
    ds.PatientSex = study["sex"]
    ds.PatientAge = f"{int(study['age']):03d}Y"
    ds.BodyPartExamined = "LIVER"
    ds.ContrastBolusAgent = "Gd-EOB-DTPA" if modality == "MR" else "IOPAMIDOL"


def _acquisition_tags(ds: Dataset, s: _Series) -> None:
    """Slice thickness and the CT / MR acquisition parameters."""
    sz = s.spacing[2]
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(sz)
    if s.modality == "CT":
        ds.KVP = "120"
        ds.ConvolutionKernel = "B30f"
    else:
        ds.MagneticFieldStrength = _ds(s.study["field_strength"])
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = "3.9"
        ds.EchoTime = "1.8"
        ds.FlipAngle = "10"


def _image_tags(ds: Dataset, s: _Series, k: int, inst: int, pixels: np.ndarray) -> None:
    """UIDs, numbering, geometry of slice ``k`` and its pixel data."""
    sx, sy, sz = s.spacing
    ox, oy, oz = s.origin
    z = oz + k * sz
    ny, nx = pixels.shape
    ds.StudyInstanceUID = s.study_uid
    ds.SeriesInstanceUID = s.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = s.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = inst
    ds.ImagePositionPatient = [_ds(ox), _ds(oy), _ds(z)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = s.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds(z)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if s.modality == "CT":
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleType = "HU"
    ds.RescaleIntercept = str(s.intercept)
    ds.RescaleSlope = "1"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def _slice_dataset(s: _Series, k: int, inst: int, pixels: np.ndarray) -> Dataset:
    """The DICOM dataset of slice ``k`` (instance number ``inst``)."""
    sop_class = CT_IMAGE_STORAGE if s.modality == "CT" else MR_IMAGE_STORAGE
    sop_uid = generate_uid(entropy_srcs=[*s.entropy, "sop", s.modality, s.phase, str(k)])
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    _study_tags(ds, s)
    _acquisition_tags(ds, s)
    _image_tags(ds, s, k, inst, pixels)
    return ds


def write_dicom_series(
    img: sitk.Image,
    folder: Path,
    *,
    modality: str,
    phase: str,
    seed: int,
    patient: str,
    series_number: int,
    study: Mapping[str, Any],
) -> None:
    """Write a 3D image (identity direction, integer HU / MR values) as one DICOM series folder.

    One file per slice, ``IM0001.dcm`` = the most superior slice (instance numbers run superior to
    inferior, as many scanners do; readers must sort by ImagePositionPatient). CT is stored as
    uint16 with RescaleIntercept -1024 / RescaleSlope 1 (HU); MR as uint16 with slope 1, intercept
    0. UIDs are derived deterministically from ``(seed, patient, phase, slice)``. Each file is
    written atomically.

    Args:
        img: the image (as written to NIfTI elsewhere), int16 pixel values.
        folder: output folder (created; existing ``*.dcm`` files in it are removed first).
        modality: ``"CT"`` or ``"MR"``.
        phase: phase name (series description).
        seed: cohort seed (UID entropy).
        patient: cohort patient id (UID entropy only; never written into the headers).
        series_number: DICOM SeriesNumber.
        study: study-level values: ``identity`` dict (see :func:`identity`), ``acquisition_date``,
            ``sex``, ``age``, ``institution``, ``vendor``, ``model``, ``field_strength``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.dcm"):
        old.unlink()
    stored, intercept = _stored_values(sitk.GetArrayFromImage(img), modality)
    ent = (str(seed), patient)
    series = _Series(
        modality=modality,
        phase=phase,
        entropy=ent,
        study=study,
        series_number=series_number,
        study_uid=generate_uid(entropy_srcs=[*ent, "study", str(modality)]),
        series_uid=generate_uid(entropy_srcs=[*ent, "series", modality, phase]),
        frame_uid=generate_uid(entropy_srcs=[*ent, "frame", modality, phase]),
        spacing=img.GetSpacing(),
        origin=img.GetOrigin(),
        intercept=intercept,
    )
    nz = stored.shape[0]
    for k in range(nz):
        inst = nz - k  # instance 1 = most superior slice
        ds = _slice_dataset(series, k, inst, stored[k])
        with atomic_path(folder / f"IM{inst:04d}.dcm") as tmp:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return ""
        return repr(round(float(v), 6))
    return str(v)


def write_tsv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows as a tab-separated table with a header, atomically; missing values become empty
    strings, floats are rounded to 6 decimals."""
    lines = ["\t".join(columns)]
    for r in rows:
        lines.append("\t".join(_fmt(r.get(c)) for c in columns))
    write_text("\n".join(lines) + "\n", path)
