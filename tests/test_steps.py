"""File-level steps: small pieces with closed-form answers."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from hccrad import paths, steps


def test_rigid_parameters_recovers_angle_and_translation():
    t = sitk.Euler3DTransform()
    t.SetCenter((10.0, -5.0, 3.0))
    t.SetRotation(0.0, 0.0, math.radians(7.0))
    t.SetTranslation((1.5, -2.0, 0.5))
    p = steps.rigid_parameters(t, (10.0, -5.0, 3.0))
    assert p["rotation_deg"] == pytest.approx(7.0, abs=1e-9)
    assert p["translation_mm"] == pytest.approx([1.5, -2.0, 0.5], abs=1e-9)
    # about another centre the translation picks up the rotation of the offset
    q = steps.rigid_parameters(t, (20.0, -5.0, 3.0))
    shift = np.array([10.0 * math.cos(math.radians(7)) - 10.0, 10.0 * math.sin(math.radians(7)), 0])
    assert q["translation_mm"] == pytest.approx(list(np.array([1.5, -2.0, 0.5]) + shift), abs=1e-9)


def test_split_named_inputs():
    got = steps.split_named_inputs(
        {"image_AP": "a", "index_tumor_AP": "b", "index_tumor_PVP": "c", "reader2_DP": "d"}
    )
    assert got == {
        "image": {"AP": "a"},
        "index_tumor": {"AP": "b", "PVP": "c"},
        "reader2": {"DP": "d"},
    }
    with pytest.raises(ValueError, match="what_phase"):
        steps.split_named_inputs({"image": "x"})


def test_dice():
    a = np.zeros((4, 4, 4), np.uint8)
    b = np.zeros((4, 4, 4), np.uint8)
    a[:2] = 1  # 32 voxels
    b[1:3] = 1  # 32 voxels, 16 shared
    assert steps.dice(sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)) == pytest.approx(0.5)


def test_image_center():
    img = sitk.Image([11, 21, 5], sitk.sitkFloat32)
    img.SetSpacing((2.0, 1.0, 3.0))
    img.SetOrigin((-10.0, 0.0, 5.0))
    assert steps.image_center(img) == pytest.approx((0.0, 10.0, 11.0))


def test_paths_layout():
    assert (
        paths.image_path("n4", "image.nii.gz")
        == "results/{center}/{patient}/{phase}/n4/image.nii.gz"
    )
    assert paths.patient_path("qc", "qc.png", center="A", patient="P1") == "results/A/P1/qc/qc.png"
    assert paths.cohort_path("preprocess", "x.parquet") == "results/cohort/preprocess/x.parquet"
    assert paths.log_path("r", "A", "P1") == "results/logs/r/A/P1.log"
    assert paths.benchmark_path("r") == "results/benchmarks/r/all.tsv"
