"""Figures of hccrad.stats: valid PNGs, atomic writes, legend text and the at-risk table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from hccrad.stats import auc_ci, calibration, net_benefit
from hccrad.stats.figures import (
    _calibration_label,
    _roc_label,
    at_risk_table,
    plot_calibration,
    plot_decision_curve,
    plot_km,
    plot_roc,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, folder) -> None:
    assert path.exists() and path.read_bytes()[:8] == PNG_MAGIC
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    p_good = 1 / (1 + np.exp(-(2 * y - 1) * 1.2 - rng.normal(0, 1, 150)))
    p_weak = 1 / (1 + np.exp(-(2 * y - 1) * 0.3 - rng.normal(0, 1, 150)))
    return y, p_good, p_weak


def test_plot_roc_legend_and_png(tmp_path, scores):
    y, good, weak = scores
    out = plot_roc({"radiomics": (y, good), "clinical": (y, weak)}, tmp_path / "roc.png", "ROC")
    _assert_png(out, tmp_path)
    a, lo, hi = auc_ci(y, good)
    assert _roc_label("radiomics", y, good) == (
        f"radiomics: AUC {a:.3f} (95% CI {lo:.3f}-{hi:.3f})"
    )


def test_plot_calibration(tmp_path, scores):
    y, good, weak = scores
    out = plot_calibration({"a": (y, good), "b": (y, weak)}, tmp_path / "sub" / "cal.png")
    _assert_png(out, tmp_path / "sub")
    res = calibration(y, good)
    assert _calibration_label("a", res).startswith(f"a: slope {res.slope:.2f}")


def test_plot_decision_curve(tmp_path, scores):
    y, good, weak = scores
    t = np.arange(0.01, 0.8, 0.01)
    nb = pd.concat([net_benefit(y, good, t, "good"), net_benefit(y, weak, t, "weak")])
    out = plot_decision_curve(nb, tmp_path / "dca.png")
    _assert_png(out, tmp_path)
    with pytest.raises(ValueError):
        plot_decision_curve(nb.drop(columns="strategy"), tmp_path / "bad.png")


def test_plot_km_anderson_and_at_risk_table(tmp_path):
    df = pd.read_csv(shared_data("stats") / "anderson.csv", sep=" ")
    out = plot_km(df["t"], df["status"], df["Rx"], tmp_path / "km.png", title="6-MP")
    _assert_png(out, tmp_path)
    table = at_risk_table(df["t"], df["Rx"], [0, 10, 20])
    for rx in (0, 1):
        for tick in (0, 10, 20):
            want = int(((df["Rx"] == rx) & (df["t"] >= tick)).sum())
            assert table.loc[rx, tick] == want
    assert table.loc[0, 0] == 21 and table.loc[0, 10] == 15


def test_failed_write_leaves_nothing(tmp_path, scores, monkeypatch):
    import matplotlib.figure

    y, good, _ = scores
    target = tmp_path / "roc.png"
    target.write_bytes(b"old")

    def broken(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):  # hccrad.fileio.write_png renders into a buffer
            fname.write(b"partial")
        else:
            with open(fname, "wb") as fh:
                fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        plot_roc({"m": (y, good)}, target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png"]
