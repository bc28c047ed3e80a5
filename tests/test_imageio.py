"""Tests of hccrad.imageio: format round trips, DICOM series ingestion, errors, atomic writes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hccrad.errors import InputError
from hccrad.imageio import check_geometry, read_image, read_mask, write_image, write_json

DATA = Path(__file__).parents[1].parent / "shared" / "data"
REAL_CT = DATA / "hcc048_ct_dicom"


def _volume(shape=(12, 20, 24), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 100, size=shape).astype(np.float32)


def _image(arr: np.ndarray, spacing=(0.8, 0.7, 2.5), origin=(-10.0, 20.0, -30.5)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def write_dicom_series(
    folder: Path,
    stored: np.ndarray,
    *,
    origin=(-120.5, 80.25, -300.0),
    pixel_spacing=(0.6, 0.8),  # (row spacing = y, column spacing = x), as in DICOM
    slice_spacing=2.5,
    slope=0.5,
    intercept=-1000.0,
    series_uid: str | None = None,
    z_positions: list[float] | None = None,
    seed: int = 0,
) -> str:
    """Write ``stored`` (z, y, x int16 stored values) as one CT series, files in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    nz, ny, nx = stored.shape
    if z_positions is None:
        z_positions = [origin[2] + k * slice_spacing for k in range(nz)]
    order = np.random.default_rng(seed).permutation(nz)
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        fname = folder / f"IM{int(order[k]):04d}"  # file names unrelated to position
        ds = FileDataset(str(fname), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientName = "Secret^Person"
        ds.PatientID = "SECRET-ID-123"
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImagePositionPatient = [origin[0], origin[1], z_positions[k]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_spacing
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = stored[k].astype("<i2").tobytes()
        ds.save_as(fname, enforce_file_format=True)
    return series_uid


@pytest.fixture
def stored() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(-500, 3000, size=(10, 16, 20)).astype(np.int16)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip(tmp_path, suffix):
    img = _image(_volume())
    path = tmp_path / "sub" / f"img{suffix}"
    write_image(img, path)
    back = read_image(path)
    assert back.GetPixelID() == sitk.sitkFloat32
    assert back.GetSize() == img.GetSize()
    assert check_geometry(back, img, tolerance_mm=1e-4) == []
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_round_trip_oblique_direction(tmp_path):
    img = _image(_volume())
    angle = np.deg2rad(20)
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1)
    img.SetDirection(direction)
    for suffix in (".nii.gz", ".nrrd"):
        write_image(img, tmp_path / f"o{suffix}")
        back = read_image(tmp_path / f"o{suffix}")
        assert check_geometry(back, img, tolerance_mm=1e-4) == []


def test_integer_input_becomes_float32(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "i.nrrd"))
    back = read_image(tmp_path / "i.nrrd")
    assert back.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr.astype(np.float32))


# ----------------------------------------------------------------------------- DICOM


def test_dicom_series_geometry_and_values(tmp_path, stored):
    folder = tmp_path / "dicom"
    write_dicom_series(folder, stored)
    (folder / "README.txt").write_text("not dicom")  # foreign files are ignored
    img = read_image(folder)
    assert img.GetPixelID() == sitk.sitkFloat32
    assert img.GetSize() == (20, 16, 10)
    np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.6, 2.5), atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), (-120.5, 80.25, -300.0), atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    expected = stored.astype(np.float64) * 0.5 - 1000.0
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), expected, atol=1e-4)
    assert img.GetMetaDataKeys() == ()


def test_dicom_series_sorted_by_position_not_instance_number(tmp_path, stored):
    """Slices written with descending positions come back ordered along +z of the direction."""
    folder = tmp_path / "dicom"
    z = [50.0 - 2.0 * k for k in range(stored.shape[0])]  # slice k at decreasing z
    write_dicom_series(folder, stored, z_positions=z, slope=1.0, intercept=-1024.0)
    img = read_image(folder)
    arr = sitk.GetArrayFromImage(img)
    spacing_z = img.GetSpacing()[2]
    dz = img.GetDirection()[8]
    assert spacing_z == pytest.approx(2.0, abs=1e-6)
    # whatever orientation GDCM chooses, voxel k of the volume must hold the slice at its z
    for k in range(arr.shape[0]):
        zk = img.TransformIndexToPhysicalPoint((0, 0, k))[2]
        src = round((50.0 - zk) / 2.0)
        np.testing.assert_array_equal(arr[k], stored[src].astype(np.float32) - 1024.0)
    assert abs(dz) == pytest.approx(1.0)


