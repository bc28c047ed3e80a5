"""The reproducibility audit (hccrad.audit) on tiny hand-made runs, without Snakemake."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hccrad.audit import checklist, compare, drift, manifest, planted, privacy, reproducibility
from hccrad.audit.run import AUDIT_OUTPUTS, AuditInputs, PrivacyError, run_audit
from hccrad.cli import main

ROOT = Path(__file__).resolve().parents[1]


# ---- fixtures: a tiny cohort (one DICOM series, one NIfTI image) and a tiny results folder ----


def _image(values: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(values)
    img.SetSpacing(spacing)
    return img


IDENTITY = {
    "PatientName": "DOE^JANE",
    "PatientID": "MRN7654321",
    "PatientBirthDate": "19580317",
    "AccessionNumber": "ACC55512345",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "OtherPatientIDs": "OPID424242",
}
INSTITUTION = "Lakeside Teaching Hospital"


@pytest.fixture
def tiny_cohort(tmp_path) -> Path:
    """cohort.tsv with BCT001 as a 3-slice DICOM series (identifying tags set) and ACT001 as
    NIfTI, one tumor mask each; returns the sheet path."""
    from hccrad.synth.writers import write_dicom_series

    base = tmp_path / "cohort"
    arr = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) % 50) + 20
    study = {
        "identity": IDENTITY,
        "acquisition_date": "2018-05-02",
        "sex": "F",
        "age": 60,
        "institution": INSTITUTION,
        "vendor": "GE",
        "model": "Revolution",
        "field_strength": None,
    }
    write_dicom_series(
        _image(arr),
        base / "images/BCT001/AP_dicom",
        modality="CT",
        phase="AP",
        seed=1,
        patient="BCT001",
        series_number=2,
        study=study,
    )
    (base / "images/ACT001").mkdir(parents=True)
    (base / "masks/BCT001").mkdir(parents=True)
    (base / "masks/ACT001").mkdir(parents=True)
    sitk.WriteImage(_image(arr), str(base / "images/ACT001/AP.nii.gz"))
    mask = _image((arr > 40).astype(np.uint8))
    for p in ("ACT001", "BCT001"):
        sitk.WriteImage(mask, str(base / f"masks/{p}/AP_tumor.nii.gz"))
    sheet = pd.DataFrame(
        {
            "center": ["A", "B"],
            "patient": ["ACT001", "BCT001"],
            "phase": ["AP", "AP"],
            "modality": ["CT", "CT"],
            "image": ["images/ACT001/AP.nii.gz", "images/BCT001/AP_dicom"],
            "tumor_mask": ["masks/ACT001/AP_tumor.nii.gz", "masks/BCT001/AP_tumor.nii.gz"],
            "liver_mask": ["", ""],
            "reader2_mask": ["", ""],
        }
    )
    sheet.to_csv(base / "cohort.tsv", sep="\t", index=False)
    pd.DataFrame({"patient": ["ACT001", "BCT001"], "center": ["A", "B"]}).to_csv(
        base / "clinical.tsv", sep="\t", index=False
    )
    return base / "cohort.tsv"


def _png(path: Path, pixels: np.ndarray, text: dict[str, str] | None = None) -> None:
    """A PNG written by PIL with optional tEXt chunks."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    Image.fromarray(pixels).save(path, pnginfo=info)


def _write_run(root: Path) -> Path:
    """A results folder with one file of every compared type; returns it."""
    res = root / "results"
    (res / "cohort/radiomics").mkdir(parents=True)
    (res / "cohort/studies/s1").mkdir(parents=True)
    (res / "A/ACT001/AP/register").mkdir(parents=True)
    (res / "logs/audit").mkdir(parents=True)
    (res / "benchmarks/audit").mkdir(parents=True)
    feats = pd.DataFrame(
        {"AP_tumor_original_firstorder_Mean": [1.0, 2.0, np.nan]},
        index=pd.Index(["ACT001", "BCT001", "CCT001"], name="patient"),
    )
    feats.to_parquet(res / "cohort/radiomics/features.parquet")
    pd.DataFrame({"model": ["m", "m"], "split": ["train", "test"], "auc": [0.7, 0.6]}).to_csv(
        res / "cohort/studies/s1/table.tsv", sep="\t", index=False
    )
    (res / "cohort/studies/s1/metrics.json").write_text(
        json.dumps({"auc": {"train": 0.7}, "seconds": 1.5, "models": ["m"]})
    )
    sitk.WriteImage(
        _image(np.ones((3, 4, 5), np.float32)), str(res / "A/ACT001/AP/register/image.nii.gz")
    )
    _png(res / "cohort/studies/s1/roc.png", np.zeros((8, 8, 3), np.uint8))
    (res / "logs/audit/all.log").write_text("2026-01-01 started\n")
    (res / "benchmarks/audit/all.tsv").write_text("s\n1.0\n")
    return res


# ---- SMD and drift -----------------------------------------------------------------------------


