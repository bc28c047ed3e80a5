"""Bad input: a clear error naming patient, phase and file, no partial output, and with
``--keep-going`` the rest of the cohort completes. One test per case.

No partial output: a patient's preprocessing job writes its per-phase files as it goes
(``n4/bias.nii.gz`` of every MR phase, then per phase ``register/image.nii.gz``,
``transform.tfm``, ``registration.json`` and the carried masks) and lists them in its manifest
only at the end; when it fails, every file it wrote is removed (:class:`hccrad.manifest.
OutputSet`, which logs each removal). The tests check, from the job's log, which files the job
had written before it failed, that these are the ones the failure point implies, and that none
of them (nor any other file of the patient) is left."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import run_snakemake, write_sheets

pytestmark = pytest.mark.workflow


def _dry_run_error(cohort_dir: Path, tmp_path: Path, edit) -> str:
    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets", edit=edit)
    res = run_snakemake(tmp_path, "-n", cohort=cohort, clinical=clinical)
    assert res.returncode != 0
    assert not (tmp_path / "results").exists()
    return res.stdout + res.stderr


def test_missing_file(cohort_dir, tmp_path):
    def edit(sheet, clinical):
        sheet.loc[sheet.index[1], "image"] = str(tmp_path / "nowhere.nii.gz")
        return sheet, clinical

    out = _dry_run_error(cohort_dir, tmp_path, edit)
    assert "row 2" in out and "column 'image'" in out
    assert f"file {tmp_path / 'nowhere.nii.gz'}: file not found" in out


def test_duplicate_patient_id(cohort_dir, tmp_path):
    def edit(sheet, clinical):
        return pd.concat([sheet, sheet.iloc[[0]]]), clinical

    out = _dry_run_error(cohort_dir, tmp_path, edit)
    assert "duplicate patient x phase (first at row 1)" in out


def test_unknown_phase(cohort_dir, tmp_path):
    def edit(sheet, clinical):
        sheet.loc[sheet.index[1], "phase"] = "T1"
        return sheet, clinical

    out = _dry_run_error(cohort_dir, tmp_path, edit)
    assert "row 2" in out and "phase T1" in out and "unknown phase 'T1'" in out


def test_clinical_row_without_images(cohort_dir, tmp_path):
    def edit(sheet, clinical):
        extra = clinical.iloc[[0]].copy()
        extra["patient"] = "ZZZ999"
        return sheet, pd.concat([clinical, extra])

    out = _dry_run_error(cohort_dir, tmp_path, edit)
    assert "patient ZZZ999" in out and "clinical row without images" in out


# -- errors found while jobs run: one --keep-going run with three broken patients ------------


@pytest.fixture(scope="module")
def broken_run(cohort_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("broken")
    bad = work / "bad"
    bad.mkdir()
    sheet = pd.read_csv(cohort_dir / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    ct_nifti = sheet[(sheet.modality == "CT") & sheet.image.str.endswith(".nii.gz")]
    with_mask = ct_nifti[ct_nifti.tumor_mask != ""].drop_duplicates("patient")
    mr = sheet[(sheet.modality == "MR") & (sheet.tumor_mask != "")].drop_duplicates("patient")
    # the unreadable image is a patient's last phase: the phases before it (the reference
    # first) have been converted and bias-corrected when the job fails
    unreadable = sheet[sheet.patient == mr.iloc[0].patient].iloc[-1]
    cases = {
        "unreadable": unreadable,
        "geometry": with_mask.iloc[0],
        "empty": mr.iloc[1],
    }
    cases["good"] = sheet[~sheet.patient.isin({r.patient for r in cases.values()})].iloc[0]
    (bad / "unreadable.nii.gz").write_bytes(b"\x1f\x8b this is not an image")
    ref = sitk.ReadImage(str(cohort_dir / cases["geometry"].image))
    small = sitk.Image([s // 2 for s in ref.GetSize()], sitk.sitkUInt8)
    small.SetSpacing([s * 2 for s in ref.GetSpacing()])
    small[2, 2, 2] = 1
    sitk.WriteImage(small, str(bad / "geometry.nii.gz"))
    empty_ref = sitk.ReadImage(str(cohort_dir / cases["empty"].tumor_mask))
    empty = sitk.Image(empty_ref.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(empty_ref)
    sitk.WriteImage(empty, str(bad / "empty.nii.gz"))

    keep = {r.patient for r in cases.values()}

    def edit(s, clinical):
        s = s[s.patient.isin(keep)].copy()
        clinical = clinical[clinical.patient.isin(keep)]
        u, g, e = cases["unreadable"], cases["geometry"], cases["empty"]
        s.loc[(s.patient == u.patient) & (s.phase == u.phase), "image"] = str(
            bad / "unreadable.nii.gz"
        )
        s.loc[(s.patient == g.patient) & (s.phase == g.phase), "tumor_mask"] = str(
            bad / "geometry.nii.gz"
        )
        s.loc[(s.patient == e.patient) & (s.phase == e.phase), "tumor_mask"] = str(
            bad / "empty.nii.gz"
        )
        return s, clinical

    cohort, clinical = write_sheets(cohort_dir, work / "sheets", edit=edit)
    res = run_snakemake(work, "--cores", "2", "--keep-going", cohort=cohort, clinical=clinical)
    return work, cases, res


def _log_text(work: Path) -> str:
    return "\n".join(p.read_text() for p in (work / "results/logs").rglob("*.log"))


def _partial_files(work: Path) -> list[Path]:
    return [p for p in (work / "results").rglob("*") if ".tmp" in p.name]


def _removed_after_failure(work: Path, case) -> set[str]:
    """Files the patient's failed job had written and removed ({phase}/{stage}/{name}), from
    its log (the job is preprocess_patient, or register_patient for a segmented patient)."""
    logs = [
        work / "results/logs" / rule / case.center / f"{case.patient}.log"
        for rule in ("preprocess_patient", "register_patient")
    ]
    text = "\n".join(p.read_text() for p in logs if p.exists())
    assert text, f"no preprocessing log of {case.patient}"
    folder = work / "results" / case.center / case.patient
    found = re.findall(r"removed (\S+) \(the job failed\)", text)
    removed = {work / p for p in found}  # relative to the working directory, or absolute
    assert all(p.is_relative_to(folder) for p in removed), removed
    assert not any(p.exists() for p in removed)
    return {p.relative_to(folder).as_posix() for p in removed}


def _files_left(work: Path, case) -> list[Path]:
    folder = work / "results" / case.center / case.patient
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _phases(work: Path, patient: str) -> list[str]:
    sheet = pd.read_csv(work / "sheets/cohort.tsv", sep="\t", dtype=str)
    return list(sheet.loc[sheet.patient == patient, "phase"])


REGISTER_FILES = ("register/image.nii.gz", "register/transform.tfm", "register/registration.json")


def test_keep_going_completes_the_rest(broken_run):
    work, cases, res = broken_run
    assert res.returncode != 0  # some jobs failed ...
    good = cases["good"]
    assert (work / f"results/{good.center}/{good.patient}/qc/qc.png").exists()  # ... not these
    assert _partial_files(work) == []


def test_unreadable_image(broken_run):
    work, cases, _ = broken_run
    u = cases["unreadable"]
    text = _log_text(work)
    assert f"patient {u.patient}, phase {u.phase}, file " in text
    assert "unreadable.nii.gz" in text
    # converting its last phase failed: the bias fields of the phases before it were written
    # (the reference phase's first), then removed; nothing of the patient is left
    before = [ph for ph in _phases(work, u.patient) if ph != u.phase]
    removed = _removed_after_failure(work, u)
    assert removed == {f"{ph}/n4/bias.nii.gz" for ph in before}, removed
    assert _files_left(work, u) == []


def test_mask_geometry_mismatch(broken_run):
    work, cases, _ = broken_run
    g = cases["geometry"]
    text = _log_text(work)
    assert f"patient {g.patient}, phase {g.phase}, file {work / 'bad/geometry.nii.gz'}" in text
    assert "size" in text
    # the phase was registered (image, transform, similarity written) before its tumor mask,
    # carried next, failed the geometry check; CT: no bias field
    removed = _removed_after_failure(work, g)
    assert {f"{g.phase}/{name}" for name in REGISTER_FILES} <= removed, removed
    assert f"{g.phase}/register/tumor.nii.gz" not in removed  # the failing step wrote nothing
    assert not any("/n4/" in p for p in removed)
    assert _files_left(work, g) == []


def test_empty_mask(broken_run):
    work, cases, _ = broken_run
    e = cases["empty"]
    text = _log_text(work)
    assert f"patient {e.patient}, phase {e.phase}, file {work / 'bad/empty.nii.gz'}" in text
    assert "empty" in text
    # every MR phase was bias-corrected, the phase registered, then its empty tumor mask failed
    removed = _removed_after_failure(work, e)
    bias = {f"{ph}/n4/bias.nii.gz" for ph in _phases(work, e.patient)}
    assert bias | {f"{e.phase}/{name}" for name in REGISTER_FILES} <= removed, removed
    assert f"{e.phase}/register/tumor.nii.gz" not in removed
    assert _files_left(work, e) == []
