"""Mask formats and segment selection (hccrad.maskio through hccrad.imageio.read_mask).

DICOM SEG and RTSTRUCT are written on the real CT series ``../shared/data/hcc048_ct_dicom`` by
independent writers (highdicom, rt-utils) from a known label map and read back; ``.seg.nrrd`` and
multi-label files are written by hand with SimpleITK; the rasteriser is checked against closed
forms (pixel centres inside a circle, an annulus).
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import shared_data
from hccrad.errors import InputError
from hccrad.imageio import read_image, read_mask
from hccrad.maskio import fill_polygons, parse_selection

#: The label map lives on these slices of the 89-slice series (20 slices: fast, still real data).
Z0, Z1 = 40, 60
LIVER, TUMOR = 1, 2


# ---------------------------------------------------------------------------------------------
# the real CT series and a label map on it
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct() -> tuple[Path, sitk.Image, list[pydicom.Dataset]]:
    """The CT folder, the image as read_image reads it, and its slice headers sorted by z."""
    folder = shared_data("hcc048_ct_dicom")
    image = read_image(folder)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.glob("*.dcm"))]
    headers = [h for h in headers if "ImagePositionPatient" in h]
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))
    assert image.GetSize() == (512, 512, 89) and len(headers) == 89
    return folder, image, headers


@pytest.fixture(scope="module")
def labels(ct) -> np.ndarray:
    """Label map (z, y, x) on the CT grid: a liver-like region (an ellipsoid in the right liver
    lobe cut to 80..180 HU, so it has vessel holes) = 1 and an ellipsoidal tumor of 30 x 24 x 20
    mm inside it = 2, on slices Z0..Z1-1 only."""
    _, image, _ = ct
    hu = sitk.GetArrayFromImage(image)
    sx, sy, sz = image.GetSpacing()
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]

    def ellipsoid(centre, radii_mm):
        return (
            ((xx - centre[0]) * sx / radii_mm[0]) ** 2
            + ((yy - centre[1]) * sy / radii_mm[1]) ** 2
            + ((zz - centre[2]) * sz / radii_mm[2]) ** 2
        ) <= 1

    out = np.zeros(hu.shape, np.uint8)
    out[ellipsoid((170, 220, 50), (60, 50, 25)) & (hu >= 80) & (hu <= 180)] = LIVER
    out[ellipsoid((150, 230, 50), (15, 12, 10))] = TUMOR
    out[:Z0] = 0
    out[Z1:] = 0
    assert (out == TUMOR).sum() > 5000 and (out == LIVER).sum() > 100_000
    return out


def _description(number: int, name: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    prop = codes.SCT.Liver if name.lower() == "liver" else codes.SCT.Neoplasm
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def write_seg(path: Path, sources, pixels: np.ndarray, names: list[str], **kwargs) -> Path:
    """Write a DICOM SEG with highdicom: ``pixels`` (frames, rows, columns[, segments])."""
    import highdicom as hd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the source's pseudonymous PatientName
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=kwargs.pop("segmentation_type", "BINARY"),
            segment_descriptions=[_description(i + 1, n) for i, n in enumerate(names)],
            series_instance_uid=hd.UID(),
            series_number=100,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="hccrad tests",
            manufacturer_model_name="test",
            software_versions="0",
            device_serial_number="0",
            **kwargs,
        )
    seg.save_as(path)
    return path


@pytest.fixture(scope="module")
def seg_file(ct, labels, tmp_path_factory) -> Path:
    """A two-segment SEG (1 Liver, 2 Tumor) on the 20 slices Z0..Z1-1."""
    _, _, headers = ct
    pixels = np.stack([labels[Z0:Z1] == LIVER, labels[Z0:Z1] == TUMOR], axis=-1).astype(np.uint8)
    return write_seg(
        tmp_path_factory.mktemp("seg") / "seg.dcm", headers[Z0:Z1], pixels, ["Liver", "Tumor"]
    )


@pytest.fixture(scope="module")
def rtstruct(ct, labels, tmp_path_factory):
    """An RTSTRUCT written by rt-utils from the label map (contours traced by OpenCV) on a copy
    of slices Z0..Z1-1, with rt-utils' own object for its reading of the same file."""
    rt_utils = pytest.importorskip("rt_utils", reason="rt-utils (dev extra) writes the RTSTRUCT")
    _, _, headers = ct
    series = tmp_path_factory.mktemp("series")
    for h in headers[Z0:Z1]:
        shutil.copy(h.filename, series)
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series))
    # rt-utils masks are (rows, columns, slices)
    rt.add_roi(mask=np.transpose(labels[Z0:Z1] == TUMOR, (1, 2, 0)), name="Tumor")
    rt.add_roi(mask=np.transpose(labels[Z0:Z1] == LIVER, (1, 2, 0)), name="Liver")
    path = tmp_path_factory.mktemp("rt") / "rtstruct.dcm"
    rt.save(str(path))
    return path, rt