def test_smd_closed_form():
    # x: mean 2.5, var 5/3; y: mean 4, var 4; pooled var (3 * 5/3 + 2 * 4) / 5 = 2.6
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    want = (2.5 - 4.0) / np.sqrt(2.6)
    assert drift.standardized_mean_difference(x, y) == pytest.approx(want, rel=1e-12)
    assert drift.standardized_mean_difference(y, x) == pytest.approx(-want, rel=1e-12)
    assert np.isnan(drift.standardized_mean_difference(np.array([1.0]), y))
    assert drift.standardized_mean_difference(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0
    assert drift.standardized_mean_difference(np.array([2.0, 2.0]), np.array([1.0, 1.0])) == np.inf


def test_center_drift_matches_hand_computation_per_modality():
    patients = pd.DataFrame(
        {
            "patient": ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "c1", "c2", "c3"],
            "center": ["A"] * 4 + ["B"] * 3 + ["A", "A", "B"],
            "modality": ["MR"] * 7 + ["CT"] * 3,
        }
    )
    features = pd.DataFrame(
        {
            "f": [1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 1000.0, 2000.0, 5000.0],
            "same": [1.0] * 10,
            "step": [0.0] * 4 + [1.0] * 3 + [0.0, 0.0, 1.0],
        },
        index=patients["patient"],
    )
    table = drift.center_drift(features, patients, threshold=0.5)
    mr = table[(table["modality"] == "MR")].set_index(["center", "feature"])
    want = (2.5 - 4.0) / np.sqrt(2.6)  # CT patients (huge values) are not mixed in
    assert mr.loc[("A", "f"), "smd"] == pytest.approx(want)
    assert mr.loc[("B", "f"), "smd"] == pytest.approx(-want)
    assert mr.loc[("A", "f"), "n_center"] == 4 and mr.loc[("A", "f"), "n_rest"] == 3
    assert mr.loc[("A", "same"), "smd"] == 0 and not mr.loc[("A", "same"), "flagged"]
    assert mr.loc[("A", "step"), "smd"] == -np.inf and mr.loc[("A", "step"), "flagged"]
    assert bool(mr.loc[("A", "f"), "flagged"])  # |-0.93| > 0.5
    # CT center B has one patient: no SMD, never flagged
    ct = table[table["modality"] == "CT"]
    assert ct["smd"].isna().all() and not ct["flagged"].any()
    summary = drift.drift_summary(table, patients, threshold=0.5).set_index(["modality", "center"])
    assert summary.loc[("MR", "A"), "n_features"] == 3
    assert summary.loc[("MR", "A"), "n_flagged"] == 2
    assert summary.loc[("MR", "A"), "share_flagged"] == pytest.approx(2 / 3)
    assert summary.loc[("MR", "A"), "n_patients"] == 4
    assert summary.loc[("CT", "B"), "n_features"] == 0


def test_drift_threshold_is_strict_and_validated():
    patients = pd.DataFrame({"patient": list("pqrs"), "center": list("AABB"), "modality": "MR"})
    features = pd.DataFrame({"f": [0.0, 2.0, 1.0, 3.0]}, index=list("pqrs"))
    # means 1 vs 2, pooled SD sqrt(2): SMD = -1/sqrt(2)
    table = drift.center_drift(features, patients, threshold=1 / np.sqrt(2))
    assert not table["flagged"].any()
    with pytest.raises(ValueError, match="threshold"):
        drift.center_drift(features, patients, threshold=0)


# ---- ICC summary --------------------------------------------------------------------------------


def test_icc_summary_counts():
    icc = pd.DataFrame(
        {
            "icc2_1": [0.95, 0.8, 0.5, np.nan, 0.91, 0.76],
            "icc3_1": 0.0,
            "n": 10,
        },
        index=[
            "AP_tumor_original_firstorder_Mean",
            "AP_tumor_original_firstorder_Median",
            "AP_tumor_original_glcm_Contrast",
            "AP_tumor_original_glcm_Idm",
            "PVP_tumor_wavelet-LLH_glcm_Contrast",
            "PVP_tumor_wavelet-LLH_glcm_Idm",
        ],
    )
    table = reproducibility.icc_summary(icc).set_index(
        ["phase", "region", "image_type", "feature_class"]
    )
    first = table.loc[("AP", "tumor", "original", "firstorder")]
    assert first["n_features"] == 2 and first["n_above_0.75"] == 2 and first["n_above_0.9"] == 1
    glcm = table.loc[("AP", "tumor", "original", "glcm")]
    assert glcm["n_finite"] == 1 and glcm["n_above_0.75"] == 0 and glcm["share_above_0.75"] == 0
    wav = table.loc[("PVP", "tumor", "wavelet-LLH", "glcm")]
    assert wav["n_above_0.75"] == 2 and wav["share_above_0.9"] == 0.5
    total = table.loc[("all", "all", "all", "all")]
    assert total["n_features"] == 6 and total["n_above_0.75"] == 4 and total["n_above_0.9"] == 2
    assert total["share_above_0.75"] == pytest.approx(4 / 6)
    assert reproducibility.icc_summary(pd.DataFrame()).empty


