"""Parity of hccrad.voxelmaps with PyRadiomics' own voxel mode (all implemented classes)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import shared_data
from hccrad.voxelmaps import (
    FEATURE_CLASSES,
    VoxelMapSettings,
    compute_voxel_maps,
    maps_to_images,
)
from hccrad.voxelmaps.core import bin_edges, kernel_offsets

radiomics = pytest.importorskip("radiomics")
from radiomics import cMatrices, featureextractor, imageoperations  # noqa: E402

# PyRadiomics itself warns on empty kernels (nanmean of empty slices)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
REL, ABS = 1e-6, 1e-9
CLASSES = ["firstorder", "glcm", "glrlm", "gldm", "ngtdm"]


@pytest.fixture(autouse=True)
def _quiet_pyradiomics():
    logging.getLogger("radiomics").setLevel(logging.CRITICAL)


def blob(seed: int = 0, n: int = 12) -> tuple[sitk.Image, sitk.Image]:
    """A seeded irregular 3-D blob with textured integer intensities and anisotropic spacing."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:n, :n, :n]
    c = (n - 1) / 2
    rad = np.sqrt((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2)
    m = (rad + 1.5 * rng.normal(size=rad.shape) < n / 3).astype(np.uint8)
    img = (100 + 40 * np.sin(xx / 2.0) + 30 * rng.normal(size=rad.shape)).round()
    im = sitk.GetImageFromArray(img.astype(np.int16))
    im.SetSpacing((0.8, 0.9, 1.5))
    mk = sitk.GetImageFromArray(m)
    mk.CopyInformation(im)
    return im, mk


def reference(
    im: sitk.Image, mk: sitk.Image, classes: list[str], **settings: float
) -> dict[str, np.ndarray]:
    """PyRadiomics voxel-mode maps, as in-mask vectors in np.nonzero order."""
    ext = featureextractor.RadiomicsFeatureExtractor(**settings)
    ext.disableAllFeatures()
    for cls in classes:
        ext.enableFeatureClassByName(cls)
    res = ext.execute(im, mk, voxelBased=True)
    msk = sitk.GetArrayFromImage(mk) != 0
    out = {}
    for key, val in res.items():
        if not isinstance(val, sitk.Image):
            continue
        off = im.TransformPhysicalPointToIndex(val.GetOrigin())[::-1]
        arr = sitk.GetArrayFromImage(val)
        full = np.full(msk.shape, np.nan)
        full[
            off[0] : off[0] + arr.shape[0],
            off[1] : off[1] + arr.shape[1],
            off[2] : off[2] + arr.shape[2],
        ] = arr
        out[key.replace("original_", "")] = full[msk]
    return out


def assert_parity(
    im: sitk.Image,
    mk: sitk.Image,
    classes: list[str],
    radius: int = 2,
    bin_width: float = 25.0,
    bin_count: int | None = None,
) -> dict[str, float]:
    """Compare all maps; return the max relative error per map (where |reference| > 1e-9)."""
    kw: dict = {"kernelRadius": radius, "binWidth": bin_width}
    if bin_count is not None:
        kw["binCount"] = bin_count
    ref = reference(im, mk, classes, **kw)
    got = compute_voxel_maps(
        im,
        mk,
        VoxelMapSettings(
            kernel_radius=radius, bin_width=bin_width, bin_count=bin_count, classes=tuple(classes)
        ),
    )
    assert set(got) == set(ref)
    errors = {}
    for key in sorted(ref):
        a, b = ref[key], got[key]
        assert a.shape == b.shape, key
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=key)
        ok = ~np.isnan(a)
        diff = np.abs(a[ok] - b[ok])
        tol = np.maximum(REL * np.abs(a[ok]), ABS)
        assert np.all(diff <= tol), (key, float((diff / tol).max()))
        # relative error where the reference is not ~0 (below 1e-9 the absolute check applies)
        big = np.abs(a[ok]) > ABS
        errors[key] = float((diff[big] / np.abs(a[ok][big])).max()) if big.any() else 0.0
    return errors


# --- building blocks ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(5, 5, 5), (9, 2, 7), (1, 6, 6), (3, 3, 3)])
def test_kernel_offsets_match_pyradiomics(size):
    r = 2
    ref = cMatrices.generate_angles(np.array(size), np.arange(1, r + 1), True, False, 0)
    ref = np.append(ref, [[0, 0, 0]], axis=0)
    np.testing.assert_array_equal(kernel_offsets(r, np.array(size)), ref)


