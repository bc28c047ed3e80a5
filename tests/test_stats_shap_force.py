"""SHAP force plots (hccrad.stats.shap_force) and their study wiring (studies.figures)."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hccrad.stats.models import build_pipeline, shap_explanation
from hccrad.stats.shap_force import force_panel, shap_force_figure, shap_output_space
from hccrad.studies.figures import SHAP_KEYS, draw_shap, force_patients


def toy(n: int = 60, p: int = 8, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"BoW_{i:02d}" for i in range(p)])
    X.index = [f"P{i:03d}" for i in range(n)]
    y = (X["BoW_00"] - 0.7 * X["BoW_01"] + 0.5 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return X, y


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_force_plot_adds_up_to_the_probability_of_each_patient(tmp_path: Path) -> None:
    X, y = toy()
    model = build_pipeline([], "extra_trees", {"n_estimators": 50}, seed=0).fit(X, y)
    expl = shap_explanation(model, X)
    case, control = int(np.flatnonzero(y == 1)[0]), int(np.flatnonzero(y == 0)[0])
    out = tmp_path / "force.png"
    panels = shap_force_figure(expl, {"case": case, "control": control}, out, max_display=3)
    assert png_size(out) == (1200, 624)  # 10 x 5.2 in at 120 dpi: two panels
    prob = model.predict_proba(X.iloc[[case, control]])[:, 1]
    assert [p.title for p in panels] == ["case", "control"]
    for panel, p, row in zip(panels, prob, (case, control), strict=True):
        assert panel.base + panel.contributions.sum() == pytest.approx(p, abs=1e-9)
        assert panel.output == pytest.approx(p, abs=1e-9)
        assert panel.base == pytest.approx(model.predict_proba(X)[:, 1].mean(), abs=0.05)
        top = expl.values[row][np.argsort(-np.abs(expl.values[row]))[:3]]
        np.testing.assert_allclose(panel.contributions.iloc[:3].to_numpy(), top)
        others = panel.contributions.index[3:]
        assert set(others) <= {f"{k} other (+)" for k in range(6)} | {
            f"{k} other (-)" for k in range(6)
        }
        assert sum(int(o.split()[0]) for o in others) == X.shape[1] - 3
        assert panel.data.iloc[:3].notna().all() and panel.data.iloc[3:].isna().all()
    assert shap_output_space(model) == "probability"


def test_force_panel_of_boosted_trees_is_in_log_odds() -> None:
    X, y = toy(seed=1)
    model = build_pipeline([], "xgboost", {"n_estimators": 30}, seed=0).fit(X, y)
    expl = shap_explanation(model, X.iloc[:4])
    panel = force_panel(expl, 2, "P002", max_display=20)
    assert len(panel.contributions) == X.shape[1]  # nothing merged
    margin = model["classifier"].predict(model["scaler"].transform(X.iloc[[2]]), output_margin=True)
    assert panel.base + panel.contributions.sum() == pytest.approx(float(margin[0]), abs=1e-4)
    assert shap_output_space(model) == "log-odds"


def test_force_figure_needs_a_patient(tmp_path: Path) -> None:
    X, y = toy()
    model = build_pipeline([], "extra_trees", {"n_estimators": 10}, seed=0).fit(X, y)
    with pytest.raises(ValueError, match="no patient"):
        shap_force_figure(shap_explanation(model, X.iloc[:3]), {}, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_force_patients_first_case_and_control_by_id() -> None:
    y = pd.Series({"B": 1, "A": 0, "D": 1, "C": 0})
    assert force_patients(["D", "C", "B", "A"], y) == {"case B": "B", "control A": "A"}
    assert force_patients(["D", "B"], y) == {"case B": "B"}


def _study(tmp_path: Path, fitted: bool) -> tuple[SimpleNamespace, dict[str, Path]]:
    X, y = toy(n=50)
    model = build_pipeline([], "extra_trees", {"n_estimators": 30}, seed=0)
    train = X.index[:30]
    model.fit(X.loc[train], y[:30])
    fit = SimpleNamespace(
        estimator=model, predict=lambda idx: (model.predict_proba(X.loc[idx])[:, 1], None)
    )
    spec = SimpleNamespace(
        name="mil_er",
        explain="mil",
        shap={"max_patients": 40, "background": 10, "nsamples": 100, "max_display": 5},
    )
    data = SimpleNamespace(X={"mil": X}, y=pd.Series(y, index=X.index), seed=0)
    split = pd.Series(["train"] * 30 + ["validation"] * 20, index=X.index)
    files = {k: tmp_path / f"{k}.png" for k in SHAP_KEYS}
    draw_shap(spec, data, {"mil": fit} if fitted else {}, split, X.index, files)
    return data, files


def test_draw_shap_writes_the_force_plot_of_a_held_out_case_and_control(tmp_path: Path) -> None:
    data, files = _study(tmp_path, fitted=True)
    held = data.y.index[30:]
    assert force_patients(list(held), data.y) == {
        f"{k} {p}": p
        for k, p in (
            ("case", min(held[data.y[held] == 1])),
            ("control", min(held[data.y[held] == 0])),
        )
    }
    assert png_size(files["shap_force"]) == (1200, 624)  # both panels, not a placeholder
    assert all(png_size(files[k])[0] > 500 for k in ("shap_beeswarm", "shap_waterfall"))


def test_draw_shap_placeholders_without_the_model(tmp_path: Path) -> None:
    _, files = _study(tmp_path, fitted=False)
    assert all(png_size(files[k]) == (500, 220) for k in SHAP_KEYS)
