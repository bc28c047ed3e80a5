"""Tests of hccrad.preprocess on seeded numerical phantoms (and a real liver CT when present)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import shared_data
from hccrad.imageio import read_image, read_mask
from hccrad.preprocess import (
    RegistrationError,
    apply_transform,
    image_similarity,
    largest_component,
    mask_stats,
    n4_correct,
    normalize_mr,
    peritumoral_ring,
    read_transform,
    register_rigid,
    resample_like,
    resample_to_spacing,
    window_ct,
    write_transform,
)

log = logging.getLogger(__name__)

DATA = Path(__file__).parents[1].parent / "shared" / "data"


def _grid(size, spacing, origin=(0.0, 0.0, 0.0)) -> tuple[sitk.Image, np.ndarray]:
    """Empty Float32 image and the physical coordinates (z, y, x, 3) of its voxel centres."""
    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij"), -1)[..., ::-1]
    pts = np.asarray(origin) + idx * np.asarray(spacing)  # identity direction
    return img, pts


def _from_array(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(like)
    return out


def _sphere(size, spacing, centre, radius, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    ref, pts = _grid(size, spacing, origin)
    inside = np.linalg.norm(pts - np.asarray(centre), axis=-1) <= radius
    return _from_array(inside.astype(np.uint8), ref)


# ----------------------------------------------------------------------------- resampling


def test_resample_mask_keeps_extent_centroid_volume():
    spacing = (0.7, 0.7, 2.5)
    size = (80, 70, 24)
    origin = (-20.0, 10.0, -30.0)
    centre, radius = (8.0, 34.5, -1.0), 15.0
    mask = _sphere(size, spacing, centre, radius, origin)
    out = resample_to_spacing(mask, (1.0, 1.0, 1.0), is_mask=True)

    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) == {0, 1}
    assert out.GetOrigin() == mask.GetOrigin() and out.GetDirection() == mask.GetDirection()
    assert out.GetSpacing() == (1.0, 1.0, 1.0)
    old_extent = np.asarray(size) * np.asarray(spacing)
    new_extent = np.asarray(out.GetSize()) * 1.0
    assert np.all(np.abs(new_extent - old_extent) <= 0.5 + 1e-9)

    before, after = mask_stats(mask), mask_stats(out)
    analytic = 4 / 3 * math.pi * radius**3 / 1000
    assert after["volume_ml"] == pytest.approx(before["volume_ml"], rel=0.03)
    assert after["volume_ml"] == pytest.approx(analytic, rel=0.05)
    np.testing.assert_allclose(after["centroid_mm"], centre, atol=0.3)
    np.testing.assert_allclose(before["centroid_mm"], centre, atol=0.3)


def test_resample_image_linear_float_and_default_value():
    spacing = (0.8, 0.8, 2.0)
    ref, pts = _grid((60, 60, 20), spacing, (-24.0, -24.0, -20.0))
    r = np.linalg.norm(pts, axis=-1)
    arr = (100.0 + 50.0 * np.exp(-(r**2) / (2 * 8.0**2))).astype(np.float32)  # blob at 0
    img = _from_array(arr, ref)
    out = resample_to_spacing(img, (1.0, 1.0, 1.0))
    assert out.GetPixelID() == sitk.sitkFloat32
    a = sitk.GetArrayViewFromImage(out)
    assert a.min() >= 100.0 - 1e-4 and a.max() <= 150.0 + 1e-4  # linear: no overshoot
    peak = np.unravel_index(np.argmax(a), a.shape)
    peak_mm = out.TransformIndexToPhysicalPoint([int(v) for v in peak[::-1]])
    np.testing.assert_allclose(peak_mm, (0, 0, 0), atol=1.0)
    # voxels mapped outside the input get the image minimum (100), not 0
    shifted = sitk.TranslationTransform(3, (30.0, 0.0, 0.0))
    moved = sitk.GetArrayFromImage(resample_like(img, img, transform=shifted))
    assert moved.min() == pytest.approx(100.0, abs=1e-3)
    moved0 = resample_like(img, img, transform=shifted, default_value=-5.0)
    assert sitk.GetArrayViewFromImage(moved0).min() == pytest.approx(-5.0)


def test_resample_like_mask_nearest_binary():
    mask = _sphere((40, 40, 40), (1.0, 1.0, 1.0), (20, 20, 20), 10)
    ref, _ = _grid((50, 50, 30), (0.9, 0.9, 1.3), (-2.0, -1.0, 0.5))
    out = resample_like(mask, ref, is_mask=True)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) == {0, 1}
    assert mask_stats(out)["volume_ml"] == pytest.approx(mask_stats(mask)["volume_ml"], rel=0.04)


def test_resample_like_mask_partial_volume_matches_scipy():
    """A mask carried with mask_threshold is the linear interpolation of the 0/1 mask (scipy's
    map_coordinates, order 1, an independent implementation) kept where it is >= 0.5; through a
    rotation as well."""
    from scipy.ndimage import map_coordinates

    mask = _sphere((40, 40, 12), (1.0, 1.0, 2.5), (20, 20, 6), 9)
    ref, _ = _grid((50, 50, 40), (0.9, 0.9, 0.7), (-2.0, -1.0, 0.5))
    tx = sitk.Euler3DTransform((20.0, 20.0, 15.0), 0.0, 0.0, 0.3, (0.4, -0.7, 0.9))
    src = sitk.GetArrayFromImage(mask).astype(float)
    zz, yy, xx = np.indices(ref.GetSize()[::-1])
    for transform in (None, tx):
        out = resample_like(mask, ref, transform=transform, is_mask=True, mask_threshold=0.5)
        assert out.GetPixelID() == sitk.sitkUInt8
        # physical point of every output voxel, through the transform, as a source index
        pts = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(float)
        phys = np.asarray(ref.GetOrigin()) + pts * np.asarray(ref.GetSpacing())
        if transform is not None:
            phys = np.array([transform.TransformPoint(tuple(p)) for p in phys])
        idx = (phys - np.asarray(mask.GetOrigin())) / np.asarray(mask.GetSpacing())
        frac = map_coordinates(src, idx[:, ::-1].T, order=1, mode="constant", cval=0.0)
        frac = frac.reshape(zz.shape)
        got = sitk.GetArrayViewFromImage(out).astype(bool)
        clear = np.abs(frac - 0.5) > 1e-4  # leave ties to rounding
        np.testing.assert_array_equal(got[clear], frac[clear] >= 0.5)
        nearest = resample_like(mask, ref, transform=transform, is_mask=True)
        assert (sitk.GetArrayViewFromImage(nearest).astype(bool) != got).sum() > 0
    with pytest.raises(ValueError, match="only for masks"):
        resample_like(sitk.Cast(mask, sitk.sitkFloat32), ref, mask_threshold=0.5)


def test_centred_grid_linear_and_rounded_ct(tmp_path):
    """The workflow's resampling step with IBSI-1's settings: the grid centred on the original
    one, and CT rounded to integer HU; the default keeps the origin."""
    from hccrad.config import Resampling
    from hccrad.steps.preprocessing import resample_image

    rng = np.random.default_rng(3)
    img = sitk.GetImageFromArray(rng.normal(40.0, 30.0, (11, 20, 20)).astype(np.float32))
    img.SetSpacing((0.7, 0.7, 2.5))
    img.SetOrigin((-10.0, 5.0, 30.0))
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(src))
    resample_image(
        src, tmp_path / "new.nii.gz", spacing=(1, 1, 1), patient="P", phase="AP",
        resampling=Resampling.IBSI, round_intensities=True,
    )  # fmt: skip
    out = sitk.ReadImage(str(tmp_path / "new.nii.gz"))
    arr = sitk.GetArrayFromImage(out)
    np.testing.assert_array_equal(arr, np.round(arr))
    assert out.GetSize() == (14, 14, 28)  # ceil(20 * 0.7), ceil(11 * 2.5)

    def centre(im: sitk.Image) -> np.ndarray:
        size, spacing = np.asarray(im.GetSize()), np.asarray(im.GetSpacing())
        return np.asarray(im.GetOrigin()) + (size - 1) * spacing / 2

    np.testing.assert_allclose(centre(out), centre(img), atol=1e-6)
    resample_image(
        src, tmp_path / "old.nii.gz", spacing=(1, 1, 1), patient="P", phase="AP",
        resampling=Resampling(),
    )  # fmt: skip
    legacy = sitk.ReadImage(str(tmp_path / "old.nii.gz"))
    assert legacy.GetOrigin() == img.GetOrigin() and legacy.GetSize() == (14, 14, 28)
    assert not np.array_equal(
        sitk.GetArrayFromImage(legacy), np.round(sitk.GetArrayFromImage(legacy))
    )


# ----------------------------------------------------------------------------- N4


def _bias_phantom():
    rng = np.random.default_rng(0)
    shape = (70, 90, 100)
    z, y, x = np.indices(shape).astype(float)
    c = np.array(shape) / 2
    body = ((z - c[0]) / 30) ** 2 + ((y - c[1]) / 40) ** 2 + ((x - c[2]) / 45) ** 2 <= 1
    inner = ((z - c[0]) / 20) ** 2 + ((y - c[1]) / 28) ** 2 + ((x - c[2]) / 32) ** 2 <= 1
    arr = np.where(body, 100.0, 0.0)
    arr[inner] = 150.0
    arr += body * rng.normal(0, 2, shape)
    log_bias = 0.3 * ((x - c[2]) / 50) + 0.2 * ((y - c[1]) / 45) ** 2 - 0.15 * ((z - c[0]) / 35)
    img = sitk.GetImageFromArray((arr * np.exp(log_bias)).astype(np.float32))
    img.SetOrigin((-50.0, -45.0, -35.0))
    return img, log_bias, body, inner


def test_n4_removes_known_bias():
    img, log_bias, body, inner = _bias_phantom()
    t0 = time.perf_counter()
    corrected, bias = n4_correct(img)
    elapsed = time.perf_counter() - t0
    log.info("N4 on %s: %.2f s", img.GetSize(), elapsed)
    assert corrected.GetSize() == img.GetSize() and bias.GetSize() == img.GetSize()
    assert corrected.GetPixelID() == sitk.sitkFloat32

    def cv(a: np.ndarray) -> float:
        return float(a[inner].std() / a[inner].mean())

    before = cv(sitk.GetArrayFromImage(img))
    after = cv(sitk.GetArrayFromImage(corrected))
    assert after < 0.5 * before, (before, after)
    est = np.log(sitk.GetArrayFromImage(bias))
    corr = np.corrcoef(est[body], log_bias[body])[0, 1]
    assert corr > 0.9, corr
    # corrected = image / bias, exactly
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(corrected) * sitk.GetArrayFromImage(bias),
        sitk.GetArrayFromImage(img),
        rtol=1e-4,
        atol=1e-3,
    )
    assert elapsed < 10.0  # ~1 s here; generous for noisy CI machines


def test_n4_with_mask_and_spline_distance():
    img, log_bias, body, _ = _bias_phantom()
    mask = _from_array(body.astype(np.uint8), img)
    _, bias = n4_correct(img, mask, spline_distance_mm=50.0, iterations=(30, 30))
    est = np.log(sitk.GetArrayFromImage(bias))
    assert np.corrcoef(est[body], log_bias[body])[0, 1] > 0.9


# ----------------------------------------------------------------------------- normalisation


def test_normalize_mr_zscore_and_percentile():
    rng = np.random.default_rng(3)
    arr = rng.normal(300, 40, (20, 30, 30)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    m = np.zeros(arr.shape, np.uint8)
    m[5:15, 5:25, 5:25] = 1
    mask = _from_array(m, img)
    z = sitk.GetArrayFromImage(normalize_mr(img, mask))
    assert z[m == 1].mean() == pytest.approx(0.0, abs=1e-5)
    assert z[m == 1].std() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(
        z, (arr - arr[m == 1].mean()) / arr[m == 1].std(), rtol=1e-4, atol=1e-4
    )

    p = sitk.GetArrayFromImage(normalize_mr(img, mask, method="percentile", percentiles=(5, 95)))
    lo, hi = np.percentile(arr[m == 1], [5, 95])
    np.testing.assert_allclose(p, (arr - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    assert np.percentile(p[m == 1], 5) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(p[m == 1], 95) == pytest.approx(1.0, abs=1e-5)


def test_normalize_mr_default_mask_and_errors():
    arr = np.zeros((10, 20, 20), np.float32)
    arr[3:7, 5:15, 5:15] = np.random.default_rng(0).normal(500, 50, (4, 10, 10))
    img = sitk.GetImageFromArray(arr)
    z = sitk.GetArrayFromImage(normalize_mr(img))  # Otsu foreground = the bright block
    assert z[3:7, 5:15, 5:15].mean() == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError, match="empty"):
        normalize_mr(img, _from_array(np.zeros(arr.shape, np.uint8), img))
    with pytest.raises(ValueError, match="zero intensity spread"):
        normalize_mr(
            _from_array(np.full(arr.shape, 7, np.float32), img),
            _from_array(np.ones(arr.shape, np.uint8), img),
        )
    with pytest.raises(ValueError, match="unknown"):
        normalize_mr(img, method="minmax")


def test_window_ct_exact_values():
    hu = np.array([-1000.0, -89.5, 40.0, 169.5, 500.0, 0.0], np.float32).reshape(1, 2, 3)
    img = sitk.GetImageFromArray(hu)
    out = sitk.GetArrayFromImage(window_ct(img))
    np.testing.assert_allclose(out.ravel(), [0.0, 0.0, 0.5, 1.0, 1.0, 89.5 / 259.0], atol=1e-6)
    kept = sitk.GetArrayFromImage(window_ct(img, rescale=False))
    np.testing.assert_allclose(kept.ravel(), [-89.5, -89.5, 40.0, 169.5, 169.5, 0.0])
    bone = sitk.GetArrayFromImage(window_ct(img, width=2000, level=500))
    np.testing.assert_allclose(bone.ravel(), [0.0, 0.20525, 0.27, 0.33475, 0.5, 0.25], atol=1e-6)
    with pytest.raises(ValueError):
        window_ct(img, width=0)


# ----------------------------------------------------------------------------- registration


def _textured_phantom(seed: int = 0):
    """~100x90x70 at 1 mm: ellipsoid body, smooth random texture and bright/dark blobs."""
    rng = np.random.default_rng(seed)
    shape = (70, 90, 100)
    noise = sitk.GetImageFromArray(rng.normal(size=shape).astype(np.float32))
    tex = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, 1.5))
    tex /= tex.std()
    z, y, x = np.indices(shape)
    c = np.array(shape) / 2
    body = ((z - c[0]) / 30) ** 2 + ((y - c[1]) / 38) ** 2 + ((x - c[2]) / 44) ** 2 <= 1
    arr = np.where(body, 100 + 30 * tex, 0).astype(np.float32)
    for _ in range(6):
        p = rng.uniform([15, 20, 20], [55, 70, 80])
        r = rng.uniform(4, 9)
        arr[(z - p[0]) ** 2 + (y - p[1]) ** 2 + (x - p[2]) ** 2 < r * r] += rng.choice([-60, 80])
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin((-50.0, -45.0, -35.0))
    blob = ((z - 40) ** 2 + (y - 40) ** 2 + (x - 55) ** 2 <= 100).astype(np.uint8)
    return img, _from_array(body.astype(np.uint8), img), _from_array(blob, img)


def _displacement_error(tx: sitk.Transform, truth: sitk.Transform, mask: sitk.Image) -> float:
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask))[::7][:, ::-1]
    d = [
        np.linalg.norm(np.subtract(tx.TransformPoint(p), truth.TransformPoint(p)))
        for p in (mask.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in idx)
    ]
    return float(np.mean(d))


@pytest.fixture(scope="module")
def registration_case():
    fixed, body, blob = _textured_phantom()
    truth = sitk.Euler3DTransform()  # fixed point -> moving point
    truth.SetRotation(*np.deg2rad([5.0, -4.0, 6.0]))
    truth.SetTranslation((3.0, -4.0, 8.0))
    inverse = truth.GetInverse()
    moving = resample_like(fixed, fixed, transform=inverse, default_value=0.0)
    moving_blob = resample_like(blob, fixed, transform=inverse, is_mask=True)
    import ants  # noqa: F401  (import once, outside the timings)

    results = {}
    for method, refine in (("QuickRigid", False), ("QuickRigid", True)):
        t0 = time.perf_counter()
        tx = register_rigid(fixed, moving, method=method, refine=refine, seed=0)
        results[(method, refine)] = (tx, time.perf_counter() - t0)
    return fixed, moving, body, blob, moving_blob, truth, results


def test_register_rigid_recovers_known_motion(registration_case):
    _, _, body, _, _, truth, results = registration_case
    report = {}
    for (method, refine), (tx, seconds) in results.items():
        err = _displacement_error(tx, truth, body)
        report[f"{method}{'+refine' if refine else ''}"] = (round(err, 3), round(seconds, 2))
        assert isinstance(tx, sitk.Euler3DTransform)
    log.info("registration error (mm, s): %s", report)
    tx_refined, seconds = results[("QuickRigid", True)]
    assert _displacement_error(tx_refined, truth, body) < 1.0
    assert _displacement_error(results[("QuickRigid", False)][0], truth, body) < 2.0
    assert seconds < 15.0  # ~1.3 s here


def test_register_rigid_other_contrast_and_repeatability():
    """Moving image with inverted contrast + noise (another phase); two runs agree."""
    fixed, body, _ = _textured_phantom(seed=2)
    truth = sitk.Euler3DTransform()
    truth.SetRotation(*np.deg2rad([-3.0, 2.0, 4.0]))
    truth.SetTranslation((-2.0, 5.0, -6.0))
    a = sitk.GetArrayFromImage(fixed)
    inside = sitk.GetArrayFromImage(body).astype(bool)
    noise = np.random.default_rng(12).normal(0, 8, a.shape)
    other = _from_array(np.where(inside, 250 - 0.9 * a + noise, 0).astype(np.float32), fixed)
    moving = resample_like(other, fixed, transform=truth.GetInverse(), default_value=0.0)
    tx1 = register_rigid(fixed, moving, seed=0)
    tx2 = register_rigid(fixed, moving, seed=0)
    err1 = _displacement_error(tx1, truth, body)
    log.info("other contrast: QuickRigid+refine error %.3f mm", err1)
    assert err1 < 1.0
    assert _displacement_error(tx1, tx2, body) < 0.1  # not bit-identical (ITK threads)


_LIGHT_ANTS_SCRIPT = """
import sys
import SimpleITK as sitk
from hccrad.preprocess import register_rigid
from hccrad.preprocess.register import import_ants, write_transform

