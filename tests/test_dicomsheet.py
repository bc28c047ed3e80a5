"""``hccrad sheet``: a cohort sheet from a DICOM tree (hccrad.dicomsheet, docs/dicom_sheet.md).

The trees are written with pydicom (images, RTSTRUCT) and highdicom (SEG) into tmp_path; the
written sheet is checked row for row and against the project's own sheet checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import ROOT, shared_data
from hccrad import dicomsheet
from hccrad.cli import main
from hccrad.config import load_settings, settings_from_config
from hccrad.dicomsheet import build_sheet, load_phase_map
from hccrad.errors import InputError
from hccrad.imageio import read_image
from hccrad.sheets import load_cohort

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
ORIGINAL = ("ORIGINAL", "PRIMARY", "AXIAL")


def _save(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


class Study:
    """A patient's study; writes its series as DICOM files."""

    def __init__(self, patient: str, modality: str, institution: str = "") -> None:
        self.patient, self.modality, self.institution = patient, modality, institution
        self.uid = generate_uid()
        self.frame = generate_uid()

    def series(
        self,
        folder: Path,
        number: int,
        description: str,
        clock: str,
        *,
        slices: int = 6,
        thickness: float = 2.5,
        image_type: tuple[str, ...] = ORIGINAL,
        orientation: list[float] = AXIAL,
        modality: str | None = None,
        name: str = "IM{i:04d}",
    ) -> list[Dataset]:
        """Write one series of ``slices`` 16x16 images acquired at ``clock`` (HHMMSS)."""
        uid = generate_uid()
        modality = modality or self.modality
        sop_class = {"CT": CT_STORAGE, "MR": MR_STORAGE}.get(modality, SC_STORAGE)
        out = []
        for i in range(slices):
            ds = Dataset()
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = generate_uid()
            ds.PatientName = "Test^Patient"
            ds.PatientID = self.patient
            ds.PatientBirthDate = "19600101"
            ds.PatientSex = "M"
            ds.StudyInstanceUID = self.uid
            ds.StudyDate = "20240105"
            ds.StudyTime = "090000"
            ds.StudyID = "1"
            ds.AccessionNumber = "A1"
            ds.ReferringPhysicianName = ""
            ds.SeriesInstanceUID = uid
            ds.SeriesNumber = number
            ds.SeriesDescription = description
            ds.Modality = modality
            ds.InstanceNumber = i + 1
            ds.ImageType = list(image_type)
            if self.institution:
                ds.InstitutionName = self.institution
            ds.AcquisitionDate = "20240105"
            ds.AcquisitionTime = clock
            ds.FrameOfReferenceUID = self.frame
            ds.ImageOrientationPatient = orientation
            normal = np.cross(orientation[:3], orientation[3:])
            ds.ImagePositionPatient = [float(v) for v in normal * i * thickness]
            ds.PixelSpacing = [1.0, 1.0]
            ds.SliceThickness = thickness
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.PixelData = np.full((16, 16), 100 * number + i, dtype=np.int16).tobytes()
            _save(ds, folder / name.format(i=i + 1))
            out.append(ds)
        return out


def _seg(source: list[Dataset], path: Path, labels: list[str]) -> Dataset:
    """A highdicom SEG of ``source`` with one segment per label (a box each)."""
    mask = np.zeros((len(source), 16, 16), dtype=np.uint8)
    descriptions = []
    for k, label in enumerate(labels, start=1):
        mask[1:5, 2 * k : 2 * k + 4, 4:10] = k
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=k,
                segment_label=label,
                segmented_property_category=codes.SCT.Tissue,
                segmented_property_type=codes.SCT.Liver if label == "Liver" else codes.SCT.Tumor,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        )
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="hccrad tests",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
        series_description="Segmentation",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return seg