def test_reader_icc_summary_stacks_inter_and_intra_rows():
    names = ["AP_tumor_original_firstorder_Mean", "AP_tumor_original_glcm_Contrast"]
    inter = pd.DataFrame({"icc2_1": [0.95, 0.5]}, index=names)
    intra = pd.DataFrame({"icc2_1": [0.97, 0.92]}, index=names)
    table = reproducibility.reader_icc_summary({"intra": intra, "inter": inter})
    assert list(table.columns[:2]) == ["agreement", "phase"]
    assert list(table["agreement"]) == ["inter-reader"] * 3 + ["intra-reader"] * 3
    total = table[table["phase"] == "all"].set_index("agreement")
    assert total.loc["inter-reader", "n_above_0.9"] == 1
    assert total.loc["intra-reader", "n_above_0.9"] == 2
    assert total.loc["intra-reader", "median_icc"] == pytest.approx(0.945)
    only_inter = reproducibility.reader_icc_summary({"inter": inter, "intra": None})
    assert set(only_inter["agreement"]) == {"inter-reader"}
    assert reproducibility.reader_icc_summary({}).columns[0] == "agreement"
    with pytest.raises(ValueError, match="unknown reader agreement"):
        reproducibility.reader_icc_summary({"test-retest": inter})


# ---- manifest -----------------------------------------------------------------------------------


