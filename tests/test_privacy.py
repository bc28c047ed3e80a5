"""Privacy guarantee: no DICOM identifier of the inputs appears in any output or log.

The tiny synthetic cohort's center B is written as DICOM with planted identifying tags (patient
name, MRN, other IDs, birth date, accession number, institution, referring physician, UIDs;
docs/synthetic_cohort.md). The workflow runs on B's two patients (MR and CT, arterial and portal
venous phases; no study, habitats or U-Net, to stay cheap) up to its ``audit`` rule: conversion,
preprocessing, QC, radiomics, reader ICC, deep-learning inputs, then the audit, whose privacy
scan fails the job when any file under results/ -- logs, benchmarks and the audit's own tables
included -- holds an identifier. The test then searches the results again, itself.
"""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_snakemake, write_sheets

pytestmark = pytest.mark.workflow

#: Tags the synthetic DICOM series must carry, or the test would pass vacuously.
PLANTED = {
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
}


@pytest.fixture(scope="module")
def dicom_run(cohort_dir, tmp_path_factory):
    """The workflow on center B (DICOM input) up to its audit rule."""
    work = tmp_path_factory.mktemp("privacy")

    def two_phases(sheet, clinical):  # MR: AP and PVP only (registration dominates the time)
        return sheet[sheet["phase"].isin(["AP", "PVP"])], clinical

    cohort, clinical = write_sheets(cohort_dir, work / "sheets", centers=["B"], edit=two_phases)
    overlay = work / "overlay.yaml"
    overlay.write_text("studies: []\nhabitats: {enabled: false}\nsegmentation: {enabled: false}\n")
    res = run_snakemake(
        work,
        "--cores",
        "2",
        "results/cohort/audit/summary.json",
        "--configfile",  # last: it takes every following argument
        str(ROOT / "config" / "config.yaml"),
        str(overlay),
        cohort=cohort,
        clinical=clinical,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    (work / "results" / "logs" / "snakemake_console.log").write_text(res.stdout + res.stderr)
    summary = json.loads((work / "results/cohort/audit/summary.json").read_text())
    return work, cohort, summary


def test_inputs_carry_identifying_tags(dicom_run):
    from hccrad.audit.privacy import sheet_identifiers

    _, cohort, _ = dicom_run
    ids = sheet_identifiers(cohort)
    assert set(ids) >= PLANTED
    assert sum(len(v) for v in ids.values()) > 50  # per-slice UIDs of 4 series


def test_no_identifier_in_any_output_or_log(dicom_run):
    from hccrad.audit.privacy import scan_tree, sheet_identifiers

    work, cohort, summary = dicom_run
    assert summary["privacy"]["files_with_identifiers"] == []
    assert set(summary["privacy"]["identifying_tags"]) >= PLANTED
    hits, n = scan_tree(work / "results", sheet_identifiers(cohort))
    kinds = {p.name.split(".", 1)[-1] for p in (work / "results").rglob("*") if p.is_file()}
    assert {"nii.gz", "json", "parquet", "png", "npz", "log", "tsv", "tfm"} <= kinds
    assert n > 60  # one job per patient and stage: a few files per patient
    assert hits == [], [f"{h.file}: {h.tag} ({h.where})" for h in hits]


def test_scan_finds_a_planted_leak_in_this_run(dicom_run, tmp_path):
    """Positive control on the run's own files: a log line naming the patient is caught."""
    import shutil

    from hccrad.audit.manifest import sheet_files
    from hccrad.audit.privacy import read_dicom_identifiers, scan_tree, sheet_identifiers

    work, cohort, _ = dicom_run
    copy = tmp_path / "results"
    shutil.copytree(work / "results" / "logs", copy / "logs")
    files = [r["file"] for r in sheet_files(cohort) if r["file"].endswith(".dcm")]
    name = sorted(read_dicom_identifiers(files[:1])["PatientName"])[0]
    log = next((copy / "logs" / "preprocess_patient").rglob("*.log"))
    log.write_text(log.read_text() + f"patient {name.replace('^', ' ').title()}\n")
    hits, _ = scan_tree(copy, sheet_identifiers(cohort))
    assert [(h.tag, h.where) for h in hits] == [("PatientName", "content")]
    assert hits[0].file == log.relative_to(copy).as_posix()
