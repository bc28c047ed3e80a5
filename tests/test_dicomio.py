"""Tests of hccrad.dicomio (through read_image): DICOM folders as real exports bring them.

Every case is built from the real CT series ``../shared/data/hcc048_ct_dicom`` (a run of
consecutive slices copied into ``tmp_path``, headers edited with pydicom) and compared with the
plain read of the same slices, whose voxels and geometry are checked once against pydicom's own
decoding of the files.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SegmentationStorage,
    generate_uid,
)

from conftest import shared_data
from hccrad import dicomio
from hccrad.errors import InputError
from hccrad.imageio import read_image

N_SLICES = 8  # consecutive slices of the real series used by most cases
FIRST = 40  # index (along z) of the first of them
REAL_DESCRIPTION = "Recon 3: LIVER 2 PHASE (C/A/P)"


@pytest.fixture(scope="module")
def real_files() -> list[Path]:
    """The real series' files sorted along z."""
    folder = shared_data("hcc048_ct_dicom")
    files = [f for f in folder.iterdir() if f.suffix == ".dcm"]
    z = {
        f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files
    }
    return sorted(files, key=z.__getitem__)


@pytest.fixture(scope="module")
def subset(real_files) -> list[pydicom.Dataset]:
    """N_SLICES consecutive real slices, fully read (pixel data included)."""
    return [pydicom.dcmread(f) for f in real_files[FIRST : FIRST + N_SLICES]]