def _arr(mask: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(mask).astype(bool)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


# ---------------------------------------------------------------------------------------------
# DICOM SEG
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "values"),
    [
        ("Tumor", {TUMOR}),
        ("tumor", {TUMOR}),
        (" TUMOR ", {TUMOR}),
        ("2", {TUMOR}),
        ("liver", {LIVER}),
        ("1+2", {LIVER, TUMOR}),
        ("Liver + tumor", {LIVER, TUMOR}),
    ],
)
def test_seg_segments_voxel_for_voxel(ct, labels, seg_file, selection, values):
    _, image, _ = ct
    mask = read_mask(seg_file, image, segment=selection, patient="P1", phase="PVP")
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == image.GetOrigin()
    expected = np.isin(labels, list(values))
    np.testing.assert_array_equal(_arr(mask), expected)


def test_seg_covering_only_the_tumor_slices(ct, labels, tmp_path):
    """A one-segment SEG on the 9 slices the tumor touches: its only segment needs no selection
    and lands on those slices of the 89."""
    _, image, headers = ct
    zs = np.flatnonzero((labels == TUMOR).any(axis=(1, 2)))
    assert 5 <= len(zs) <= 12
    path = write_seg(
        tmp_path / "tumor.dcm",
        [headers[z] for z in zs],
        (labels[zs] == TUMOR).astype(np.uint8),
        ["Tumor"],
    )
    mask = _arr(read_mask(path, image))
    np.testing.assert_array_equal(mask, labels == TUMOR)
    # the legacy label= keyword selects segment numbers as well
    np.testing.assert_array_equal(_arr(read_mask(path, image, label=1)), labels == TUMOR)


def test_seg_labelmap_and_empty_segment(ct, labels, tmp_path):
    """A LABELMAP SEG (one frame per slice holding segment numbers) reads as the BINARY one; a
    segment without any frame (highdicom omits empty frames) is an empty mask, refused."""
    _, image, headers = ct
    path = write_seg(
        tmp_path / "labelmap.dcm",
        headers[Z0:Z1],
        labels[Z0:Z1],
        ["Liver", "Tumor"],
        segmentation_type="LABELMAP",
    )
    np.testing.assert_array_equal(_arr(read_mask(path, image, segment="tumor")), labels == TUMOR)
    np.testing.assert_array_equal(_arr(read_mask(path, image, segment="1+2")), labels > 0)
    only_liver = np.stack([labels[Z0:Z1] == LIVER, np.zeros_like(labels[Z0:Z1], bool)], axis=-1)
    path = write_seg(
        tmp_path / "empty.dcm", headers[Z0:Z1], only_liver.astype(np.uint8), ["Liver", "Tumor"]
    )
    with pytest.raises(InputError, match=r"tumor mask is empty \(segment 2 'Tumor'\)"):
        read_mask(path, image, segment="Tumor", patient="P1", phase="AP")
    empty = read_mask(path, image, segment="Tumor", allow_empty=True)
    assert not _arr(empty).any() and empty.GetSize() == image.GetSize()


def test_seg_fractional_threshold(ct, labels, tmp_path):
    """A FRACTIONAL SEG: tumor at 0.9, a 2-voxel rim at 0.3 (< 0.5, not foreground)."""
    import scipy.ndimage as ndi

    _, image, headers = ct
    tumor = labels[Z0:Z1] == TUMOR
    rim = ndi.binary_dilation(tumor, iterations=2) & ~tumor
    frac = np.where(tumor, 0.9, np.where(rim, 0.3, 0.0)).astype(np.float32)
    path = write_seg(
        tmp_path / "frac.dcm",
        headers[Z0:Z1],
        frac,
        ["Tumor"],
        segmentation_type="FRACTIONAL",
        max_fractional_value=255,
    )
    np.testing.assert_array_equal(_arr(read_mask(path, image, segment="tumor")), labels == TUMOR)


