"""Whole-region radiomics: PyRadiomics baselines on real data, naming, presets, errors."""

from __future__ import annotations

import ast
import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from conftest import shared_data
from hccrad import radiomics as rad
from hccrad.errors import InputError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PYRAD = SHARED_DATA / "pyradiomics"
PRESETS = Path(__file__).resolve().parents[1] / "config" / "radiomics"

TEXTURE_CLASSES = ["firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
#: Relative tolerance for the intensity and texture classes (the INSTALL notes measured <= 3e-15).
RTOL = 1e-6
#: Shape: PyRadiomics' shape code changed across versions; the baselines differ by <= 1e-3.
SHAPE_RTOL = 1e-3


def _pyrad_data() -> Path:
    return shared_data("pyradiomics")


def _baseline(cls: str, case: str) -> tuple[dict, dict, dict[str, float]]:
    """(image types, settings, expected features) of one column of baseline_<cls>.csv."""
    path = _pyrad_data() / "baseline" / f"baseline_{cls}.csv"
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index(case)
    table = {row[0]: row[col] for row in rows[1:]}
    settings = ast.literal_eval(table["diagnostics_Configuration_Settings"])
    image_types = ast.literal_eval(table["diagnostics_Configuration_EnabledImageTypes"])
    expected = {k: float(v) for k, v in table.items() if not k.startswith("diagnostics_")}
    return image_types, settings, expected


def _rel_err(got: float, want: float) -> float:
    if got == want:
        return 0.0
    return abs(got - want) / max(abs(want), 1e-300)


@pytest.fixture(scope="module")
def brain1() -> tuple[sitk.Image, sitk.Image]:
    data = _pyrad_data()
    return (
        sitk.ReadImage(str(data / "brain1_image.nrrd")),
        sitk.ReadImage(str(data / "brain1_label.nrrd")),
    )


def _brain1_columns(cls: str) -> list[str]:
    with (_pyrad_data() / "baseline" / f"baseline_{cls}.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    return [h for h in header if h == "brain1" or h.startswith("brain1_")]


@pytest.mark.parametrize("cls", [*TEXTURE_CLASSES, "shape"])
def test_brain1_reproduces_pyradiomics_baseline(cls, brain1, tmp_path):
    """Every brain1 column (default, 2D, binCount, normalization, resampling, resegmentation, ...)

    run with the settings PyRadiomics recorded for it gives PyRadiomics' baseline values.
    """
    cases = _brain1_columns(cls)
    assert "brain1" in cases
    for case in cases:
        image_types, settings, expected = _baseline(cls, case)
        params = {"imageType": image_types, "featureClass": {cls: []}, "setting": settings}
        # The same settings, written as a native parameter file (the path route of the API).
        params_file = tmp_path / f"{case}_{cls}.yaml"
        params_file.write_text(yaml.safe_dump(params))
        features, diagnostics = rad.extract_region_features(
            *brain1, params_file, label=settings.get("label", 1), ibsi_binning=False
        )  # PyRadiomics' own binning: its baseline
        assert set(features) == set(expected), (case, set(features) ^ set(expected))
        errors = {k: _rel_err(features[k], v) for k, v in expected.items()}
        worst = max(errors, key=errors.get)
        tol = SHAPE_RTOL if cls == "shape" else RTOL
        assert errors[worst] <= tol, f"{case} {worst}: {features[worst]} vs {expected[worst]}"
        assert diagnostics["diagnostics_Mask-original_VoxelNum"] > 0
        assert not any(k.startswith("diagnostics_") for k in features)


def _phantom(seed: int = 7, size: int = 20, radius: float = 5.5):
    """Small seeded image + spherical mask on a 1 mm grid."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size]
    c = (size - 1) / 2
    mask = (((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) <= radius**2).astype(np.uint8)
    arr = (60.0 + 40.0 * mask + rng.normal(0.0, 15.0, mask.shape)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    msk = sitk.GetImageFromArray(mask)
    for im in (img, msk):
        im.SetSpacing((1.0, 1.0, 1.0))
    return img, msk


EXPECTED_COUNTS = {
    "demo_fast": 72,
    "mr_original_wavelet_log": 944,
    "ct_original_wavelet_log": 944,
    "mr_er_original_wavelet_log": 1037,
}


@pytest.mark.parametrize("preset", sorted(EXPECTED_COUNTS))
def test_presets_load_and_run(preset):
    path = rad.preset_path(preset)
    cfg = yaml.safe_load(path.read_text())
    assert cfg["setting"]["resampledPixelSpacing"] is None  # the workflow resamples to 1 mm
    features, diagnostics = rad.extract_region_features(*_phantom(), path)
    assert len(features) == EXPECTED_COUNTS[preset]
    assert all(isinstance(v, float) for v in features.values())
    assert all(math.isfinite(v) for k, v in features.items() if "shape" in k)
    assert "diagnostics_Versions_PyRadiomics" in diagnostics


def test_preset_settings_match_the_studies():
    mr = yaml.safe_load((PRESETS / "mr_original_wavelet_log.yaml").read_text())
    ct = yaml.safe_load((PRESETS / "ct_original_wavelet_log.yaml").read_text())
    er = yaml.safe_load((PRESETS / "mr_er_original_wavelet_log.yaml").read_text())
    classes = {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}
    for cfg in (mr, ct, er):
        assert set(cfg["featureClass"]) == classes
        assert set(cfg["imageType"]) == {"Original", "Wavelet", "LoG"}
    assert mr["setting"]["binWidth"] == 5 and er["setting"]["binWidth"] == 5
    assert ct["setting"]["binWidth"] == 25
    assert mr["imageType"]["LoG"]["sigma"] == [1.0]
    assert len(er["imageType"]["LoG"]["sigma"]) == 2
    # every setting line carries a comment
    for path in PRESETS.glob("*.yaml"):
        lines = path.read_text().splitlines()
        start = lines.index("setting:")
        for line in lines[start + 1 :]:
            if line.strip() and not line.strip().startswith("#"):
                assert "#" in line, f"{path.name}: uncommented setting {line!r}"


def test_feature_naming_scheme():
    img, msk = _phantom()
    params = {
        "imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0]}},
        "featureClass": {"firstorder": ["Mean"], "glcm": ["Contrast"]},
        "setting": {"binWidth": 25},
    }
    features, diagnostics = rad.extract_region_features(img, msk, params)
    assert "original_firstorder_Mean" in features
    assert "wavelet-LLH_glcm_Contrast" in features
    assert "log-sigma-1-0-mm-3D_firstorder_Mean" in features
    assert len(features) == (1 + 8 + 1) * 2
    for name in features:
        parts = rad.split_feature_name(name)
        assert parts["feature_class"] in {"firstorder", "glcm"}
    assert all(k.startswith("diagnostics_") for k in diagnostics)


def test_label_selects_region():
    img, msk = _phantom()
    two = sitk.Cast(msk, sitk.sitkUInt8) * 2
    params = {"featureClass": {"firstorder": ["Mean"]}, "setting": {"binWidth": 25}}
    f1, _ = rad.extract_region_features(img, msk, params)
    f2, _ = rad.extract_region_features(img, two, params, label=2)
    assert f1 == f2


def test_cropping_before_pyradiomics_changes_no_feature(brain1, monkeypatch):
    """brain1 (a real MR, 256 x 256 x 25; its tumor a small part of the field of view), every
    class: the features of the image cropped to the tumor's box plus padDistance are those of
    the whole image to the last bit; only the diagnostics' image size shrinks."""
    img, msk = brain1
    params = {"featureClass": {c: [] for c in [*TEXTURE_CLASSES, "shape"]}, "setting": {}}
    cropped, cropped_diag = rad.extract_region_features(img, msk, params)
    extractor = rad._make_extractor(params, 1)
    small, small_mask = rad.crop_for_extraction(
        img, msk, 1, extractor.enabledImagetypes, extractor.settings
    )
    assert small.GetSize() < img.GetSize() and small_mask.GetSize() == small.GetSize()
    # the box: the tumor's extent plus padDistance (5) voxels a side, where the image allows
    arr = sitk.GetArrayFromImage(msk) == 1
    box = []
    for axis in range(3):
        hit = np.flatnonzero(arr.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(min(hit[-1] + 6, arr.shape[axis]) - max(hit[0] - 5, 0))
    assert small.GetSize() == tuple(box[::-1])
    assert (sitk.GetArrayFromImage(small_mask) == 1).sum() == arr.sum()
    monkeypatch.setattr(rad, "crop_for_extraction", lambda i, m, *a: (i, m))
    whole, whole_diag = rad.extract_region_features(img, msk, params)
    assert len(whole) == 107 and cropped == whole
    assert whole_diag["diagnostics_Image-original_Size"] == img.GetSize()
    assert cropped_diag["diagnostics_Image-original_Size"] == small.GetSize()
    assert (
        cropped_diag["diagnostics_Mask-original_VoxelNum"]
        == (whole_diag["diagnostics_Mask-original_VoxelNum"])
    )


def test_a_resegmentation_range_starts_the_bins_at_its_lower_bound():
    """IBSI-1: with a range [40, 400] and bin width 25 the bins are [40, 65), [65, 90), ...;
    PyRadiomics' own would start at floor(min / 25) * 25 = 50 here. The texture of the image
    shifted by -40 with PyRadiomics' binning (range [0, 360]: its bins then start at 0) is the
    same, the texture of PyRadiomics' binning of the image itself is not."""
    img, msk = _phantom()  # ROI about 100 +- 15, background 60: the ROI minimum is in [50, 75)
    roi = sitk.GetArrayViewFromImage(img)[sitk.GetArrayViewFromImage(msk) > 0]
    assert 50 <= roi.min() < 75

    def params(lo: float, hi: float) -> dict:
        return {
            "featureClass": {"glcm": []},
            "setting": {"binWidth": 25, "resegmentRange": [lo, hi]},
        }

    ibsi, _ = rad.extract_region_features(img, msk, params(40, 400))
    pyrad, _ = rad.extract_region_features(img, msk, params(40, 400), ibsi_binning=False)
    shifted, _ = rad.extract_region_features(img - 40.0, msk, params(0, 360), ibsi_binning=False)
    for name, value in shifted.items():
        assert ibsi[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    # PyRadiomics' edges 50, 75, 100, ... cut the ROI elsewhere: other bins, other texture
    assert abs(ibsi["original_glcm_JointAverage"] - pyrad["original_glcm_JointAverage"]) > 0.3


@pytest.mark.parametrize(
    "params",
    [
        {"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}},
        {"setting": {"resampledPixelSpacing": [2, 2, 2]}},
        {"setting": {"normalize": True}},
    ],
    ids=["filter", "resampling", "normalize"],
)
def test_no_cropping_where_it_could_change_a_feature(params):
    """A filter of the whole image, PyRadiomics' resampling or its whole-image normalization
    see voxels outside the box: the image goes to PyRadiomics whole."""
    img, msk = _phantom(size=30, radius=4)
    extractor = rad._make_extractor({"featureClass": {"firstorder": []}, **params}, 1)
    out = rad.crop_for_extraction(img, msk, 1, extractor.enabledImagetypes, extractor.settings)
    assert out[0] is img and out[1] is msk
    plain = rad._make_extractor({"featureClass": {"firstorder": []}}, 1)
    small, _ = rad.crop_for_extraction(img, msk, 1, plain.enabledImagetypes, plain.settings)
    assert small.GetSize() == (18, 18, 18)  # the sphere spans voxels 11-18, + 5 a side


def test_a_parameter_file_builds_one_extractor_per_process(tmp_path):
    """A job's regions share the extractor of their parameter file and label; editing the file
    builds a new one, and the shared extractor gives what a fresh one gives."""
    img, msk = _phantom()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"featureClass": {"firstorder": ["Mean"]}, "setting": {}}))
    first = rad._make_extractor(path, 1)
    assert rad._make_extractor(path, 1) is first
    assert rad._make_extractor(path, 2) is not first
    f1, _ = rad.extract_region_features(img, msk, path)
    rad._EXTRACTORS.clear()
    assert rad.extract_region_features(img, msk, path)[0] == f1
    path.write_text(yaml.safe_dump({"featureClass": {"firstorder": ["Mean", "Median"]}}))
    f2, _ = rad.extract_region_features(img, msk, path)
    assert set(f2) == {"original_firstorder_Mean", "original_firstorder_Median"}
    assert f2["original_firstorder_Mean"] == f1["original_firstorder_Mean"]


def test_the_extraction_job_does_without_pandas():
    """The per-patient extraction job's modules leave pandas out (0.4 s of each of the cohort's
    jobs); the cohort tables and the ICC import it when they run."""
    code = (
        "import sys; import hccrad.patient, hccrad.steps.radiomics, radiomics.featureextractor; "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_empty_mask_error_names_patient_and_file(tmp_path):
    img, msk = _phantom()
    empty = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(msk).shape, np.uint8))
    path = tmp_path / "P001_tumor.nrrd"
    sitk.WriteImage(empty, str(path))
    with pytest.raises(InputError, match=r"patient P001, phase PVP, file .*P001_tumor\.nrrd: mask"):
        rad.extract_region_features(
            img, path, rad.preset_path("demo_fast"), patient="P001", phase="PVP"
        )
    with pytest.raises(InputError, match="empty"):
        rad.extract_region_features(img, empty, rad.preset_path("demo_fast"))


def test_too_small_mask_is_an_input_error():
    img, msk = _phantom()
    arr = np.zeros(sitk.GetArrayFromImage(msk).shape, np.uint8)
    arr[10, 10, 8:12] = 1  # a 1D line of 4 voxels: below minimumROIDimensions 2 / minimumROISize
    small = sitk.GetImageFromArray(arr)
    with pytest.raises(InputError, match=r"patient P9.*rejected"):
        rad.extract_region_features(img, small, rad.preset_path("demo_fast"), patient="P9")


def test_missing_preset_and_params_file():
    with pytest.raises(InputError, match="no radiomics preset"):
        rad.preset_path("nope")
    img, msk = _phantom()
    with pytest.raises(InputError, match="not found"):
        rad.extract_region_features(img, msk, "/nonexistent/params.yaml")


def test_cohort_feature_table_layout():
    records = [
        {
            "patient": p,
            "phase": ph,
            "region": rg,
            "features": {"original_firstorder_Mean": float(i), "original_glcm_Contrast": 2.0},
            "diagnostics": {"diagnostics_Mask-original_BoundingBox": (1, 2, 3)},
        }
        for i, (p, ph, rg) in enumerate(
            [("B", "AP", "tumor"), ("A", "AP", "tumor"), ("A", "PVP", "peritumor")]
        )
    ]
    table = rad.cohort_feature_table(records)
    assert list(table.index) == ["A", "B"]
    assert table.index.name == "patient"
    assert "AP_tumor_original_firstorder_Mean" in table.columns
    assert "PVP_peritumor_original_glcm_Contrast" in table.columns
    assert table.loc["B", "AP_tumor_original_firstorder_Mean"] == 0.0
    assert np.isnan(table.loc["B", "PVP_peritumor_original_firstorder_Mean"])
    assert (table.dtypes == "float64").all()
    parts = rad.split_feature_name("PVP_peritumor_wavelet-LLH_glcm_Contrast")
    assert parts == {
        "phase": "PVP",
        "region": "peritumor",
        "image_type": "wavelet-LLH",
        "feature_class": "glcm",
        "feature": "Contrast",
    }
    diag = rad.cohort_diagnostics_table(records)
    assert diag.loc["A", "AP_tumor_diagnostics_Mask-original_BoundingBox"] == "(1, 2, 3)"
    assert isinstance(diag, pd.DataFrame)


def test_cohort_feature_table_rejects_bad_records():
    rec = {"patient": "A", "phase": "AP", "region": "tumor", "features": {"x_y_z": 1.0}}
    with pytest.raises(InputError, match="duplicate"):
        rad.cohort_feature_table([rec, rec])
    with pytest.raises(InputError, match="contain no '_'"):
        rad.cohort_feature_table([{**rec, "region": "peri_tumor"}])
    with pytest.raises(InputError, match="lacks keys"):
        rad.cohort_feature_table([{"patient": "A"}])


def test_a_study_with_its_own_parameter_file_reads_its_table(tmp_path, monkeypatch):
    """Two patients extracted with the MR default and with the early-recurrence preset (two
    LoG sigmas), each aggregated where the workflow puts its table: er_fusion naming that
    preset (radiomics.params) reads the two-sigma table, without it the default's."""
    from hccrad import steps
    from hccrad.studies import load_study, study_inputs
    from hccrad.studies.tables import block_table

    root = Path(__file__).resolve().parents[1]
    er_preset = "config/radiomics/mr_er_original_wavelet_log.yaml"
    monkeypatch.chdir(tmp_path)
    jsons: dict[str | None, list[Path]] = {None: [], "mr_er_original_wavelet_log": []}
    for i, patient in enumerate(("P1", "P2")):
        img, msk = _phantom(seed=i)
        image, mask = tmp_path / f"{patient}.nii.gz", tmp_path / f"{patient}_tumor.nii.gz"
        sitk.WriteImage(img, str(image))
        sitk.WriteImage(msk, str(mask))
        for name, preset in (
            (None, "mr_original_wavelet_log"),
            ("mr_er_original_wavelet_log", "mr_er_original_wavelet_log"),
        ):
            dst = tmp_path / f"{patient}_{preset}.json"
            steps.extract_radiomics(
                image, {"tumor": mask}, dst, params=rad.preset_path(preset), patient=patient,
                phase="AP",
            )  # fmt: skip
            jsons[name].append(dst)
    study = root / "config" / "studies" / "er_fusion.yaml"
    for name, override in (
        (None, {"radiomics": {"params": None}}),
        ("mr_er_original_wavelet_log", {"radiomics": {"params": er_preset}}),
    ):
        spec = load_study(study, override=override, check_estimators=False)
        table = study_inputs(spec, "clinical.tsv", name)["radiomics"]
        steps.aggregate_radiomics(jsons[name], table, tmp_path / f"{name}_diagnostics.parquet")
        tables = {"radiomics": pd.read_parquet(table)}
        data, _ = block_table(spec, spec.blocks["radiomics"], tables, pd.DataFrame())
        logs = {c.split("_")[2] for c in data.columns if "_log-sigma" in c}
        if name is None:
            assert table == "results/cohort/radiomics/features.parquet"
            assert logs == {"log-sigma-1-0-mm-3D"} and data.shape == (2, 944)
        else:
            assert table == f"results/cohort/radiomics/{name}/features.parquet"
            assert spec.radiomics_params == er_preset
            # the paper's 1037 per phase (AP here): 107 + 8 x 93 wavelet + 2 x 93 LoG
            assert logs == {"log-sigma-1-0-mm-3D", "log-sigma-3-0-mm-3D"}
            assert data.shape == (2, 1037)
            assert list(data.index) == ["P1", "P2"] and np.isfinite(data.to_numpy()).all()
