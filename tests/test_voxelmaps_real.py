"""Parity of the fast voxel-map engine with PyRadiomics' voxel mode on real CT with many levels.

HCC_048's portal-venous CT (``../shared/data/hcc048_ct_dicom``), cropped to the liver, resampled
to 1 mm, and a 267-voxel ellipsoid at the liver's edge with a vessel and fat inside: 65 gray
levels at bin width 5, every kernel with pairs in all 13 directions (so MCC is computed).
PyRadiomics' dense ``Ng x Ng`` GLCMs and their MCC eigenproblems make its voxel mode slow here
(~4 s per 100 voxels), hence the small region. All six classes, every map within 1e-6 relative
(1e-9 absolute near 0), identical NaN positions. Also the IBSI CT phantom's lung tumour
(``../shared/data/ibsi1/ct_phantom``) at its edge with the lung, on its native anisotropic grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from test_voxelmaps import ABS, REL, reference

from conftest import shared_data
from hccrad.imageio import read_image
from hccrad.preprocess.resample import resample_to_spacing
from hccrad.voxelmaps import VoxelMapSettings, compute_voxel_maps
from hccrad.voxelmaps.core import bin_edges

ALL = ["firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def liver_region(
    centre: tuple[int, int, int], semi_axes: tuple[float, float, float]
) -> tuple[sitk.Image, sitk.Image]:
    """HCC_048's liver (columns 70-250, rows 130-330, slices 40-75) at 1 mm and an ellipsoid
    mask with the given centre and semi-axes (z, y, x voxels of the resampled crop)."""
    ct = read_image(shared_data("hcc048_ct_dicom"))
    image = resample_to_spacing(ct[70:250, 130:330, 40:76], (1.0, 1.0, 1.0))
    z, y, x = np.indices(sitk.GetArrayViewFromImage(image).shape)
    inside = (
        sum(((g - c) / s) ** 2 for g, c, s in zip((z, y, x), centre, semi_axes, strict=True)) <= 1
    )
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def assert_parity(image: sitk.Image, mask: sitk.Image, bin_width: float) -> dict[str, np.ndarray]:
    """All six classes of both engines, map by map; returns PyRadiomics' maps."""
    ref = reference(image, mask, ALL, kernelRadius=2, binWidth=bin_width)
    got = compute_voxel_maps(image, mask, VoxelMapSettings(bin_width=bin_width, classes=tuple(ALL)))
    assert set(got) == set(ref) and len(ref) == 93
    for key in sorted(ref):
        a, b = ref[key], got[key]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=key)
        ok = ~np.isnan(a)
        assert np.all(np.abs(a[ok] - b[ok]) <= np.maximum(REL * np.abs(a[ok]), ABS)), key
    return ref


def gray_levels(image: sitk.Image, mask: sitk.Image, bin_width: float) -> tuple[int, int]:
    """The ROI's voxel count and gray levels present at ``bin_width`` (PyRadiomics' bins)."""
    roi = sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(mask) != 0].astype(np.float64)
    return roi.size, np.unique(np.digitize(roi, bin_edges(roi, bin_width))).size


def test_every_class_on_real_ct_with_many_gray_levels():
    image, mask = liver_region((30, 45, 93), (3, 4.5, 4.5))
    n, levels = gray_levels(image, mask, 5.0)
    assert n == 267 and levels >= 60, (n, levels)
    ref = assert_parity(image, mask, 5.0)
    assert np.all(ref["glcm_MCC"] > 0)  # MCC computed (not PyRadiomics' all-zero fallback)


def test_every_class_on_real_ct_with_a_wide_gray_level_range():
    """Bin width 2: the bins span more than 100 gray levels (the GLCM's ``|i - j|`` and ``i + j``
    histogram features are then summed over the cells instead of dense histograms)."""
    image, mask = liver_region((30, 45, 93), (2, 3, 3))
    n, levels = gray_levels(image, mask, 2.0)
    assert n == 73 and levels >= 50, (n, levels)
    ref = assert_parity(image, mask, 2.0)
    assert np.all(ref["glcm_MCC"] > 0)


def test_every_class_on_the_ibsi_ct_phantom_tumour_edge():
    """The IBSI CT phantom's lung tumour (native 0.977 x 0.977 x 3 mm grid) where it meets the
    lung: the GTV inside an ellipsoid at its anterior edge, 359 voxels from -850 to 138 HU, 40
    gray levels at bin width 25, air and soft tissue in most kernels (~5 s, PyRadiomics most)."""
    folder = shared_data("ibsi1/ct_phantom")
    image = read_image(folder / "image.nii.gz")
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nii.gz"))) != 0
    z, y, x = np.indices(gtv.shape)
    edge = ((z - 27) / 2.2) ** 2 + ((y - 60) / 7) ** 2 + ((x - 103) / 7) ** 2 <= 1
    mask = sitk.GetImageFromArray((gtv & edge).astype(np.uint8))
    mask.CopyInformation(image)
    n, levels = gray_levels(image, mask, 25.0)
    assert n == 359 and levels == 40, (n, levels)
    ref = assert_parity(image, mask, 25.0)
    assert np.all(ref["glcm_MCC"] > 0)