def _rtstruct(source: list[Dataset], path: Path, names: list[str]) -> None:
    """A pydicom RTSTRUCT on ``source`` with one square contour per ROI name."""
    first = source[0]
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.PatientID = first.PatientID
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 200
    ds.StructureSetLabel = "outlines"
    contour_images = Sequence()
    for s in source:
        item = Dataset()
        item.ReferencedSOPClassUID = s.SOPClassUID
        item.ReferencedSOPInstanceUID = s.SOPInstanceUID
        contour_images.append(item)
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = contour_images
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])
    rois, contours = Sequence(), Sequence()
    for k, name in enumerate(names, start=1):
        roi = Dataset()
        roi.ROINumber = k
        roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        roi.ROIName = name
        rois.append(roi)
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.NumberOfContourPoints = 4
        z = float(source[2].ImagePositionPatient[2])
        c.ContourData = [2, 2, z, 8, 2, z, 8, 8, z, 2, 8, z]
        img = Dataset()
        img.ReferencedSOPClassUID = source[2].SOPClassUID
        img.ReferencedSOPInstanceUID = source[2].SOPInstanceUID
        c.ContourImageSequence = Sequence([img])
        rc = Dataset()
        rc.ReferencedROINumber = k
        rc.ContourSequence = Sequence([c])
        contours.append(rc)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours
    _save(ds, path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """Three patients with decoys (see the module docstring of each series below)."""
    root = tmp_path_factory.mktemp("dicom") / "tree"
    uids: dict[str, str] = {}
    # patient 1: CT, files without .dcm
    ct = Study("HCC_001", "CT", institution="Hosp-A 1")
    ct.series(root / "P1_CT" / "scout", 1, "Topogram", "095900", slices=1,
              image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))  # fmt: skip
    art = ct.series(root / "P1_CT" / "art", 2, "Arterial 2.5mm", "100030")
    pv = ct.series(root / "P1_CT" / "pv", 3, "Portal venous 2.5mm", "100110")
    pv5 = ct.series(root / "P1_CT" / "pv5", 4, "Portal venous 5mm", "100110", thickness=5.0)
    ot = ct.series(root / "P1_CT" / "capture", 90, "Dose report", "100200", modality="OT")
    _seg(pv, root / "P1_CT" / "seg.dcm", ["Liver", "Tumor"])
    (root / "P1_CT" / "README.txt").write_text("exported from PACS\n")
    # patient 2: MR, two series in one folder, one phase decided by acquisition time
    mr = Study("HCC-002", "MR", institution="Hosp B")
    pre = mr.series(root / "P2_MR" / "dyn", 5, "t1_vibe_pre", "090000", name="pre{i}.dcm")
    ap = mr.series(root / "P2_MR" / "dyn", 6, "t1_vibe_arterial", "090100", name="ap{i}.dcm")
    dyn = mr.series(root / "P2_MR" / "s7", 7, "t1_vibe_dyn", "090145")
    dp = mr.series(root / "P2_MR" / "s8", 8, "t1_vibe_delayed", "090400")
    hbp = mr.series(root / "P2_MR" / "s9", 9, "t1_vibe_hepatobiliary", "092100")
    cor = mr.series(root / "P2_MR" / "s10", 10, "t1_vibe_arterial_cor", "090100",
                    image_type=("DERIVED", "SECONDARY", "MPR"), orientation=CORONAL)  # fmt: skip
    _rtstruct(ap, root / "P2_MR" / "rt" / "rtstruct.dcm", ["HCC", "Liver", "Vessels"])
    # patient 3: CT without the reference phase
    noap = Study("HCC003", "CT", institution="Hosp-A 1").series(
        root / "P3" / "pv", 2, "PORTAL", "110000"
    )
    for name, series in [("scout", None), ("art", art), ("pv", pv), ("pv5", pv5), ("ot", ot),
                         ("pre", pre), ("ap", ap), ("dyn", dyn), ("dp", dp), ("hbp", hbp),
                         ("cor", cor), ("noap", noap)]:  # fmt: skip
        if series is not None:
            uids[name] = series[0].SeriesInstanceUID
    return {"root": root, "uids": uids}


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_sheet_from_a_tree_with_decoys(tree, tmp_path):
    root, uids = tree["root"], tree["uids"]
    out = tmp_path / "out" / "cohort.tsv"
    result = build_sheet(root, out)
    sheet = _read_tsv(out)
    t = os.path.relpath(root, out.parent)
    expected = pd.DataFrame(
        [
            ["HospA1", "HCC001", "AP", "CT", f"{t}/P1_CT/art", "", "", "", "", "", ""],
            ["HospA1", "HCC001", "PVP", "CT", f"{t}/P1_CT/pv", f"{t}/P1_CT/seg.dcm",
             f"{t}/P1_CT/seg.dcm", "", "", "Tumor", "Liver"],
            ["HospB", "HCC002", "AP", "MR", f"{t}/P2_MR/dyn", f"{t}/P2_MR/rt/rtstruct.dcm",
             f"{t}/P2_MR/rt/rtstruct.dcm", "", uids["ap"], "HCC", "Liver"],
            ["HospB", "HCC002", "PVP", "MR", f"{t}/P2_MR/s7", "", "", "", "", "", ""],
            ["HospB", "HCC002", "HBP", "MR", f"{t}/P2_MR/s9", "", "", "", "", "", ""],
            ["HospB", "HCC002", "DP", "MR", f"{t}/P2_MR/s8", "", "", "", "", "", ""],
        ],
        columns=list(dicomsheet.SHEET_COLUMNS),
    )  # fmt: skip
    pd.testing.assert_frame_equal(sheet, expected)
    assert (out.parent / sheet.loc[2, "image"]).resolve() == (root / "P2_MR" / "dyn").resolve()
    assert result.patient_ids == {"HCC-002": "HCC002", "HCC003": "HCC003", "HCC_001": "HCC001"}

    report = _read_tsv(tmp_path / "out" / "cohort.report.tsv")
    by_series = report.set_index("series")
    for name, phase in [("art", "AP"), ("pv", "PVP"), ("ap", "AP"), ("dyn", "PVP"),
                        ("dp", "DP"), ("hbp", "HBP")]:  # fmt: skip
        assert by_series.loc[uids[name], ["outcome", "phase"]].tolist() == ["placed", phase]
    reasons = {name: by_series.loc[uid, "reason"] for name, uid in uids.items()}
    assert reasons["pv5"] == (
        "second series for PVP: kept series 3 'Portal venous 2.5mm' (thinner slices, 2.5 < 5 mm)"
    )
    assert reasons["ot"] == "not a CT or MR image series (modality OT)"
    assert reasons["pre"] == "not a study phase (description matches 'pre')"
    assert reasons["cor"] == "derived reformat (coronal; study axial)"
    assert reasons["dyn"] == (
        "description names no phase; by acquisition time, +45 s from the AP series"
    )
    assert reasons["hbp"] == "description matches 'hepatobiliary'"
    assert reasons["noap"] == (
        "study has no AP series (the reference phase); description matches 'portal'"
    )
    scout = report[report["description"] == "Topogram"].iloc[0]
    assert (scout["outcome"], scout["reason"]) == ("skipped", "localizer (ImageType LOCALIZER)")
    for name in ("pv5", "ot", "pre", "cor", "noap"):
        assert by_series.loc[uids[name], "outcome"] == "skipped"

    seg = report[report["item"] == "SEG"].iloc[0]
    assert (seg["outcome"], seg["phase"], seg["patient"]) == ("used", "PVP", "HCC001")
    assert seg["reason"] == (
        "on series 3 'Portal venous 2.5mm'; tumor_mask: Tumor; liver_mask: Liver"
    )
    rt = report[report["item"] == "RTSTRUCT"].iloc[0]
    assert (rt["outcome"], rt["phase"]) == ("used", "AP")
    assert rt["reason"] == (
        "on series 6 't1_vibe_arterial'; tumor_mask: HCC; liver_mask: Liver; not mapped: 'Vessels'"
    )
    other = report[report["item"] == "file"]
    assert other[["path", "reason"]].values.tolist() == [
        [f"{t}/P1_CT/README.txt", "not a DICOM file"]
    ]
    # every series and object once, files last; patients in order
    assert len(report) == 12 + 2 + 1
    assert report["item"].iloc[-1] == "file"
    assert report["patient"].iloc[:-1].is_monotonic_increasing
    assert report.loc[report["dicom_patient_id"] == "HCC_001", "patient"].unique().tolist() == [
        "HCC001"
    ]
    # the same tree gives the same files
    again = build_sheet(root, tmp_path / "again" / "cohort.tsv")
    pd.testing.assert_frame_equal(again.report.drop(columns="path"), report.drop(columns="path"))