def test_manifest_hashes_inputs_and_outputs(tmp_path, tiny_cohort):
    assert manifest.sha256_file(_write_bytes(tmp_path / "abc", b"abc")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    res = _write_run(tmp_path / "run")
    (res / "cohort/audit").mkdir()
    (res / "cohort/audit/old.tsv").write_text("x\n")
    config = {"cohort": str(tiny_cohort), "clinical": str(tiny_cohort.parent / "clinical.tsv")}

    def build(workers: int = 1) -> dict:
        return manifest.build_manifest(
            res,
            config=config,
            cohort_sheet=tiny_cohort,
            clinical=tiny_cohort.parent / "clinical.tsv",
            project_dir=ROOT,
            workers=workers,
        )

    man = build()
    outputs = {o["path"]: o["sha256"] for o in man["outputs"]}
    assert "cohort/radiomics/features.parquet" in outputs
    assert not any(p.startswith(("logs/", "benchmarks/", "cohort/audit/")) for p in outputs)
    want = hashlib.sha256((res / "cohort/studies/s1/metrics.json").read_bytes()).hexdigest()
    assert outputs["cohort/studies/s1/metrics.json"] == want
    inputs = pd.DataFrame(man["inputs"])
    dicom = inputs[inputs["path"].str.startswith("images/BCT001/AP_dicom/")]
    assert len(dicom) == 4  # 4 slices, one row each
    assert set(inputs["role"]) == {"image", "tumor_mask"}
    nifti = inputs.set_index("path").loc["images/ACT001/AP.nii.gz"]
    assert nifti["sha256"] == manifest.sha256_file(tiny_cohort.parent / "images/ACT001/AP.nii.gz")
    assert man["packages"]["numpy"] == np.__version__ and "hccrad" in man["packages"]
    assert man["seeds"]["config"] == 42
    assert len(man["config_sha256"]) == 64
    assert man["git"] is None or len(man["git"]["commit"]) == 40
    table = manifest.manifest_table(man)
    assert set(table["kind"]) == {"sheet", "input", "output"}
    assert len(table) == 2 + len(man["inputs"]) + len(man["outputs"])
    # hashed by two threads: the same files and digests
    two = build(workers=2)
    assert (two["inputs"], two["outputs"]) == (man["inputs"], man["outputs"])


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_config_hash_fills_defaults_first():
    base = {"cohort": "c.tsv", "clinical": "k.tsv"}
    same = {**base, "seed": 42, "audit": {"drift_threshold": 0.5}}
    assert manifest.config_hash(base) == manifest.config_hash(same)
    assert manifest.config_hash(base) != manifest.config_hash({**base, "seed": 43})


# ---- compare ------------------------------------------------------------------------------------


def test_compare_identical_runs_and_bookkeeping_ignored(tmp_path):
    a = _write_run(tmp_path / "a")
    b = tmp_path / "b" / "results"
    shutil.copytree(a, b)
    (b / "logs/audit/all.log").write_text("2027-02-02 started later\n")
    (b / "benchmarks/audit/all.tsv").write_text("s\n9.0\n")
    metrics = json.loads((b / "cohort/studies/s1/metrics.json").read_text())
    metrics["seconds"] = 99.0  # a timing: not compared
    (b / "cohort/studies/s1/metrics.json").write_text(json.dumps(metrics, indent=1))
    # same pixels, other PNG metadata
    _png(b / "cohort/studies/s1/roc.png", np.zeros((8, 8, 3), np.uint8), {"Software": "other"})
    result = compare.compare_runs(tmp_path / "a", b)  # a working directory or a results folder
    assert result.identical, result.report()
    assert "no differences" in result.report()
    assert result.n_compared == 5


def test_compare_detects_changed_values_and_files(tmp_path):
    a = _write_run(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    feats = pd.read_parquet(b / "cohort/radiomics/features.parquet")
    feats.loc["BCT001", "AP_tumor_original_firstorder_Mean"] = 2.001
    feats.to_parquet(b / "cohort/radiomics/features.parquet")
    (b / "cohort/studies/s1/table.tsv").write_text(
        "model\tsplit\tauc\nm\ttrain\t0.7\nm\ttest\t0.5\n"
    )
    metrics = json.loads((b / "cohort/studies/s1/metrics.json").read_text())
    metrics["auc"]["train"] = 0.71
    (b / "cohort/studies/s1/metrics.json").write_text(json.dumps(metrics))
    arr = np.ones((3, 4, 5), np.float32)
    arr[1, 2, 3] = 7
    sitk.WriteImage(_image(arr), str(b / "A/ACT001/AP/register/image.nii.gz"))
    px = np.zeros((8, 8, 3), np.uint8)
    px[0, 0] = 255
    _png(b / "cohort/studies/s1/roc.png", px)
    (a / "cohort/studies/s1/extra.json").write_text("{}")
    (b / "cohort/studies/s1/model.pt").write_bytes(b"weights")
    result = compare.compare_runs(a, b)
    got = {d.path: d for d in result.differences}
    assert set(got) == {
        "cohort/radiomics/features.parquet",
        "cohort/studies/s1/table.tsv",
        "cohort/studies/s1/metrics.json",
        "A/ACT001/AP/register/image.nii.gz",
        "cohort/studies/s1/roc.png",
        "cohort/studies/s1/extra.json",
        "cohort/studies/s1/model.pt",
    }
    feat = got["cohort/radiomics/features.parquet"].detail
    assert "'AP_tumor_original_firstorder_Mean': 1 of 3 values differ" in feat
    assert "'BCT001'" in feat
    assert "row 1: 0.6 vs 0.5" in got["cohort/studies/s1/table.tsv"].detail
    assert got["cohort/studies/s1/metrics.json"].detail == "auc.train: 0.7 vs 0.71"
    assert (
        "1 of 60 voxels differ (max |difference| 6)"
        in got["A/ACT001/AP/register/image.nii.gz"].detail
    )
    assert got["cohort/studies/s1/roc.png"].detail == "1 of 64 pixels differ"
    assert got["cohort/studies/s1/extra.json"].detail == "only in A"
    assert got["cohort/studies/s1/model.pt"].detail == "only in B"
    # a tolerance absorbs the small feature change but not the others
    loose = compare.compare_runs(a, b, atol=0.01)
    assert "cohort/radiomics/features.parquet" not in {d.path for d in loose.differences}
    assert "cohort/studies/s1/table.tsv" in {d.path for d in loose.differences}


def test_compare_cli_exit_status(tmp_path, capsys):
    a = _write_run(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert main(["audit", "compare", str(a), str(b)]) == 0
    assert "no differences" in capsys.readouterr().out
    (b / "cohort/studies/s1/table.tsv").write_text("model\tsplit\tauc\nm\ttrain\t0.7\n")
    out = tmp_path / "diff.tsv"
    assert main(["audit", "compare", str(a), str(b), "--out", str(out)]) == 1
    assert "1 file(s) differ" in capsys.readouterr().out
    diff = pd.read_csv(out, sep="\t")
    assert diff["path"].tolist() == ["cohort/studies/s1/table.tsv"]
    assert diff["detail"].iloc[0] == "2 vs 1 rows"


# ---- checklist ----------------------------------------------------------------------------------


def test_checklist_rows(tmp_path):
    res = tmp_path / "results"
    for study in ("s1", "s2"):
        (res / f"cohort/studies/{study}").mkdir(parents=True)
        (res / f"cohort/studies/{study}/performance.parquet").write_bytes(b"x")
    (res / "cohort/studies/s1/roc_validation.png").write_bytes(b"x")
    table = checklist.checklist_table(res, ["s1", "s2"], written=["cohort/audit/privacy.tsv"])
    rows = table.set_index(["checklist", "item"])
    assert set(table["checklist"]) == {"TRIPOD+AI", "CLAIM", "METRICS"}
    assert rows.loc[("CLAIM", "36"), "exists"] and rows.loc[("CLAIM", "36"), "found"] == "2/2"
    assert rows.loc[("CLAIM", "36"), "evidence"] == "cohort/studies/{study}/performance.parquet"
    assert rows.loc[("CLAIM", "12"), "exists"]  # written by the audit itself
    assert not rows.loc[("METRICS", "9"), "exists"]  # no segmentation Dice
    assert rows.loc[("METRICS", "9"), "found"] == "0/1"
    # 23a: performance (2 studies) + roc_*.png (1 of 2) + calibration/DCA figures (none)
    assert rows.loc[("TRIPOD+AI", "23a"), "found"] == "3/8"
    assert rows.loc[("TRIPOD+AI", "20b"), "found"] == "0/2"
    no_study = checklist.checklist_table(res, []).set_index(["checklist", "item"])
    assert no_study.loc[("CLAIM", "36"), "found"] == "0/0"
    assert not no_study.loc[("CLAIM", "36"), "exists"]


# ---- planted signal -----------------------------------------------------------------------------


def _study(folder: Path, *, primary_scores, comparator_scores, labels, splits):
    folder.mkdir(parents=True)
    patients = [f"p{i}" for i in range(len(labels))]
    rows = []
    for model, scores in (("fusion", primary_scores), ("whole", comparator_scores)):
        rows += [
            {"patient": p, "split": s, "model": model, "score": sc, "label": y}
            for p, s, sc, y in zip(patients, splits, scores, labels, strict=True)
        ]
    pd.DataFrame(rows).to_parquet(folder / "predictions.parquet")
    pd.DataFrame(
        {
            "model": ["fusion", "whole", "fusion", "whole"],
            "split": ["validation", "validation", "external", "external"],
            "n": [4, 4, 4, 4],
            "n_pos": [2, 2, 2, 2],
            "auc": [1.0, 0.75, 0.75, 0.5],
        }
    ).to_parquet(folder / "performance.parquet")
    pd.DataFrame({"model": ["fusion"], "reference": ["whole"], "split": ["validation"]}).to_parquet(
        folder / "comparisons.parquet"
    )
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "study": folder.name,
                "label": "grade_pd",
                "modality": "MR",
                "primary": "fusion",
                "seed": 42,
                "models": {"fusion": {"status": "ok"}, "whole": {"status": "ok"}},
            }
        )
    )


