"""A mask drawn on one phase only reaches every phase through the registration.

Readers outline a lesion on the phase where it is best seen. One patient of the tiny cohort gets
its tumor and liver masks on the portal venous phase only (the reference phase is arterial):
its arterial phase must get the PVP outline carried onto the registered grid (nearest
neighbour), its index lesion and ring, radiomics and a QC volume, and the outline must fall on
the arterial phase's own tumor (the generator's per-phase masks are the same tumor seen through
each phase's motion).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import run_snakemake, write_sheets

pytestmark = pytest.mark.workflow


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_masks_on_the_portal_venous_phase_only(cohort_dir, tmp_path):
    sheet = pd.read_csv(cohort_dir / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    ct = sheet[(sheet["modality"] == "CT") & (sheet["tumor_mask"] != "")]
    patient, center = ct["patient"].iloc[0], ct["center"].iloc[0]

    def pvp_only(sheet, clinical):
        sheet = sheet[sheet["patient"] == patient].copy()
        ap = sheet["phase"] == "AP"
        for col in ("tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask"):
            sheet.loc[ap, col] = ""
        return sheet, clinical[clinical["patient"] == patient]

    cohort, clinical = write_sheets(cohort_dir, tmp_path / "sheets", edit=pvp_only)
    base = f"results/{center}/{patient}"
    targets = [f"{base}/radiomics/features.json", f"{base}/qc/qc.json"]
    res = run_snakemake(tmp_path, *targets, "--cores", "2", cohort=cohort, clinical=clinical)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "segment_patient" not in res.stdout  # nothing is left for the U-Net

    # the PVP outline, carried onto the registered (AP) grid, stands for AP
    carried = sitk.ReadImage(str(tmp_path / base / "PVP/register/tumor.nii.gz"))
    assert not (tmp_path / base / "AP/register/tumor.nii.gz").exists()
    index_ap = sitk.ReadImage(str(tmp_path / base / "AP/regions/index_tumor.nii.gz"))
    assert (tmp_path / base / "AP/regions/ring.nii.gz").is_file()
    own = sitk.ReadImage(str(cohort_dir / ct[ct["phase"] == "AP"]["tumor_mask"].iloc[0]))
    own = sitk.Resample(own, carried, sitk.Transform(), sitk.sitkNearestNeighbor)
    carried_arr = sitk.GetArrayFromImage(carried) > 0
    assert _dice(carried_arr, sitk.GetArrayFromImage(own) > 0) > 0.8
    assert np.count_nonzero(sitk.GetArrayFromImage(index_ap)) > 0

    qc = json.loads((tmp_path / base / "qc/qc.json").read_text())["phases"]
    assert qc["AP"]["tumor_ml"] == pytest.approx(qc["PVP"]["tumor_ml"])
    assert qc["AP"]["liver_ml"] == pytest.approx(qc["PVP"]["liver_ml"])
    features = json.loads((tmp_path / base / "radiomics/features.json").read_text())
    phases = {r["phase"] for r in features["reader1"]}
    assert phases == {"AP", "PVP"}