@pytest.mark.parametrize(
    ("bw", "bc"), [(25.0, None), (5.0, None), (10.0, None), (25.0, 16), (25.0, 7)]
)
def test_bin_edges_match_pyradiomics(bw, bc):
    vals = np.random.default_rng(1).normal(100, 40, 500).round()
    kw = {"binWidth": bw} if bc is None else {"binWidth": bw, "binCount": bc}
    np.testing.assert_array_equal(bin_edges(vals, bw, bc), imageoperations.getBinEdges(vals, **kw))


def test_feature_names_are_pyradiomics_defaults():
    from radiomics.firstorder import RadiomicsFirstOrder
    from radiomics.glcm import RadiomicsGLCM
    from radiomics.gldm import RadiomicsGLDM
    from radiomics.glrlm import RadiomicsGLRLM
    from radiomics.ngtdm import RadiomicsNGTDM

    for cls, names in (
        ("firstorder", RadiomicsFirstOrder),
        ("glcm", RadiomicsGLCM),
        ("glrlm", RadiomicsGLRLM),
        ("gldm", RadiomicsGLDM),
        ("ngtdm", RadiomicsNGTDM),
    ):
        enabled = {k for k, dep in names.getFeatureNames().items() if not dep}
        assert set(FEATURE_CLASSES[cls]) == enabled


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_parity_generated_blob(seed):
    im, mk = blob(seed)
    assert_parity(im, mk, CLASSES)


def test_parity_radius1_binwidth10():
    im, mk = blob(2)
    assert_parity(im, mk, CLASSES, radius=1, bin_width=10)


def test_parity_full_box_bincount_mcc():
    """A box ROI: every kernel has pairs in all 13 directions, so PyRadiomics' MCC succeeds."""
    rng = np.random.default_rng(5)
    img = (rng.normal(size=(7, 8, 9)) * 20 + 50).round()
    im = sitk.GetImageFromArray(img)
    mk = sitk.GetImageFromArray(np.ones(img.shape, np.uint8))
    mk.CopyInformation(im)
    errors = assert_parity(im, mk, CLASSES, bin_count=16)
    got = compute_voxel_maps(im, mk, VoxelMapSettings(bin_count=16, classes=("glcm",)))
    assert np.all(got["glcm_MCC"] > 0)
    assert errors["glcm_MCC"] < 1e-9


def test_parity_flat_regions():
    """Degenerate kernels: constant patches (flat firstorder moments, single-level GLCMs)."""
    rng = np.random.default_rng(3)
    img = (rng.normal(size=(8, 9, 10)) * 15 + 60).round()
    img[:, :5, :5] = 40.0  # a flat patch larger than the kernel
    im = sitk.GetImageFromArray(img)
    m = np.ones(img.shape, np.uint8)
    m[0, 8, 9] = 0
    mk = sitk.GetImageFromArray(m)
    mk.CopyInformation(im)
    assert_parity(im, mk, CLASSES)
    got = compute_voxel_maps(im, mk)
    flat = np.zeros(img.shape, bool)
    flat[:, :3, :3] = True
    flat = flat[m != 0]
    assert np.all(got["firstorder_Skewness"][flat] == 0)
    assert np.all(got["firstorder_Kurtosis"][flat] == 0)
    assert np.all(got["glcm_Correlation"][flat] == 1)
    assert np.all(got["glcm_Imc2"][flat] == 0)


def test_parity_single_slice_and_thin_masks():
    """2-D ROI (directions across slices are dropped) and a 1-voxel-thin cross."""
    im, mk = blob(0)
    m = sitk.GetArrayFromImage(mk)
    flat_roi = np.zeros_like(m)
    flat_roi[6] = m[6]
    thin = np.zeros_like(m)
    thin[6, 3:9, 6] = 1
    thin[7, 5, 6] = 1
    for arr in (flat_roi, thin):
        mask = sitk.GetImageFromArray(arr)
        mask.CopyInformation(mk)
        assert_parity(im, mask, CLASSES)


def test_single_voxel_mask():
    """PyRadiomics refuses a 1-voxel ROI; here first order is defined and GLCM is NaN."""
    im, mk = blob(0)
    arr = np.zeros(sitk.GetArrayFromImage(mk).shape, np.uint8)
    arr[6, 6, 6] = 1
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(mk)
    got = compute_voxel_maps(im, mask)
    assert got["firstorder_Mean"][0] == sitk.GetArrayFromImage(im)[6, 6, 6]
    assert np.isnan(got["glcm_Contrast"][0])


