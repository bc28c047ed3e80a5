"""The Snakemake workflow end to end on a tiny generated cohort.

One real run (centers A and B), then center C is added: the dry run must schedule only C's
per-patient jobs and the cohort aggregates; the completed run covers every patient. Bad input
cases check that errors name the patient, phase and file, leave no partial output, and that
``--keep-going`` completes the rest of the cohort.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import ROOT, job_counts, run_snakemake, write_sheets

pytestmark = pytest.mark.workflow

PER_IMAGE = ("convert_image", "resample_image", "register_phase", "normalize_intensity")


def expected_jobs(sheet: pd.DataFrame) -> dict[str, int]:
    """Jobs the workflow must schedule for the patients of ``sheet`` (per-patient rules only)."""
    from hccrad.config import load_settings

    settings = load_settings(ROOT / "config" / "config.yaml")
    counts: dict[str, int] = dict.fromkeys(PER_IMAGE, 0)
    counts.update(correct_bias_n4=0, carry_mask=0, make_tumor_regions=0, plot_patient_qc=0)
    counts.update(extract_radiomics=0, extract_reader2_radiomics=0)
    for _patient, rows in sheet.groupby("patient", sort=False):
        mod = settings.modality(rows["modality"].iloc[0])
        ref = rows[rows["phase"] == mod.reference_phase].iloc[0]
        counts["plot_patient_qc"] += 1
        for _, r in rows.iterrows():
            for rule in PER_IMAGE:
                counts[rule] += 1
            counts["correct_bias_n4"] += int(mod.n4)
            counts["carry_mask"] += sum(bool(r[f"{k}_mask"]) for k in ("tumor", "liver", "reader2"))
            has_tumor = bool(r["tumor_mask"] or ref["tumor_mask"])
            has_reader2 = bool(r["reader2_mask"] or ref["reader2_mask"])
            counts["make_tumor_regions"] += int(has_tumor)
            counts["extract_radiomics"] += int(has_tumor)
            counts["extract_reader2_radiomics"] += int(has_tumor and has_reader2)
    return {k: v for k, v in counts.items() if v}


def cohort_jobs(sheet: pd.DataFrame) -> dict[str, int]:
    """Cohort-level jobs of a run over ``sheet`` (all of them rerun when patients are added)."""
    jobs = {"summarize_preprocessing": 1, "aggregate_radiomics": 1, "all": 1}
    if (sheet["reader2_mask"] != "").any():
        jobs["compute_reader_icc"] = 1
    return jobs


@pytest.fixture(scope="module")
def first_run(cohort_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    cohort, clinical = write_sheets(cohort_dir, work / "sheets", centers=["A", "B"])
    res = run_snakemake(work, "--cores", "2", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-4000:]
    return work


def test_lint_is_clean(cohort_dir, tmp_path):
    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets")
    res = run_snakemake(tmp_path, "--lint", cohort=cohort, clinical=clinical)
    assert "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_dry_run_plans_every_patient(cohort_dir, tmp_path):
    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets")
    res = run_snakemake(tmp_path, "-n", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-3000:]
    sheet = pd.read_csv(cohort, sep="\t", dtype=str, keep_default_na=False)
    counts = job_counts(res.stdout)
    want = expected_jobs(sheet) | cohort_jobs(sheet)
    assert counts == {**want, "total": sum(want.values())}


def test_first_run_outputs(first_run):
    table = pd.read_parquet(first_run / "results/cohort/preprocess/summary.parquet")
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str)
    assert len(table) == len(sheet)
    assert set(table["patient"]) == set(sheet["patient"])
    assert (table[["spacing_x", "spacing_y", "spacing_z"]] == 1.0).all().all()
    assert set(table["registration_method"]) == {"identity", "QuickRigid"}
    with_tumor = table[table["tumor_ml"].notna()]
    assert (with_tumor["ring_ml"] > 0).all() and (with_tumor["index_tumor_ml"] > 0).all()
    assert (first_run / "results/cohort/preprocess/qc_montage.png").stat().st_size > 10_000
    for _, r in sheet.drop_duplicates("patient").iterrows():
        qc = first_run / f"results/{r.center}/{r.patient}/qc"
        assert (qc / "qc.png").stat().st_size > 5_000
        rec = json.loads((qc / "qc.json").read_text())
        assert set(rec["phases"]) == set(sheet[sheet.patient == r.patient]["phase"])
    # intermediates are gone once consumed (keep_intermediates: false)
    assert not list((first_run / "results").rglob("convert/image.nii.gz"))
    assert not list((first_run / "results").rglob("resample/image.nii.gz"))
    assert list((first_run / "results").rglob("n4/bias.nii.gz"))
    logs = list((first_run / "results/logs").rglob("*.log"))
    benches = list((first_run / "results/benchmarks").rglob("*.tsv"))
    assert len(logs) == len(benches) > 0


def test_radiomics_table(first_run):
    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    with_masks = set(sheet.loc[sheet.tumor_mask != "", "patient"])
    table = pd.read_parquet(first_run / "results/cohort/radiomics/features.parquet")
    assert set(table.index) == with_masks
    for phase in ("AP", "PVP"):
        for region in ("tumor", "ring"):
            col = f"{phase}_{region}_original_firstorder_Mean"
            assert table[col].notna().all(), col
    # the index lesion's voxel count matches the registered index-tumor mask of that phase
    diag = pd.read_parquet(first_run / "results/cohort/radiomics/diagnostics.parquet")
    patient = sorted(with_masks)[0]
    row = sheet[(sheet.patient == patient) & (sheet.phase == "AP")].iloc[0]
    mask = sitk.ReadImage(
        str(first_run / f"results/{row.center}/{patient}/AP/regions/index_tumor.nii.gz")
    )
    n = int(sitk.GetArrayViewFromImage(mask).sum())
    assert int(diag.loc[patient, "AP_tumor_diagnostics_Mask-original_VoxelNum"]) == n


def test_reader_icc_table(first_run):
    icc = pd.read_parquet(first_run / "results/cohort/radiomics/reader_icc.parquet")
    assert list(icc.columns) == ["icc2_1", "icc3_1", "n"]
    assert icc.index.str.match(r"^(AP|PVP|HBP|DP)_tumor_original_").all()
    assert (icc["n"] >= 2).all()
    finite = icc["icc2_1"].dropna()
    assert (finite <= 1 + 1e-9).all() and len(finite) > 0.8 * len(icc)
    # the two readers' outlines differ by a voxel or two: tumor volume is highly reproducible
    assert icc.loc["AP_tumor_original_shape_VoxelVolume", "icc2_1"] > 0.8


def test_registered_masks_overlap_the_reference(first_run):
    """Each phase's own liver mask, carried through its registration, lands on the reference's
    better than the same mask resampled without registration."""
    from hccrad.preprocess import resample_like
    from hccrad.steps import dice

    sheet = pd.read_csv(first_run / "sheets/cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    checked = 0
    for _, r in sheet[(sheet.phase != "AP") & (sheet.liver_mask != "")].iterrows():
        base = first_run / f"results/{r.center}/{r.patient}"
        ref = sitk.ReadImage(str(base / "AP/register/liver.nii.gz"))
        moved = sitk.ReadImage(str(base / f"{r.phase}/register/liver.nii.gz"))
        unregistered = resample_like(sitk.ReadImage(r.liver_mask), ref, is_mask=True)
        registered_dice, unregistered_dice = dice(ref, moved), dice(ref, unregistered)
        assert registered_dice > 0.85, (r.patient, r.phase, registered_dice)
        assert registered_dice > unregistered_dice, (r.patient, r.phase, unregistered_dice)
        checked += 1
    assert checked >= 4


def test_ring_is_inside_liver_and_outside_tumor(first_run):
    ring_path = next((first_run / "results").rglob("regions/ring.nii.gz"))
    folder = ring_path.parents[1]
    ring = sitk.GetArrayFromImage(sitk.ReadImage(str(ring_path))) > 0
    tumor = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "register/tumor.nii.gz"))) > 0
    liver_file = folder / "register/liver.nii.gz"
    assert not np.logical_and(ring, tumor).any()
    if liver_file.exists():
        liver = sitk.GetArrayFromImage(sitk.ReadImage(str(liver_file))) > 0
        assert not np.logical_and(ring, ~liver).any()


def test_adding_a_center_reruns_only_its_jobs(cohort_dir, first_run):
    cohort, clinical = write_sheets(cohort_dir, first_run / "sheets")  # now with center C
    res = run_snakemake(first_run, "-n", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-3000:]
    sheet = pd.read_csv(cohort, sep="\t", dtype=str, keep_default_na=False)
    want = expected_jobs(sheet[sheet["center"] == "C"])
    want |= cohort_jobs(sheet)
    assert job_counts(res.stdout) == {**want, "total": sum(want.values())}
    centers = set(re.findall(r"center=(\w+)", res.stdout))
    assert centers == {"C"}

    res = run_snakemake(first_run, "--cores", "2", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-4000:]
    table = pd.read_parquet(first_run / "results/cohort/preprocess/summary.parquet")
    assert set(table["patient"]) == set(sheet["patient"])
    res = run_snakemake(first_run, "-n", cohort=cohort, clinical=clinical)
    assert "Nothing to be done" in res.stdout + res.stderr