def test_written_sheet_passes_the_project_sheet_checks(tree, tmp_path):
    out = tmp_path / "cohort.tsv"
    build_sheet(tree["root"], out)
    sheet = _read_tsv(out)
    clinical = sheet.drop_duplicates("patient")[["patient", "center", "modality"]]
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    settings = settings_from_config(
        {"cohort": str(out), "clinical": str(tmp_path / "clinical.tsv")}
    )
    cohort = load_cohort(settings)  # raises SheetError listing every problem
    assert cohort.patients == ["HCC001", "HCC002"]
    ap = cohort.record("HCC002", "AP")
    assert ap.series == tree["uids"]["ap"]
    assert ap.segment("tumor") == "HCC" and ap.segment("liver") == "Liver"
    rt = tree["root"] / "P2_MR" / "rt" / "rtstruct.dcm"
    assert ap.mask("tumor").resolve() == rt.resolve()
    # GDCM (SimpleITK) sees the same series in the folder the sheet names
    assert set(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(ap.image))) == {
        tree["uids"]["ap"],
        tree["uids"]["pre"],
    }


def test_sheet_rows_read_back_as_their_series(tree, tmp_path):
    """The workflow's reader (hccrad.imageio.read_image with the sheet's series cell) reads each
    row's series: 6 slices whose values carry the series number (100 x number + slice)."""
    out = tmp_path / "cohort.tsv"
    result = build_sheet(tree["root"], out)
    numbers = result.report.set_index("series")["series_number"]
    expected = {
        ("HCC001", "AP"): "art",
        ("HCC001", "PVP"): "pv",
        ("HCC002", "AP"): "ap",
        ("HCC002", "PVP"): "dyn",
        ("HCC002", "HBP"): "hbp",
        ("HCC002", "DP"): "dp",
    }
    for row in result.sheet.itertuples():
        image = read_image(out.parent / row.image, series=row.series or None)
        values = sitk.GetArrayFromImage(image)
        assert values.shape == (6, 16, 16)
        number = int(numbers[tree["uids"][expected[(row.patient, row.phase)]]])
        assert sorted(values[:, 0, 0].tolist()) == [100 * number + i for i in range(6)]