def test_seg_without_selection_lists_segments(ct, seg_file):
    _, image, _ = ct
    with pytest.raises(InputError) as info:
        read_mask(seg_file, image, patient="P1", phase="AP", kind="liver")
    msg = str(info.value)
    assert "patient P1" in msg and "phase AP" in msg and str(seg_file) in msg
    assert "1 'Liver', 2 'Tumor'" in msg and "liver_segment" in msg


def test_seg_unknown_segment(ct, seg_file):
    _, image, _ = ct
    with pytest.raises(InputError, match=r"no segment 'lesion' \(tumor_segment\).*2 'Tumor'"):
        read_mask(seg_file, image, segment="liver+lesion", patient="P1", phase="AP")
    with pytest.raises(InputError, match=r"no segment '3'"):
        read_mask(seg_file, image, segment="3", patient="P1", phase="AP")
    with pytest.raises(InputError, match=r"empty part .*tumor_segment"):
        read_mask(seg_file, image, segment="1++2", patient="P1", phase="AP")


def _shifted_headers(headers, *, dx_mm=0.0, dz_mm=0.0, spacing=None, frame_of_reference=None):
    out = []
    for h in headers:
        h = copy.deepcopy(h)
        x, y, z = (float(v) for v in h.ImagePositionPatient)
        h.ImagePositionPatient = [x + dx_mm, y, z + dz_mm]
        if spacing is not None:
            h.PixelSpacing = [spacing, spacing]
        if frame_of_reference is not None:
            h.FrameOfReferenceUID = frame_of_reference
        out.append(h)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dx_mm": 0.35}, r"fall between image voxels by up to \(0\.35, 0\.0, 0\.0\) mm"),
        ({"spacing": 0.8}, r"step along a row .*0\.8 mm long.* not one image voxel"),
        # another frame of reference 1 m away: outside the image
        (
            {"dz_mm": 1000.0, "frame_of_reference": "1.2.826.0.1.3680043.8.498.1"},
            r"foreground pixel\(s\) of the SEG lie outside the image",
        ),
    ],
)
def test_seg_off_the_image_grid_is_refused(ct, labels, tmp_path, change, message):
    _, image, headers = ct
    sources = _shifted_headers(headers[Z0:Z1], **change)
    path = write_seg(
        tmp_path / "off.dcm", sources, (labels[Z0:Z1] == TUMOR).astype(np.uint8), ["Tumor"]
    )
    with pytest.raises(InputError, match=message) as info:
        read_mask(path, image, patient="P2", phase="PVP")
    assert f"patient P2, phase PVP, file {path}: tumor mask: " in str(info.value)


def test_seg_slices_within_the_slice_slack_are_placed(ct, labels, tmp_path):
    """Frames 0.02 mm off the slice planes (under 1 % of 2.5 mm, the gap slack read_image
    allows) still land on their slices; in-plane the tolerance stays tolerance_mm."""
    _, image, headers = ct
    sources = _shifted_headers(headers[Z0:Z1], dz_mm=0.02)
    path = write_seg(
        tmp_path / "z.dcm", sources, (labels[Z0:Z1] == TUMOR).astype(np.uint8), ["Tumor"]
    )
    np.testing.assert_array_equal(_arr(read_mask(path, image)), labels == TUMOR)


# ---------------------------------------------------------------------------------------------
# RTSTRUCT
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("selection", "value"), [("Tumor", TUMOR), ("liver", LIVER), ("1", TUMOR)])
def test_rtstruct_against_mask_and_rt_utils(ct, labels, rtstruct, selection, value):
    """Contours rasterised by hccrad agree with the mask they were traced from (Dice >= 0.97,
    volume within 3 %: in general a polygon does not follow voxel borders, so rasterisation
    moves border voxels; here the contours run through border-voxel centres, which hccrad counts
    as inside, so the agreement is in fact exact) and with rt-utils' own reading (OpenCV
    fillPoly), an independent rasteriser, voxel for voxel."""
    _, image, _ = ct
    path, rt = rtstruct
    mask = _arr(read_mask(path, image, segment=selection, patient="P1", phase="PVP"))
    expected = labels == value
    assert _dice(mask, expected) >= 0.97
    assert abs(int(mask.sum()) - int(expected.sum())) <= 0.03 * expected.sum()
    assert not mask[:Z0].any() and not mask[Z1:].any()
    name = "Tumor" if value == TUMOR else "Liver"
    theirs = np.transpose(rt.get_roi_mask_by_name(name), (2, 0, 1))
    np.testing.assert_array_equal(mask[Z0:Z1], theirs)
    np.testing.assert_array_equal(mask, expected)


