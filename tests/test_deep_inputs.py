"""Input builders of the deep models: largest slices, offsets, crops, multi-phase stacks, cubes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from hccrad.deep.inputs import (
    MIL_OFFSETS,
    DeepInput,
    build_cube,
    build_multiphase,
    build_slices,
    largest_consecutive,
    largest_slice,
    slice_indices,
    square_box,
)


def volume(shape=(30, 40, 40), spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    """Image whose value is 1000 * z + 1 (so every axial plane is constant and identifiable)."""
    z = np.arange(shape[0], dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(1000 * z + 1, shape).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


def ellipsoid(shape, centre, radii) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r = sum(((g - c) / a) ** 2 for g, c, a in zip((zz, yy, xx), centre, radii, strict=True))
    return (r <= 1).astype(np.uint8)


def as_mask(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    m = sitk.GetImageFromArray(arr.astype(np.uint8))
    m.CopyInformation(ref)
    return m


def test_largest_slice_and_window_on_constructed_profiles():
    m = np.zeros((10, 5, 5), np.uint8)
    for z, area in enumerate([0, 1, 4, 9, 9, 2, 16, 0, 3, 3]):
        m[z].flat[:area] = 1
    assert largest_slice(m) == 6
    # windows of 3: sums 5, 14, 22, 20, 27, 18, 19, 6 -> start 4
    assert largest_consecutive(m, 3) == [4, 5, 6]
    assert largest_consecutive(m, 1) == [6]
    assert largest_consecutive(m, 20) == list(range(10))
    with pytest.raises(ValueError, match="empty"):
        largest_slice(np.zeros((3, 3, 3)))


def test_slice_indices_mark_outside_offsets():
    np.testing.assert_array_equal(
        slice_indices(3, MIL_OFFSETS, 12), [3, 2, 4, 1, 5, -1, 7, -1, 10, -1, -1]
    )


def test_square_box_is_square_and_contains_the_margin():
    start, stop = square_box([10, 20], [14, 30], [2, 2])
    assert (stop - start).tolist() == [14, 14]
    assert start[0] <= 8 and stop[0] >= 16 and start[1] <= 18 and stop[1] >= 32


def test_build_slices_on_a_generated_tumor():
    """The synthetic tumor's largest cross-section and its neighbours are the slices taken."""
    from hccrad.synth import generate_patient

    p = generate_patient("MR", 1, seed=7, keep_phantom=False)
    mask = p.masks["AP"]["tumor"]
    m = sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS"))
    truth = max(range(m.shape[0]), key=lambda z: (int(m[z].sum()), -z))
    image = volume(m.shape, spacing=mask.GetSpacing())
    image.SetOrigin(mask.GetOrigin())
    image.SetDirection(mask.GetDirection())
    out = build_slices(image, mask, neighbours=2, size=32, scale=1000.0)
    assert out.x.shape == (5, 1, 32, 32) and out.kind == "slices"
    assert out.meta["largest_slice"] == truth
    np.testing.assert_array_equal(out.z, [truth - 2, truth - 1, truth, truth + 1, truth + 2])
    for plane, z in zip(out.x[:, 0], out.z, strict=True):
        np.testing.assert_allclose(plane, (1000 * z + 1) / 1000.0, rtol=1e-6)


def test_build_slices_mil_offsets_pad_outside_the_volume():
    ref = volume((12, 40, 40))
    m = ellipsoid((12, 40, 40), (2, 20, 20), (3, 8, 6))  # largest section at z = 2
    out = build_slices(ref, as_mask(m, ref), offsets=MIL_OFFSETS, size=24, pad_value=-5.0)
    assert out.x.shape == (11, 1, 24, 24)
    np.testing.assert_array_equal(out.offsets, MIL_OFFSETS)
    np.testing.assert_array_equal(out.z, slice_indices(2, MIL_OFFSETS, 12))
    for plane, z in zip(out.x[:, 0], out.z, strict=True):
        want = -5.0 if z < 0 else 1000.0 * z + 1
        np.testing.assert_allclose(plane, want, rtol=1e-6)


def test_crop_is_centred_on_the_region_with_margin_and_mask_to_region():
    ref = volume((9, 60, 60), spacing=(0.5, 0.5, 1.0))
    m = ellipsoid((9, 60, 60), (4, 20, 30), (2, 6, 10))  # y extent 13, x extent 21 voxels
    out = build_slices(
        ref, as_mask(m, ref), neighbours=0, size=64, margin_mm=2.0, mask_to_region=True
    )
    (start, stop) = out.meta["box_yx"]
    side = stop[0] - start[0]
    assert side == stop[1] - start[1] == 21 + 2 * 4  # margin 2 mm = 4 voxels at 0.5 mm
    assert start[1] + side / 2 == pytest.approx(30.5)  # x centre of the region
    plane = out.x[0, 0]
    assert 0.2 < (plane > 0).mean() < 0.8  # region blanked around by mask_to_region
    assert plane[32, 32] == pytest.approx(4001.0) and plane.max() == pytest.approx(4001.0)
    assert plane[0, 0] == plane[-1, -1] == 0.0