PLANTED_LABELS = [0, 1, 0, 1, 1, 0, 1, 0, 0, 1]


def _planted_study(tmp_path, primary):
    """The habitat_grade study folder of the planted-signal tests (2 training patients, 4
    validation, 4 external) with the given primary scores and a fixed comparator."""
    _study(
        tmp_path / "habitat_grade",
        primary_scores=primary,
        comparator_scores=[0.5, 0.5, 0.6, 0.4, 0.7, 0.2, 0.3, 0.4, 0.9, 0.8],
        labels=PLANTED_LABELS,
        splits=["train", "train"] + ["validation"] * 4 + ["external"] * 4,
    )


def test_planted_signal_table(tmp_path):
    labels = PLANTED_LABELS
    primary = [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.3, 0.2, 0.7]  # separates held-out: AUC 1
    _planted_study(tmp_path, primary)
    truth = pd.DataFrame(
        {
            "patient": [f"p{i}" for i in range(10)] + ["ct1", "ct2"],
            "modality": ["MR"] * 10 + ["CT"] * 2,
            # the latent orders every MR patient's true label; the CT rows would spoil it
            "aggressiveness": [-1, 1, -2, 2, 3, -3, 4, -4, -5, 5, 9.0, -9.0],
            "grade_pd_true": [*labels, 0, 1],
            "null": 0,
        }
    )
    truth.to_csv(tmp_path / "truth.tsv", sep="\t", index=False)
    table = planted.planted_signal_table([tmp_path / "habitat_grade"], tmp_path / "truth.tsv")
    assert list(table.columns) == planted.COLUMNS
    assert table["scope"].tolist() == ["held_out", "validation", "external"]
    row = table.set_index("scope").loc["held_out"]
    assert row["latent"] == "aggressiveness" and row["oracle_auc_true"] == 1.0
    assert row["oracle_auc_held_out"] == 1.0
    assert row["comparator"] == "whole" and row["primary"] == "fusion"
    assert row["n"] == 8 and row["n_pos"] == 4
    assert row["auc_primary"] == 1.0
    # comparator on held-out: positives 0.4, 0.7, 0.3, 0.8 vs negatives 0.6, 0.2, 0.4, 0.9
    assert row["auc_comparator"] == pytest.approx(8.5 / 16)
    assert bool(row["as_expected"]) and not row["null_cohort"]
    assert row["expected"] == "fusion beats whole" and "necrotic" in row["planted_effect"]
    val = table.set_index("scope").loc["validation"]
    assert val["auc_primary"] == 1.0 and val["auc_comparator"] == 0.75
    assert val["auc_difference"] == pytest.approx(0.25)
    assert planted.auc(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.9])) == pytest.approx(0.75)
    assert np.isnan(planted.auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_planted_signal_skipped_without_truth(tmp_path):
    table = planted.planted_signal_table([tmp_path / "x"], None)
    assert table.empty and list(table.columns) == planted.COLUMNS
    sheet = tmp_path / "cohort.tsv"
    sheet.write_text("center\n")
    assert planted.find_truth(sheet) is None
    (tmp_path / "truth.tsv").write_text("patient\n")
    assert planted.find_truth(sheet) == (tmp_path / "truth.tsv").resolve()
    assert planted.find_truth(sheet, "elsewhere/truth.tsv") == Path("elsewhere/truth.tsv")


# ---- privacy ------------------------------------------------------------------------------------


def _nifti_with_description(path: Path, text: str) -> None:
    """A NIfTI whose header `descrip` field holds ``text`` (as a leaky converter would write)."""
    sitk.WriteImage(_image(np.zeros((2, 2, 2), np.float32)), str(path))
    with gzip.open(path, "rb") as fh:
        data = bytearray(fh.read())
    data[148 : 148 + 80] = text.encode().ljust(80, b"\0")
    with gzip.open(path, "wb") as fh:
        fh.write(bytes(data))


def test_privacy_identifiers_from_dicom(tiny_cohort):
    ids = privacy.sheet_identifiers(tiny_cohort)
    assert ids["PatientName"] == {"DOE^JANE", "DOE JANE", "DOE, JANE", "JANE DOE"}
    assert ids["PatientBirthDate"] == {"19580317", "1958-03-17"}
    assert ids["PatientID"] == {"MRN7654321"}
    assert ids["InstitutionName"] == {INSTITUTION}
    assert len(ids["SOPInstanceUID"]) == 4
    assert "PatientSex" not in ids  # not an identifier (and too short)


def test_privacy_scan_finds_planted_leaks_and_nothing_else(tmp_path, tiny_cohort):
    ids = privacy.sheet_identifiers(tiny_cohort)
    res = _write_run(tmp_path / "run")
    hits, n = privacy.scan_tree(res, ids)
    assert hits == [] and n == 7
    leaks = tmp_path / "leaky"
    leaks.mkdir()
    (leaks / "log.txt").write_text("reading patient jane doe, born 1958-03-17\n")
    # compressed, no statistics: the value is not in the raw bytes, only in the decoded table
    pd.DataFrame({"patient": ["ACT001"] * 20, "mrn": ["MRN7654321"] * 20}).to_parquet(
        leaks / "a.parquet", compression="gzip", write_statistics=False
    )
    pd.DataFrame({"id": [7654321.0, 1.0]}).to_parquet(leaks / "numbers.parquet")
    _nifti_with_description(leaks / "img.nii.gz", "ACC55512345")
    _png(leaks / "fig.png", np.zeros((4, 4, 3), np.uint8), {"Author": INSTITUTION})
    np.savez_compressed(leaks / "x.npz", meta=np.array(json.dumps({"accession": "ACC55512345"})))
    (leaks / "OPID424242.json").write_text("{}")
    (leaks / "ok.txt").write_text(
        "ACT001 BCT001 XMRN7654321Y 195803170 DOE^JANET 0.19580317 19580317.25 2.7654321\n"
    )
    # a digit-only ID can be stored as a number
    ids_numeric = {**ids, "PatientID": {"MRN7654321", "7654321"}}
    hits, n = privacy.scan_tree(leaks, ids_numeric)
    found = {(h.file, h.tag, h.where) for h in hits}
    assert found == {
        ("log.txt", "PatientName", "content"),
        ("log.txt", "PatientBirthDate", "content"),
        ("a.parquet", "PatientID", "parquet values"),
        ("numbers.parquet", "PatientID", "parquet values"),
        ("img.nii.gz", "AccessionNumber", "nifti header"),
        ("fig.png", "InstitutionName", "content"),
        ("fig.png", "InstitutionName", "png text"),
        ("x.npz", "AccessionNumber", "archive member meta.npy"),
        ("OPID424242.json", "OtherPatientIDs", "path"),
    }
    assert n == 8
    # two processes, each a share of the files: the same hits in the same order
    assert privacy.scan_tree(leaks, ids_numeric, workers=2) == (hits, n)
    table = privacy.privacy_table(ids, hits).set_index("tag")
    assert table.loc["PatientName", "n_files_with_value"] == 1
    assert table.loc["PatientName", "files"] == "log.txt"
    assert "JANE" not in table.to_csv()  # values are never written


def test_privacy_scan_of_a_checkpoint(tmp_path, tiny_cohort):
    """A PyTorch checkpoint is a zip of stored members: an identifier in its pickled metadata
    is found in the file's own bytes (stored members are not searched twice)."""
    import torch

    ids = privacy.sheet_identifiers(tiny_cohort)
    matcher = privacy.IdentifierMatcher(ids)
    clean = tmp_path / "clean.pt"
    torch.save({"weights": torch.arange(1000.0), "patients": ["ACT001"]}, clean)
    assert privacy.scan_file(clean, "clean.pt", matcher) == []
    leaky = tmp_path / "leaky.pt"
    torch.save({"weights": torch.arange(1000.0), "note": "accession ACC55512345 (re-read)"}, leaky)
    with zipfile.ZipFile(leaky) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    hits = privacy.scan_file(leaky, "leaky.pt", matcher)
    assert hits == [privacy.Hit("leaky.pt", "AccessionNumber", "content")]


def test_privacy_png_compressed_text_chunk(tmp_path):
    """zTXt chunks are decompressed before searching."""
    path = tmp_path / "z.png"
    _png(path, np.zeros((2, 2, 3), np.uint8))
    data = path.read_bytes()
    body = b"Comment\0\0" + zlib.compress(b"patient DOE^JANE")
    chunk = (
        struct.pack(">I", len(body))
        + b"zTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    )
    path.write_bytes(data[:33] + chunk + data[33:])
    hits, _ = privacy.scan_tree(tmp_path, {"PatientName": {"DOE^JANE"}})
    assert {h.where for h in hits} == {"png text"}


# ---- the whole audit ----------------------------------------------------------------------------


def test_run_audit_writes_every_output_and_fails_on_a_leak(tmp_path, tiny_cohort):
    res = _write_run(tmp_path / "run")
    clinical = tiny_cohort.parent / "clinical.tsv"
    config = {"cohort": str(tiny_cohort), "clinical": str(clinical)}
    inputs = AuditInputs(
        results=res,
        config=config,
        cohort_sheet=tiny_cohort,
        clinical=clinical,
        features=res / "cohort/radiomics/features.parquet",
        study_dirs=(res / "cohort/studies/s1",),
    )
    out = res / "cohort/audit"
    summary = run_audit(inputs, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_OUTPUTS.values())
    assert summary["planted_signal"].startswith("skipped")
    assert summary["privacy"]["files_with_identifiers"] == []
    # the run's 7 files and the 7 audit files written before the scan
    assert summary["privacy"]["n_files_scanned"] == 14
    assert pd.read_csv(out / "planted_signal.tsv", sep="\t").empty
    assert pd.read_csv(out / "icc_summary.tsv", sep="\t").empty
    priv = pd.read_csv(out / "privacy.tsv", sep="\t")
    assert (priv["n_files_with_value"] == 0).all() and "PatientName" in set(priv["tag"])
    # one patient per center: no SMD, a placeholder figure
    assert pd.read_parquet(out / "drift.parquet")["smd"].isna().all()
    assert (out / "drift.png").stat().st_size > 1000
    man = json.loads((out / "manifest.json").read_text())
    assert not any(o["path"].startswith("cohort/audit/") for o in man["outputs"])
    # a rerun of the audit changes nothing but the manifest's timestamp
    snapshot = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "manifest.json"}
    run_audit(inputs, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "manifest.json"} == snapshot
    # a leaked identifier fails the audit, after writing privacy.tsv that names the file
    (res / "cohort/studies/s1/notes.txt").write_text("referred by HOUSE^GREGORY\n")
    with pytest.raises(PrivacyError, match=r"cohort/studies/s1/notes.txt \(ReferringPhysicianName"):
        run_audit(inputs, out)
    priv = pd.read_csv(out / "privacy.tsv", sep="\t").set_index("tag")
    assert priv.loc["ReferringPhysicianName", "files"] == "cohort/studies/s1/notes.txt"


def test_identifier_matcher_equals_the_lookbehind_definition():
    """The matcher checks the preceding byte by hand (speed); on random bytes with planted
    terms, in every case and next to letters, digits and dots, it finds exactly what the
    definition's regular expressions (look-behind, IGNORECASE) find."""
    import re

    from hccrad.audit.privacy import IdentifierMatcher, _trie_pattern

    ids = {"PatientName": {"DOE^JOHN", "DOE"}, "PatientID": {"12345678", "1234"}, "X": {"ab"}}
    matcher = IdentifierMatcher(ids)
    words = [k for k in matcher.tags if not k.isdigit()]
    digits = [k for k in matcher.tags if k.isdigit()]
    ref = [
        re.compile(
            rb"(?<![A-Za-z0-9])(" + _trie_pattern(words) + rb")(?![A-Za-z0-9])", re.IGNORECASE
        ),
        re.compile(rb"(?<![A-Za-z0-9.])(" + _trie_pattern(digits) + rb")(?![A-Za-z0-9]|\.[0-9])"),
    ]

    def reference(blob: bytes) -> set[str]:
        found: set[str] = set()
        for regex in ref:
            for m in regex.finditer(blob):
                found |= matcher.tags.get(m.group(1).lower(), set())
        return found

    rng = np.random.default_rng(7)
    pieces = [
        b"doe^john",
        b"DOE",
        b"Doe^John",
        b"12345678",
        b"1234",
        b"AB",
        b"ab",
        b"x",
        b"7",
        b".",
    ]
    pieces += [b" ", b"_", b"\x00", b"^", b"-", b"0.", b".5"]
    n_hits = 0
    for _ in range(3000):
        parts = [pieces[i] for i in rng.integers(0, len(pieces), rng.integers(1, 8))]
        blob = b"".join(parts) + bytes(rng.integers(0, 256, rng.integers(0, 6), dtype=np.uint8))
        want = reference(blob)
        assert matcher.find(blob) == want, blob
        n_hits += bool(want)
    assert 300 < n_hits < 2900  # both outcomes well represented


def test_leftover_temporary_files_are_bookkeeping(tmp_path):
    """A killed writer's temporary file (hccrad.fileio's names) is never a result."""
    from hccrad.audit._io import is_bookkeeping
    from hccrad.fileio import atomic_path

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "image.nii.gz", suffix=".nii.gz"):
        names = [p.name for p in tmp_path.iterdir()]
        raise RuntimeError("killed")
    assert len(names) == 1 and is_bookkeeping(f"A/P1/AP/register/{names[0]}")
    assert is_bookkeeping("A/P1/.table.parquet.k2j4.tmp")
    assert not is_bookkeeping("A/P1/AP/register/image.nii.gz")


