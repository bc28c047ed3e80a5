"""Per-center feature drift: how far each center's radiomics features sit from the other centers'.

For every radiomics feature and every center ``c`` of a modality, the standardised mean difference
(Cohen's d with the pooled standard deviation; Cohen 1988, eq. 2.5.2) between the patients of
``c`` and those of every other center of the same modality is

    SMD = (mean_c - mean_rest) / s_pooled,
    s_pooled = sqrt(((n_c - 1) s_c^2 + (n_rest - 1) s_rest^2) / (n_c + n_rest - 2)),

with sample standard deviations (ddof 1) over the patients with a value. A feature drifts at
``c`` when ``|SMD| > threshold`` (default 0.5, a "medium" effect). When ``s_pooled = 0`` the SMD
is 0 for equal means and +-inf otherwise (a constant feature that differs between centers
drifts). Modalities are never mixed: MR and CT features share names but not scales. Centers with
fewer than two patients with a value (or fewer than two in the rest) give no SMD (NaN).

Drift says that the centers' feature distributions differ; it does not say why (scanner and
protocol, but also case mix): compare with the baseline table and the per-center AUCs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from hccrad.audit._io import PathLike, new_figure
from hccrad.fileio import placeholder_png, write_png

log = logging.getLogger(__name__)

#: Default |SMD| above which a feature drifts.
DEFAULT_THRESHOLD = 0.5
#: Resolution of the drift figure.
FIGURE_DPI = 110

DRIFT_COLUMNS = [
    "modality",
    "center",
    "feature",
    "n_center",
    "n_rest",
    "mean_center",
    "mean_rest",
    "sd_center",
    "sd_rest",
    "sd_pooled",
    "smd",
    "abs_smd",
    "flagged",
]
SUMMARY_COLUMNS = [
    "modality",
    "center",
    "n_patients",
    "n_features",
    "n_flagged",
    "share_flagged",
    "median_abs_smd",
    "max_abs_smd",
    "threshold",
]


def standardized_mean_difference(x: np.ndarray, y: np.ndarray) -> float:
    """SMD of ``x`` vs ``y`` with the pooled SD (NaNs dropped; NaN with fewer than 2 per group).

    Args:
        x: values of one group (e.g. one center).
        y: values of the other group (e.g. every other center).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return float("nan")
    sp2 = ((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2)
    diff = x.mean() - y.mean()
    if sp2 <= 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / np.sqrt(sp2))


def _group_stats(values: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    return values.count(), values.mean(), values.var(ddof=1)


def center_drift(
    features: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """The SMD of every feature for every center vs the other centers of its modality.

    Args:
        features: one row per patient (index: patient id), numeric feature columns.
        patients: ``patient, center, modality`` of the patients (one row each).
        threshold: |SMD| above which ``flagged`` is True.

    Returns:
        One row per modality x center x feature with the columns of :data:`DRIFT_COLUMNS`.
    """
    if threshold <= 0:
        raise ValueError(f"drift threshold must be > 0, got {threshold}")
    meta = patients.drop_duplicates("patient").set_index("patient")[["center", "modality"]]
    numeric = features.select_dtypes(include="number")
    common = numeric.index.intersection(meta.index)
    numeric, meta = numeric.loc[common], meta.loc[common]
    frames = []
    for modality in sorted(meta["modality"].unique()):
        in_mod = meta.index[meta["modality"] == modality]
        values = numeric.loc[in_mod].dropna(axis=1, how="all")
        centers = meta.loc[in_mod, "center"]
        for center in sorted(centers.unique()):
            mine = values.loc[centers == center]
            rest = values.loc[centers != center]
            n1, m1, v1 = _group_stats(mine)
            n2, m2, v2 = _group_stats(rest)
            dof = n1 + n2 - 2
            with np.errstate(divide="ignore", invalid="ignore"):
                sp2 = ((n1 - 1) * v1 + (n2 - 1) * v2) / dof
                diff = m1 - m2
                smd = diff / np.sqrt(sp2)
            smd = smd.where(sp2 > 0, np.sign(diff) * np.inf).where(~((sp2 <= 0) & (diff == 0)), 0.0)
            smd = smd.where((n1 >= 2) & (n2 >= 2))
            frames.append(
                pd.DataFrame(
                    {
                        "modality": modality,
                        "center": center,
                        "feature": values.columns,
                        "n_center": n1.to_numpy(),
                        "n_rest": n2.to_numpy(),
                        "mean_center": m1.to_numpy(),
                        "mean_rest": m2.to_numpy(),
                        "sd_center": np.sqrt(v1.to_numpy()),
                        "sd_rest": np.sqrt(v2.to_numpy()),
                        "sd_pooled": np.sqrt(sp2.to_numpy()),
                        "smd": smd.to_numpy(dtype=float),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["abs_smd"] = out["smd"].abs()
    out["flagged"] = out["abs_smd"] > threshold
    out[["n_center", "n_rest"]] = out[["n_center", "n_rest"]].astype(int)
    return out[DRIFT_COLUMNS]


def drift_summary(
    drift: pd.DataFrame, patients: pd.DataFrame, *, threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """Per modality x center: features with an SMD, how many drift and the share that drift."""
    rows = []
    counts = patients.drop_duplicates("patient").groupby(["modality", "center"]).size()
    for (modality, center), g in drift.groupby(["modality", "center"], sort=True):
        valid = g[g["smd"].notna()]
        n = len(valid)
        flagged = int(valid["flagged"].sum())
        rows.append(
            {
                "modality": modality,
                "center": center,
                "n_patients": int(counts.get((modality, center), 0)),
                "n_features": n,
                "n_flagged": flagged,
                "share_flagged": flagged / n if n else np.nan,
                "median_abs_smd": float(valid["abs_smd"].median()) if n else np.nan,
                "max_abs_smd": float(valid["abs_smd"].max()) if n else np.nan,
                "threshold": threshold,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def plot_drift(
    drift: pd.DataFrame,
    summary: pd.DataFrame,
    out_png: PathLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    clip: float = 3.0,
) -> None:
    """Histogram of |SMD| per center (one panel per modality) with the threshold and the share
    of flagged features in the legend; a placeholder when no SMD could be computed."""
    valid = drift[drift["smd"].notna()]
    if valid.empty:
        placeholder_png(
            out_png, "Center feature drift", "fewer than two centers with two patients each"
        )
        return
    modalities = sorted(valid["modality"].unique())
    fig = new_figure((5.2 * len(modalities), 3.8))
    axes = fig.subplots(1, len(modalities), squeeze=False)[0]
    bins = np.linspace(0.0, clip, 31)
    shares: Mapping[tuple[str, str], float] = summary.set_index(["modality", "center"])[
        "share_flagged"
    ].to_dict()
    for ax, modality in zip(axes, modalities, strict=True):
        sub = valid[valid["modality"] == modality]
        for center, g in sub.groupby("center", sort=True):
            share = shares.get((modality, center), np.nan)
            ax.hist(
                np.clip(g["abs_smd"].to_numpy(dtype=float), 0, clip),
                bins=bins,
                histtype="step",
                linewidth=1.6,
                label=f"{center}: {100 * share:.0f}% > {threshold:g}",
            )
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{modality}: each center vs the others")
        ax.set_xlabel(f"|SMD| (clipped at {clip:g})")
        ax.set_ylabel("features")
        ax.legend(title="center: share drifting", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    write_png(fig, out_png, dpi=FIGURE_DPI)
    log.info("drift figure: %d modality panel(s)", len(modalities))
