"""The voxel-map files (hccrad.voxelmaps.files): maps cropped to the ROI plus the kernel radius,
with their true origin, against full-grid maps and PyRadiomics' own voxel-mode map images."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hccrad.voxelmaps import VoxelMapSettings, compute_voxel_maps, voxel_maps, write_voxel_maps
from hccrad.voxelmaps.files import box_image, map_on_grid, roi_box

RADIUS = 1
SETTINGS = VoxelMapSettings(kernel_radius=RADIUS, bin_width=10.0, classes=("firstorder", "glcm"))


def case(edge: bool = False) -> tuple[sitk.Image, sitk.Image]:
    """A textured 12 x 14 x 16 image (anisotropic, rotated, shifted) and a blob mask; with
    ``edge`` the blob touches the image's first x column and last z slice."""
    rng = np.random.default_rng(7)
    zz, yy, xx = np.mgrid[:12, :14, :16]
    centre = (10.5, 6.0, 1.0) if edge else (5.0, 7.0, 8.0)
    r2 = (zz - centre[0]) ** 2 + ((yy - centre[1]) / 1.3) ** 2 + ((xx - centre[2]) / 1.6) ** 2
    mask = (r2 < 10).astype(np.uint8)
    arr = (100 + 40 * np.sin(xx / 2.0) + 25 * rng.normal(size=mask.shape)).round()
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((-31.25, 12.5, 100.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    img = sitk.Cast(img, sitk.sitkFloat32)
    msk = sitk.GetImageFromArray(mask)
    msk.CopyInformation(img)
    return img, msk


def test_roi_box_is_the_bounding_box_plus_the_margin_clipped_to_the_array():
    inside = np.zeros((6, 7, 8), dtype=bool)
    inside[2, 3:5, 0] = inside[5, 4, 6] = True
    assert roi_box(inside, 2) == (slice(0, 6), slice(1, 7), slice(0, 8))
    assert roi_box(inside, 0) == (slice(2, 6), slice(3, 5), slice(0, 7))
    with pytest.raises(ValueError, match="empty"):
        roi_box(np.zeros((2, 2, 2), dtype=bool), 1)


@pytest.mark.parametrize("edge", [False, True])
def test_cropped_maps_equal_the_full_maps_at_every_roi_voxel(tmp_path, edge):
    image, mask = case(edge)
    inside = sitk.GetArrayFromImage(mask) != 0
    maps = compute_voxel_maps(image, mask, SETTINGS)
    written = write_voxel_maps(image, mask, tmp_path, SETTINGS)
    assert set(written) == {*maps, "voxels"}
    box = roi_box(inside, RADIUS)
    table = pd.read_parquet(written["voxels"])
    assert np.array_equal(table[["z", "y", "x"]].to_numpy().T, np.nonzero(inside))
    for name, values in maps.items():
        cropped = sitk.ReadImage(str(written[name]))
        assert cropped.GetPixelID() == sitk.sitkFloat32
        assert cropped.GetSize() == tuple(s.stop - s.start for s in box[::-1])
        start = tuple(s.start for s in box[::-1])
        np.testing.assert_allclose(
            cropped.GetOrigin(), image.TransformIndexToPhysicalPoint(start), atol=1e-4
        )
        np.testing.assert_allclose(cropped.GetSpacing(), image.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(cropped.GetDirection(), image.GetDirection(), atol=1e-6)
        # the full-grid map, as the writer wrote it before: 0 outside the mask, float32 inside
        full = np.zeros(inside.shape, dtype=np.float32)
        full[inside] = np.nan_to_num(values, nan=0.0)
        on_grid = np.nan_to_num(map_on_grid(cropped, image), nan=0.0)
        assert np.array_equal(on_grid, full)
        # the physical point of every ROI voxel finds the same value in the cropped file
        z, y, x = np.nonzero(inside)
        arr = sitk.GetArrayFromImage(cropped)
        for i in range(0, len(z), 17):
            point = image.TransformIndexToPhysicalPoint((int(x[i]), int(y[i]), int(z[i])))
            cx, cy, cz = cropped.TransformPhysicalPointToIndex(point)
            assert arr[cz, cy, cx] == full[z[i], y[i], x[i]]
        np.testing.assert_array_equal(table[name].to_numpy(), values)


def test_map_files_are_what_simpleitk_writes(tmp_path):
    """The reused header: a map file decompresses to SimpleITK's own uncompressed NIfTI."""
    image, mask = case()
    written = write_voxel_maps(image, mask, tmp_path / "maps", SETTINGS)
    inside = sitk.GetArrayFromImage(mask) != 0
    box = roi_box(inside, RADIUS)
    arr = np.zeros(inside[box].shape, dtype=np.float32)
    arr[inside[box]] = compute_voxel_maps(image, mask, SETTINGS)["glcm_Contrast"]
    cropped = sitk.GetImageFromArray(arr)
    cropped.CopyInformation(box_image(mask, box))
    sitk.WriteImage(cropped, str(tmp_path / "ref.nii"), False)
    ours = gzip.decompress(written["glcm_Contrast"].read_bytes())
    assert ours == (tmp_path / "ref.nii").read_bytes()
    assert sorted(p.name for p in (tmp_path / "maps").iterdir() if p.name.startswith(".")) == []


def test_images_in_memory_and_files_give_the_same_maps(tmp_path):
    image, mask = case()
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    a = write_voxel_maps(
        tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "a", SETTINGS
    )
    b = write_voxel_maps(image, mask, tmp_path / "b", SETTINGS)
    ta, tb = pd.read_parquet(a["voxels"]), pd.read_parquet(b["voxels"])
    assert list(ta.columns) == list(tb.columns)
    for col in ta.columns:  # TotalEnergy scales with the voxel volume, float32 in a NIfTI header
        np.testing.assert_allclose(ta[col], tb[col], rtol=1e-6, atol=0)
    for name in ("firstorder_Mean", "glcm_Idmn"):
        x, y = sitk.ReadImage(str(a[name])), sitk.ReadImage(str(b[name]))
        assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
        assert x.GetOrigin() == y.GetOrigin()


@pytest.mark.parametrize("edge", [False, True])
def test_map_files_have_pyradiomics_geometry_and_values(tmp_path, edge):
    """PyRadiomics' voxel mode returns its maps on the same box: same size, origin, values."""
    from radiomics import featureextractor

    image, mask = case(edge)
    extractor = featureextractor.RadiomicsFeatureExtractor(
        kernelRadius=RADIUS, binWidth=10.0, maskedKernel=True, voxelBatch=2000, label=1
    )
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(firstorder=[], glcm=["Contrast", "Idmn", "JointEntropy"])
    result = extractor.execute(image, mask, voxelBased=True)
    written = write_voxel_maps(image, mask, tmp_path, SETTINGS)
    inside = sitk.GetArrayFromImage(mask) != 0
    inside_box = inside[roi_box(inside, RADIUS)]
    for key, ref in result.items():
        if not isinstance(ref, sitk.Image):
            continue
        ours = sitk.ReadImage(str(written[key.removeprefix("original_")]))
        assert ours.GetSize() == ref.GetSize()
        np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
        a, b = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(ref)
        assert (a[~inside_box] == 0).all()
        ok = np.isfinite(b) & inside_box
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-6, atol=1e-6)


def test_map_on_grid_refuses_a_grid_that_is_not_a_box_of_the_reference():
    image, _ = case()
    part = sitk.RegionOfInterest(image, size=(3, 4, 2), index=(2, 3, 1))
    np.testing.assert_array_equal(
        map_on_grid(part, image)[1:3, 3:7, 2:5], sitk.GetArrayFromImage(part)
    )
    moved = sitk.Image(part)
    moved.SetOrigin(tuple(o + 0.3 for o in part.GetOrigin()))
    with pytest.raises(ValueError, match="not a box"):
        map_on_grid(moved, image)
    with pytest.raises(ValueError, match="not a box"):
        map_on_grid(image, part)


def test_habitat_step_writes_cropped_maps_on_its_resampled_grid(tmp_path):
    from hccrad import steps

    image, mask = case()
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    out = tmp_path / "out"
    steps.compute_voxel_maps(
        tmp_path / "image.nii.gz",
        tmp_path / "mask.nii.gz",
        out / "maps",
        out / "image.nii.gz",
        out / "mask.nii.gz",
        spacing=2.0,
        settings=SETTINGS,
        patient="P001",
        phase="PVP",
    )
    img2 = sitk.ReadImage(str(out / "image.nii.gz"))
    msk2 = sitk.ReadImage(str(out / "mask.nii.gz"))
    inside = sitk.GetArrayFromImage(msk2) != 0
    table = pd.read_parquet(out / "maps/voxels.parquet")
    assert len(table) == inside.sum()
    expected = compute_voxel_maps(img2, msk2, SETTINGS)  # the written files, read back
    for name in ("firstorder_Mean", "glcm_Contrast"):
        np.testing.assert_allclose(table[name], expected[name], rtol=1e-12)
        full = map_on_grid(sitk.ReadImage(str(out / f"maps/{name}.nii.gz")), img2)
        assert (full[~inside] == 0).all()
        np.testing.assert_allclose(full[inside], expected[name].astype(np.float32), rtol=0)


@pytest.mark.parametrize("edge", [False, True])
def test_fast_engine_on_the_cropped_roi_equals_the_full_grid(edge):
    """voxel_maps crops to the ROI box before computing: bit-identical values, same order."""
    image, mask = case(edge)
    settings = VoxelMapSettings(kernel_radius=2, bin_width=10.0, n_jobs=1)
    full = compute_voxel_maps(image, mask, settings)
    cropped = voxel_maps(image, mask, settings)
    assert list(cropped) == list(full)
    for name, values in full.items():
        np.testing.assert_array_equal(cropped[name], values)
