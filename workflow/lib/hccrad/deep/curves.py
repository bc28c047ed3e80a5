"""Training curves of the deep models (PNG, written atomically)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hccrad.fileio import write_png


def plot_member_curves(histories: Mapping[str, list[dict[str, Any]]], out_png: str | Path) -> None:
    """Training loss and validation AUC per epoch of every member model of a bundle (one per
    habitat subregion or per phase), one line each, labelled by the mapping's keys."""
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for name, history in histories.items():
        ep = [h["epoch"] for h in history]
        ax1.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label=name)
        auc = [np.nan if h["val_auc"] is None else h["val_auc"] for h in history]
        ax2.plot(ep, auc, "o-", ms=3, label=name)
    ax1.set(xlabel="epoch", ylabel="training loss (class-weighted CE)", title="Loss")
    ax2.set(xlabel="epoch", ylabel="AUC", title="Validation AUC", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if histories:
            ax.legend(fontsize=8)
    fig.tight_layout()
    write_png(fig, out_png, dpi=100)


def plot_curves(history: list[dict[str, Any]], best_epoch: int, out_png: str | Path) -> None:
    """Loss (train, validation) and validation-AUC curves per epoch, best epoch marked."""
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    val = [h["val_loss"] for h in history]
    if any(v is not None and math.isfinite(v) for v in val):
        ax1.plot(ep, [np.nan if v is None else v for v in val], "o-", ms=3, label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (class-weighted CE)", title="Loss")
    ax1.legend()
    auc = [np.nan if h["val_auc"] is None else h["val_auc"] for h in history]
    ax2.plot(ep, auc, "o-", ms=3, color="tab:green")
    ax2.set(xlabel="epoch", ylabel="AUC", title="Validation AUC", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    write_png(fig, out_png, dpi=100)