def test_rtstruct_union_and_listing(ct, labels, rtstruct):
    _, image, _ = ct
    path, _ = rtstruct
    union = _arr(read_mask(path, image, segment="tumor+LIVER"))
    np.testing.assert_array_equal(union, labels > 0)
    with pytest.raises(InputError, match=r"RTSTRUCT holds segment\(s\) 1 'Tumor', 2 'Liver'"):
        read_mask(path, image, kind="reader2")


def _edited_rtstruct(path: Path, out: Path, edit) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(out)
    return out


def test_rtstruct_contour_off_the_slice_planes(ct, rtstruct, tmp_path):
    _, image, _ = ct
    path, _ = rtstruct

    def lift(ds):
        contour = ds.ROIContourSequence[0].ContourSequence[3]
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
        pts[:, 2] += 1.0  # between two slices 2.5 mm apart
        contour.ContourData = [f"{v:.4f}" for v in pts.ravel()]

    bad = _edited_rtstruct(path, tmp_path / "lifted.dcm", lift)
    with pytest.raises(InputError, match=r"contour 4 does not lie in an image slice plane.*1 mm"):
        read_mask(bad, image, segment="tumor", patient="P1", phase="AP")
    # the other ROI is not affected
    assert _arr(read_mask(bad, image, segment="liver")).any()


def test_rtstruct_open_contour_is_refused(ct, rtstruct, tmp_path):
    _, image, _ = ct
    path, _ = rtstruct

    def open_it(ds):
        ds.ROIContourSequence[0].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"

    bad = _edited_rtstruct(path, tmp_path / "open.dcm", open_it)
    with pytest.raises(InputError, match=r"contour 1 is OPEN_PLANAR"):
        read_mask(bad, image, segment="Tumor")


def test_fill_polygons_circle_closed_form():
    """A 720-gon inscribed in a circle of radius 40.3 px: the pixel centres it covers are those
    with x^2 + y^2 <= r^2, except the few within the sagitta (r (1 - cos(pi/720)) < 0.001 px)."""
    r, c = 40.3, np.array([50.2, 60.7])
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    poly = c + r * np.stack([np.sin(t), np.cos(t)], axis=1)
    filled = fill_polygons([poly], (110, 120))
    rows, cols = np.mgrid[:110, :120]
    exact = (rows - c[0]) ** 2 + (cols - c[1]) ** 2 <= r**2
    assert abs(int(filled.sum()) - int(exact.sum())) <= 2
    assert (filled != exact).sum() <= 2


def test_fill_polygons_even_odd_hole_and_island():
    """Three nested squares: outer filled, middle cuts a hole, inner fills an island (even-odd);
    pixel centres on any contour line count as inside."""

    def square(lo, hi):
        return np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]], float)

    filled = fill_polygons([square(2, 27), square(8, 21), square(12, 17)], (30, 30))
    expected = np.zeros((30, 30), bool)
    expected[2:28, 2:28] = True
    expected[9:21, 9:21] = False  # inside the hole contour, off its line
    expected[12:18, 12:18] = True
    assert filled.sum() == expected.sum()
    np.testing.assert_array_equal(filled, expected)
    # one point and a two-point line mark the pixels they run through
    single = fill_polygons([np.array([[3.0, 4.0]]), np.array([[5.0, 1.0], [5.0, 4.0]])], (8, 8))
    assert set(map(tuple, np.argwhere(single).tolist())) == {(3, 4), (5, 1), (5, 2), (5, 3), (5, 4)}


# ---------------------------------------------------------------------------------------------
# 3D Slicer .seg.nrrd and multi-label files (small synthetic grids)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def grid() -> tuple[sitk.Image, np.ndarray]:
    """A 24 x 20 x 10 reference image and a label map on it: liver 1 (a box), tumor 2 inside."""
    ref = sitk.Image(24, 20, 10, sitk.sitkFloat32)
    ref.SetSpacing((0.8, 0.8, 2.0))
    ref.SetOrigin((-10.0, 5.0, 30.0))
    lab = np.zeros((10, 20, 24), np.uint8)
    lab[2:8, 3:17, 4:20] = 1
    lab[4:6, 8:12, 9:14] = 2
    return ref, lab