def _write(
    datasets: list[pydicom.Dataset],
    folder: Path,
    edit: Callable[[pydicom.Dataset, int], None] | None = None,
    *,
    series_uid: str | None = None,
    prefix: str = "IM",
) -> list[Path]:
    """Write copies of ``datasets`` into ``folder`` (new SOP instance UIDs), edited by ``edit``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, src in enumerate(datasets):
        ds = pydicom.dcmread(io.BytesIO(_bytes(src)))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if series_uid is not None:
            ds.SeriesInstanceUID = series_uid
        if edit is not None:
            edit(ds, k)
        path = folder / f"{prefix}{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def plain(subset, tmp_path_factory) -> sitk.Image:
    """The plain read of the subset (one series, uncompressed, nothing else in the folder)."""
    folder = tmp_path_factory.mktemp("plain")
    _write(subset, folder)
    return read_image(folder)


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _assert_same(image: sitk.Image, reference: sitk.Image, atol: float = 0.0) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-9)
    a, b = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference)
    if atol == 0:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def _context(exc: InputError, folder: Path) -> None:
    assert exc.patient == "P007" and exc.phase == "AP" and exc.file == str(folder)
    assert str(exc).startswith(f"patient P007, phase AP, file {folder}: ")


# ----------------------------------------------------------------------------- plain series


def test_plain_read_equals_pydicom(plain, subset):
    arr = sitk.GetArrayFromImage(plain)
    assert arr.dtype == np.float32 and arr.shape == (N_SLICES, 512, 512)
    for k, ds in enumerate(subset):
        np.testing.assert_array_equal(arr[k], _hu(ds).astype(np.float32))
    first = subset[0]
    np.testing.assert_allclose(plain.GetOrigin(), [float(v) for v in first.ImagePositionPatient])
    dz = float(subset[1].ImagePositionPatient[2]) - float(first.ImagePositionPatient[2])
    assert dz == pytest.approx(2.5)
    np.testing.assert_allclose(plain.GetSpacing(), (0.703125, 0.703125, dz))
    assert plain.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert plain.GetMetaDataKeys() == ()


def test_rescale_differing_per_slice(subset, plain, tmp_path, monkeypatch):
    """Odd slices stored as 2 * HU + 2001 with slope 0.5 and intercept -1000.5: same HU."""

    def restore(ds, k):
        if k % 2:
            hu = _hu(ds)
            ds.PixelData = np.round(2 * hu + 2001).astype("<i2").tobytes()
            ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1000.5

    _write(subset, tmp_path, restore)
    _assert_same(read_image(tmp_path), plain)
    monkeypatch.setattr(dicomio, "_read_gdcm", _gdcm_fails)
    _assert_same(read_image(tmp_path), plain)


# ----------------------------------------------------------------------------- several series


def _other_series(description: str, shift: float) -> Callable[[pydicom.Dataset, int], None]:
    def edit(ds, k):
        ds.SeriesDescription = description
        ds.RescaleIntercept = float(ds.RescaleIntercept) + shift  # tells the series apart
        ds.AcquisitionDate, ds.AcquisitionTime = "20010812", f"10{k:02d}00"

    return edit


def test_several_series_error_lists_them(subset, tmp_path):
    _write(subset, tmp_path, prefix="A")
    uid_b = generate_uid()
    _write(subset[:6], tmp_path, _other_series("Arterial", 100.0), series_uid=uid_b, prefix="B")
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP")
    _context(ei.value, tmp_path)
    msg = str(ei.value)
    assert "folder holds 2 DICOM series of images" in msg
    assert "sheet's 'series' column" in msg
    assert (
        f"{subset[0].SeriesInstanceUID} ({REAL_DESCRIPTION}; {N_SLICES} slice(s); CT; axial)" in msg
    )
    assert f"{uid_b} (Arterial; 6 slice(s); CT; axial)" in msg


def test_select_series_by_uid_or_description(subset, plain, tmp_path):
    _write(subset, tmp_path, prefix="A")
    uid_b, uid_c = generate_uid(), generate_uid()
    _write(subset, tmp_path, _other_series("Arterial", 100.0), series_uid=uid_b, prefix="B")
    _write(subset, tmp_path, _other_series("Delayed", -50.0), series_uid=uid_c, prefix="C")
    plain_arr = sitk.GetArrayFromImage(plain)
    b = read_image(tmp_path, series=uid_b)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), plain_arr + 100)
    c = read_image(tmp_path, series="  dElAyEd ")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(c), plain_arr - 50)
    _assert_same(read_image(tmp_path, series=REAL_DESCRIPTION.upper()), plain)
    _assert_same(read_image(tmp_path, series=str(subset[0].SeriesInstanceUID)), plain)
    with pytest.raises(InputError, match="no DICOM image series with SeriesInstanceUID or "):
        read_image(tmp_path, series="portal venous")


def test_description_must_match_one_series(subset, tmp_path):
    uid_b, uid_c = generate_uid(), generate_uid()
    _write(subset[:4], tmp_path, _other_series("Arterial", 0.0), series_uid=uid_b, prefix="B")
    _write(subset[4:], tmp_path, _other_series("arterial ", 0.0), series_uid=uid_c, prefix="C")
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP", series="Arterial")
    _context(ei.value, tmp_path)
    assert "2 DICOM image series have the SeriesDescription 'Arterial'" in str(ei.value)
    assert uid_b in str(ei.value) and uid_c in str(ei.value)
    assert read_image(tmp_path, series=uid_c).GetSize() == (512, 512, 4)


def test_list_series(subset, tmp_path):
    _write(subset, tmp_path, prefix="A")
    uid_b = generate_uid()
    _write(subset[:5], tmp_path, _other_series("Arterial", 0.0), series_uid=uid_b, prefix="B")
    found = dicomio.list_series(tmp_path)
    assert [(s.uid, s.description, s.modality, s.n_slices, s.plane) for s in found] == [
        (str(subset[0].SeriesInstanceUID), REAL_DESCRIPTION, "CT", N_SLICES, "axial"),
        (uid_b, "Arterial", "CT", 5, "axial"),
    ]
    assert found[0].orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert found[0].acquisition_time == ""  # the real headers carry no acquisition time
    assert found[1].acquisition_time == "20010812 100000"  # first file written
    assert found[0].transfer_syntaxes == ("Explicit VR Little Endian",)
    assert not found[0].multiframe and len(found[1].files) == 5


# ----------------------------------------------------------------------------- decoys


def _sagittal(ds, k):
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.ImagePositionPatient = [float(k) * 5.0, -180.0, -200.0]


def test_decoys_are_skipped(subset, plain, tmp_path, caplog):
    _write(subset, tmp_path)
    main_uid = str(subset[0].SeriesInstanceUID)

    def localizer(ds, k):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        _sagittal(ds, k)

    # localizers: in their own series and inside the main series
    _write(subset[:2], tmp_path, localizer, series_uid=generate_uid(), prefix="LOC")
    _write(subset[:1], tmp_path, localizer, prefix="LOCMAIN")
    # one stray slice of another orientation inside the main series (no LOCALIZER flag)
    _write(subset[:1], tmp_path, _sagittal, prefix="STRAY")

    # a coronal reformat of 6 slices and two single axial slices in series of their own
    def coronal(ds, k):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-180.0, -100.0 + 2.5 * k, -200.0]
        ds.SeriesDescription = "COR reformat"

    _write(subset[:6], tmp_path, coronal, series_uid=generate_uid(), prefix="COR")
    _write(subset[:1], tmp_path, series_uid=generate_uid(), prefix="KEY1")
    _write(subset[3:4], tmp_path, series_uid=generate_uid(), prefix="KEY2")

    # non-image objects: a SEG-like object, pydicom's RTSTRUCT and SR, and a text file
    def seg(ds, k):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SegmentationStorage
        ds.Modality = "SEG"

    _write(subset[:1], tmp_path, seg, series_uid=generate_uid(), prefix="SEG")
    shutil.copy(get_testdata_file("rtstruct.dcm"), tmp_path / "rtstruct.dcm")
    shutil.copy(get_testdata_file("test-SR.dcm"), tmp_path / "sr.dcm")
    (tmp_path / "README.txt").write_text("export notes")

    with caplog.at_level(logging.INFO, logger="hccrad.dicomio"):
        image = read_image(tmp_path, patient="P007", phase="AP")
    _assert_same(image, plain)
    log = caplog.text
    assert "LOC000.dcm: localizer (ImageType ORIGINAL/PRIMARY/LOCALIZER)" in log
    assert "LOCMAIN000.dcm: localizer" in log
    main = str(subset[0].get("SeriesDescription", ""))
    assert f"1 slice(s) of series '{main}' in another orientation than its other 8" in log
    assert main_uid not in log  # no identifier in a successful job's log (privacy audit)
    assert "SEG000.dcm: non-image object (Segmentation Storage, SEG)" in log
    assert "rtstruct.dcm: non-image object (RT Structure Set Storage, RTSTRUCT)" in log
    assert "sr.dcm: non-image object" in log
    assert "skipped series of another orientation" in log and "COR reformat" in log
    assert log.count("skipped small series") == 2
    # the folder's image series, decoys included, for a sheet builder to show
    listed = dicomio.list_series(tmp_path)
    assert [(s.n_slices, s.plane) for s in listed] == [
        (8, "axial"),
        (6, "coronal"),
        (1, "axial"),
        (1, "axial"),
    ]
    # an explicit selection may still pick a series that would be a decoy
    assert read_image(tmp_path, series="cor reformat").GetSize() == (512, 512, 6)


def test_only_non_image_objects(subset, tmp_path):
    shutil.copy(get_testdata_file("rtstruct.dcm"), tmp_path / "rtstruct.dcm")
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP")
    _context(ei.value, tmp_path)
    assert "folder holds no DICOM series of images (skipped: rtstruct.dcm: non-image" in str(
        ei.value
    )


def test_mixed_orientations_in_one_series(subset, tmp_path):
    def half_coronal(ds, k):
        if k >= 4:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
            ds.ImagePositionPatient = [-180.0, -100.0 + 2.5 * k, -200.0]

    _write(subset, tmp_path, half_coronal)
    with pytest.raises(
        InputError, match=r"its slices have 2 different orientations \(4, 4 slices\)"
    ):
        read_image(tmp_path)


# ----------------------------------------------------------------------------- geometry


def test_missing_slice(subset, tmp_path):
    _write(subset[:3] + subset[4:], tmp_path)
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP")
    _context(ei.value, tmp_path)
    z2, z4 = float(subset[2].ImagePositionPatient[2]), float(subset[4].ImagePositionPatient[2])
    assert (
        f"missing slices, gap(s) between {z2:.4g} and {z4:.4g} mm (5 mm, about 1 slice(s) "
        "missing) along the slice normal (typical spacing 2.5 mm)"
    ) in str(ei.value)


def test_uneven_spacing_still_refused(subset, tmp_path):
    def jitter(ds, k):
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + (0.4 if k == 3 else 0)

    _write(subset, tmp_path, jitter)
    with pytest.raises(InputError, match=r"inconsistent slice spacing: gaps between 2\.1 and 2\.9"):
        read_image(tmp_path)


@pytest.mark.parametrize("degrees", [15.0, -7.5])
def test_gantry_tilt(subset, tmp_path, degrees):
    """As a tilted CT writes it: the column direction tilted, the table moving along z."""
    t = math.radians(degrees)

    def tilt(ds, k):
        ds.ImageOrientationPatient = [1, 0, 0, 0, math.cos(t), math.sin(t)]
        ds.GantryDetectorTilt = degrees

    _write(subset, tmp_path, tilt)
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP")
    _context(ei.value, tmp_path)
    assert f"gantry tilt: the slices are tilted by {abs(degrees):.2f} degrees" in str(ei.value)


def test_oblique_untilted_series_reads(subset, tmp_path):
    """An oblique series whose positions follow its own normal is no tilt."""
    t = math.radians(20)
    row, col = np.array([1.0, 0, 0]), np.array([0, math.cos(t), math.sin(t)])
    normal = np.cross(row, col)

    def oblique(ds, k):
        ds.ImageOrientationPatient = [*row, *col]
        ds.ImagePositionPatient = list(np.array([-180.0, -180.0, -200.0]) + 2.5 * k * normal)

    _write(subset, tmp_path, oblique)
    image = read_image(tmp_path)
    np.testing.assert_allclose(
        np.asarray(image.GetDirection()).reshape(3, 3),
        np.column_stack([row, col, normal]),
        atol=1e-6,
    )
    assert image.GetSpacing()[2] == pytest.approx(2.5)


# ----------------------------------------------------------------------------- transfer syntaxes


def _gdcm_fails(files):
    raise RuntimeError("GDCM cannot decode (simulated)")


def _compress(ts: UID, **kwargs) -> Callable[[pydicom.Dataset, int], None]:
    def edit(ds, k):
        ds.compress(ts, **kwargs)

    return edit


def _jpeg_lossless_by_gdcm(ds, k):
    """JPEG lossless (process 14, SV1) encoded by GDCM (SimpleITK's writer), moved into ``ds``."""
    img = sitk.GetImageFromArray(ds.pixel_array[None].astype(np.int16))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jpeg.dcm"
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(path))
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.Execute(img)
        encoded = pydicom.dcmread(path)
    assert encoded.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    ds.PixelData = encoded.PixelData
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1