def test_modality_phases_are_the_configured_ones():
    settings = load_settings(ROOT / "config" / "config.yaml")
    for name, phases in dicomsheet.MODALITY_PHASES.items():
        mod = settings.modalities[name]
        assert tuple(mod.phases) == phases
        assert mod.reference_phase == dicomsheet.REFERENCE_PHASE


def test_seg_found_through_its_source_images(tmp_path):
    """A SEG without ReferencedSeriesSequence is attached through its source SOP instances."""
    import pydicom

    study = Study("P9", "CT")
    ap = study.series(tmp_path / "tree" / "a", 1, "arterial", "100000")
    study.series(tmp_path / "tree" / "b", 2, "venous", "100100")
    seg_path = tmp_path / "tree" / "s" / "seg.dcm"
    _seg(ap, seg_path, ["Tumor"])
    ds = pydicom.dcmread(seg_path)
    del ds.ReferencedSeriesSequence
    ds.save_as(seg_path)
    result = build_sheet(tmp_path / "tree", tmp_path / "c.tsv", center="X1")
    assert result.sheet[["phase", "tumor_mask", "tumor_segment"]].values.tolist() == [
        ["AP", "tree/s/seg.dcm", "Tumor"],
        ["PVP", "", ""],
    ]


def test_time_rule_places_undecided_series(tmp_path):
    """Four MR series named alike: AP, PVP, DP by order; 20 minutes later HBP; one acquired before
    the series named arterial is no phase."""
    study = Study("P7", "MR")
    study.series(tmp_path / "t" / "0", 1, "T1 dyn", "085930")  # before AP: nothing left
    study.series(tmp_path / "t" / "1", 2, "T1 arterial", "090000")
    study.series(tmp_path / "t" / "2", 3, "T1 dyn", "090050")
    study.series(tmp_path / "t" / "3", 4, "T1 dyn", "090300")
    study.series(tmp_path / "t" / "4", 5, "T1 dyn", "092000")
    result = build_sheet(tmp_path / "t", tmp_path / "c.tsv", center="C")
    assert result.sheet[["phase", "image"]].values.tolist() == [
        ["AP", "t/1"],
        ["PVP", "t/2"],
        ["HBP", "t/4"],
        ["DP", "t/3"],
    ]
    first = result.report[result.report["series_number"] == "1"].iloc[0]
    assert first["outcome"] == "skipped"
    assert first["reason"] == (
        "description names no phase; its acquisition time (-30 s from the AP series) leaves no "
        "free phase"
    )