def _image(arr: np.ndarray, ref: sitk.Image, vector: bool = False) -> sitk.Image:
    img = sitk.GetImageFromArray(arr, isVector=vector)
    img.CopyInformation(ref)
    return img


def _slicer_fields(img: sitk.Image, segments: list[tuple[str, int, int]]) -> sitk.Image:
    for i, (name, value, layer) in enumerate(segments):
        img.SetMetaData(f"Segment{i}_ID", f"Segment_{i + 1}")
        img.SetMetaData(f"Segment{i}_Name", name)
        img.SetMetaData(f"Segment{i}_LabelValue", str(value))
        img.SetMetaData(f"Segment{i}_Layer", str(layer))
    return img


def test_seg_nrrd_one_layer(grid, tmp_path):
    ref, lab = grid
    path = tmp_path / "case.seg.nrrd"
    sitk.WriteImage(_slicer_fields(_image(lab, ref), [("Liver", 1, 0), ("Tumor", 2, 0)]), path)
    assert "Segment1_Name" in sitk.ReadImage(path).GetMetaDataKeys()  # as Slicer writes it
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="TUMOR")), lab == 2)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="1")), lab == 1)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="liver+tumor")), lab > 0)
    with pytest.raises(InputError, match=r"1 'Liver', 2 'Tumor'.*tumor_segment"):
        read_mask(path, ref, patient="P3", phase="HBP")


def test_seg_nrrd_two_layers_overlapping(grid, tmp_path):
    """Two layers (a vector image): liver in layer 0 (label 1) including the tumor, tumor in
    layer 1 (label 1): the label value is ambiguous, names are not."""
    ref, lab = grid
    layers = np.stack([(lab > 0), (lab == 2)], axis=-1).astype(np.uint8)
    path = tmp_path / "layers.seg.nrrd"
    img = _slicer_fields(_image(layers, ref, vector=True), [("Liver", 1, 0), ("Tumor", 1, 1)])
    sitk.WriteImage(img, path)
    assert sitk.ReadImage(path).GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="tumor")), lab == 2)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="Liver")), lab > 0)
    with pytest.raises(InputError, match=r"segment '1' \(liver_segment\) is ambiguous"):
        read_mask(path, ref, segment="1", kind="liver")


def _slicer_nrrd(path: Path, layers: np.ndarray, ref: sitk.Image, fields: str) -> Path:
    """An NRRD written byte by byte as 3D Slicer writes a segmentation with several layers:
    LPS space, a ``list`` axis of layers first, gzip, ``Segment{i}_*:=`` key/value fields."""
    import gzip

    n_layers = layers.shape[-1]
    sx, sy, sz = ref.GetSpacing()
    header = (
        "NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\n"
        f"sizes: {n_layers} {ref.GetSize()[0]} {ref.GetSize()[1]} {ref.GetSize()[2]}\n"
        f"space directions: none ({sx},0,0) (0,{sy},0) (0,0,{sz})\n"
        "kinds: list domain domain domain\nencoding: gzip\n"
        f"space origin: ({ref.GetOrigin()[0]},{ref.GetOrigin()[1]},{ref.GetOrigin()[2]})\n"
        f"{fields}\n"
    )
    path.write_bytes(header.encode() + gzip.compress(layers.astype(np.uint8).tobytes()))
    return path


@pytest.mark.parametrize(
    "fields",
    [
        # Slicer >= 4.11: layer and label value of every segment
        "Segment0_ID:=Segment_1\nSegment0_Name:=Liver\nSegment0_LabelValue:=1\n"
        "Segment0_Layer:=0\nSegment1_ID:=Segment_2\nSegment1_Name:=Tumor\n"
        "Segment1_LabelValue:=1\nSegment1_Layer:=1\n",
        # older Slicer: one layer per segment, no LabelValue / Layer fields
        "Segment0_ID:=Segment_1\nSegment0_Name:=Liver\nSegment1_ID:=Segment_2\n"
        "Segment1_Name:=Tumor\n",
    ],
    ids=["layers", "legacy"],
)
def test_seg_nrrd_as_slicer_writes_it(grid, tmp_path, fields):
    ref, lab = grid
    layers = np.stack([lab > 0, lab == 2], axis=-1)
    path = _slicer_nrrd(tmp_path / "slicer.seg.nrrd", layers, ref, fields)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="tumor")), lab == 2)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="LIVER")), lab > 0)
    with pytest.raises(InputError, match=r"1 'Liver', 1 'Tumor'"):
        read_mask(path, ref)