def _deflate(ds, k):
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian


LOSSLESS = {
    "RLE": _compress(RLELossless),
    "JPEG-LS": _compress(JPEGLSLossless),
    "JPEG2000": _compress(JPEG2000Lossless),
    "JPEG-lossless-SV1": _jpeg_lossless_by_gdcm,
    "deflated": _deflate,
}


@pytest.mark.parametrize("decoder", ["gdcm", "pydicom"])
@pytest.mark.parametrize("syntax", sorted(LOSSLESS))
def test_lossless_syntaxes_bit_exact(subset, plain, tmp_path, monkeypatch, caplog, syntax, decoder):
    n = 3
    _write(subset[:n], tmp_path, LOSSLESS[syntax])
    written = pydicom.dcmread(next(tmp_path.iterdir()), stop_before_pixels=True)
    assert written.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian
    if decoder == "pydicom":
        monkeypatch.setattr(dicomio, "_read_gdcm", _gdcm_fails)
    with caplog.at_level(logging.INFO, logger="hccrad.dicomio"):
        image = read_image(tmp_path)
    assert ("GDCM cannot decode the series" in caplog.text) == (decoder == "pydicom")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(plain)[:n])
    np.testing.assert_allclose(image.GetOrigin(), plain.GetOrigin())
    np.testing.assert_allclose(image.GetSpacing(), plain.GetSpacing())


