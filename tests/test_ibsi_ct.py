"""IBSI-1 CT phantom: configurations A-E through the project's IBSI processing and extraction.

The processing steps are tested on tiny hand-made images (no data needed); the configurations
run on the CT phantom (``../shared/data/ibsi1/ct_phantom``) against the reference values of
``tests/data/ibsi1_ct_phantom`` (IBSI manual, see its README). The five configurations take
about 10 s together (config A, native resolution, the longest).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import ROOT, shared_data
from hccrad import ibsi
from hccrad.cli import main
from hccrad.preprocess import ibsi as pre
from hccrad.preprocess.resample import resample_to_spacing

REFERENCE = ROOT / "tests" / "data" / "ibsi1_ct_phantom" / "reference_values.csv"
#: Mapped PyRadiomics features with an IBSI reference value (config C has none for compactness 1).
N_MAPPED = {"A": 144, "B": 144, "C": 143, "D": 144, "E": 144}
MIN_PASSED = 140


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


# --- processing steps on hand-made images ---------------------------------------------------


def test_centred_grid_size_and_origin() -> None:
    img = _image(np.zeros((4, 4, 5), np.float32), origin=(10.0, 20.0, 30.0))  # x 5, y 4, z 4
    out = resample_to_spacing(img, (2.0, 2.0, 1.0), grid="centre")
    assert out.GetSize() == (3, 2, 4)  # ceil(5 / 2), ceil(4 / 2), z kept
    # first centre moves by (old * (n_old - 1) - new * (n_new - 1)) / 2
    assert out.GetOrigin() == pytest.approx((10.0, 20.5, 30.0))
    # the default keeps the origin and rounds the size (unchanged behaviour)
    default = resample_to_spacing(img, (2.0, 2.0, 1.0))
    assert default.GetOrigin() == img.GetOrigin()
    assert default.GetSize() == (2, 2, 4)


def test_centred_grid_keeps_an_unchanged_axis_exact() -> None:
    arr = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    out = resample_to_spacing(_image(arr, spacing=(1.0, 1.0, 3.0)), (2.0, 2.0, 3.0), grid="centre")
    res = sitk.GetArrayFromImage(out)
    assert res.shape == (4, 3, 3)
    # x/y centres at 0.5, 2.5, 4.5: the mean of the 2x2 in-plane neighbours, slice by slice
    assert res[:, 0, 0] == pytest.approx(arr[:, 0:2, 0:2].mean(axis=(1, 2)))


def test_mask_partial_volume_threshold() -> None:
    mask = np.zeros((1, 1, 8), np.uint8)
    mask[0, 0, 3:6] = 1  # x = 3, 4, 5
    img = _image(mask)
    out = resample_to_spacing(img, (0.5, 1.0, 1.0), is_mask=True, grid="centre", mask_threshold=0.5)
    res = sitk.GetArrayFromImage(out)[0, 0]
    centres = out.GetOrigin()[0] + 0.5 * np.arange(res.size)
    # linear interpolation >= 0.5 keeps the new centres within [2.5, 5.5]
    assert set(centres[res == 1]) == set(centres[(centres >= 2.5) & (centres <= 5.5)])
    assert out.GetPixelID() == sitk.sitkUInt8


def test_resample_rejects_bad_options() -> None:
    img = _image(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="grid"):
        resample_to_spacing(img, (1, 1, 1), grid="corner")
    with pytest.raises(ValueError, match="mask_threshold"):
        resample_to_spacing(img, (1, 1, 1), mask_threshold=0.5)  # not a mask
    with pytest.raises(ValueError, match="interpolation"):
        resample_to_spacing(img, (1, 1, 1), is_mask=True, interpolation="cubic")


def test_resegment_interval_range_outliers_and_both() -> None:
    values = np.array([-900.0, -100, 0, 0, 100, 300])
    mean, sd = values.mean(), values.std()
    assert pre.resegment_interval(values) == (-math.inf, math.inf)
    assert pre.resegment_interval(values, (-500, 400)) == (-500, 400)
    assert pre.resegment_interval(values, outlier_sd=1) == pytest.approx((mean - sd, mean + sd))
    both = pre.resegment_interval(values, (-500, 400), outlier_sd=1)
    assert both == pytest.approx((max(-500, mean - sd), min(400, mean + sd)))


def test_process_rounds_and_resegments() -> None:
    arr = np.array([[[-600.4, -10.6, 20.2, 500.0]]], np.float32)
    mask = np.ones_like(arr, dtype=np.uint8)
    out = pre.process(_image(arr), _image(mask), pre.Processing(resegment_range=(-500, 400)))
    assert sitk.GetArrayFromImage(out.image).ravel().tolist() == [-600, -11, 20, 500]
    assert sitk.GetArrayFromImage(out.morphological_mask).ravel().tolist() == [1, 1, 1, 1]
    assert sitk.GetArrayFromImage(out.intensity_mask).ravel().tolist() == [0, 1, 1, 0]
    assert out.interval == (-500, 400)


def test_ibsi_bin_edges_start_at_the_lower_bound() -> None:
    values = np.array([-430.0, -401, -400, 0, 399])
    edges = pre.ibsi_bin_edges(values, 25, lower_bound=-500)
    assert edges[0] == -500
    bins = np.digitize(values, edges)
    # IBSI: floor((x - lower) / width) + 1
    assert bins.tolist() == [int(np.floor((v + 500) / 25)) + 1 for v in values]
    assert bins.tolist() == [3, 4, 5, 21, 36]
    with pytest.raises(ValueError, match="below"):
        pre.ibsi_bin_edges(values, 25, lower_bound=-400)


def test_ibsi_binning_adapts_pyradiomics_and_restores_it() -> None:
    from radiomics import imageoperations

    arr = np.array([-430.0, -401, -400, 0, 399])
    original = imageoperations.getBinEdges
    native, _ = imageoperations.binImage(arr, binWidth=25)
    assert native.tolist() == [1, 2, 3, 19, 34]  # PyRadiomics: from floor(min / 25) * 25 = -450
    with pre.ibsi_binning(-500):
        binned, _ = imageoperations.binImage(arr, binWidth=25)
        counted, _ = imageoperations.binImage(arr, binCount=4)  # fixed bin number: unchanged
    assert binned.tolist() == [3, 4, 5, 21, 36]
    assert counted.tolist() == imageoperations.binImage(arr, binCount=4)[0].tolist()
    assert imageoperations.getBinEdges is original


def test_configurations_are_the_manuals() -> None:
    assert set(ibsi.CT_CONFIGS) == set("ABCDE")
    e = ibsi.CT_CONFIGS["E"]
    assert e.processing.interpolation == "cubic"
    assert (e.processing.resegment_range, e.processing.outlier_sd) == ((-1000, 400), 3)
    assert ibsi.CT_CONFIGS["B"].processing.spacing == (2, 2, None)
    assert ibsi.CT_CONFIGS["C"].bin_lower_bound == -1000
    assert ibsi.CT_CONFIGS["D"].bin_count == 32
    with pytest.raises(ValueError, match="exactly one"):
        ibsi.IbsiConfig("X", pre.Processing(), "3D", bin_width=25, bin_count=32)


def test_reference_file() -> None:
    ref = ibsi.read_ct_reference(REFERENCE, "C")
    assert ref.at["cm_joint_max_3D_avg", "reference"] == 0.111  # the manual's table
    assert ref.at["morph_volume", "reference"] == 3.67e5
    assert ref.at["morph_volume", "tolerance"] == 6e3
    assert "morph_comp_1" not in ref.index  # no value for C in the manual
    assert set(pd.read_csv(REFERENCE, sep=";")["consensus"]) <= {
        "moderate",
        "strong",
        "very strong",
    }


# --- the CT phantom -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_phantom() -> Path:
    return shared_data("ibsi1/ct_phantom")


@pytest.fixture(scope="module", params=sorted(ibsi.CT_CONFIGS))
def checked(request, ct_phantom: Path) -> tuple[str, pd.DataFrame]:
    config = request.param
    table = ibsi.check_ct_config(ct_phantom / "image.nii.gz", ct_phantom / "mask.nii.gz", config)
    return config, table


def test_at_least_140_mapped_features_pass(checked) -> None:
    config, table = checked
    counts = ibsi.summarize(table)
    assert counts["mapped"] == N_MAPPED[config]
    assert counts["passed"] >= MIN_PASSED
    assert counts["conversions"] == counts["conversions_passed"] == 1  # excess kurtosis


def test_every_failure_is_a_documented_ct_deviation(checked) -> None:
    _, table = checked
    compared = table[table["passed"].notna()]
    failed = set(compared.loc[~compared["passed"].astype(bool), "feature"])
    assert failed == set(ibsi.CT_KNOWN_DEVIATIONS)


#: A few IBSI reference values (the manual's tables), checked against our values directly.
EXPECTED: dict[str, dict[str, float]] = {
    "A": {"morph_volume": 3.58e5, "stat_mean": 13.4, "cm_joint_max_2_5D_avg": 0.0943},
    "B": {"ih_entropy": 3.16, "cm_joint_max_2_5D_comb": 0.126},
    "C": {"stat_kurt": 3.53, "cm_joint_max_3D_avg": 0.111},  # stat_kurt: excess kurtosis
    "D": {"stat_min": -724.0, "cm_joint_max_3D_avg": 0.232},
    "E": {"cm_joint_max_3D_comb": 0.153, "morph_volume": 3.67e5},
}


def test_explicit_values(checked) -> None:
    config, table = checked
    ref = ibsi.read_ct_reference(REFERENCE, config)
    for tag, expected in EXPECTED[config].items():
        assert ref.at[tag, "reference"] == expected, tag
        value = table.loc[table["ibsi_tag"] == tag, "value"].iloc[-1]  # stat_kurt: conversion
        assert ibsi.ibsi_pass(value, expected, ref.at[tag, "tolerance"]), (tag, value)


def test_cli_writes_ibsi_tags_in_ibsi_conventions(ct_phantom: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.tsv"
    image, mask = ct_phantom / "image.nii.gz", ct_phantom / "mask.nii.gz"
    args = ["ibsi", str(image), str(mask), "--config", "C", "--out", str(out), "--check"]
    assert main(args) == 0
    values = pd.read_csv(out, sep="\t").set_index("tag")["value"]
    assert len(values) == 144 and values.index.is_unique
    assert ibsi.ibsi_pass(values["stat_kurt"], 3.53, 0.23)  # excess kurtosis
    check = pd.read_csv(out.with_name("c.check.tsv"), sep="\t")
    assert ibsi.summarize(check.astype({"passed": "boolean"}))["passed"] >= MIN_PASSED