def _planted_table(tmp_path, primary, *, null=0):
    _planted_study(tmp_path, primary)
    labels = PLANTED_LABELS
    truth = pd.DataFrame(
        {
            "patient": [f"p{i}" for i in range(10)],
            "modality": ["MR"] * 10,
            "aggressiveness": [-1, 1, -2, 2, 3, -3, 4, -4, -5, 5],
            "grade_pd_true": labels,
            "null": null,
        }
    )
    truth.to_csv(tmp_path / "truth.tsv", sep="\t", index=False)
    return planted.planted_signal_table([tmp_path / "habitat_grade"], tmp_path / "truth.tsv")


def test_planted_signal_verdict_recovered(tmp_path):
    from hccrad.stats import auc_ci

    primary = [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.3, 0.2, 0.7]
    table = _planted_table(tmp_path, primary)
    pooled = table.set_index("scope").loc["held_out"]
    # the pooled CI is DeLong's on the 8 held-out patients (p2..p9)
    labels, scores = [0, 1, 1, 0, 1, 0, 0, 1], primary[2:]
    assert (pooled["auc_primary_lower"], pooled["auc_primary_upper"]) == pytest.approx(
        auc_ci(np.array(labels), np.array(scores))[1:]
    )
    (verdict,) = planted.verdicts(table)
    assert verdict.recovered is True and verdict.failures == ()
    assert "planted effect recovered" in verdict.line and "fusion AUC 1.00" in verdict.line