def test_phase_patterns():
    pmap = load_phase_map()
    assert pmap.not_a_phase_match("PRE_CONTRAST T1") == "pre-contrast"
    assert pmap.not_a_phase_match("Precontrast") == "pre-contrast"
    assert pmap.phase_matches("T1 VIBE ART") == {"AP": ["art"]}
    assert pmap.phase_matches("party arterial") == {"AP": ["arterial"]}
    assert pmap.phase_matches("HBP 20min") == {"HBP": ["HBP", "20 min"]}
    assert pmap.phase_matches("delayed 3 min") == {"DP": ["delayed", "3 min"]}
    assert pmap.phase_matches("capsule") == {}
    assert pmap.mask_kind("Liver tumor") == "tumor"
    assert pmap.mask_kind("liver") == "liver"
    assert pmap.mask_kind("Vessels") is None


def test_bad_inputs_are_named(tmp_path):
    Study("A_1", "CT").series(tmp_path / "t" / "a", 1, "arterial", "100000")
    with pytest.raises(InputError, match=r"patient A1.*no center.*pass --center"):
        build_sheet(tmp_path / "t", tmp_path / "c.tsv")
    Study("A-1", "CT").series(tmp_path / "t" / "b", 1, "arterial", "100000")
    with pytest.raises(InputError, match="PatientIDs 'A-1' and 'A_1' both become 'A1'"):
        build_sheet(tmp_path / "t", tmp_path / "c.tsv", center="X")
    bad = tmp_path / "map.yaml"
    bad.write_text("phases: {XP: [x]}\n")
    with pytest.raises(InputError, match=r"map\.yaml: phase map key phases: unknown phase"):
        load_phase_map(bad)
    with pytest.raises(InputError, match="DICOM root is not a folder"):
        build_sheet(tmp_path / "nothing", tmp_path / "c.tsv", center="X")


