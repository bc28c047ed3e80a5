"""Preprocessing against the synthetic generator's ground truth (known motion, known bias field)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DEMO_OVERLAY, ROOT
from hccrad.config import load_settings
from hccrad.preprocess import n4_correct, register_rigid, resample_to_spacing
from hccrad.synth import generate_patient, true_relative_transform

SETTINGS = load_settings(ROOT / "config" / "config.yaml", overlay=str(DEMO_OVERLAY))
FULL_SCALE = load_settings(ROOT / "config" / "config.yaml")


@pytest.fixture(scope="module", params=[("MR", 0), ("CT", 1)], ids=["MR", "CT"])
def patient(request):
    modality, index = request.param
    return modality, generate_patient(modality, index, seed=7)


def _prepared(modality, p):
    """Resample (and N4 for MR) every phase exactly as the workflow's defaults do."""
    out = {}
    for phase, image in p.images.items():
        img = resample_to_spacing(image, SETTINGS.spacing)
        if SETTINGS.modality(modality).n4:
            img, _ = n4_correct(
                img,
                shrink_factor=SETTINGS.n4_shrink_factor,
                iterations=SETTINGS.n4_iterations,
                convergence_threshold=SETTINGS.n4_convergence_threshold,
            )
        out[phase] = img
    return out


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b)))


@pytest.mark.parametrize("scale", ["demo", "full"])
def test_registration_recovers_known_motion(patient, scale):
    """Both the demo overlay's registration (QuickRigid alone) and the full-scale one (with the
    full-resolution refinement) recover the generator's motion to under a voxel on average."""
    settings = SETTINGS if scale == "demo" else FULL_SCALE
    assert settings.registration_refine is (scale == "full")
    modality, p = patient
    ref = SETTINGS.modality(modality).reference_phase
    images = _prepared(modality, p)
    liver = resample_to_spacing(p.masks[ref]["liver"], SETTINGS.spacing, is_mask=True)
    voxels = np.argwhere(sitk.GetArrayViewFromImage(liver) > 0)[::40][:, ::-1]
    points = [images[ref].TransformIndexToPhysicalPoint([int(i) for i in v]) for v in voxels]
    for phase in images:
        if phase == ref:
            continue
        truth = true_relative_transform(p.motion, phase, ref)
        found = register_rigid(
            images[ref],
            images[phase],
            method=settings.registration_method,
            refine=settings.registration_refine,
            seed=SETTINGS.seed,
        )
        err = [
            np.linalg.norm(np.subtract(found.TransformPoint(x), truth.TransformPoint(x)))
            for x in points
        ]
        moved = [_distance(x, truth.TransformPoint(x)) for x in points]
        assert np.mean(moved) > 1.5, "the generator must give registration work to do"
        assert np.mean(err) < 1.0 and np.max(err) < 1.5, (phase, np.mean(err), np.max(err))


def _cv(a: np.ndarray) -> float:
    return float(np.std(a) / np.mean(a))


@pytest.mark.parametrize("fit_in", ["liver", "foreground"])
def test_n4_reduces_known_bias_field_and_keeps_lesion_contrast(fit_in):
    """Residual field (true / estimated) varies less than the true field inside the liver."""
    ratios = []
    for index in (0, 3):
        p = generate_patient("MR", index, seed=7)
        for phase, image in p.images.items():
            liver_img = p.masks[phase]["liver"]
            liver = sitk.GetArrayViewFromImage(liver_img) > 0
            tumor = sitk.GetArrayViewFromImage(p.masks[phase]["tumor"]) > 0
            parenchyma = liver & ~tumor
            true_bias = sitk.GetArrayViewFromImage(p.bias[phase])
            corrected, estimated = n4_correct(
                image,
                liver_img if fit_in == "liver" else None,
                shrink_factor=SETTINGS.n4_shrink_factor,
                iterations=SETTINGS.n4_iterations,
                convergence_threshold=SETTINGS.n4_convergence_threshold,
                spline_distance_mm=SETTINGS.n4_spline_distance_mm,
            )
            residual = true_bias / sitk.GetArrayViewFromImage(estimated)
            ratios.append(_cv(residual[liver]) / _cv(true_bias[liver]))
            # the lesion is not absorbed: tumor/liver contrast stays as in the clean image
            c = sitk.GetArrayViewFromImage(p.clean[phase]).astype(float)
            a = sitk.GetArrayViewFromImage(corrected)
            clean_ratio = c[tumor].mean() / c[parenchyma].mean()
            got = a[tumor].mean() / a[parenchyma].mean()
            assert got == pytest.approx(clean_ratio, rel=0.1), (index, phase)
    ratios = np.array(ratios)
    assert np.median(ratios) < (0.5 if fit_in == "liver" else 0.7), ratios
    assert ratios.max() < 1.0, ratios