def test_dicom_no_tags_in_written_nifti(tmp_path, stored):
    folder = tmp_path / "dicom"
    write_dicom_series(folder, stored)
    img = read_image(folder)
    out = tmp_path / "ct.nii.gz"
    write_image(img, out)
    raw = gzip.decompress(out.read_bytes())
    assert b"Secret" not in raw and b"SECRET-ID" not in raw
    back = sitk.ReadImage(str(out))
    assert not any(k.startswith("0010|") for k in back.GetMetaDataKeys())


# ----------------------------------------------------------------------------- errors


def _assert_context(exc: InputError, path: Path, patient="P001", phase="AP") -> None:
    msg = str(exc)
    assert str(path) in msg
    assert f"patient {patient}" in msg
    assert f"phase {phase}" in msg


def test_missing_path(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError, match="no such file") as ei:
        read_image(path, patient="P001", phase="AP")
    _assert_context(ei.value, path)
    assert ei.value.file == str(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip nor nifti" * 10)
    with pytest.raises(InputError, match="cannot read image") as ei:
        read_image(path, patient="P001", phase="AP")
    _assert_context(ei.value, path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_truncated_file(tmp_path, suffix):
    """ITK reads truncated NIfTI files without complaint (zeros); read_image must not."""
    path = tmp_path / f"trunc{suffix}"
    write_image(_image(_volume()), path, compress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as ei:
        read_image(path, patient="P001", phase="AP")
    _assert_context(ei.value, path)


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM series") as ei:
        read_image(folder, patient="P001", phase="AP")
    _assert_context(ei.value, folder)


def test_folder_with_two_series(tmp_path, stored):
    folder = tmp_path / "two"
    uid1 = write_dicom_series(folder / "a", stored)
    uid2 = write_dicom_series(folder / "b", stored[:, ::-1], seed=3)
    for sub in ("a", "b"):
        for f in (folder / sub).iterdir():
            f.rename(folder / f"{sub}_{f.name}")
    with pytest.raises(InputError, match="2 DICOM series") as ei:
        read_image(folder, patient="P001", phase="AP")
    _assert_context(ei.value, folder)
    assert uid1 in str(ei.value) and uid2 in str(ei.value)


def test_inconsistent_slice_spacing(tmp_path, stored):
    folder = tmp_path / "gap"
    z = [0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 17.5, 20.0, 22.5, 25.0]  # one missing slice
    write_dicom_series(folder, stored, z_positions=z)
    with pytest.raises(InputError, match="inconsistent slice spacing") as ei:
        read_image(folder, patient="P001", phase="AP")
    _assert_context(ei.value, folder)


def test_duplicate_slice_positions(tmp_path, stored):
    folder = tmp_path / "dup"
    z = [0.0, 2.5, 5.0, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0]
    write_dicom_series(folder, stored, z_positions=z)
    with pytest.raises(InputError, match="duplicate"):
        read_image(folder)


def test_non_3d_image(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), str(path))
    with pytest.raises(InputError, match="3-D") as ei:
        read_image(path, patient="P001", phase="AP")
    _assert_context(ei.value, path)


def test_vector_image_rejected(tmp_path):
    path = tmp_path / "rgb.nrrd"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.float32), isVector=True), str(path)
    )
    with pytest.raises(InputError, match="scalar"):
        read_image(path)


# ----------------------------------------------------------------------------- masks


def test_read_mask_binarizes(tmp_path):
    ref = _image(_volume())
    arr = np.zeros((12, 20, 24), np.float32)
    arr[3:6, 4:9, 5:10] = 2.0
    arr[8, 10, 10] = -1.0
    write_image(_image(arr), tmp_path / "m.nii.gz")
    mask = read_mask(tmp_path / "m.nii.gz", ref)
    assert mask.GetPixelID() == sitk.sitkUInt8
    m = sitk.GetArrayFromImage(mask)
    assert set(np.unique(m)) == {0, 1}
    assert m.sum() == 3 * 5 * 5 + 1
    only2 = read_mask(tmp_path / "m.nii.gz", ref, label=2)
    assert sitk.GetArrayFromImage(only2).sum() == 75