def test_planted_signal_verdict_names_each_failure(tmp_path):
    # held-out scores that invert the labels: far below the oracle, CI below 0.5, and the
    # comparator beats the primary
    primary = [0.1, 0.9, 0.8, 0.2, 0.1, 0.9, 0.2, 0.7, 0.8, 0.3]
    (verdict,) = planted.verdicts(_planted_table(tmp_path, primary))
    assert verdict.recovered is False
    assert len(verdict.failures) == 3, verdict.failures
    assert "NOT RECOVERED" in verdict.line
    assert "below the oracle 1.00" in verdict.line and "not above 0.5" in verdict.line
    assert "key comparison against whole" in verdict.line


def test_planted_signal_at_least_as_good_is_non_inferiority(tmp_path, monkeypatch):
    """ "At least as good as" allows the primary NONINFERIORITY_MARGIN below its comparator;
    "beats" asks for a higher AUC (two equally informed models tie or differ by chance)."""
    comparator = [0.5, 0.5, 0.6, 0.4, 0.7, 0.2, 0.3, 0.4, 0.9, 0.8]
    same = _planted_table(tmp_path / "beats", comparator).set_index("scope").loc["held_out"]
    assert same["auc_primary"] == same["auc_comparator"] == pytest.approx(8.5 / 16)
    assert same["margin"] == 0.0 and not bool(same["as_expected"])
    monkeypatch.setitem(planted.EXPECTED, ("fusion", "whole"), "fusion at least as good as whole")
    table = _planted_table(tmp_path / "same", comparator)
    row = table.set_index("scope").loc["held_out"]
    assert row["margin"] == planted.NONINFERIORITY_MARGIN == 0.05
    assert bool(row["as_expected"])
    (verdict,) = planted.verdicts(table)
    assert not any("key comparison" in f for f in verdict.failures)
    # inverted: 0.469 vs 0.531, 0.0625 below the comparator, beyond the margin
    worse = _planted_table(tmp_path / "worse", [1 - x for x in comparator])
    row = worse.set_index("scope").loc["held_out"]
    assert row["auc_difference"] == pytest.approx(-1 / 16) and not bool(row["as_expected"])
    (verdict,) = planted.verdicts(worse)
    assert any("margin 0.05" in f for f in verdict.failures)


