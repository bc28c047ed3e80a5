"""Publication figures: ROC curves, calibration plots, decision curves, Kaplan-Meier curves.

Every function renders with matplotlib's Agg backend and writes its PNG atomically
(:func:`hccrad.fileio.write_png`), so an interrupted job never leaves a partial figure. Each
returns the path written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from hccrad.fileio import write_png
from hccrad.stats._checks import ArrayLike, survival_data
from hccrad.stats.roc import CalibrationResult, auc_ci, calibration, roc_curve
from hccrad.stats.survival import kaplan_meier, logrank

__all__ = ["at_risk_table", "plot_calibration", "plot_decision_curve", "plot_km", "plot_roc"]

PathLike = str | os.PathLike[str]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``out_png`` atomically (:func:`hccrad.fileio.write_png`) and close it."""
    try:
        write_png(fig, out_png, dpi=dpi)
    finally:
        _pyplot().close(fig)
    return Path(out_png)


def _roc_label(name: str, y_true: ArrayLike, score: ArrayLike, level: float = 0.95) -> str:
    a, lo, hi = auc_ci(y_true, score, level)
    return f"{name}: AUC {a:.3f} ({100 * level:.0f}% CI {lo:.3f}-{hi:.3f})"


def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    out_png: PathLike,
    title: str = "ROC curves",
    level: float = 0.95,
) -> Path:
    """ROC curves of one or more scores with ``AUC (95% CI)`` (DeLong) in the legend.

    Args:
        curves: ``{name: (y_true, score)}``; higher score = case.
        out_png: Destination PNG.
        title: Figure title.
        level: Confidence level of the AUC interval.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0), constrained_layout=True)
    for name, (y, s) in curves.items():
        roc = roc_curve(y, s)
        ax.plot(roc["fpr"], roc["tpr"], lw=1.8, label=_roc_label(name, y, s, level))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="Sensitivity")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_png)


def _calibration_label(name: str, res: CalibrationResult) -> str:
    return f"{name}: slope {res.slope:.2f}, intercept {res.intercept:.2f}, Brier {res.brier:.3f}"


def plot_calibration(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    out_png: PathLike,
    title: str = "Calibration",
    n_bins: int = 10,
    strategy: str = "quantile",
) -> Path:
    """Binned calibration curves (observed vs mean predicted, see
    :func:`hccrad.stats.roc.calibration`) with slope, intercept and Brier score in the legend.

    Args:
        curves: ``{name: (y_true, probability)}``.
        out_png: Destination PNG.
        title: Figure title.
        n_bins, strategy: Binning of the curve.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0), constrained_layout=True)
    for name, (y, p) in curves.items():
        res = calibration(y, p, n_bins=n_bins, strategy=strategy)
        label = _calibration_label(name, res)
        ax.plot(res.curve["mean_predicted"], res.curve["observed"], marker="o", lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="ideal")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Predicted probability", ylabel="Observed fraction")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out_png)


def plot_decision_curve(
    net_benefit_df: pd.DataFrame,
    out_png: PathLike,
    title: str = "Decision curve",
) -> Path:
    """Decision curves from :func:`hccrad.stats.roc.net_benefit` output.

    Several models may be concatenated (duplicated ``all``/``none`` rows are dropped). The
    y-axis runs from a little below 0 to a little above the largest net benefit, so the
    plunging "treat all" curve does not squash the others.
    """
    need = {"threshold", "strategy", "net_benefit"}
    if not need <= set(net_benefit_df.columns):
        raise ValueError(f"net_benefit_df needs columns {sorted(need)}")
    nb = net_benefit_df.drop_duplicates(["threshold", "strategy"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.5), constrained_layout=True)
    styles = {
        "all": {"color": "0.4", "ls": "-", "lw": 1},
        "none": {"color": "k", "ls": ":", "lw": 1},
    }
    order = [s for s in nb["strategy"].unique() if s not in styles] + ["all", "none"]
    for strategy in order:
        rows = nb[nb["strategy"] == strategy].sort_values("threshold")
        if rows.empty:
            continue
        label = {"all": "treat all", "none": "treat none"}.get(strategy, strategy)
        ax.plot(rows["threshold"], rows["net_benefit"], label=label, **styles.get(strategy, {}))
    top = float(np.nanmax(nb["net_benefit"].to_numpy(dtype=float)))
    top = max(top, 0.01)
    ax.set_ylim(-0.15 * top, 1.1 * top)
    ax.set_xlim(nb["threshold"].min(), nb["threshold"].max())
    ax.set(xlabel="Threshold probability", ylabel="Net benefit")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out_png)


def at_risk_table(time: ArrayLike, group: ArrayLike, ticks: ArrayLike) -> pd.DataFrame:
    """Number at risk (``time >= tick``) per group (rows, sorted) and tick (columns)."""
    t = np.asarray(time, dtype=float)
    g = np.asarray(group)
    levels = np.unique(g)
    ticks = np.asarray(ticks, dtype=float)
    data = {tick: [int(np.sum((g == lev) & (t >= tick))) for lev in levels] for tick in ticks}
    return pd.DataFrame(data, index=pd.Index(levels, name="group"))


def plot_km(
    time: ArrayLike,
    event: ArrayLike,
    group: ArrayLike,
    out_png: PathLike,
    title: str = "Kaplan-Meier",
    xlabel: str = "Time",
) -> Path:
    """Kaplan-Meier curves per group with censoring marks, the log-rank p-value and a
    number-at-risk table under the plot (counts at the x-axis ticks)."""
    t, e = survival_data(time, event)
    g = np.asarray(group)
    lr = logrank(t, e, g)
    plt = _pyplot()
    fig, (ax, ax_tab) = plt.subplots(
        2,
        1,
        figsize=(6.4, 5.6),
        gridspec_kw={"height_ratios": [4, 1.1]},
        constrained_layout=True,
        sharex=True,
    )
    levels = np.unique(g)
    for i, lev in enumerate(levels):
        sel = g == lev
        km = kaplan_meier(t[sel], e[sel])
        color = f"C{i % 10}"
        ax.step(km["time"], km["survival"], where="post", color=color, lw=1.8, label=str(lev))
        ax.fill_between(
            km["time"], km["ci_lower"], km["ci_upper"], step="post", color=color, alpha=0.12
        )
        cens = km[km["censored"] > 0]
        ax.plot(cens["time"], cens["survival"], "|", color=color, ms=7)
    ptxt = "p < 0.001" if lr.p < 0.001 else f"p = {lr.p:.3f}"
    ax.text(0.03, 0.05, f"log-rank {ptxt}", transform=ax.transAxes)
    ax.set(ylim=(0, 1.02), ylabel="Survival probability")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(0, float(t.max()) * 1.02 if t.max() > 0 else 1.0)
    ticks = [x for x in ax.get_xticks() if 0 <= x <= t.max()]
    table = at_risk_table(t, g, ticks)
    for i, lev in enumerate(table.index):
        for tick in ticks:
            ax_tab.text(tick, i, str(table.loc[lev, tick]), ha="center", va="center", fontsize=8)
    ax_tab.set_yticks(range(len(table.index)), [str(v) for v in table.index])
    ax_tab.set_ylim(len(table.index) - 0.5, -0.5)
    ax_tab.set_xlabel(xlabel)
    ax_tab.set_title("Number at risk", fontsize=9, loc="left")
    for side in ("top", "right", "left"):
        ax_tab.spines[side].set_visible(False)
    ax_tab.tick_params(axis="y", length=0, pad=16)
    for i, label in enumerate(ax_tab.get_yticklabels()):
        label.set_color(f"C{i % 10}")
    return _save(fig, out_png)