def test_parity_real_case_brain1():
    shared_data("pyradiomics")  # skips (fails in CI) when the shared folder is absent
    im = sitk.ReadImage(str(DATA / "brain1_image.nrrd"))
    lb = sitk.ReadImage(str(DATA / "brain1_label.nrrd"))
    a = sitk.GetArrayFromImage(lb)
    z, y, x = np.nonzero(a == 1)
    c = (int(np.median(z)), int(np.median(y)), int(np.median(x)))
    sub = np.zeros_like(a)
    sub[c[0] - 3 : c[0] + 3, c[1] - 6 : c[1] + 6, c[2] - 6 : c[2] + 6] = 1
    sub &= a == 1
    mk = sitk.GetImageFromArray(sub.astype(np.uint8))
    mk.CopyInformation(lb)
    assert 300 < sub.sum() < 1000
    assert_parity(im, mk, CLASSES)


# --- behaviour ------------------------------------------------------------------------------


def test_batching_does_not_change_results():
    im, mk = blob(0)
    a = compute_voxel_maps(im, mk, VoxelMapSettings(voxel_batch=10_000))
    b = compute_voxel_maps(im, mk, VoxelMapSettings(voxel_batch=7))
    c = compute_voxel_maps(im, mk, VoxelMapSettings(voxel_batch=50, n_threads=2))
    for key in a:  # equal up to summation order (BLAS blocking)
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-14, err_msg=key)
        np.testing.assert_allclose(a[key], c[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_feature_selection_and_voxel_array_shift():
    im, mk = blob(1)
    s = VoxelMapSettings(
        classes=("firstorder", "glcm"),
        features={"firstorder": ("Energy", "Mean"), "glcm": ("Contrast",)},
        voxel_array_shift=1000,
    )
    got = compute_voxel_maps(im, mk, s)
    assert set(got) == {"firstorder_Energy", "firstorder_Mean", "glcm_Contrast"}
    ref = reference(im, mk, ["firstorder"], kernelRadius=2, binWidth=25, voxelArrayShift=1000)
    np.testing.assert_allclose(got["firstorder_Energy"], ref["firstorder_Energy"], rtol=REL)
    with pytest.raises(ValueError, match="unknown"):
        compute_voxel_maps(im, mk, VoxelMapSettings(features={"glcm": ("Nope",)}))
    with pytest.raises(ValueError, match="unknown feature class"):
        compute_voxel_maps(im, mk, VoxelMapSettings(classes=("shape",)))


def test_maps_to_images_roundtrip():
    im, mk = blob(0)
    got = compute_voxel_maps(im, mk, VoxelMapSettings(classes=("firstorder",)))
    imgs = maps_to_images(got, mk)
    arr = sitk.GetArrayFromImage(imgs["firstorder_Mean"])
    msk = sitk.GetArrayFromImage(mk) != 0
    np.testing.assert_array_equal(arr[msk], got["firstorder_Mean"])
    assert np.all(np.isnan(arr[~msk]))
    assert imgs["firstorder_Mean"].GetSpacing() == mk.GetSpacing()
    zero = maps_to_images(got, mk, fill=0.0)["firstorder_Mean"]
    assert np.all(sitk.GetArrayFromImage(zero)[~msk] == 0)


def test_worker_processes_give_identical_maps():
    """n_jobs > 1 computes the same batches in forked workers: bit-identical maps."""
    rng = np.random.default_rng(5)
    img = (rng.normal(size=(7, 8, 9)) * 20 + 50).round()
    box = sitk.GetImageFromArray(img)
    box_mask = sitk.GetImageFromArray(np.ones(img.shape, np.uint8))
    box_mask.CopyInformation(box)
    for im, mk, extra in ((*blob(0), {}), (box, box_mask, {"bin_count": 16})):  # MCC 0 / defined
        base = {"voxel_batch": 60, "classes": tuple(CLASSES), **extra}
        one = compute_voxel_maps(im, mk, VoxelMapSettings(n_jobs=1, **base))
        two = compute_voxel_maps(im, mk, VoxelMapSettings(n_jobs=2, **base))
        threads = compute_voxel_maps(im, mk, VoxelMapSettings(n_jobs=1, n_threads=2, **base))
        assert set(one) == set(two) == set(threads)
        for key in one:
            np.testing.assert_array_equal(one[key], two[key], err_msg=key)
            np.testing.assert_array_equal(one[key], threads[key], err_msg=key)
    assert np.all(two["glcm_MCC"] > 0)