def test_read_mask_geometry_mismatch(tmp_path):
    ref = _image(_volume())
    mask = _image(np.ones((12, 20, 24), np.uint8), origin=(-10.0, 20.0, -28.0))
    write_image(mask, tmp_path / "m.nrrd")
    with pytest.raises(InputError, match="origin") as ei:
        read_mask(tmp_path / "m.nrrd", ref, patient="P001", phase="AP", kind="liver")
    _assert_context(ei.value, tmp_path / "m.nrrd")
    assert "liver mask" in str(ei.value)
    assert "2.5 mm" in str(ei.value)

    mask2 = _image(np.ones((12, 20, 24), np.uint8), spacing=(0.8, 0.7, 3.0))
    write_image(mask2, tmp_path / "m2.nrrd")
    with pytest.raises(InputError, match="spacing"):
        read_mask(tmp_path / "m2.nrrd", ref)

    mask3 = _image(np.ones((12, 20, 25), np.uint8))
    write_image(mask3, tmp_path / "m3.nrrd")
    with pytest.raises(InputError, match="size"):
        read_mask(tmp_path / "m3.nrrd", ref)

    mask4 = _image(np.ones((12, 20, 24), np.uint8))
    mask4.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    write_image(mask4, tmp_path / "m4.nrrd")
    with pytest.raises(InputError, match="direction"):
        read_mask(tmp_path / "m4.nrrd", ref)


def test_read_mask_on_a_part_of_the_grid_is_placed(tmp_path):
    """A mask cropped to the lesion (or a segmentation of a few slices) on the image's own
    lattice is placed onto the full grid; off the lattice or reaching outside it is refused."""
    ref = _image(_volume())  # size (x, y, z) = (24, 20, 12), spacing (0.8, 0.7, 2.5)
    crop = np.zeros((4, 6, 5), np.uint8)  # z, y, x
    crop[1:3, 2:5, 1:4] = 1
    # its first voxel is the image's voxel (x 7, y 3, z 5)
    origin = (-10.0 + 7 * 0.8, 20.0 + 3 * 0.7, -30.5 + 5 * 2.5)
    write_image(_image(crop, origin=origin), tmp_path / "crop.nii.gz")
    placed = sitk.GetArrayFromImage(read_mask(tmp_path / "crop.nii.gz", ref, kind="tumor"))
    assert placed.shape == (12, 20, 24)
    expected = np.zeros((12, 20, 24), np.uint8)
    expected[5 + 1 : 5 + 3, 3 + 2 : 3 + 5, 7 + 1 : 7 + 4] = 1
    np.testing.assert_array_equal(placed, expected)

    # half a voxel off the lattice along x: refused, naming the mask and the differences
    off = (origin[0] + 0.4, origin[1], origin[2])
    write_image(_image(crop, origin=off), tmp_path / "off.nii.gz")
    with pytest.raises(InputError, match="nor on a part of it") as ei:
        read_mask(tmp_path / "off.nii.gz", ref, patient="P001", phase="PVP", kind="tumor")
    _assert_context(ei.value, tmp_path / "off.nii.gz", phase="PVP")
    assert "np.float64" not in str(ei.value)  # plain numbers in the message
    # foreground beyond the image's last slice: refused
    beyond = (origin[0], origin[1], -30.5 + 10 * 2.5)
    write_image(_image(crop, origin=beyond), tmp_path / "beyond.nii.gz")
    with pytest.raises(InputError, match="nor on a part of it"):
        read_mask(tmp_path / "beyond.nii.gz", ref)
    # the same box at another spacing: refused (not placed, never resampled)
    write_image(_image(crop, spacing=(0.8, 0.7, 5.0), origin=origin), tmp_path / "sp.nii.gz")
    with pytest.raises(InputError, match="spacing"):
        read_mask(tmp_path / "sp.nii.gz", ref)


def test_check_geometry_tolerance():
    ref = _image(_volume())
    moved = _image(_volume(), origin=(-10.0, 20.0, -30.5 + 5e-4))
    assert check_geometry(moved, ref) == []
    assert check_geometry(moved, ref, tolerance_mm=1e-4) != []


def test_read_mask_empty(tmp_path):
    ref = _image(_volume())
    write_image(_image(np.zeros((12, 20, 24), np.uint8)), tmp_path / "e.nii.gz")
    with pytest.raises(InputError, match="empty") as ei:
        read_mask(tmp_path / "e.nii.gz", ref, patient="P001", phase="AP")
    _assert_context(ei.value, tmp_path / "e.nii.gz")
    m = read_mask(tmp_path / "e.nii.gz", ref, allow_empty=True)
    assert sitk.GetArrayFromImage(m).sum() == 0