def test_build_multiphase_takes_the_consecutive_largest_slices_of_every_phase():
    ref = volume((20, 30, 30))
    m = ellipsoid((20, 30, 30), (11, 15, 15), (4, 8, 8))
    second = sitk.Cast(ref * 2, sitk.sitkFloat32)
    out = build_multiphase({"AP": ref, "PVP": second}, as_mask(m, ref), k=3, size=16)
    assert out.x.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(out.z, [10, 11, 12])
    np.testing.assert_allclose(out.x[0, :, 5, 5], [10001, 11001, 12001])
    np.testing.assert_allclose(out.x[1, :, 5, 5], [20002, 22002, 24002])
    assert out.meta["phases"] == ["AP", "PVP"]


def test_build_cube_and_round_trip(tmp_path):
    ref = volume((30, 40, 40))
    m = ellipsoid((30, 40, 40), (15, 20, 20), (5, 5, 5))
    out = build_cube(ref, as_mask(m, ref), size=16, margin_mm=3.0)
    assert out.x.shape == (1, 16, 16, 16) and out.kind == "volume"
    (start, stop) = out.meta["box_zyx"]
    assert [b - a for a, b in zip(start, stop, strict=True)] == [17, 17, 17]
    # z is preserved along the first axis (monotone planes from 1000*start to 1000*(stop-1))
    planes = out.x[0, :, 8, 8]
    assert np.all(np.diff(planes) > 0)
    assert planes[0] >= 1000 * start[0] and planes[-1] <= 1000 * (stop[0] - 1) + 1
    out.save(tmp_path / "x.npz")
    # written atomically under its own name: no second .npz appended, no temporary file left
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    back = DeepInput.load(tmp_path / "x.npz")
    np.testing.assert_array_equal(back.x, out.x)
    assert back.kind == "volume" and back.meta == out.meta


def test_mismatched_or_empty_masks_are_errors():
    ref = volume((5, 10, 10))
    with pytest.raises(ValueError, match="empty"):
        build_slices(ref, as_mask(np.zeros((5, 10, 10)), ref))
    other = volume((5, 10, 12))
    with pytest.raises(ValueError, match="differ"):
        build_slices(ref, as_mask(np.ones((5, 10, 12)), other))