def test_cli(tree, tmp_path, capsys):
    assert main(["sheet", "--print-phase-map"]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["phases"]["AP"][0] == "arterial"
    own = tmp_path / "own.yaml"
    own.write_text(printed.replace("HBP: [hepatobiliary,", "HBP: ["))  # HBP: by time only
    out = tmp_path / "sheet" / "cohort.tsv"
    rc = main(["sheet", str(tree["root"]), "--out", str(out), "--center", "C7",
               "--phase-map", str(own)])  # fmt: skip
    assert rc == 0
    sheet = _read_tsv(out)
    assert set(sheet["center"]) == {"C7"}
    assert sheet["phase"].tolist() == ["AP", "PVP", "AP", "PVP", "HBP", "DP"]
    assert "wrote 6 rows (2 patients: CT 1, MR 1)" in capsys.readouterr().out
    assert main(["sheet", str(tree["root"]), "--out", str(out), "--center", "bad_name"]) == 1


def test_real_ct_series(tmp_path):
    """A real scanner export (HCC-TACE-Seg, one series, no acquisition time): the default map
    does not name its phase; a user's map does."""
    folder = shared_data("hcc048_ct_dicom")
    out = tmp_path / "cohort.tsv"
    result = build_sheet(folder, out, center="TCIA")
    assert result.sheet.empty
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    row = result.report[result.report["item"] == "series"].iloc[0]
    assert row["series"] == ids[0]
    assert int(row["images"]) == len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    assert row["reason"] == "description names no phase and has no acquisition time"
    assert result.report[result.report["item"] == "file"]["reason"].tolist() == ["not a DICOM file"]
    own = tmp_path / "map.yaml"
    own.write_text("phases:\n  AP: [liver 2 phase]\n")
    result = build_sheet(folder, out, center="TCIA", phase_map=own)
    assert result.sheet[["patient", "phase", "modality", "series"]].values.tolist() == [
        ["Patient01", "AP", "CT", ""]
    ]
    assert (tmp_path / result.sheet.loc[0, "image"]).resolve() == folder.resolve()


def test_copies_and_link_loops_are_read_once(tmp_path):
    """A second copy of an instance is reported, not counted; a symbolic link back up the tree
    is not walked again."""
    study = Study("P5", "CT")
    study.series(tmp_path / "t" / "a", 1, "arterial", "100000")
    (tmp_path / "t" / "copy").mkdir()
    (tmp_path / "t" / "copy" / "IM0001").write_bytes((tmp_path / "t" / "a" / "IM0001").read_bytes())
    (tmp_path / "t" / "a" / "loop").symlink_to(tmp_path / "t")
    result = build_sheet(tmp_path / "t", tmp_path / "c.tsv", center="C")
    assert result.sheet[["phase", "image"]].values.tolist() == [["AP", "t/a"]]
    series = result.report[result.report["item"] == "series"]
    assert series["images"].tolist() == ["6"]
    files = result.report[result.report["item"] == "file"]
    uid = series["series"].iloc[0]
    assert files["path"].tolist() == ["t/copy/IM0001"]
    assert files["reason"].iloc[0].startswith("second copy of SOP instance ")
    assert files["reason"].iloc[0].endswith(f"(series {uid})")


def test_docs_show_the_shipped_phase_map():
    docs = (ROOT / "docs" / "dicom_sheet.md").read_text()
    block = docs.split("tests/test_dicomsheet.py -->\n```yaml\n", 1)[1].split("```\n", 1)[0]
    assert block == dicomsheet.default_phase_map_text()


def test_small_split_and_second_studies_are_skipped(tmp_path):
    """Series too small or spread over folders, a PatientID without letters or digits, and the
    second study of a patient (the one with fewer phases) are reported, not placed."""
    t = tmp_path / "t"
    first = Study("P1", "CT")
    first.series(t / "s1" / "a", 1, "arterial", "100000")
    first.series(t / "s1" / "p", 2, "portal", "100100")
    first.series(t / "s1" / "three", 3, "arterial thin", "100000", slices=3)
    first.series(t / "s1" / "one", 4, "arterial", "100000", slices=1)
    first.series(t / "s1" / "split", 5, "venous", "100200")
    (t / "s1" / "split2").mkdir()
    for name in ("IM0004", "IM0005", "IM0006"):
        (t / "s1" / "split" / name).rename(t / "s1" / "split2" / name)
    second = Study("P1", "CT")
    second.series(t / "s2" / "a", 1, "arterial", "120000")
    Study("__", "CT").series(t / "s3", 1, "arterial", "100000")
    result = build_sheet(t, tmp_path / "c.tsv", center="C")
    assert result.sheet[["patient", "phase", "image"]].values.tolist() == [
        ["P1", "AP", "t/s1/a"],
        ["P1", "PVP", "t/s1/p"],
    ]
    reasons = result.report.set_index("path")["reason"]
    assert reasons["t/s1/three"] == "only 3 slices (fewer than 5)"
    assert reasons["t/s1/one"] == "single slice"
    assert reasons["t/s1/split, t/s1/split2"] == "files spread over 2 folders"
    assert reasons["t/s2/a"] == (
        f"patient's other study {first.uid} (CT) is used; description matches 'arterial'"
    )
    assert reasons["t/s3"] == "PatientID '__' has no letter or digit"


def test_mask_cells_select_the_segments(tree, tmp_path):
    """The workflow's mask reader (hccrad.imageio.read_mask with the sheet's segment cell) gets
    exactly the SEG's boxes per segment, and the RTSTRUCT's outline on its one slice."""
    pytest.importorskip("hccrad.maskio", reason="SEG/RTSTRUCT reading not in this checkout yet")
    from hccrad.imageio import read_mask

    out = tmp_path / "cohort.tsv"
    sheet = build_sheet(tree["root"], out).sheet.set_index(["patient", "phase"])
    arrays = {}
    for key in [("HCC001", "PVP"), ("HCC002", "AP")]:
        row = sheet.loc[key]
        image = read_image(out.parent / row["image"], series=row["series"] or None)
        for kind in ("tumor", "liver"):
            mask = read_mask(
                out.parent / row[f"{kind}_mask"],
                image,
                kind=kind,
                segment=row[f"{kind}_segment"],
            )
            arrays[(*key, kind)] = sitk.GetArrayFromImage(mask)
    # _seg: segment k is the box [1:5, 2k:2k+4, 4:10], Tumor (2) drawn over Liver (1)
    liver, tumor = np.zeros((2, 6, 16, 16), dtype=np.uint8)
    liver[1:5, 2:6, 4:10] = 1
    tumor[1:5, 4:8, 4:10] = 1
    liver[tumor == 1] = 0
    np.testing.assert_array_equal(arrays[("HCC001", "PVP", "liver")], liver)
    np.testing.assert_array_equal(arrays[("HCC001", "PVP", "tumor")], tumor)
    for kind in ("tumor", "liver"):
        drawn = np.nonzero(arrays[("HCC002", "AP", kind)])
        assert set(drawn[0].tolist()) == {2}  # the contour's slice
