"""Deterministic writing of synthetic images (NIfTI, NRRD, DICOM series) and TSV tables."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

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


def write_image(img: sitk.Image, path: Path) -> None:
    """Write ``img`` as NIfTI (``.nii.gz``) or NRRD (``.nrrd``), compressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True)


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
    0. UIDs are derived deterministically from ``(seed, patient, phase, slice)``.

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
    arr = sitk.GetArrayFromImage(img)
    if modality == "CT":
        stored = np.clip(arr.astype(np.int32) - CT_RESCALE_INTERCEPT, 0, 4095).astype(np.uint16)
        intercept = CT_RESCALE_INTERCEPT
    else:
        stored = np.clip(arr.astype(np.int32), 0, 65535).astype(np.uint16)
        intercept = 0
    nz, ny, nx = stored.shape
    sx, sy, sz = img.GetSpacing()
    ox, oy, oz = img.GetOrigin()
    ent = [str(seed), patient]
    study_uid = generate_uid(entropy_srcs=[*ent, "study", str(modality)])
    series_uid = generate_uid(entropy_srcs=[*ent, "series", modality, phase])
    frame_uid = generate_uid(entropy_srcs=[*ent, "frame", modality, phase])
    ident = study["identity"]
    date = study["acquisition_date"].replace("-", "")
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    minutes = {"AP": 0, "PVP": 1, "DP": 3, "HBP": 20}[phase]
    for k in range(nz):
        inst = nz - k  # instance 1 = most superior slice
        z = oz + k * sz
        sop_uid = generate_uid(entropy_srcs=[*ent, "sop", modality, phase, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = generate_uid(entropy_srcs=["hccrad.synth"])
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
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
        ds.SeriesDescription = _PHASE_DESCRIPTION[phase]
        ds.ManufacturerModelName = study["model"]
        ds.PatientName = ident["PatientName"]
        ds.PatientID = ident["PatientID"]
        ds.OtherPatientIDs = ident["OtherPatientIDs"]
        ds.PatientBirthDate = ident["PatientBirthDate"]
        ds.PatientSex = study["sex"]
        ds.PatientAge = f"{int(study['age']):03d}Y"
        ds.BodyPartExamined = "LIVER"
        ds.ContrastBolusAgent = "Gd-EOB-DTPA" if modality == "MR" else "IOPAMIDOL"
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        if modality == "CT":
            ds.KVP = "120"
            ds.ConvolutionKernel = "B30f"
        else:
            ds.MagneticFieldStrength = _ds(study["field_strength"])
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = "3.9"
            ds.EchoTime = "1.8"
            ds.FlipAngle = "10"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = inst
        ds.ImagePositionPatient = [_ds(ox), _ds(oy), _ds(z)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame_uid
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
        if modality == "CT":
            ds.WindowCenter = "40"
            ds.WindowWidth = "400"
            ds.RescaleType = "HU"
        ds.RescaleIntercept = str(intercept)
        ds.RescaleSlope = "1"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        pydicom.dcmwrite(folder / f"IM{inst:04d}.dcm", ds, enforce_file_format=True)


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
    """Write rows as a tab-separated table with a header; missing values become empty strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(columns)]
    for r in rows:
        lines.append("\t".join(_fmt(r.get(c)) for c in columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