@pytest.mark.parametrize("decoder", ["gdcm", "pydicom"])
def test_near_lossless_jpeg_ls(subset, plain, tmp_path, monkeypatch, decoder):
    _write(subset[:3], tmp_path, _compress(JPEGLSNearLossless, jls_error=2))
    if decoder == "pydicom":
        monkeypatch.setattr(dicomio, "_read_gdcm", _gdcm_fails)
    diff = sitk.GetArrayFromImage(read_image(tmp_path)) - sitk.GetArrayFromImage(plain)[:3]
    assert 0 < np.abs(diff).max() <= 2  # lossy, within the requested error


def test_jpeg_baseline_8bit(subset, tmp_path, monkeypatch):
    """8-bit JPEG baseline (lossy) as Pillow encodes it: both decoders agree with Pillow to 1."""
    from PIL import Image

    windows = []

    def to_jpeg(ds, k):
        hu = _hu(ds)
        u8 = np.clip((hu + 160) / 400 * 255, 0, 255).astype(np.uint8)  # liver window
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=90)
        windows.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.float32))
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit

    _write(subset[:2], tmp_path, to_jpeg)
    expected = np.stack(windows)
    gdcm = sitk.GetArrayFromImage(read_image(tmp_path))
    monkeypatch.setattr(dicomio, "_read_gdcm", _gdcm_fails)
    pyd = sitk.GetArrayFromImage(read_image(tmp_path))
    for got in (gdcm, pyd):
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1


