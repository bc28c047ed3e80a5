"""Tests of hccrad.qc: per-patient figures, cohort montage, QC table."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.image import imread

from hccrad.preprocess import peritumoral_ring
from hccrad.qc import (
    DPI,
    PANEL_INCHES,
    choose_slice,
    plot_cohort_montage,
    plot_patient_qc,
)


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (30, 48, 56)
    z, y, x = np.indices(shape)
    liver = ((z - 15) / 12) ** 2 + ((y - 24) / 18) ** 2 + ((x - 26) / 22) ** 2 <= 1
    tumor = (z - 18) ** 2 / 4 + (y - 22) ** 2 + (x - 30) ** 2 <= 36  # widest at z = 18
    tumor |= (z - 8) ** 2 + (y - 30) ** 2 + (x - 20) ** 2 <= 2  # small satellite
    spacing = (0.8, 0.8, 2.0)

    def img(arr, dtype=np.float32):
        out = sitk.GetImageFromArray(arr.astype(dtype))
        out.SetSpacing(spacing)
        return out

    base = 50 + 100 * liver + rng.normal(0, 5, shape)
    images = {
        "AP": img(base + 80 * tumor),
        "PV": img(base + 30 * tumor),
        "DP": img(base - 20 * tumor),
    }
    t, li = img(tumor, np.uint8), img(liver, np.uint8)
    return images, t, li, peritumoral_ring(t, li, distance_mm=5.0)


def test_patient_qc_png(tmp_path):
    images, tumor, liver, ring = _case()
    assert choose_slice(tumor, images["AP"]) == 18
    out = tmp_path / "qc" / "P001.png"
    plot_patient_qc(images, out, tumor=tumor, liver=liver, ring=ring, title="P001")
    assert out.is_file()
    png = imread(out)
    w, h = PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI
    assert png.shape[:2] == (round(h), round(len(images) * w))
    assert [p.name for p in out.parent.iterdir()] == ["P001.png"]
    # red tumor contour and yellow ring contour are drawn
    rgb = png[..., :3]
    red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    yellow = (rgb[..., 0] > 0.8) & (rgb[..., 1] > 0.8) & (rgb[..., 2] < 0.3)
    assert red.sum() > 20 and yellow.sum() > 20
    green = (rgb[..., 0] < 0.3) & (rgb[..., 1] > 0.8) & (rgb[..., 2] < 0.3)
    assert green.sum() > 20  # the liver outline
    # the tumor's outline lies where the tumor is: its box in the first panel (0.8 mm pixels,
    # widest at z = 18: y 16-28, x 24-36 of a 48 x 56 slice) scaled to the panel's image
    ys, xs = np.nonzero(red[:, : round(PANEL_INCHES[0] * DPI)])
    assert 20 < xs.mean() * 56 / 300 < 40 and ys.min() > 40  # below the titles


def test_patient_qc_does_not_import_matplotlib(tmp_path):
    """Every preprocessing job draws one: matplotlib's import (and rendering) cost about a
    second there; the cohort montage alone uses it."""
    code = (
        "import sys, numpy as np, SimpleITK as sitk\n"
        "from hccrad.qc import plot_patient_qc\n"
        "img = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(4, 16, 16)))\n"
        f"plot_patient_qc({{'AP': img}}, {str(tmp_path / 'q.png')!r}, tumor=img > 1)\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "q.png").is_file()


def test_patient_qc_without_masks_and_single_phase(tmp_path):
    images, *_ = _case()
    out = tmp_path / "one.png"
    plot_patient_qc({"PV": images["PV"]}, out)
    png = imread(out)
    assert png.shape[1] == round(PANEL_INCHES[0] * DPI)
    assert choose_slice(None, images["PV"]) == 15
    with pytest.raises(ValueError):
        plot_patient_qc({}, tmp_path / "none.png")


def test_patient_qc_oblique_direction(tmp_path):
    images, tumor, liver, ring = _case()
    flip = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0)
    for im in (*images.values(), tumor, liver, ring):
        im.SetDirection(flip)
    assert choose_slice(tumor, images["AP"]) == 30 - 1 - 18  # LPS reorientation flips z
    plot_patient_qc(images, tmp_path / "flip.png", tumor=tumor, liver=liver, ring=ring)
    assert (tmp_path / "flip.png").is_file()


def test_cohort_montage(tmp_path):
    paths = []
    for i in range(5):
        images, tumor, liver, ring = _case(i)
        p = tmp_path / f"P{i:03d}.png"
        plot_patient_qc(images, p, tumor=tumor, liver=liver, ring=ring, title=p.stem)
        paths.append(p)
    out = tmp_path / "cohort" / "montage.png"
    plot_cohort_montage(paths, out, max_per_row=2, thumb_inches=2.0)
    png = imread(out)
    assert png.shape[:2] == (round(2.0 * 0.6 * 3 * DPI), round(2.0 * 2 * DPI))  # 3 rows x 2
    with pytest.raises(ValueError):
        plot_cohort_montage(paths, out, titles=["a"])
    plot_cohort_montage([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()
