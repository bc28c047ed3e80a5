"""SHAP force plots drawn with matplotlib (no JavaScript): one panel per patient.

A force plot shows one patient's additive explanation on the model's output axis: the
features pushing the output up (red) stack leftwards from the prediction ``f(x)``, those
pushing it down (blue) stack rightwards, and the two blocks meet at ``f(x)``; the expected
output (base value) is where they would balance. ``base + sum(contributions) = f(x)``
in the explainer's output space (:func:`shap_output_space`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hccrad.fileio import write_png

__all__ = ["ForcePanel", "force_panel", "shap_force_figure", "shap_output_space"]

_POS, _NEG = "#ff0051", "#008bfb"  # SHAP's red and blue
#: Final estimators whose TreeExplainer output is the log-odds margin, not the probability.
_MARGIN_NAMES = ("GradientBoosting", "HistGradientBoosting", "XGB", "LGBM")


@dataclass(frozen=True)
class ForcePanel:
    """One patient's force plot as drawn: ``base + contributions.sum() == output``."""

    title: str
    base: float  # the explainer's expected output
    output: float  # f(x): the patient's output in the explainer's space
    #: Drawn segments (feature -> SHAP value), largest |value| first; features beyond
    #: ``max_display`` merged per sign into "k other (+)" / "k other (-)".
    contributions: pd.Series
    data: pd.Series  # the shown features' values (NaN for the merged segments)


def shap_output_space(model: Any) -> str:
    """The space of :func:`hccrad.stats.models.shap_explanation`'s values for ``model``:
    ``"log-odds"`` for boosted trees (margin), ``"probability"`` otherwise."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps is not None else model
    name = type(final).__name__
    return "log-odds" if any(name.startswith(n) for n in _MARGIN_NAMES) else "probability"


def force_panel(expl: Any, row: int, title: str = "", max_display: int = 10) -> ForcePanel:
    """The segments of row ``row`` of a ``shap.Explanation`` (one output per row)."""
    values = np.asarray(expl.values[row], dtype=float)
    data = np.asarray(expl.data[row], dtype=float)
    names = [str(n) for n in expl.feature_names]
    base = float(np.ravel(expl.base_values)[row])
    order = np.argsort(-np.abs(values), kind="stable")
    keep, rest = order[:max_display], order[max_display:]
    contrib = pd.Series(values[keep], index=[names[i] for i in keep], dtype=float)
    shown = pd.Series(data[keep], index=contrib.index, dtype=float)
    for sign, tag in ((1.0, "+"), (-1.0, "-")):
        part = [i for i in rest if np.sign(values[i]) == sign]
        if part:
            key = f"{len(part)} other ({tag})"
            contrib[key] = float(values[part].sum())
            shown[key] = np.nan
    return ForcePanel(title, base, base + float(values.sum()), contrib, shown)


def _draw(ax: Any, panel: ForcePanel, xlabel: str) -> None:
    """Draw one panel: red block left of f(x), blue block right of it, base value marked."""
    c = panel.contributions
    pos = c[c > 0].sort_values(ascending=False)
    neg = c[c < 0].sort_values()
    out = panel.output
    lo, hi = out - float(pos.sum()), out - float(neg.sum())
    span = max(hi - lo, abs(panel.base - out), 1e-12)
    segments = []
    edge = out
    for name, v in pos.items():
        segments.append((str(name), edge - v, v, _POS))
        edge -= v
    edge = out
    for name, v in neg.items():
        segments.append((str(name), edge, -v, _NEG))
        edge -= v
    for k, (name, left, width, colour) in enumerate(segments):
        ax.barh(0, width, left=left, height=0.5, color=colour, edgecolor="white", linewidth=1)
        if width >= 0.04 * span:
            value = panel.data.get(name, np.nan)
            text = name if np.isnan(value) else f"{name} = {value:.3g}"
            y = -0.45 - 0.3 * (k % 2)
            ax.text(left + width / 2, y, text, ha="center", va="top", fontsize=7, color=colour)
    ax.vlines(out, -0.32, 0.4, color="black", linewidth=1.5)
    ax.vlines(panel.base, -0.32, 0.6, color="grey", linewidth=1, linestyle="--")
    ax.text(out, 0.42, f"f(x) = {out:.3f}", ha="center", va="bottom", fontsize=9, weight="bold")
    ax.text(
        panel.base,
        0.62,
        f"base value {panel.base:.3f}",
        ha="center",
        va="bottom",
        fontsize=8,
        color="grey",
    )
    pad = 0.08 * span
    ax.set_xlim(min(lo, panel.base) - pad, max(hi, panel.base) + pad)
    ax.set_ylim(-1.2, 0.95)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(panel.title, fontsize=10, loc="left")
    ax.set_xlabel(f"model output ({xlabel}); red raises it, blue lowers it", fontsize=8)


def shap_force_figure(
    expl: Any,
    rows: Mapping[str, int],
    out: str | os.PathLike[str],
    *,
    space: str = "probability",
    max_display: int = 10,
) -> list[ForcePanel]:
    """Force plots of some rows of ``expl`` (title -> row position), one panel each, written
    atomically as one PNG. ``space`` labels the x axis (:func:`shap_output_space`).

    Returns:
        The drawn panels, in the order of ``rows``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no patient to draw a force plot of")
    panels = [force_panel(expl, int(r), t, max_display) for t, r in rows.items()]
    fig = Figure(figsize=(10.0, 2.6 * len(panels)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        _draw(ax, panel, space)
    fig.tight_layout()
    write_png(fig, out, dpi=120)
    return panels