ants = import_ants()
heavy = sorted(
    {m.split(".")[0] for m in sys.modules} & {"statsmodels", "sklearn"}
    | set(sys.modules) & {"matplotlib.pyplot"}
)
fixed, moving = sitk.ReadImage(sys.argv[1]), sitk.ReadImage(sys.argv[2])
write_transform(register_rigid(fixed, moving, seed=0), sys.argv[3])
try:
    ants.quantile(fixed, 0.5)
except RuntimeError as err:
    left_out = str(err)
import ants.math.quantile
print(heavy, "|", left_out, "|", ants.math.quantile.quantile.__module__)
"""


def test_import_ants_leaves_out_the_learning_modules(registration_case, tmp_path):
    """A preprocessing job imports antspyx without statsmodels / scikit-learn / pyplot; its
    registration equals the one of a full ``import ants``, and a left-out function says how to
    get it."""
    fixed, moving, body, _, _, _, results = registration_case
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    out = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                _LIGHT_ANTS_SCRIPT,
                *(str(tmp_path / f) for f in ("fixed.nrrd", "moving.nrrd", "tx.tfm")),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    heavy, left_out, module = (part.strip() for part in out.split("|"))
    assert heavy == "[]"
    assert "ants.math.quantile.quantile was left out" in left_out
    assert module == "ants.math.quantile"  # the real module loads on request afterwards
    light = read_transform(tmp_path / "tx.tfm")
    assert _displacement_error(light, results[("QuickRigid", True)][0], body) < 0.1


def test_apply_transform_and_similarity(registration_case, tmp_path):
    fixed, moving, body, blob, moving_blob, _, results = registration_case
    tx, _ = results[("QuickRigid", True)]
    aligned = apply_transform(moving, fixed, tx)
    truth = registration_case[5]
    ideal = image_similarity(fixed, apply_transform(moving, fixed, truth), body)
    before = image_similarity(fixed, moving, body)
    after = image_similarity(fixed, aligned, body)
    log.info("similarity before %s, after %s, with the true transform %s", before, after, ideal)
    # the fine texture loses contrast under two linear interpolations: compare with the ideal
    assert after["ncc"] > before["ncc"] + 0.5
    assert after["ncc"] > ideal["ncc"] - 0.02
    assert after["mi"] > before["mi"] > 0
    assert after["mi"] > 0.95 * ideal["mi"]
    warped_blob = apply_transform(moving_blob, fixed, tx, is_mask=True)
    assert warped_blob.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(warped_blob))) == {0, 1}
    overlap = np.logical_and(
        sitk.GetArrayViewFromImage(warped_blob), sitk.GetArrayViewFromImage(blob)
    ).sum()
    dice = (
        2
        * overlap
        / (sitk.GetArrayViewFromImage(warped_blob).sum() + sitk.GetArrayViewFromImage(blob).sum())
    )
    assert dice > 0.9

    path = tmp_path / "t" / "AP_to_PV.tfm"
    write_transform(tx, path)
    back = read_transform(path)
    p = (10.0, -5.0, 3.0)
    np.testing.assert_allclose(back.TransformPoint(p), tx.TransformPoint(p), atol=1e-6)
    assert [f.name for f in path.parent.iterdir()] == ["AP_to_PV.tfm"]


def test_image_similarity_values():
    rng = np.random.default_rng(0)
    a = sitk.GetImageFromArray(rng.normal(size=(10, 20, 20)).astype(np.float32))
    b = _from_array(sitk.GetArrayFromImage(a) * 3 + 2, a)
    s = image_similarity(a, b)
    assert s["ncc"] == pytest.approx(1.0, abs=1e-6)
    noise = _from_array(rng.normal(size=(10, 20, 20)).astype(np.float32), a)
    s2 = image_similarity(a, noise)
    assert abs(s2["ncc"]) < 0.1 and s2["mi"] < s["mi"]


def test_mutual_information_against_sklearn_and_closed_form():
    from sklearn.metrics import mutual_info_score

    from hccrad.preprocess.register import _bin_index, mutual_information

    rng = np.random.default_rng(3)
    x = rng.normal(size=5000)
    y = 0.7 * x + rng.normal(scale=0.5, size=5000)
    want = mutual_info_score(_bin_index(x, 32), _bin_index(y, 32))
    assert mutual_information(x, y, 32) == pytest.approx(want, rel=1e-12)
    # a sample with itself: its histogram's entropy; four equally filled bins: log 4
    q = np.repeat([0.0, 1.0, 2.0, 3.0], 25)
    assert mutual_information(q, q, 4) == pytest.approx(np.log(4))
    # independent of a constant
    assert mutual_information(q, np.ones_like(q), 4) == 0.0


def test_register_rigid_errors():
    img = sitk.Image(10, 10, 10, sitk.sitkFloat32)
    with pytest.raises(ValueError, match="unknown registration method"):
        register_rigid(img, img, method="SyN")
    bad = _from_array(np.full((10, 10, 10), np.nan, np.float32), img)
    with pytest.raises(RegistrationError, match="ANTs QuickRigid registration failed"):
        register_rigid(img, bad)


def test_import_is_light():
    """antspyx (1.5 s) is imported lazily; torch never."""
    code = (
        "import sys, hccrad.imageio, hccrad.preprocess, hccrad.qc; "
        "print('ants' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------- regions


def test_peritumoral_ring_sphere_anisotropic():
    spacing = (0.7, 0.8, 1.5)
    size = (100, 90, 50)
    centre, r, d = (35.0, 36.0, 37.0), 12.0, 10.0
    tumor = _sphere(size, spacing, centre, r)
    ring = peritumoral_ring(tumor, distance_mm=d)
    assert ring.GetPixelID() == sitk.sitkUInt8
    ra = sitk.GetArrayViewFromImage(ring).astype(bool)
    ta = sitk.GetArrayViewFromImage(tumor).astype(bool)
    assert not np.any(ra & ta)

    _, pts = _grid(size, spacing)
    dist = np.linalg.norm(pts - np.asarray(centre), axis=-1)
    assert dist[ra].min() > r and dist[ra].max() <= r + d + 1e-6  # inner r, outer r + d
    half_diag = 0.5 * np.linalg.norm(spacing)
    shell = (dist > r + half_diag) & (dist <= r + d - half_diag)
    assert np.all(ra[shell])  # everything well inside the shell is in the ring

    # distances run between voxel centres, and the outermost tumor voxel centres lie a fraction of
    # a voxel inside r: the digital ring comes out ~3 % smaller than the closed form here
    expected_ml = 4 / 3 * math.pi * ((r + d) ** 3 - r**3) / 1000
    assert mask_stats(ring)["volume_ml"] == pytest.approx(expected_ml, rel=0.05)


def test_peritumoral_ring_clipped_to_liver():
    spacing = (1.0, 1.0, 2.0)
    tumor = _sphere((60, 60, 30), spacing, (30, 30, 30), 8.0)
    liver_arr = np.zeros((30, 60, 60), np.uint8)
    liver_arr[:, :, :33] = 1  # liver ends 3 mm right of the tumor centre
    liver = _from_array(liver_arr, tumor)
    full = sitk.GetArrayFromImage(peritumoral_ring(tumor))
    clipped = sitk.GetArrayFromImage(peritumoral_ring(tumor, liver))
    np.testing.assert_array_equal(clipped, full & liver_arr)
    assert clipped.sum() < full.sum() and clipped[:, :, 33:].sum() == 0
    with pytest.raises(ValueError, match="empty tumor"):
        peritumoral_ring(_from_array(np.zeros((30, 60, 60), np.uint8), tumor))


def test_peritumoral_ring_at_image_border():
    """The bounding-box crop must not change the result when the ring reaches the border."""
    spacing = (1.0, 1.0, 1.0)
    tumor = _sphere((40, 40, 40), spacing, (5, 20, 20), 4.0)
    ring = sitk.GetArrayFromImage(peritumoral_ring(tumor, distance_mm=6.0))
    dist = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(
            tumor, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
    )
    np.testing.assert_array_equal(ring, ((dist > 0) & (dist <= 6.0)).astype(np.uint8))


def test_largest_component_and_connectivity():
    arr = np.zeros((20, 30, 30), np.uint8)
    arr[2:6, 2:6, 2:6] = 1  # 64 voxels
    arr[10:16, 10:20, 10:20] = 1  # 600 voxels: the index lesion
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.5, 2.0))
    big = sitk.GetArrayFromImage(largest_component(img))
    assert big.sum() == 600 and big[12, 15, 15] == 1 and big[3, 3, 3] == 0
    stats = mask_stats(img)
    assert stats["components"] == 2 and stats["voxels"] == 664
    assert stats["volume_ml"] == pytest.approx(664 * 0.5 * 0.5 * 2.0 / 1000)

    corner = np.zeros((5, 5, 5), np.uint8)
    corner[1, 1, 1] = corner[2, 2, 2] = corner[2, 2, 3] = 1  # diagonal neighbours
    c_img = sitk.GetImageFromArray(corner)
    assert sitk.GetArrayFromImage(largest_component(c_img)).sum() == 2  # 6-connectivity
    assert sitk.GetArrayFromImage(largest_component(c_img, fully_connected=True)).sum() == 3


def test_mask_stats_box_and_empty():
    arr = np.zeros((10, 12, 14), np.uint8)
    arr[2:5, 3:7, 4:9] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 1.0, 3.0))
    img.SetOrigin((10.0, 0.0, -5.0))
    s = mask_stats(img)
    assert s["voxels"] == 60 and s["volume_ml"] == pytest.approx(0.36)
    assert s["bbox_index"] == [4, 3, 2] and s["bbox_size"] == [5, 4, 3]
    np.testing.assert_allclose(s["centroid_mm"], (10 + 2 * 6, 4.5, -5 + 3 * 3))
    e = mask_stats(_from_array(np.zeros_like(arr), img))
    assert e["voxels"] == 0 and e["centroid_mm"] is None


def test_real_liver_ring_smoke():
    folder = shared_data("liver_lits64")
    ct = read_image(folder / "ct.nii.gz")
    liver = read_mask(folder / "labels.nii.gz", ct, kind="liver")  # liver incl. lesion
    tumor = read_mask(folder / "labels.nii.gz", ct, kind="tumor", label=2)
    lesion = largest_component(tumor)
    ring = peritumoral_ring(lesion, liver, distance_mm=10.0)
    r, li, t = (sitk.GetArrayViewFromImage(m) for m in (ring, liver, lesion))
    assert r.sum() > 0 and not np.any(r & t) and np.all(li[r == 1] == 1)
    windowed = sitk.GetArrayFromImage(window_ct(ct))
    assert windowed.min() >= 0 and windowed.max() <= 1
    resampled = resample_to_spacing(ring, (1.0, 1.0, 1.0), is_mask=True)
    assert set(np.unique(sitk.GetArrayViewFromImage(resampled))) <= {0, 1}