# ----------------------------------------------------------------------------- atomic writes


def test_write_image_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "out" / "img.nii.gz"
    write_image(_image(_volume()), out)
    before = out.read_bytes()

    def failing_write(image, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_image(_image(_volume(seed=5)), out)
    with pytest.raises(RuntimeError, match="disk full"):
        write_image(_image(_volume(seed=5)), tmp_path / "out" / "new.nii.gz")
    assert sorted(p.name for p in out.parent.iterdir()) == ["img.nii.gz"]
    assert out.read_bytes() == before


def test_write_image_rejects_two_file_formats(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        write_image(_image(_volume()), tmp_path / "x.mhd")


def test_write_json(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json(
        {
            "b": np.float32(1.5),
            "a": np.int64(3),
            "arr": np.arange(3),
            "nan": float("nan"),
            "p": tmp_path,
        },
        path,
    )
    text = path.read_text()
    assert json.loads(text) == {"a": 3, "arr": [0, 1, 2], "b": 1.5, "nan": None, "p": str(tmp_path)}
    assert text.index('"a"') < text.index('"b"')
    assert '\n  "a": 3' in text
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_ct():
    if not REAL_CT.is_dir():
        pytest.skip(f"real test data not found at {REAL_CT} (only on the development machines)")
    return read_image(REAL_CT, patient="HCC_048", phase="PV")


def _real_headers() -> list[pydicom.Dataset]:
    files = [f for f in REAL_CT.iterdir() if f.suffix == ".dcm"]
    headers = [pydicom.dcmread(f) for f in files]
    return sorted(headers, key=lambda d: float(d.ImagePositionPatient[2]))


def test_real_dicom_geometry(real_ct):
    headers = _real_headers()
    first = headers[0]
    size = (int(first.Columns), int(first.Rows), len(headers))
    assert real_ct.GetSize() == size == (512, 512, 89)
    z = np.array([float(d.ImagePositionPatient[2]) for d in headers])
    dz = np.diff(z)
    assert np.allclose(dz, dz[0])
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    np.testing.assert_allclose(real_ct.GetSpacing(), (col_spacing, row_spacing, dz[0]), atol=1e-4)
    np.testing.assert_allclose(real_ct.GetSpacing(), (0.703, 0.703, 2.5), atol=1e-3)
    np.testing.assert_allclose(
        real_ct.GetOrigin(), [float(v) for v in first.ImagePositionPatient], atol=1e-3
    )
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    direction = np.asarray(real_ct.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], iop[:3], atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], iop[3:], atol=1e-6)


def test_real_dicom_hounsfield(real_ct):
    headers = _real_headers()
    arr = sitk.GetArrayViewFromImage(real_ct)
    rng = np.random.default_rng(0)
    for k in (0, 44, 88):
        ds = headers[k]
        px = ds.pixel_array
        for r, c in rng.integers(0, 512, size=(5, 2)):
            hu = float(px[r, c]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert arr[k, r, c] == pytest.approx(hu)
    # air around the patient ~ -1000 HU, soft tissue in the abdomen 0-200 HU
    mid = arr[44]
    counts, edges = np.histogram(mid, bins=np.arange(-1200, -795, 10))
    air_peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    assert counts.sum() > 10000 and abs(air_peak + 1000) <= 25
    liver_patch = mid[210:250, 100:140]
    assert 0 < float(np.median(liver_patch)) < 200


def test_real_dicom_no_tags_in_nifti(real_ct, tmp_path):
    assert real_ct.GetMetaDataKeys() == ()
    first = _real_headers()[0]
    out = tmp_path / "hcc048.nii.gz"
    write_image(real_ct, out)
    raw = gzip.decompress(out.read_bytes())
    header = raw[:352]
    for value in (
        str(first.PatientName),
        str(first.PatientID),
        str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID),
    ):
        assert value.encode() not in raw, value
    assert header[148:228] == b"\0" * 80  # NIfTI descrip field empty
    back = sitk.ReadImage(str(out))
    assert not any(k.startswith(("0008|", "0010|", "0020|")) for k in back.GetMetaDataKeys())
    assert check_geometry(back, real_ct, tolerance_mm=1e-3) == []


def test_mask_path_that_is_a_folder(tmp_path):
    ref = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    with pytest.raises(InputError, match="tumor mask is a folder") as info:
        read_mask(tmp_path, ref, patient="P1", phase="AP")
    assert f"patient P1, phase AP, file {tmp_path}" in str(info.value)
