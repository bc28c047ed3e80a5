"""The ``hccrad`` command line: synth and validate."""

from __future__ import annotations

import pandas as pd

from hccrad.cli import main


def test_synth_then_validate(tmp_path, caplog, capsys):
    out = tmp_path / "ct"
    assert (
        main(["synth", "--out", str(out), "--patients", "2", "--modality", "CT", "--seed", "5"])
        == 0
    )
    sheet = pd.read_csv(out / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(sheet["modality"]) == {"CT"} and set(sheet["phase"]) == {"AP", "PVP"}
    assert sheet["patient"].nunique() == 2
    caplog.set_level("INFO")
    args = [
        "validate",
        "--cohort",
        str(out / "cohort.tsv"),
        "--clinical",
        str(out / "clinical.tsv"),
    ]
    assert main(args) == 0
    assert "ok: 2 patients, 4 images" in caplog.text
    # the plan (hccrad.plan.CohortPlan.summary): patients per stage, studies, skipped studies
    plan = capsys.readouterr().out.splitlines()
    assert "patients: 2" in plan and "radiomics: 2" in plan and "habitats: 0" in plan
    assert "  mil_slices: 2" in plan and "  mil_er/mil_slices: 2" in plan
    skipped = plan[plan.index("skipped studies:") + 1 :]
    assert "  habitat_grade: no MR patient in the cohort" in skipped
    assert not any("mil_er" in line for line in skipped)


def test_validate_reports_problems_and_fails(tmp_path, caplog):
    out = tmp_path / "mr"
    main(["synth", "--out", str(out), "--patients", "1", "--modality", "MR"])
    sheet = pd.read_csv(out / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet.loc[2, "phase"] = "XYZ"
    sheet.to_csv(out / "bad.tsv", sep="\t", index=False)
    args = ["validate", "--cohort", str(out / "bad.tsv"), "--clinical", str(out / "clinical.tsv")]
    assert main(args) == 1
    assert "row 3, patient AMR001, phase XYZ, column 'phase'" in caplog.text


def test_null_cohort_permutes_labels(tmp_path):
    main(["synth", "--out", str(tmp_path / "a"), "--patients", "6", "--modality", "CT"])
    main(["synth", "--out", str(tmp_path / "b"), "--patients", "6", "--modality", "CT", "--null"])
    a = pd.read_csv(tmp_path / "a/clinical.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "b/clinical.tsv", sep="\t")
    assert list(a["patient"]) == list(b["patient"])
    assert sorted(a["mvi"]) == sorted(b["mvi"])  # the same labels ...
    assert (a["afp"] == b["afp"]).all()  # ... and clinical variables, only labels moved
    labels = ["grade_pd", "mvi", "early_recurrence", "proliferative", "os_months"]
    assert (a[labels] != b[labels]).any().any()


def test_voxelmaps_command_fast_and_pyradiomics_agree(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    zz, yy, xx = np.mgrid[:10, :10, :10]
    mask = (((zz - 4.5) ** 2 + (yy - 4.5) ** 2 + (xx - 4.5) ** 2) < 12).astype(np.uint8)
    img = sitk.GetImageFromArray((100 + 30 * rng.normal(size=mask.shape)).round().astype(np.int16))
    img.SetSpacing((0.9, 0.9, 2.0))
    msk = sitk.GetImageFromArray(mask)
    msk.CopyInformation(img)
    sitk.WriteImage(img, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(msk, str(tmp_path / "mask.nii.gz"))
    tables = {}
    for engine in ("fast", "pyradiomics"):
        out = tmp_path / engine
        args = ["voxelmaps", str(tmp_path / "image.nii.gz"), str(tmp_path / "mask.nii.gz")]
        args += ["--out", str(out), "--kernel-radius", "1", "--bin-width", "10"]
        args += ["--classes", "firstorder", "glcm", "--engine", engine]
        assert main(args) == 0
        tables[engine] = pd.read_parquet(out / "voxels.parquet")
        assert (out / "glcm_Contrast.nii.gz").exists()
        assert len(tables[engine]) == int(mask.sum())
    fast, ref = tables["fast"], tables["pyradiomics"]
    assert sorted(fast.columns) == sorted(ref.columns)
    for col in ["firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glcm_JointEntropy"]:
        np.testing.assert_allclose(fast[col], ref[col], rtol=1e-6, atol=1e-9)
    # the map file covers the mask's bounding box plus the kernel radius; on the full grid it is
    # 0 outside the mask and the table's values inside
    from hccrad.voxelmaps.files import map_on_grid

    cropped = sitk.ReadImage(str(tmp_path / "fast/glcm_Contrast.nii.gz"))
    assert cropped.GetSize() == (8, 8, 8)  # the mask spans indices 2..7, plus the radius 1
    np.testing.assert_allclose(
        cropped.GetOrigin(), img.TransformIndexToPhysicalPoint((1, 1, 1)), atol=1e-5
    )
    written = map_on_grid(cropped, img)
    assert (written[mask == 0] == 0).all()
    np.testing.assert_allclose(written[mask != 0], fast["glcm_Contrast"], rtol=1e-6)
