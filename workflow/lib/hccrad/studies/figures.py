"""A study's figures: ROC per split, calibration and decision curves, SHAP, nomogram, and the
placeholder PNG that stands in for a figure that cannot be drawn."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.fileio import placeholder_png
from hccrad.stats.figures import plot_calibration, plot_decision_curve, plot_roc
from hccrad.stats.models import plot_nomogram, shap_figures
from hccrad.stats.shap_force import shap_force_figure, shap_output_space
from hccrad.studies.evaluation import degenerate
from hccrad.studies.fitting import Fitted, StudyData
from hccrad.studies.spec import StudySpec

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence NumPy's runtime warnings of statistics on tiny splits (1 case, n = 2...)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def placeholder(path: Path, title: str, note: str) -> None:
    """Write a placeholder PNG saying why a figure was not drawn
    (:func:`hccrad.fileio.placeholder_png`) and log it."""
    placeholder_png(path, title, note)
    log.info("placeholder %s: %s", path.name, note)


def figure_split(spec: StudySpec, predictions: pd.DataFrame) -> str | None:
    """The configured figure split if it has both classes, else the first evaluable one."""
    first = spec.evaluation.get("figure_split", "validation")
    order = [first] + [s for s in ("validation", "external", "temporal", "train") if s != first]
    one = (
        predictions[predictions["model"] == predictions["model"].iloc[0]]
        if len(predictions)
        else predictions
    )
    for s in order:
        y = one.loc[one["split"] == s, "label"].to_numpy(float)
        if s in spec.splits.names and not degenerate(y):
            return s
    return None


def draw_roc(
    spec: StudySpec,
    pred: pd.DataFrame,
    ok: Sequence[str],
    split_names: Sequence[str],
    files: Mapping[str, Path],
    level: float,
) -> None:
    """``roc_{split}.png`` per split: the fitted models' ROC curves (a placeholder when none
    can be drawn)."""
    for s in split_names:
        curves = {}
        reason = "no fitted model"
        for name in ok:
            sub = pred[(pred["model"] == name) & (pred["split"] == s)]
            y = sub["label"].to_numpy(float)
            reason = degenerate(y)
            if not reason:
                curves[name] = (y, sub["score"].to_numpy(float))
        if curves:
            n = int((pred["split"] == s).sum() / max(len(ok), 1))
            plot_roc(
                curves, files[f"roc_{s}"], title=f"{spec.name}: ROC, {s} (n = {n})", level=level
            )
        else:
            placeholder(files[f"roc_{s}"], f"{spec.name}: ROC, {s}", reason)


def draw_calibration(
    spec: StudySpec,
    pred: pd.DataFrame,
    ok: Sequence[str],
    fig_split: str | None,
    dca: pd.DataFrame,
    files: Mapping[str, Path],
    ev: Mapping[str, Any],
) -> None:
    """``calibration.png`` and ``decision_curve.png`` on the figure split ``fig_split``
    (placeholders when there is none)."""
    if fig_split is None:
        for key, what in (
            ("calibration_png", "calibration"),
            ("decision_curve_png", "decision curve"),
        ):
            placeholder(files[key], f"{spec.name}: {what}", "no split with both classes")
        return
    curves = {}
    for name in ok:
        sub = pred[(pred["model"] == name) & (pred["split"] == fig_split)]
        curves[name] = (sub["label"].to_numpy(float), sub["score"].to_numpy(float))
    try:
        plot_calibration(
            curves,
            files["calibration_png"],
            title=f"{spec.name}: calibration, {fig_split}",
            n_bins=int(ev["calibration_bins"]),
            strategy=ev["calibration_strategy"],
        )
    except (InputError, ValueError) as err:
        placeholder(files["calibration_png"], f"{spec.name}: calibration", str(err))
    nb = dca[dca["split"] == fig_split]
    plot_decision_curve(
        nb, files["decision_curve_png"], title=f"{spec.name}: decision curve, {fig_split}"
    )


#: The SHAP figures of a study with an ``explain`` model (outputs of the same name).
SHAP_KEYS = ("shap_beeswarm", "shap_waterfall", "shap_force")


def force_patients(chosen: Sequence[str], y: pd.Series) -> dict[str, str]:
    """The force plot's patients: the first case and the first control of ``chosen`` by
    patient id (the paper's one example, "sample 149", cannot be identified), as
    panel title -> patient id; a class with no patient among ``chosen`` is left out."""
    out = {}
    for value, kind in ((1, "case"), (0, "control")):
        hit = sorted(p for p in chosen if int(y[p]) == value)
        if hit:
            out[f"{kind} {hit[0]}"] = hit[0]
    return out


def draw_shap(
    spec: StudySpec,
    data: StudyData,
    fitted: Mapping[str, Fitted],
    split: pd.Series,
    study: pd.Index,
    files: Mapping[str, Path],
) -> None:
    """SHAP beeswarm, waterfall (the highest-risk patient) and force plot (one case and one
    control, :func:`force_patients`) of the ``explain`` model on held-out patients (training
    patients when there is none), or placeholders saying why not."""
    name = spec.explain
    title = f"{spec.name}: SHAP of {name}"
    if name not in fitted:
        for key in SHAP_KEYS:
            placeholder(files[key], title, f"model {name} not fitted")
        return
    cfg = spec.shap
    held = [p for s in ("validation", "external", "temporal") for p in study if split[p] == s]
    chosen = held or [p for p in study if split[p] == "train"]
    chosen = sorted(chosen)[: int(cfg["max_patients"])]
    X = data.X[name].loc[chosen]
    prob, _ = fitted[name].predict(pd.Index(chosen))
    patient = chosen[int(np.argmax(prob))]
    estimator = fitted[name].estimator
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)  # SHAP asks for TeX fonts matplotlib may not have
    try:
        expl = shap_figures(
            estimator,
            X,
            files["shap_beeswarm"],
            files["shap_waterfall"],
            patient_index=patient,
            seed=data.seed,
            background=min(int(cfg["background"]), len(chosen)),
            nsamples=cfg.get("nsamples"),
            max_display=int(cfg["max_display"]),
        )
        rows = {t: chosen.index(p) for t, p in force_patients(chosen, data.y).items()}
        shap_force_figure(
            expl,
            {f"{spec.name}, {name}: {t}": r for t, r in rows.items()},
            files["shap_force"],
            space=shap_output_space(estimator),
            max_display=int(cfg["max_display"]),
        )
    except Exception as err:  # SHAP's explainers raise many error types
        log.warning("study %s: SHAP failed: %s", spec.name, err, exc_info=True)
        for key in SHAP_KEYS:
            placeholder(files[key], title, f"SHAP failed: {err}")
    finally:
        fonts.setLevel(level)


def draw_nomogram(
    spec: StudySpec,
    fitted: Mapping[str, Fitted],
    failed: Mapping[str, str],
    files: Mapping[str, Path],
) -> None:
    """The ``nomogram`` clinical model drawn as a nomogram, or a placeholder saying why not."""
    name = spec.nomogram
    title = f"{spec.name}: nomogram of {name}"
    if name not in fitted:
        placeholder(files["nomogram"], title, failed.get(name, "not fitted"))
        return
    try:
        plot_nomogram(fitted[name].estimator, files["nomogram"], title=title)
    except ValueError as err:
        placeholder(files["nomogram"], title, str(err))
