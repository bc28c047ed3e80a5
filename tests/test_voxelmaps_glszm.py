"""Parity of hccrad.voxelmaps' GLSZM maps with PyRadiomics' own voxel mode."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from test_voxelmaps import assert_parity, blob

from conftest import shared_data
from hccrad.voxelmaps import FEATURE_CLASSES, VoxelMapSettings, compute_voxel_maps

pytest.importorskip("radiomics")

# PyRadiomics itself warns on empty kernels (nanmean of empty slices)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

CLS = ["glszm"]


@pytest.fixture(autouse=True)
def _quiet_pyradiomics():
    logging.getLogger("radiomics").setLevel(logging.CRITICAL)


def image_and_mask(img: np.ndarray, mask: np.ndarray) -> tuple[sitk.Image, sitk.Image]:
    """SimpleITK image and mask (same geometry) from arrays."""
    im = sitk.GetImageFromArray(img.astype(np.float64))
    mk = sitk.GetImageFromArray(mask.astype(np.uint8))
    mk.CopyInformation(im)
    return im, mk


def test_feature_names_are_pyradiomics_defaults():
    from radiomics.glszm import RadiomicsGLSZM

    enabled = {k for k, dep in RadiomicsGLSZM.getFeatureNames().items() if not dep}
    assert set(FEATURE_CLASSES["glszm"]) == enabled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_generated_blob(seed):
    im, mk = blob(seed)
    errors = assert_parity(im, mk, CLS)
    assert max(errors.values()) < 1e-12


@pytest.mark.parametrize(("radius", "bin_width"), [(1, 10.0), (3, 25.0)])
def test_parity_other_radius(radius, bin_width):
    im, mk = blob(2, n=10)
    assert_parity(im, mk, CLS, radius=radius, bin_width=bin_width)


def test_parity_full_box_bincount():
    rng = np.random.default_rng(5)
    img = (rng.normal(size=(7, 8, 9)) * 20 + 50).round()
    assert_parity(*image_and_mask(img, np.ones(img.shape)), CLS, bin_count=16)


def test_zones_are_limited_to_the_kernel_box():
    """Two level-A voxels joined only through a path outside the kernel box are two zones."""
    img = np.zeros((3, 5, 5))
    mask = np.zeros((3, 5, 5))
    mask[1, :3, :3] = 1
    img[1, :3, :3] = 10.0  # level A (bin 1)
    img[1, 1, 1] = img[1, 2, :3] = 40.0  # level B (bin 2): a 4-voxel zone
    im, mk = image_and_mask(img, mask)
    assert_parity(im, mk, CLS, radius=1)
    got = compute_voxel_maps(im, mk, VoxelMapSettings(kernel_radius=1, classes=("glszm",)))
    k = 7  # mask voxel (1, 2, 1) in np.nonzero order; its box holds rows 1-2: zones A1, A1, B4
    assert got["glszm_ZonePercentage"][k] == pytest.approx(3 / 6)
    assert got["glszm_SizeZoneNonUniformity"][k] == pytest.approx(5 / 3)
    assert got["glszm_GrayLevelNonUniformity"][k] == pytest.approx(5 / 3)
    assert got["glszm_SmallAreaEmphasis"][k] == pytest.approx((2 + 1 / 16) / 3)
    assert got["glszm_LargeAreaEmphasis"][k] == pytest.approx((2 + 16) / 3)


def test_parity_flat_regions_and_single_gray_level():
    """Degenerate kernels: a flat patch (one zone per kernel) and a single-level ROI."""
    rng = np.random.default_rng(3)
    img = (rng.normal(size=(8, 9, 10)) * 15 + 60).round()
    img[:, :5, :5] = 40.0  # a flat patch larger than the kernel
    m = np.ones(img.shape)
    m[0, 8, 9] = 0
    im, mk = image_and_mask(img, m)
    assert_parity(im, mk, CLS)
    got = compute_voxel_maps(im, mk, VoxelMapSettings(classes=("glszm",)))
    flat = np.zeros(img.shape, bool)
    flat[:, :3, :3] = True  # kernels entirely inside the patch (or the image)
    flat = flat[m != 0]
    for name in ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized"):
        assert np.all(got[f"glszm_{name}"][flat] == 1)
    for name in ("SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized"):
        assert np.all(got[f"glszm_{name}"][flat] == 1)
    for name in ("GrayLevelVariance", "ZoneVariance"):
        assert np.all(got[f"glszm_{name}"][flat] == 0)
    np.testing.assert_allclose(got["glszm_ZoneEntropy"][flat], 0, atol=1e-15)
    # one gray level in the whole ROI: every kernel is a single zone of all its voxels
    im1, mk1 = image_and_mask(np.full(img.shape, 77.0), m)
    assert_parity(im1, mk1, CLS)
    one = compute_voxel_maps(im1, mk1, VoxelMapSettings(classes=("glszm",)))
    assert not any(np.isnan(v).any() for v in one.values())
    np.testing.assert_array_equal(one["glszm_GrayLevelVariance"], 0)
    np.testing.assert_allclose(
        one["glszm_LargeAreaEmphasis"], (1 / one["glszm_ZonePercentage"]) ** 2, rtol=1e-14
    )


def test_parity_single_slice_and_thin_masks():
    """2-D ROI (zones within the slice) and a 1-voxel-thin cross."""
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
        assert_parity(im, mask, CLS)


@pytest.mark.parametrize(
    ("case", "bin_width"), [("brain1", 25.0), ("brain1", 5.0), ("brain2", 25.0), ("breast1", 25.0)]
)
def test_parity_real_sub_roi(case, bin_width):
    data = shared_data("pyradiomics")
    im = sitk.ReadImage(str(data / f"{case}_image.nrrd"))
    lb = sitk.ReadImage(str(data / f"{case}_label.nrrd"))
    a = sitk.GetArrayFromImage(lb)
    z, y, x = np.nonzero(a == 1)
    c = (int(np.median(z)), int(np.median(y)), int(np.median(x)))
    sub = np.zeros_like(a)
    sub[c[0] - 3 : c[0] + 3, c[1] - 6 : c[1] + 6, c[2] - 6 : c[2] + 6] = 1
    sub &= a == 1
    mk = sitk.GetImageFromArray(sub.astype(np.uint8))
    mk.CopyInformation(lb)
    assert 100 < sub.sum() < 1000
    errors = assert_parity(im, mk, CLS, bin_width=bin_width)
    assert max(errors.values()) < 1e-12


def test_driver_feature_subset_and_batching():
    im, mk = blob(1)
    full = compute_voxel_maps(im, mk, VoxelMapSettings(classes=("glszm",), voxel_batch=10_000))
    assert set(full) == {f"glszm_{n}" for n in FEATURE_CLASSES["glszm"]}
    names = ("ZoneEntropy", "LargeAreaHighGrayLevelEmphasis", "ZonePercentage")
    sub = compute_voxel_maps(
        im,
        mk,
        VoxelMapSettings(classes=("glszm",), features={"glszm": names}, voxel_batch=7),
    )
    assert set(sub) == {f"glszm_{n}" for n in names}
    threaded = compute_voxel_maps(
        im, mk, VoxelMapSettings(classes=("glszm",), voxel_batch=50, n_threads=2)
    )
    for key in full:
        np.testing.assert_allclose(full[key], threaded[key], rtol=1e-12, atol=1e-14, err_msg=key)
        if key in sub:
            np.testing.assert_allclose(full[key], sub[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_components_match_scipy_on_random_graphs():
    """The numpy connected components (hooking and pointer jumping) give scipy's partition,
    labelled by each component's smallest node, on sparse and dense random graphs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from hccrad.voxelmaps.glszm import components

    rng = np.random.default_rng(3)
    for n, m in [(1, 0), (50, 10), (400, 300), (400, 2000), (3000, 2500)]:
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        lab = components(n, src, dst)
        _, ref = connected_components(coo_matrix((np.ones(m), (src, dst)), (n, n)), False)
        # one label per scipy component, and it is the component's smallest node
        smallest = np.full(ref.max() + 1, n)
        np.minimum.at(smallest, ref, np.arange(n))
        np.testing.assert_array_equal(lab, smallest[ref])
