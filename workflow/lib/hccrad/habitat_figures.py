"""Figures of the habitat analysis: the k-selection figure and per-patient habitat overlays."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hccrad import fileio

#: Subregion colours (1-based label -> RGB), colour-blind safe (Okabe-Ito).
COLORS = [
    (0.0, 0.45, 0.70),
    (0.90, 0.62, 0.0),
    (0.0, 0.62, 0.45),
    (0.80, 0.40, 0.0),
    (0.80, 0.60, 0.70),
    (0.34, 0.71, 0.91),
    (0.94, 0.89, 0.26),
    (0.0, 0.0, 0.0),
    (0.5, 0.5, 0.5),
]
_TITLES = {
    "calinski_harabasz": "Calinski-Harabasz (higher is better)",
    "silhouette": "Silhouette (higher is better)",
    "davies_bouldin": "Davies-Bouldin (lower is better)",
}


def plot_k_selection(
    metrics: pd.DataFrame, summary: pd.DataFrame, k: int, out_png: str | os.PathLike[str]
) -> None:
    """Three panels (CH, Silhouette, DB): per-patient curves (thin) and the cohort mean ± SD.

    Args:
        metrics: Per patient and k (``patient, k`` and the three indices).
        summary: Output of :func:`hccrad.habitats.choose_k`.
        k: The chosen k (marked).
        out_png: Destination (atomic write).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, m in zip(axes, _TITLES, strict=True):
        for _, rows in metrics.groupby("patient"):
            ax.plot(rows["k"], rows[m], color="0.8", lw=0.6)
        ax.errorbar(
            summary["k"], summary[f"{m}_mean"], yerr=summary[f"{m}_sd"], color="C0", lw=2,
            capsize=3, marker="o", label="mean ± SD over patients",
        )  # fmt: skip
        ax.axvline(k, color="C3", ls="--", label=f"chosen k = {k}")
        ax.set_title(_TITLES[m], fontsize=10)
        ax.set_xlabel("k (clusters)")
        ax.set_xticks(summary["k"])
    axes[0].legend(fontsize=8)
    n = metrics["patient"].nunique()
    fig.suptitle(f"Habitat k selection ({n} patients)", fontsize=11)
    fileio.write_png(fig, out_png, dpi=110)
    plt.close(fig)


def plot_habitat_overlay(
    image: sitk.Image,
    labels: sitk.Image,
    out_png: str | os.PathLike[str],
    *,
    title: str = "",
    n_slices: int = 3,
) -> None:
    """Axial slices through the tumor (largest area in the middle) with the subregions coloured.

    Args:
        image: Gray image on the label map's grid.
        labels: Subregion label map (0 outside, 1..k).
        out_png: Destination (atomic write).
        title: Figure title.
        n_slices: Number of slices (spread over the tumor's axial extent).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPS"))
    area = (lab > 0).reshape(lab.shape[0], -1).sum(1)
    zs = np.nonzero(area)[0]
    best = int(np.argmax(area))
    if len(zs) and n_slices > 1:
        picks = np.unique(np.round(np.linspace(zs[0], zs[-1], n_slices + 2)[1:-1]).astype(int))
        picks = sorted(set(picks.tolist()) | {best})[-n_slices:] if len(picks) < n_slices else picks
    else:
        picks = [best]
    ys, xs = np.nonzero(lab.max(0))
    pad = 6
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, lab.shape[1])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, lab.shape[2])
    inside = img[lab > 0]
    vmin, vmax = np.percentile(inside, [1, 99]) if inside.size else (img.min(), img.max())
    spread = vmax - vmin
    vmin, vmax = vmin - spread, vmax + 0.5 * spread
    k = int(lab.max())
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.5), squeeze=False)
    for ax, z in zip(axes[0], picks, strict=True):
        ax.imshow(img[z, y0:y1, x0:x1], cmap="gray", vmin=vmin, vmax=vmax)
        rgba = np.zeros((y1 - y0, x1 - x0, 4))
        for i in range(1, k + 1):
            rgba[lab[z, y0:y1, x0:x1] == i] = (*COLORS[(i - 1) % len(COLORS)], 0.55)
        ax.imshow(rgba)
        ax.set_title(f"slice {z}", fontsize=9)
        ax.axis("off")
    handles = [Patch(color=COLORS[(i - 1) % len(COLORS)], label=f"H{i}") for i in range(1, k + 1)]
    fig.legend(handles=handles, loc="lower center", ncol=k, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fileio.write_png(fig, out_png, dpi=110)
    plt.close(fig)