def test_planted_signal_verdict_judges_the_splits_that_have_patients(tmp_path):
    primary = [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.3, 0.2, 0.7]
    table = _planted_table(tmp_path, primary)
    # a split of the design without patients (mil_er has no external test) is not a failure
    empty = table[table["scope"] == "external"].assign(n=0, n_pos=0)
    (verdict,) = planted.verdicts(pd.concat([table[table["scope"] != "external"], empty]))
    assert verdict.recovered is True
    # a split with patients of one class is
    one = table[table["scope"] == "external"].assign(n=4, n_pos=4)
    (verdict,) = planted.verdicts(pd.concat([table[table["scope"] != "external"], one]))
    assert verdict.recovered is False and "one class: external" in verdict.line


def test_planted_signal_verdict_on_the_null_cohort(tmp_path):
    # permuted labels: a model that separates them anyway is flagged, not praised
    primary = [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.3, 0.2, 0.7]
    (verdict,) = planted.verdicts(_planted_table(tmp_path, primary, null=1))
    assert verdict.null_cohort and verdict.recovered is False
    assert "NOT AT CHANCE" in verdict.line
    noise = [0.5, 0.5, 0.6, 0.4, 0.5, 0.5, 0.45, 0.55, 0.4, 0.6]
    (verdict,) = planted.verdicts(_planted_table(tmp_path / "n", noise, null=1))
    assert verdict.recovered is True and "at chance" in verdict.line