def test_subregion_inputs_follow_each_habitat_on_the_image_grid(tmp_path):
    """Per-subregion tensors: the label map (2 mm habitat grid) carried onto the 1 mm image; each
    subregion's slices centre on its own largest cross-section; an absent habitat is reported."""

    from hccrad import steps
    from hccrad.config import DeepInputSpec
    from hccrad.deep.inputs import DeepInput
    from hccrad.manifest import OutputSet, read_manifest

    img = volume((30, 40, 40))
    arr = np.zeros((30, 40, 40), np.float32)
    arr[5:25, 10:30, 10:30] = 50.0
    image = sitk.GetImageFromArray(arr)
    image.CopyInformation(img)
    image_path = tmp_path / "image.nii.gz"
    sitk.WriteImage(image, str(image_path))
    # habitat grid: 2 mm; habitat 1 widest at habitat slice 5 (image z 10-11), habitat 2 widest
    # at habitat slice 9 (image z 18-19); no habitat 3
    lab = np.zeros((15, 20, 20), np.uint8)
    lab[3:7, 5:15, 5:10] = 1
    lab[5, 4:16, 4:10] = 1
    lab[7:11, 5:15, 10:15] = 2
    lab[9, 3:17, 10:17] = 2
    labels = sitk.GetImageFromArray(lab)
    labels.SetSpacing((2.0, 2.0, 2.0))
    labels.SetOrigin((0.5, 0.5, 0.5))  # centres of 2x2x2 blocks of 1 mm voxels
    spec = DeepInputSpec(name="hab", builder="slices", modalities=("MR",), phases=("PVP",),
                         region="habitats", size=16, mask_to_region=True)  # fmt: skip
    assert spec.per_subregion
    cube = DeepInputSpec(name="cube", builder="cube", modalities=("MR",), phases=("PVP",),
                         region="habitats", size=8, margin_mm=0.0)  # fmt: skip
    manifest = tmp_path / "deep_inputs.json"
    with OutputSet(manifest, patient="P1", stage="habitat_deep_inputs") as out:
        missing = steps.build_subregion_inputs(
            labels, 3, {"PVP": image_path}, out, specs=[spec, cube], scale=10.0,
            center="A", patient="P1", root=str(tmp_path / "results"),
        )  # fmt: skip
    assert missing == {"hab/PVP": [3], "cube/PVP": [3]}
    files = read_manifest(manifest)
    assert sorted(files) == [
        "deep/cube/PVP/h1", "deep/cube/PVP/h2", "deep/hab/PVP/h1", "deep/hab/PVP/h2"
    ]  # fmt: skip
    # 3-D: the cube spans subregion 2's own box (image z 14-21, y 6-33, x 20-33), made cubic
    c2 = DeepInput.load(files["deep/cube/PVP/h2"])
    assert c2.x.shape == (1, 8, 8, 8)
    (z0, y0, x0), (z1, y1, x1) = c2.meta["box_zyx"]
    assert (z1 - z0) == (y1 - y0) == (x1 - x0) == 28 and y0 == 6 and (z0 + z1) / 2 == 18
    assert files["deep/hab/PVP/h1"] == tmp_path / "results/A/P1/PVP/deep/hab_h1.npz"
    h1 = DeepInput.load(files["deep/hab/PVP/h1"])
    h2 = DeepInput.load(files["deep/hab/PVP/h2"])
    assert h1.meta["largest_slice"] == 10 and h1.meta["subregion"] == 1
    assert list(h1.z) == [8, 9, 10, 11, 12]
    assert h2.meta["largest_slice"] == 18 and list(h2.z) == [16, 17, 18, 19, 20]
    # masked to the habitat: the centre slice holds the image value 50 / scale inside it only
    centre = h2.x[2, 0]
    assert centre.max() == pytest.approx(5.0) and (centre == 0).any()


def test_intensity_window_clips_and_scales_before_padding(tmp_path):
    from hccrad import steps
    from hccrad.config import DeepInputSpec
    from hccrad.deep.inputs import apply_window

    np.testing.assert_allclose(
        apply_window(np.array([-9.0, -2.0, 0.0, 1.0, 2.0, 9.0]), (-2, 2)),
        [0.0, 0.0, 0.5, 0.75, 1.0, 1.0],
    )
    for bad in ((1.0, 1.0), (2.0, -2.0), (0.0,), (0.0, float("nan"))):
        with pytest.raises(ValueError, match="lo < hi"):
            apply_window(np.zeros(3), bad)
    # planes 1000 z + 1 (z 0..29), scale 1000 -> z + 0.001; window [10, 20] -> (z - 10) / 10
    ref = volume((30, 40, 40))
    m = ellipsoid((30, 40, 40), (15, 20, 20), (6, 5, 5))  # cube z 6..24, inside the volume
    out = build_cube(ref, as_mask(m, ref), size=32, margin_mm=3.0, scale=1000.0, window=(10, 20))
    planes = out.x[0, :, 16, 16]
    assert planes.min() == 0.0 and planes.max() == 1.0 and np.all(np.diff(planes) >= 0)
    assert ((planes > 0) & (planes < 1)).any()
    # offset 20 lies outside the volume: its padding keeps pad_value (not windowed)
    sl = build_slices(ref, as_mask(m, ref), offsets=[0, 20], size=8, scale=1000.0,
                      window=(10, 20), pad_value=-1.0)  # fmt: skip
    assert sl.z[1] == -1 and np.all(sl.x[1] == -1.0) and np.all(sl.x[0] == pytest.approx(0.5001))
    # the config key reaches the builder through the step (DeepInputSpec.window)
    spec = DeepInputSpec.from_param(
        {"name": "c", "builder": "cube", "modalities": ["MR"], "phases": ["AP"],
         "region": "tumor", "size": 8, "window": [10, 20]}
    )  # fmt: skip
    assert spec.window == (10.0, 20.0) and spec.as_param()["window"] == (10.0, 20.0)
    image, mask = tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz"
    sitk.WriteImage(ref, str(image))
    sitk.WriteImage(as_mask(m, ref), str(mask))
    steps.build_deep_input({"AP": image}, mask, tmp_path / "c.npz", spec=spec, scale=1000.0,
                           patient="P1")  # fmt: skip
    got = DeepInput.load(tmp_path / "c.npz")
    assert got.meta["window"] == [10.0, 20.0] and got.x.min() == 0.0 and got.x.max() == 1.0
