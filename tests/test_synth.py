"""Tests of the embedded synthetic cohort generator (hccrad.synth)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hccrad.errors import ConfigError
from hccrad.stats import auc
from hccrad.stats.agreement import cohen_kappa
from hccrad.synth import (
    CLINICAL_COLUMNS,
    COHORT_COLUMNS,
    MOTION_TSV_COLUMNS,
    Habitat,
    clinical_tables,
    generate_patient,
    mask_availability,
    patient_id,
    true_relative_transform,
    write_cohort,
)
from hccrad.synth.blood import BLOOD_COUNTS
from hccrad.synth.readers import READER_FEATURES, reader_columns
from hccrad.synth.writers import write_tsv

N_SMALL = 3  # per modality: one patient per center (A, B, C)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_image(root: Path, rel: str) -> sitk.Image:
    path = root / rel
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    write_cohort(out, seed=7, n_patients=N_SMALL, modality="both", workers=2)
    return out


@pytest.fixture(scope="module")
def mr_patient():
    return generate_patient("MR", 0, seed=7)


@pytest.fixture(scope="module")
def ct_patient():
    return generate_patient("CT", 0, seed=7)


# ---------------------------------------------------------------------------------------------
# files and sheets
# ---------------------------------------------------------------------------------------------


def test_deterministic_and_worker_independent(cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    paths = write_cohort(again, seed=7, n_patients=N_SMALL, modality="both", workers=1)
    assert set(paths) == {"cohort", "clinical", "truth", "motion"}
    first, second = _tree_digest(cohort), _tree_digest(again)
    assert first.keys() == second.keys()
    assert first == second


def test_adding_patients_keeps_earlier_ones() -> None:
    small, _ = clinical_tables(seed=7, n_patients=3, modality="MR")
    large, _ = clinical_tables(seed=7, n_patients=10, modality="MR")
    assert small == large[:3]


def test_sheet_columns_and_rows(cohort: Path) -> None:
    sheet = _read_tsv(cohort / "cohort.tsv")
    assert tuple(sheet.columns) == COHORT_COLUMNS
    assert len(sheet) == N_SMALL * 4 + N_SMALL * 2
    assert set(sheet.center) == {"A", "B", "C"}
    mr = sheet[sheet.modality == "MR"]
    assert all(sorted(g.phase) == ["AP", "DP", "HBP", "PVP"] for _, g in mr.groupby("patient"))
    ct = sheet[sheet.modality == "CT"]
    assert all(sorted(g.phase) == ["AP", "PVP"] for _, g in ct.groupby("patient"))
    assert all(re.fullmatch(r"[A-Za-z0-9]+", p) for p in sheet.patient)
    assert not set(mr.patient) & set(ct.patient)
    for col in ("image", "tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask"):
        for rel in sheet[col]:
            if rel:
                assert not rel.startswith("/") and "\\" not in rel
                assert (cohort / rel).exists(), rel
    # one DICOM center, one NRRD center, NIfTI elsewhere
    fmt = {
        c: set(g.image.map(lambda s: s.split(".")[-1] if "." in s else "dicom"))
        for c, g in sheet.groupby("center")
    }
    assert fmt == {"A": {"gz"}, "B": {"dicom"}, "C": {"nrrd"}}
    # masks for all phases of a patient or for none
    for _, g in sheet.groupby("patient"):
        for col in ("tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask"):
            assert len({bool(v) for v in g[col]}) == 1
    # reader 1's repeat outline: exactly the patients with a second reader
    assert ((sheet.reader2_mask != "") == (sheet.reader1_repeat_mask != "")).all()
    assert (sheet.reader1_repeat_mask != "").any()


def test_clinical_table(cohort: Path) -> None:
    clin = _read_tsv(cohort / "clinical.tsv")
    assert tuple(clin.columns) == CLINICAL_COLUMNS
    assert len(clin) == 2 * N_SMALL and clin.patient.is_unique
    assert "NA" not in clin.to_numpy() and "nan" not in clin.to_numpy()
    assert set(clin.sex) <= {"M", "F"} and set(clin.child_pugh) <= {"A", "B"}
    assert set(clin.bclc) <= {"0", "A", "B", "C"}
    assert set(clin.cnlc) <= {"Ia", "Ib", "IIa", "IIb", "IIIa"}
    for col in (
        *reader_columns(),
        "hbv",
        "hcv",
        "cirrhosis",
        "grade_pd",
        "mvi",
        "early_recurrence",
        "proliferative",
        "os_event",
        "rfs_event",
        "pfs_event",
        "tace_response",
    ):
        assert set(clin[col]) <= {"0", "1"}, col
    assert set(clin[clin.modality == "MR"].field_strength) <= {"1.5", "3.0"}
    assert set(clin[clin.modality == "CT"].field_strength) == {""}
    for col in ("os_months", "rfs_months", "pfs_months", "afp", "tumor_size_mm", *BLOOD_COUNTS):
        assert (clin[col].astype(float) > 0).all()
    assert all(re.fullmatch(r"[0-9]+", v) for v in clin.platelets)  # whole 10^9/L
    dates = pd.to_datetime(clin.acquisition_date, format="%Y-%m-%d")
    assert dates[clin.center == "C"].min() > dates[clin.center.isin(["A", "B"])].max()
    truth = _read_tsv(cohort / "truth.tsv")
    assert list(truth.patient) == list(clin.patient) and set(truth.null) == {"0"}
    assert {
        "aggressiveness",
        "necrotic_fraction",
        "viable_heterogeneity",
        "mvi_latent",
        "prolif_latent",
        "hemorrhage_latent",
    } <= set(truth.columns)
    manifest = json.loads((cohort / "synth.json").read_text())
    assert manifest["null"] is False and manifest["seed"] == 7


def test_mask_geometry_matches_image_including_dicom_and_nrrd(cohort: Path) -> None:
    sheet = _read_tsv(cohort / "cohort.tsv")
    for row in sheet.itertuples():
        img = _read_image(cohort, row.image)
        for rel in (row.tumor_mask, row.liver_mask, row.reader2_mask, row.reader1_repeat_mask):
            if not rel:
                continue
            m = sitk.ReadImage(str(cohort / rel))
            assert m.GetPixelID() == sitk.sitkUInt8
            assert m.GetSize() == img.GetSize(), rel
            np.testing.assert_allclose(m.GetSpacing(), img.GetSpacing(), atol=1e-4)
            np.testing.assert_allclose(m.GetOrigin(), img.GetOrigin(), atol=1e-4)
            np.testing.assert_allclose(m.GetDirection(), img.GetDirection(), atol=1e-6)
            assert set(np.unique(sitk.GetArrayViewFromImage(m))) <= {0, 1}
        if row.tumor_mask:
            t = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row.tumor_mask))) > 0
            lv = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row.liver_mask))) > 0
            assert t.sum() > 50 and (t & lv).sum() / t.sum() > 0.95
        # anisotropic voxels like real scans
        sx, sy, sz = img.GetSpacing()
        assert 0.65 <= sx <= 1.5 and 2.5 <= sz <= 5.0
        assert np.prod(img.GetSize()) * sx * sy * sz <= 1.1 * 100 * 90 * 70


def test_dicom_values_and_identifying_tags(cohort: Path) -> None:
    sheet = _read_tsv(cohort / "cohort.tsv")
    clin = _read_tsv(cohort / "clinical.tsv").set_index("patient")
    rows = sheet[sheet.center == "B"]
    assert len(rows) == 6
    sop_uids = set()
    for row in rows.itertuples():
        files = sorted((cohort / row.image).glob("*.dcm"))
        img = _read_image(cohort, row.image)
        assert len(files) == img.GetSize()[2]
        ds = pydicom.dcmread(files[0])
        for tag in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "InstitutionName",
            "AccessionNumber",
            "ReferringPhysicianName",
            "StudyDate",
        ):
            assert str(ds.get(tag, "")).strip(), tag
        assert ds.PatientID != row.patient
        assert ds.StudyDate == clin.loc[row.patient, "acquisition_date"].replace("-", "")
        assert ds.Modality == row.modality
        if row.modality == "CT":
            assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
            # HU: air outside the body, enhanced liver soft tissue
            arr = sitk.GetArrayFromImage(img)
            liver = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row.liver_mask))) > 0
            assert arr.min() <= -900 and 40 < np.median(arr[liver]) < 150
        series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}
        assert len(series) == 1
        sop_uids |= {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(sop_uids) == sum(len(list((cohort / r).glob("*.dcm"))) for r in rows.image)


def test_dicom_and_nrrd_hold_the_written_values(cohort: Path) -> None:
    for modality, idx in (("CT", 1), ("MR", 2)):  # center B (DICOM) CT, center C (NRRD) MR
        p = generate_patient(modality, idx, seed=7, keep_phantom=False)
        sheet = _read_tsv(cohort / "cohort.tsv")
        for phase in p.phases:
            rel = sheet[(sheet.patient == p.patient) & (sheet.phase == phase)].image.item()
            disk = sitk.GetArrayFromImage(_read_image(cohort, rel)).astype(np.int32)
            np.testing.assert_array_equal(disk, sitk.GetArrayFromImage(p.images[phase]))


# ---------------------------------------------------------------------------------------------
# motion
# ---------------------------------------------------------------------------------------------


def test_motion_table_and_convention(cohort: Path, mr_patient) -> None:
    motion = _read_tsv(cohort / "motion.tsv")
    assert tuple(motion.columns) == MOTION_TSV_COLUMNS
    assert len(motion) == N_SMALL * 4 + N_SMALL * 2
    vals = motion[["rx_deg", "ry_deg", "rz_deg"]].astype(float).to_numpy()
    assert np.abs(vals).max() <= 3.0 and np.abs(vals).max() > 0
    shifts = motion[["tx_mm", "ty_mm", "tz_mm"]].astype(float).to_numpy()
    assert np.abs(shifts).max() <= 5.0
    # R = Rz @ Ry @ Rx (x first), T(x) = R (x - c) + c + t
    m = mr_patient.motion["PVP"]
    ax, ay, az = (math.radians(v) for v in (m.rx_deg, m.ry_deg, m.rz_deg))
    Rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    Ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    Rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    R = Rz @ Ry @ Rx
    np.testing.assert_allclose(m.matrix(), R, atol=1e-12)
    x = np.array([-40.0, 12.0, -150.0])
    c = np.array([m.cx_mm, m.cy_mm, m.cz_mm])
    t = np.array([m.tx_mm, m.ty_mm, m.tz_mm])
    np.testing.assert_allclose(
        m.transform().TransformPoint(tuple(x)), R @ (x - c) + c + t, atol=1e-9
    )


def test_true_relative_transform_maps_points(mr_patient) -> None:
    p = mr_patient
    ph = p.phantom
    x = tuple(float(v) for v in ph.tumor_centers[0])
    for phase in ("PVP", "HBP", "DP"):
        rel = true_relative_transform(p.motion, phase, "AP")
        y_ref = p.motion["AP"].transform().TransformPoint(x)
        y_p = p.motion[phase].transform().TransformPoint(x)
        np.testing.assert_allclose(rel.TransformPoint(y_ref), y_p, atol=1e-6)
    rows = [{"phase": k, **v.as_row()} for k, v in p.motion.items()]
    a = true_relative_transform(rows, "PVP", "AP")
    b = true_relative_transform(p.motion, "PVP", "AP")
    np.testing.assert_allclose(a.GetParameters(), b.GetParameters(), atol=1e-9)


def test_resampling_with_true_transform_aligns_phases(mr_patient) -> None:
    p = mr_patient
    ref = "AP"
    fixed = p.masks[ref]["liver"]
    fixed_t = sitk.GetArrayFromImage(p.masks[ref]["tumor"])
    for phase in ("PVP", "HBP", "DP"):
        moving = p.masks[phase]["liver"]
        rel = true_relative_transform(p.motion, phase, ref)
        aligned = sitk.Resample(
            sitk.Cast(moving, sitk.sitkFloat32), fixed, rel, sitk.sitkLinear, 0.0
        )
        d_aligned = _dice(sitk.GetArrayFromImage(aligned) >= 0.5, sitk.GetArrayFromImage(fixed))
        d_raw = _dice(sitk.GetArrayFromImage(moving), sitk.GetArrayFromImage(fixed))
        assert d_aligned > 0.95, (phase, d_aligned)
        assert d_aligned > d_raw + 0.01, (phase, d_aligned, d_raw)
        wrong = sitk.Resample(
            sitk.Cast(moving, sitk.sitkFloat32), fixed, rel.GetInverse(), sitk.sitkLinear, 0.0
        )
        assert (
            _dice(sitk.GetArrayFromImage(wrong) >= 0.5, sitk.GetArrayFromImage(fixed)) < d_aligned
        )
        mt = sitk.Resample(p.masks[phase]["tumor"], fixed, rel, sitk.sitkNearestNeighbor, 0)
        assert _dice(sitk.GetArrayFromImage(mt), fixed_t) > 0.85


# ---------------------------------------------------------------------------------------------
# image content
# ---------------------------------------------------------------------------------------------


def _region_means(p, phase: str) -> dict[str, float]:
    clean = sitk.GetArrayFromImage(p.clean[phase])
    hab = sitk.GetArrayFromImage(p.habitat[phase])
    liver = sitk.GetArrayFromImage(p.masks[phase]["liver"]) > 0
    tumor = sitk.GetArrayFromImage(p.masks[phase]["tumor"]) > 0
    far = liver & (ndimage.distance_transform_edt(~tumor) > 8)  # parenchyma away from tumor
    viable = ndimage.binary_erosion(hab == Habitat.VIABLE)
    necrotic = ndimage.binary_erosion(hab == Habitat.NECROTIC)
    return {
        "liver": float(clean[far].mean()),
        "tumor": float(clean[tumor].mean()),
        "viable": float(clean[viable].mean()) if viable.any() else float("nan"),
        "necrotic": float(clean[necrotic].mean()) if necrotic.any() else float("nan"),
    }


@pytest.mark.parametrize("which", ["mr", "ct"])
def test_enhancement_kinetics(which: str, mr_patient, ct_patient) -> None:
    p = mr_patient if which == "mr" else ct_patient
    ap, pvp = _region_means(p, "AP"), _region_means(p, "PVP")
    assert ap["viable"] > ap["liver"] * (1.1 if which == "mr" else 1.0) + (
        15 if which == "ct" else 0
    )
    assert pvp["tumor"] < pvp["liver"]
    assert pvp["viable"] < pvp["liver"]
    if which == "mr":
        hbp = _region_means(p, "HBP")
        assert hbp["tumor"] < 0.8 * hbp["liver"]
        # necrosis does not enhance: flat across phases while the liver enhances
        assert abs(pvp["necrotic"] / ap["necrotic"] - 1) < 0.1
        assert pvp["liver"] / ap["liver"] > 1.2
        assert ap["necrotic"] < 0.6 * ap["liver"]
    else:
        assert 40 < ap["liver"] < 85 and 80 < pvp["liver"] < 130  # HU
        assert pvp["necrotic"] - ap["necrotic"] < 10
        air = sitk.GetArrayFromImage(p.images["AP"]).min()
        assert air <= -900


def test_mr_bias_field_amplitude(mr_patient) -> None:
    p = mr_patient
    amp = p.acquisition.bias_amplitude
    assert 0.2 <= amp <= 0.3
    for phase in p.phases:
        b = sitk.GetArrayFromImage(p.bias[phase])
        assert abs(np.abs(b - 1).max() - amp) < 1e-4
        # the written image is the clean image times the bias field, plus Rician noise
        clean = sitk.GetArrayFromImage(p.clean[phase])
        img = sitk.GetArrayFromImage(p.images[phase]).astype(np.float64)
        liver = sitk.GetArrayFromImage(p.masks[phase]["liver"]) > 0
        ratio = ndimage.uniform_filter(img, 5)[liver] / ndimage.uniform_filter(clean, 5)[liver]
        corr = np.corrcoef(ratio, b[liver])[0, 1]
        assert corr > 0.8, corr
    assert p.bias["AP"].GetSize() == p.images["AP"].GetSize()
    assert generate_patient("CT", 0, seed=7, keep_phantom=False).bias == {}


def test_tumor_count_and_habitats(mr_patient, ct_patient) -> None:
    for p in (mr_patient, ct_patient):
        ph = p.phantom
        n = ndimage.label(ph.tumor)[1]
        assert n == p.clinical["tumor_number"]
        assert set(np.unique(ph.habitat[ph.tumor])) <= {1, 2, 3}
        fr = p.measured
        assert abs(fr["necrotic_fraction_measured"] - p.hidden["necrotic_fraction"]) < 0.08
        # necrotic core is deeper than the viable habitat
        assert (
            ph.depth[ph.habitat == Habitat.NECROTIC].mean()
            > ph.depth[ph.habitat == Habitat.VIABLE].mean()
        )
        assert (
            abs(fr["index_diameter_measured_mm"] - p.clinical["tumor_size_mm"])
            < 0.35 * p.clinical["tumor_size_mm"]
        )


def test_habitats_vary_with_aggressiveness() -> None:
    low = generate_patient("CT", 0, seed=7, hidden_overrides={"aggressiveness": -1.5})
    high = generate_patient("CT", 0, seed=7, hidden_overrides={"aggressiveness": 1.5})
    assert (
        high.measured["necrotic_fraction_measured"]
        > low.measured["necrotic_fraction_measured"] + 0.1
    )
    assert high.hidden["viable_heterogeneity"] > low.hidden["viable_heterogeneity"] + 0.05

    def viable_cv(p) -> float:  # texture heterogeneity inside the viable habitat (clean AP image)
        clean = sitk.GetArrayFromImage(p.clean["AP"])
        v = ndimage.binary_erosion(sitk.GetArrayFromImage(p.habitat["AP"]) == Habitat.VIABLE)
        return float(clean[v].std())

    assert viable_cv(high) > viable_cv(low)


# ---------------------------------------------------------------------------------------------
# planted signal and the null cohort
# ---------------------------------------------------------------------------------------------


def _pb(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


def test_labels_associate_with_drivers_and_null_destroys_it() -> None:
    clin, hidden = clinical_tables(seed=11, n_patients=300, modality="both")
    c, h = pd.DataFrame(clin), pd.DataFrame(hidden)
    pairs = [
        ("aggressiveness", "grade_pd"),
        ("mvi_latent", "mvi"),
        ("sat_latent", "early_recurrence"),
        ("prolif_latent", "proliferative"),
    ]
    for drv, lab in pairs:
        assert _pb(h[drv], c[lab]) > 0.3, (drv, lab)
    assert _pb(np.log(c.afp), c.proliferative) > 0.2
    assert _pb(c.proliferative, c.tace_response) < -0.2
    # early recurrence <=> recurrence (or death) within 24 months
    er = c.early_recurrence == 1
    assert ((c.rfs_months[er] <= 24) & (c.rfs_event[er] == 1)).all()
    assert (c.rfs_months[~er] > 24).all()
    assert (c.rfs_months <= c.os_months).all() and (c.pfs_months <= c.os_months).all()
    for lab in ("grade_pd", "mvi", "early_recurrence", "proliferative"):
        assert 0.15 < c[lab].mean() < 0.6, lab

    nclin, _ = clinical_tables(seed=11, n_patients=300, modality="both", null=True)
    n = pd.DataFrame(nclin)
    for drv, lab in pairs:
        assert abs(_pb(h[drv], n[lab])) < 0.15, (drv, lab)
    # joint permutation: label marginals and the ER <-> RFS consistency survive
    assert n.grade_pd.sum() == c.grade_pd.sum()
    ner = n.early_recurrence == 1
    assert ((n.rfs_months[ner] <= 24) & (n.rfs_event[ner] == 1)).all()
    # clinical covariates are not permuted
    assert (n.afp.to_numpy() == c.afp.to_numpy()).all()


def test_null_cohort_keeps_images(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "null"
    write_cohort(out, seed=7, n_patients=N_SMALL, modality="CT", null=True, workers=1)
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["null"] is True and "null_permuted_columns" in manifest
    assert "NULL" in (out / "README.md").read_text()
    truth = _read_tsv(out / "truth.tsv")
    assert set(truth.null) == {"1"}
    a = (out / "images/ACT001/AP.nii.gz").read_bytes()
    b = (cohort / "images/ACT001/AP.nii.gz").read_bytes()
    assert a == b
    clin_null = _read_tsv(out / "clinical.tsv").set_index("patient")
    clin = _read_tsv(cohort / "clinical.tsv").set_index("patient").loc[clin_null.index]
    assert (clin_null.afp == clin.afp).all()
    src = truth.set_index("patient").null_label_source
    for pid in clin_null.index:
        np.testing.assert_array_equal(
            clin_null.loc[pid, ["grade_pd", "os_months"]],
            clin.loc[src[pid], ["grade_pd", "os_months"]],
        )


# ---------------------------------------------------------------------------------------------
# clinical columns added later: readers' scores, blood counts
# ---------------------------------------------------------------------------------------------

#: The clinical columns before the readers' scores and the blood counts were added.
_OLD_CLINICAL = (
    "patient", "center", "modality", "acquisition_date", "age", "sex", "afp", "ast", "alt",
    "ggt", "tbil", "alb", "child_pugh", "hbv", "hcv", "cirrhosis", "tumor_size_mm",
    "tumor_number", "bclc", "cnlc", "grade_pd", "mvi", "early_recurrence", "proliferative",
    "os_months", "os_event", "rfs_months", "rfs_event", "pfs_months", "pfs_event",
    "tace_response",
)  # fmt: skip
#: sha256 of those columns' values (and of the 20 hidden values) of seed 42, 16 + 16 patients,
#: and of two patients' images and masks, computed by the generator before the new columns.
#: The clinical and hidden digests were renewed when the early-recurrence predictor gained its
#: aggressiveness term (2026-12-07); :data:`_BEFORE_ER_AGGR` pins everything else to the values
#: written before that change.
_OLD_DIGESTS = {
    ("clinical", False): "85fd42cb48e4d66204c07e0a33271700fe5e0a871798ff7e7615f7f708ef0d9e",
    ("clinical", True): "f7876acfb3ff134711aafb70d9fc93a16c39b122e730841d536237f58d7a6197",
    ("hidden", False): "76f0a5b84410b7906a2f42a37563e5ce487ff7c973a129e58044684f59c32c5f",
    ("hidden", True): "76f0a5b84410b7906a2f42a37563e5ce487ff7c973a129e58044684f59c32c5f",
    ("MR", 1): "951cd8e81787f50657d8280ab5c0794eb514667f6209f55937800e2be525c33c",
    ("CT", 2): "3bf689530d2103eb9e9fef3e4eaba52809e5e5a88985ab6338bdbf727617332e",
}
_NEW_HIDDEN = ("hemorrhage_latent", "null_label_source")
#: What the early-recurrence predictor's aggressiveness term changes: the label, the times that
#: depend on it (recurrence; death, hence OS and PFS) and the predictor itself; and the digests
#: of every other value, computed by the generator before the change (equal after it).
_ER_CLINICAL = (
    "early_recurrence", "os_months", "os_event", "rfs_months", "rfs_event", "pfs_months",
    "pfs_event",
)  # fmt: skip
_ER_HIDDEN = ("er_linear_predictor",)
_BEFORE_ER_AGGR = {
    ("clinical", False): "8cdfba4c85ad1a940e65f76c1d360adf2bb7af9a7496cac39ef43d0cbd0675aa",
    ("clinical", True): "9b2c57f641d48a0013115f9f04de3664191a1ba60c71d57c84e4df870de6c3c1",
    ("hidden", False): "d9869eadf654a5d06e585a833a0c8e55f7a041913afedc7eaa2b9444b67251d2",
    ("hidden", True): "d9869eadf654a5d06e585a833a0c8e55f7a041913afedc7eaa2b9444b67251d2",
}


def _json_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def test_added_columns_leave_existing_values_and_images_unchanged() -> None:
    for null in (False, True):
        clin, hidden = clinical_tables(seed=42, n_patients=16, modality="both", null=null)
        old = [{k: r[k] for k in _OLD_CLINICAL} for r in clin]
        assert _json_digest(old) == _OLD_DIGESTS[("clinical", null)]
        kept = [{k: v for k, v in r.items() if k not in _ER_CLINICAL} for r in old]
        assert _json_digest(kept) == _BEFORE_ER_AGGR[("clinical", null)]
        keys = [k for k in sorted(hidden[0]) if k not in _NEW_HIDDEN]
        assert len(keys) == 20
        old_hidden = [{k: r[k] for k in keys} for r in hidden]
        assert _json_digest(old_hidden) == _OLD_DIGESTS[("hidden", null)]
        kept = [{k: v for k, v in r.items() if k not in _ER_HIDDEN} for r in old_hidden]
        assert _json_digest(kept) == _BEFORE_ER_AGGR[("hidden", null)]
    for modality, index in (("MR", 1), ("CT", 2)):
        p = generate_patient(modality, index, seed=42, keep_phantom=False)
        digest = hashlib.sha256()
        for phase in p.phases:
            digest.update(sitk.GetArrayViewFromImage(p.images[phase]).tobytes())
            for key in ("tumor", "liver", "tumor_reader2"):
                digest.update(sitk.GetArrayViewFromImage(p.masks[phase][key]).tobytes())
        assert digest.hexdigest() == _OLD_DIGESTS[(modality, index)], (modality, index)


#: Digests of seed 7's three + three patients as written before reader 1's repeat outline was
#: added: every file but cohort.tsv (sha256 of the sorted {path: sha256} JSON), and cohort.tsv's
#: columns of that time. "files" renewed with the early-recurrence predictor's aggressiveness
#: term (clinical.tsv's and truth.tsv's ER-derived columns); "images" (every file but the three
#: tables) is the digest of before that change.
_BEFORE_REPEAT = {
    "files": "cd74131b9678fca43f7095d2098a91104e161617f00bcb0f9ee0e09a5bd3ffb4",
    "images": "611733dfe161ea8af65d616ec161a93606e44a2609fbddb89a696eb37018ae79",
    "sheet": "54fe27d6088e1525e0d69a9468df1ba25ab3d1c409aa1e154e3f3f4f5842e69d",
}
_SHEET_BEFORE_REPEAT = list(COHORT_COLUMNS[:8])


def test_repeat_outline_leaves_every_earlier_output_unchanged(cohort: Path) -> None:
    """Reader 1's repeat outline draws from a stream of its own: every image, mask and table
    written before it was added is byte-identical; only new files and a new column appear."""
    tree = _tree_digest(cohort)
    new = sorted(k for k in tree if "reader1_repeat" in k)
    assert new and all(k.endswith("_tumor_reader1_repeat.nii.gz") for k in new)
    old = {k: v for k, v in tree.items() if k not in new and k != "cohort.tsv"}
    assert _json_digest(old) == _BEFORE_REPEAT["files"]
    images = {k: v for k, v in old.items() if k not in ("clinical.tsv", "truth.tsv")}
    assert _json_digest(images) == _BEFORE_REPEAT["images"]
    sheet = _read_tsv(cohort / "cohort.tsv")
    assert list(sheet.columns) == [*_SHEET_BEFORE_REPEAT, "reader1_repeat_mask"]
    text = sheet[_SHEET_BEFORE_REPEAT].to_csv(sep="\t", index=False)
    assert hashlib.sha256(text.encode()).hexdigest() == _BEFORE_REPEAT["sheet"]


def test_repeat_outline_agrees_with_reader1_better_than_reader2() -> None:
    """Intra-observer variability below inter-observer: per patient (mean over phases) the
    repeat's Dice to reader 1 is higher than reader 2's on the generated patients with a
    second reader."""
    r2, repeat = [], []
    for modality in ("MR", "CT"):
        for index in (i for i in range(24) if mask_availability(i)[1]):
            p = generate_patient(modality, index, seed=7, keep_phantom=False)
            d2, dr = [], []
            for phase in p.phases:
                m = {k: sitk.GetArrayViewFromImage(v) for k, v in p.masks[phase].items()}
                assert m["tumor_reader1_repeat"].any()
                d2.append(_dice(m["tumor"], m["tumor_reader2"]))
                dr.append(_dice(m["tumor"], m["tumor_reader1_repeat"]))
            r2.append(np.mean(d2))
            repeat.append(np.mean(dr))
    r2, repeat = np.array(r2), np.array(repeat)
    assert len(r2) == 16
    # measured: medians 0.897 (reader 2) and 0.943 (repeat), means 0.876 and 0.930
    assert np.median(repeat) > 0.92 and np.median(repeat) > np.median(r2) + 0.03
    assert repeat.mean() > r2.mean() + 0.03
    assert (repeat > r2).mean() > 0.5


def test_clinical_tables_are_the_written_rows(cohort: Path, tmp_path: Path) -> None:
    rows, hidden = clinical_tables(seed=7, n_patients=N_SMALL, modality="both")
    assert all(tuple(r) == CLINICAL_COLUMNS for r in rows)
    write_tsv(tmp_path / "clinical.tsv", CLINICAL_COLUMNS, rows)
    assert (tmp_path / "clinical.tsv").read_bytes() == (cohort / "clinical.tsv").read_bytes()
    truth = _read_tsv(cohort / "truth.tsv").set_index("patient")
    for h in hidden:
        assert float(truth.loc[h["patient"], "hemorrhage_latent"]) == pytest.approx(
            h["hemorrhage_latent"], abs=1e-6
        )
    # the null cohort too (its label sources are hidden values, as in truth.tsv)
    out = tmp_path / "null"
    write_cohort(out, seed=7, n_patients=N_SMALL, modality="CT", null=True, workers=1)
    rows, hidden = clinical_tables(seed=7, n_patients=N_SMALL, modality="CT", null=True)
    write_tsv(tmp_path / "null.tsv", CLINICAL_COLUMNS, rows)
    assert (tmp_path / "null.tsv").read_bytes() == (out / "clinical.tsv").read_bytes()
    source = _read_tsv(out / "truth.tsv").set_index("patient").null_label_source
    assert {h["patient"]: h["null_label_source"] for h in hidden} == source.to_dict()


def test_reader_scores_follow_the_image_values_with_realistic_kappa() -> None:
    rows, hidden = clinical_tables(seed=3, n_patients=1500, modality="both")
    c, h = pd.DataFrame(rows), pd.DataFrame(hidden)
    truth = h.assign(cirrhosis=c["cirrhosis"])
    assert [f.column for f in READER_FEATURES] == [
        "nonsmooth_margin", "intratumoral_necrosis", "intratumoral_hemorrhage", "capsule",
        "arterial_peritumoral_enhancement", "radiological_cirrhosis",
    ]  # fmt: skip
    for f in READER_FEATURES:
        r1, r2 = c[f.column], c[f"{f.column}_r2"]
        true_state = (truth[f.source] > f.threshold).astype(int)
        k12 = cohen_kappa(r1, r2).kappa
        assert 0.7 < k12 < 0.9, (f.column, k12)  # two readers: substantial to excellent
        # the senior reader (smaller noise) agrees better with the truth than reader 2
        assert cohen_kappa(r1, true_state).kappa > cohen_kappa(r2, true_state).kappa > k12
        assert 0.2 < r1.mean() < 0.85, f.column
        # far from the threshold (4 reader-2 noise SDs) both readers read the truth
        clear = (truth[f.source] - f.threshold).abs() > 4 * 0.30 * f.scale
        assert (r1[clear] == true_state[clear]).all() and (r2[clear] == true_state[clear]).all()
    # the hemorrhage latent: larger necrotic fraction, more hemorrhage
    assert _pb(h["necrotic_fraction"], h["hemorrhage_latent"]) > 0.3
    # margin, peritumoral enhancement and capsule carry the MVI latent (capsule: inversely)
    for col, sign in (("nonsmooth_margin", 1), ("arterial_peritumoral_enhancement", 1),
                      ("capsule", -1)):  # fmt: skip
        assert sign * (auc(c["mvi"].to_numpy(float), c[col].to_numpy(float)) - 0.5) > 0.15


def test_blood_counts_are_realistic_and_carry_no_planted_signal() -> None:
    rows, _ = clinical_tables(seed=5, n_patients=1500, modality="both")
    c = pd.DataFrame(rows)
    medians = c[list(BLOOD_COUNTS)].median()
    assert 2.8 < medians["neutrophils"] < 3.8 and 1.3 < medians["lymphocytes"] < 1.8
    assert 0.35 < medians["monocytes"] < 0.5 and 110 < medians["platelets"] < 170
    assert c["platelets"].map(lambda v: isinstance(v, int)).all()
    cirrhotic = c["cirrhosis"] == 1
    assert c.loc[cirrhotic, "platelets"].median() < 0.8 * c.loc[~cirrhotic, "platelets"].median()
    ratios = {
        "nlr": c["neutrophils"] / c["lymphocytes"],
        "plr": c["platelets"] / c["lymphocytes"],
        "lmr": c["lymphocytes"] / c["monocytes"],
    }
    assert 1.7 < ratios["nlr"].median() < 2.6 and 70 < ratios["plr"].median() < 110
    assert 3.0 < ratios["lmr"].median() < 4.5
    y = c["early_recurrence"].to_numpy(float)
    for name, x in ratios.items():  # 3,000 patients: null SE of an AUC about 0.011
        assert abs(auc(y, x.to_numpy(float)) - 0.5) < 0.04, name


def test_mask_availability_pattern() -> None:
    n = 48
    avail = [mask_availability(i) for i in range(n)]
    ids = [patient_id("MR", i) for i in range(n)]
    no_mask = [pid for pid, (has, _) in zip(ids, avail, strict=True) if not has]
    assert {pid[0] for pid in no_mask} == {"A", "B", "C"}
    assert 0.06 <= len(no_mask) / n <= 0.15
    r2 = sum(r for _, r in avail) / n
    assert 0.25 <= r2 <= 0.4
    assert not any(r and not h for h, r in avail)
    assert len(set(ids)) == n and ids[:4] == ["AMR001", "BMR001", "CMR001", "AMR002"]


def test_bad_options_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_cohort(tmp_path, modality="PET")
    with pytest.raises(ConfigError):
        write_cohort(tmp_path, dicom_center="C", nrrd_center="C")
    with pytest.raises(ConfigError):
        write_cohort(tmp_path, n_patients=0)