def test_seg_nrrd_cropped_is_placed(grid, tmp_path):
    """Slicer crops segmentations to their extent: the origin moves onto an image voxel."""
    ref, lab = grid
    crop = lab[2:8, 3:17, 4:20]
    img = sitk.GetImageFromArray(crop)
    img.SetSpacing(ref.GetSpacing())
    img.SetOrigin(ref.TransformIndexToPhysicalPoint((4, 3, 2)))
    path = tmp_path / "crop.seg.nrrd"
    sitk.WriteImage(_slicer_fields(img, [("Liver", 1, 0), ("Tumor", 2, 0)]), path)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="tumor")), lab == 2)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_multilabel_files(grid, tmp_path, suffix):
    ref, lab = grid
    lab = lab.copy()
    lab[1, 0, 0] = 3
    path = tmp_path / f"labels{suffix}"
    sitk.WriteImage(_image(lab, ref), path)
    np.testing.assert_array_equal(_arr(read_mask(path, ref)), lab > 0)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="1+2")), np.isin(lab, [1, 2]))
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="3")), lab == 3)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, segment="2.0")), lab == 2)
    np.testing.assert_array_equal(_arr(read_mask(path, ref, label=2)), lab == 2)
    with pytest.raises(InputError, match=r"'tumor' \(tumor_segment\) is a name.*1, 2, 3"):
        read_mask(path, ref, segment="tumor", patient="P4", phase="DP")
    with pytest.raises(InputError, match=r"empty \(label 5; the file holds label\(s\) 1, 2, 3\)"):
        read_mask(path, ref, segment="5")
    with pytest.raises(ValueError, match="disagree"):
        read_mask(path, ref, segment="1", label=2)


def test_select_segments_numbers_and_names():
    from hccrad.maskio import Segment, _Context, select_segments

    ctx = _Context("P1", "AP", Path("x.dcm"), "tumor")
    segments = [Segment(1, "Liver "), Segment(5, "2"), Segment(7, "GTV")]
    assert select_segments(segments, ["2"], ctx, "RTSTRUCT") == [Segment(5, "2")]
    assert select_segments(segments, ["5", "liver", "1"], ctx, "RTSTRUCT") == [
        Segment(5, "2"),
        Segment(1, "Liver "),
    ]
    with pytest.raises(InputError, match=r"no segment 'ptv' \(tumor_segment\); the RTSTRUCT "):
        select_segments(segments, ["ptv"], ctx, "RTSTRUCT")


def test_selection_parsing():
    assert parse_selection(None) is None and parse_selection("  ") is None
    assert parse_selection(" liver + 2 ") == ["liver", "2"]
    assert parse_selection(float("nan")) is None  # an empty cell of a typed sheet
    assert parse_selection(2.0) == ["2.0"]
    with pytest.raises(ValueError, match="empty part"):
        parse_selection("1+")


# ---------------------------------------------------------------------------------------------
# mask folders and other DICOM
# ---------------------------------------------------------------------------------------------


def test_mask_folder_with_one_seg(ct, labels, seg_file, tmp_path):
    _, image, _ = ct
    folder = tmp_path / "300.000000-Segmentation-12345"
    folder.mkdir()
    shutil.copy(seg_file, folder / "1-1.dcm")
    np.testing.assert_array_equal(_arr(read_mask(folder, image, segment="2")), labels == TUMOR)
    (folder / "notes.txt").write_text("x")
    with pytest.raises(
        InputError,
        match=r"tumor mask is a folder, which must hold exactly one DICOM SEG or RTSTRUCT.*notes",
    ):
        read_mask(folder, image, segment="2", patient="P5", phase="AP")


def test_mask_folder_and_file_of_images_refused(ct, tmp_path):
    _, image, headers = ct
    slices = tmp_path / "slices"
    slices.mkdir()
    shutil.copy(headers[0].filename, slices / "a.dcm")
    with pytest.raises(InputError, match=r"it holds other entries: a\.dcm \(CT\)"):
        read_mask(slices, image, patient="P5", phase="AP")
    with pytest.raises(InputError, match=r"modality CT \(CT Image Storage\) is neither a SEG"):
        read_mask(slices / "a.dcm", image, patient="P5", phase="AP")