def test_undecodable_syntax_is_named(subset, tmp_path):
    mpeg2 = MPEG2MPML  # video: neither GDCM nor pydicom's plugins decode it

    def garbage(ds, k):
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(64)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = mpeg2

    _write(subset[:2], tmp_path, garbage)
    with pytest.raises(InputError) as ei:
        read_image(tmp_path, patient="P007", phase="AP")
    _context(ei.value, tmp_path)
    assert "cannot decode the pixel data of DICOM series" in str(ei.value)
    assert f"(transfer syntax {mpeg2.name})" in str(ei.value)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_pydicom_bundled_files(tmp_path, name):
    """pydicom's bundled MR slice in several transfer syntaxes, as a 2-slice series each."""

    def two_slices(path: Path, folder: Path) -> None:
        for k in range(2):
            ds = pydicom.dcmread(path)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            pos = [float(v) for v in ds.ImagePositionPatient]
            normal = dicomio._normal([float(v) for v in ds.ImageOrientationPatient])
            ds.ImagePositionPatient = list(np.asarray(pos) + 3.0 * k * normal)
            folder.mkdir(exist_ok=True)
            ds.save_as(folder / f"{k}.dcm")

    two_slices(Path(get_testdata_file("MR_small.dcm")), tmp_path / "ref")
    two_slices(Path(get_testdata_file(name)), tmp_path / "test")
    reference = read_image(tmp_path / "ref")
    ref_arr = sitk.GetArrayFromImage(reference)
    assert ref_arr.shape == (2, 64, 64)
    np.testing.assert_array_equal(
        ref_arr[0], pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    )
    _assert_same(read_image(tmp_path / "test"), reference)


# ----------------------------------------------------------------------------- multi-frame


#: highdicom's remark on the real headers' single-component PatientName, not about this code.
_PN_WARNING = "ignore:The string .* is unlikely to represent the intended person name:UserWarning"


@pytest.mark.filterwarnings(_PN_WARNING)
@pytest.mark.parametrize(
    ("syntax", "enhanced"),
    [(ExplicitVRLittleEndian, False), (RLELossless, False), (ExplicitVRLittleEndian, True)],
    ids=["legacy-raw", "legacy-RLE", "enhanced-raw"],
)
def test_legacy_converted_multiframe(subset, plain, tmp_path, syntax, enhanced):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    shuffled = [subset[i] for i in (3, 0, 7, 5, 1, 6, 2, 4)]
    mf = LegacyConvertedEnhancedCTImage(
        legacy_datasets=shuffled,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        transfer_syntax_uid=syntax,
    )
    assert int(mf.NumberOfFrames) == N_SLICES
    assert "PerFrameFunctionalGroupsSequence" in mf
    if enhanced:  # the same functional groups under the Enhanced CT Image Storage class
        mf.SOPClassUID = mf.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    mf.save_as(tmp_path / "enhanced.dcm")
    _write(subset[:1], tmp_path, _sagittal, series_uid=generate_uid(), prefix="LOC")  # decoy
    (listed,) = [s for s in dicomio.list_series(tmp_path) if s.multiframe]
    assert listed.n_slices == N_SLICES and listed.plane == "axial"
    _assert_same(read_image(tmp_path), plain)


@pytest.mark.filterwarnings(_PN_WARNING)
def test_multiframe_missing_frame_refused(subset, tmp_path):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    mf = LegacyConvertedEnhancedCTImage(
        legacy_datasets=subset[:3] + subset[4:],
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    mf.save_as(tmp_path / "enhanced.dcm")
    with pytest.raises(InputError, match="missing slices"):
        read_image(tmp_path)


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_jpeg_extended_12bit(tmp_path, name):
    """12-bit JPEG extended (process 2/4): GDCM decodes it; pydicom's plugins decode only one of
    the two bundled files, and agree with GDCM to 1 (lossy) where they do."""
    src = pydicom.dcmread(get_testdata_file(name))
    for k in range(2):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
        ds.save_as(tmp_path / f"{k}.dcm")
    image = read_image(tmp_path)
    assert image.GetSize() == (256, 1024, 2)
    np.testing.assert_allclose(image.GetSpacing(), (2.26, 2.26, 4.0))
    arr = sitk.GetArrayFromImage(image)
    np.testing.assert_array_equal(arr[0], arr[1])
    if name == "JPGExtended.dcm":
        assert np.abs(arr[0] - src.pixel_array).max() <= 1
        assert arr[0].max() > 255  # 12-bit values, beyond the 8-bit range
    else:
        with pytest.raises(RuntimeError, match="Unable to decode"):
            src.pixel_array  # noqa: B018 - the attribute access decodes (and fails here)
