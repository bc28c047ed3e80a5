"""Quality-control figures and tables of the preprocessing.

Per patient: one PNG with one panel per phase (registered grid, axial slice with the largest
index-lesion area, tumor/liver/ring contours) and one JSON record (:func:`qc_record`). Per cohort:
a thumbnail montage and a table with one row per patient x phase (:func:`summarize_qc`).
The per-patient figure (one per preprocessing job) is drawn with Pillow: matplotlib's import and
rendering cost about a second in every job. The cohort montage uses matplotlib's Agg canvas
directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from hccrad.fileio import write_bytes, write_png
from hccrad.preprocess.regions import largest_component

log = logging.getLogger(__name__)

#: Panel size in inches and resolution of the per-patient QC figure.
PANEL_INCHES = (3.0, 3.4)
DPI = 100
CONTOUR_COLORS = {"tumor": "red", "liver": "lime", "ring": "yellow"}
#: RGB of the contour colours (matplotlib's named colours).
_RGB = {"red": (255, 0, 0), "lime": (0, 255, 0), "yellow": (255, 255, 0)}
#: Heights in pixels of the figure title and of a panel title above each image.
_TITLE_PX, _PANEL_TITLE_PX = 40, 24


def _figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # the cohort montage only
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _lps(image: sitk.Image) -> sitk.Image:
    """Reorient to LPS (identity direction) so that array axes are (z: I->S, y: A->P, x: R->L)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.allclose(direction, np.eye(3), atol=1e-6):
        return image
    return sitk.DICOMOrient(image, "LPS")


def choose_slice(tumor: sitk.Image | None, reference: sitk.Image) -> int:
    """Axial slice index (LPS-oriented array) with the largest index-lesion area.

    Args:
        tumor: binary tumor mask or ``None``.
        reference: image giving the grid (used for the middle slice without a tumor).

    Returns:
        Slice index along z of the LPS-oriented volume.
    """
    if tumor is not None:
        lesion = sitk.GetArrayFromImage(_lps(largest_component(tumor)))
        area = lesion.reshape(lesion.shape[0], -1).sum(axis=1)
        if area.max() > 0:
            return int(np.argmax(area))
    return int(_lps(reference).GetSize()[2] // 2)


def plot_patient_qc(
    images: Mapping[str, sitk.Image],
    out_png: str | os.PathLike[str],
    *,
    tumor: sitk.Image | None = None,
    liver: sitk.Image | None = None,
    ring: sitk.Image | None = None,
    title: str = "",
) -> None:
    """Write the per-patient QC figure: one panel per phase, axial slice, mask contours.

    All images and masks must lie on the same (registered) grid. The slice is the axial slice with
    the largest area of the index lesion (largest 6-connected tumor component), or the middle
    slice without a tumor. Each panel is windowed to the 1st-99th percentiles of its slice and
    shown in radiological convention (patient's right on the left, anterior up) with the aspect
    ratio of the voxel spacing. Contours: tumor red, liver green, ring yellow. The figure is
    ``PANEL_INCHES`` per panel at ``DPI`` (300 x 340 pixels per panel).

    Args:
        images: phase name -> image, in display order.
        out_png: destination PNG (written atomically, parent folders created).
        tumor: tumor mask.
        liver: liver mask.
        ring: peritumoral ring mask.
        title: figure title (e.g. the patient id).
    """
    if not images:
        raise ValueError("plot_patient_qc needs at least one image")
    first = next(iter(images.values()))
    z = choose_slice(tumor, first)
    spacing = _lps(first).GetSpacing()
    masks = {k: v for k, v in (("liver", liver), ("ring", ring), ("tumor", tumor)) if v is not None}
    mask_slices = {k: sitk.GetArrayFromImage(_lps(v))[z] != 0 for k, v in masks.items()}
    n = len(images)
    pw, ph = round(PANEL_INCHES[0] * DPI), round(PANEL_INCHES[1] * DPI)
    canvas = Image.new("RGB", (pw * n, ph), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    for i, (phase, image) in enumerate(images.items()):
        sl = sitk.GetArrayFromImage(_lps(image))[z].astype(np.float64)
        panel = _panel(sl, mask_slices, spacing, (pw - 6, ph - _TITLE_PX - _PANEL_TITLE_PX - 4))
        x0 = i * pw + (pw - panel.width) // 2
        canvas.paste(panel, (x0, _TITLE_PX + _PANEL_TITLE_PX))
        _centered(draw, f"{phase} (z={z})", i * pw + pw // 2, _TITLE_PX + 4, font)
    if title:
        _centered(draw, title, pw * n // 2, 10, ImageFont.load_default(size=13))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", dpi=(DPI, DPI))
    write_bytes(buf.getvalue(), out_png)
    log.debug("wrote QC figure %s (%d panels, slice %d)", out_png, n, z)


def _centered(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, font: Any) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((x - (right - left) // 2, y), text, fill="black", font=font)


def _panel(
    sl: np.ndarray,
    mask_slices: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    box: tuple[int, int],
) -> Image.Image:
    """One phase's slice, windowed to its 1st-99th percentiles, scaled (nearest neighbour) to
    fit ``box`` with the pixel aspect of the spacing, mask outlines drawn over it."""
    lo, hi = np.percentile(sl, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    gray = np.round(255 * np.clip((sl - lo) / (hi - lo), 0, 1)).astype(np.uint8)
    rows, cols = gray.shape
    height_mm, width_mm = rows * spacing[1], cols * spacing[0]
    scale = min(box[0] / width_mm, box[1] / height_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    yi = np.minimum((np.arange(size[1]) * rows / size[1]).astype(int), rows - 1)
    xi = np.minimum((np.arange(size[0]) * cols / size[0]).astype(int), cols - 1)
    rgb = np.repeat(gray[yi][:, xi, None], 3, axis=2)
    for name, m in mask_slices.items():
        if m.any() and not m.all():
            up = m[yi][:, xi]
            edge = up & ~ndimage.binary_erosion(up, border_value=1)
            rgb[edge] = _RGB[CONTOUR_COLORS[name]]
    return Image.fromarray(rgb, "RGB")


def plot_cohort_montage(
    png_paths: Sequence[str | os.PathLike[str]],
    out_png: str | os.PathLike[str],
    *,
    titles: Sequence[str] | None = None,
    max_per_row: int = 4,
    thumb_inches: float = 4.0,
) -> None:
    """Tile per-patient QC PNGs into one montage (one thumbnail per file, row-major).

    Args:
        png_paths: QC figures to include.
        out_png: destination PNG (atomic write).
        titles: one caption per file (defaults to the file stem).
        max_per_row: thumbnails per row.
        thumb_inches: width of a thumbnail in inches (at ``DPI``).
    """
    from matplotlib.image import imread  # the cohort montage only (one job per cohort)

    if max_per_row < 1:
        raise ValueError("max_per_row must be >= 1")
    paths = [Path(p) for p in png_paths]
    if titles is not None and len(titles) != len(paths):
        raise ValueError(f"{len(titles)} titles for {len(paths)} images")
    n = max(1, len(paths))
    ncol = min(max_per_row, n)
    nrow = math.ceil(n / ncol)
    fig, axes = _figure(nrow, ncol, (thumb_inches * ncol, thumb_inches * 0.6 * nrow))
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= len(paths):
            continue
        ax.imshow(imread(paths[i]))
        ax.set_title(titles[i] if titles is not None else paths[i].stem, fontsize=8)
    if not paths:
        axes[0, 0].text(0.5, 0.5, "no QC images", ha="center", va="center")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.02, hspace=0.1)
    write_png(fig, out_png, dpi=DPI)
