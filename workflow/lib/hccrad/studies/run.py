"""Running a study: split the patients, fit every model on the training patients, predict
every split and write the tables, figures and summaries of :func:`study_outputs`.

:func:`run_study` drives five stages: the analysed patients and their designs, the fitting,
the tables, the figures (survival included) and the summaries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.fileio import write_json, write_parquet
from hccrad.stats import fuse_blocks, youden_cutoff
from hccrad.studies.evaluation import (
    PATHOLOGY_COLUMNS,
    agreement_table,
    baseline_tables,
    by_group_table,
    calibration_table,
    comparison_table,
    decision_curve_table,
    degenerate,
    pathology_table,
    performance_table,
    threshold_grid,
)
from hccrad.studies.figures import (
    draw_calibration,
    draw_nomogram,
    draw_roc,
    draw_shap,
    figure_split,
    placeholder,
    quiet,
)
from hccrad.studies.files import study_outputs
from hccrad.studies.fitting import (
    Fitted,
    StudyData,
    fit_model,
    min_class_count,
    stack_scores,
)
from hccrad.studies.spec import EVAL_SPLITS, StudySpec
from hccrad.studies.splits import study_splits
from hccrad.studies.survival import outcome_members, score_tests, survival_analysis
from hccrad.studies.tables import block_table, study_clinical

log = logging.getLogger(__name__)

#: Columns (and types) of ``predictions.parquet``.
PREDICTION_TYPES = {
    "patient": str,
    "split": str,
    "model": str,
    "score": float,
    "linear_predictor": float,
    "label": int,
}


@dataclass
class _Run:
    """What every stage of one run reads: the study, its folder and its patients' split."""

    spec: StudySpec
    seed: int
    out: Path
    files: dict[str, Path]
    clinical: pd.DataFrame  # the study's patients (its modality), derived columns added
    split: pd.Series  # split per patient of ``clinical``
    notes: list[str]  # the notes of metrics.json, in order
    # metrics.json agreement: kappa per reader pair (agreement.parquet's main columns)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    # metrics.json pathology: r per selected feature and pathology column
    # (pathology_correlation.parquet's main columns)
    pathology: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Patients:
    """The analysed patients: labelled, in an evaluated split, with a row in every used block."""

    data: StudyData
    study: pd.Index
    excluded: dict[str, str]  # labelled patients left out, with the reason
    # outcome cohort -> its patients with features (scored by the fitted models, never fitted
    # on; their rows are in ``data.X`` only so that the pipelines can predict them)
    outcome: dict[str, pd.Index]


@dataclass
class _Fits:
    """The fitting stage's result."""

    fitted: dict[str, Fitted]
    failed: dict[str, str]  # model -> why it has no fit
    scores: dict[str, tuple[np.ndarray, np.ndarray]]  # model -> (probability, log-odds)
    ok: list[str]  # fitted models, in declaration order
    pred: pd.DataFrame  # predictions.parquet
    cutoffs: dict[str, float]  # training Youden cut-off per fitted model


def _icc_frame(table: pd.DataFrame | None) -> pd.DataFrame | None:
    if table is None:
        return None
    t = table.set_index("feature") if "feature" in table.columns else table
    t.index = t.index.astype(str)
    return t


def _study_split(
    spec: StudySpec, clinical: pd.DataFrame, splits: pd.DataFrame | None, seed: int
) -> tuple[pd.DataFrame, bool]:
    if splits is None:
        return study_splits(spec, clinical, seed), True
    if not {"patient", "split"} <= set(splits.columns):
        raise InputError(f"study {spec.name}: the splits table needs columns patient and split")
    table = splits[["patient", "split"]].astype({"patient": str})
    lacking = sorted(set(clinical.index) - set(table["patient"]))
    if lacking:
        raise InputError(f"study {spec.name}: patient(s) {lacking[:10]} missing from the splits")
    return table, False


def run_study(
    spec: StudySpec,
    tables: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    seed: int | None = None,
    *,
    splits: pd.DataFrame | None = None,
    patients: Mapping[str, str] | None = None,
    backbones: Mapping[str, tuple[Path, Mapping[str, Path]]] | None = None,
) -> dict[str, Any]:
    """Split, fit every model on the training patients, predict every split, write the outputs.

    Args:
        spec: The study (:func:`load_study`).
        tables: ``clinical`` (required; index or column ``patient``) and, as the blocks need,
            ``radiomics``, ``habitats``, ``reader_icc``, ``reader_icc_intra`` and
            ``table_{block}`` (parquet tables
            indexed by patient); see :func:`study_inputs`.
        out_dir: The study folder; receives :func:`study_outputs` (and ``splits.parquet`` when
            ``splits`` is not given).
        seed: Used when the study sets no ``seed`` (default 42).
        splits: A ``patient, split`` table to use instead of computing it (the workflow computes
            it in its own rule so that deep-learning training can use the same split).
        patients: ``{patient: modality}`` of the cohort sheet (see :func:`study_clinical`).
        backbones: ``{deep model: (checkpoint.pt, {patient: network input .npz})}`` of the
            networks that models train end to end (``head.backbone``).

    Returns:
        The summary written to ``metrics.json``.

    Raises:
        InputError: No patient of the study's modality, a missing label/column/table.
    """
    seed = int(spec.seed if spec.seed is not None else (42 if seed is None else seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / v for k, v in study_outputs(spec).items()}
    clinical = study_clinical(spec, tables["clinical"], patients)
    split_table, computed = _study_split(spec, clinical, splits, seed)
    if computed:
        write_parquet(split_table, out / "splits.parquet")
    split = pd.Series(split_table["split"].to_numpy(), index=split_table["patient"].to_numpy())
    run = _Run(spec, seed, out, files, clinical, split.reindex(clinical.index), [])
    pts = _patients(run, tables, backbones)
    fits = _fitting(run, pts)
    perf, comp, dca = _tables(run, pts, fits)
    fig_split, survival_info = _figures(run, pts, fits, dca)
    metrics = _summaries(run, pts, fits, perf, comp, fig_split, survival_info)
    log.info("study %s: %d models fitted, outputs in %s", spec.name, len(fits.ok), out)
    absent = [str(p) for p in files.values() if not p.exists()]
    if absent:  # pragma: no cover - a bug, not a data problem
        raise RuntimeError(f"study {spec.name}: outputs not written: {absent}")
    return metrics


def study_data(
    spec: StudySpec,
    tables: Mapping[str, pd.DataFrame],
    splits: pd.DataFrame | None = None,
    seed: int | None = None,
    *,
    patients: Mapping[str, str] | None = None,
    backbones: Mapping[str, tuple[Path, Mapping[str, Path]]] | None = None,
) -> tuple[StudyData, pd.Series]:
    """The analysed patients' labels and per-model designs, and their split, exactly as
    :func:`run_study` builds them, without fitting or writing anything (for diagnostics such as
    ``tests/bench/signal_ceiling.py``). Arguments as :func:`run_study`."""
    seed = int(spec.seed if spec.seed is not None else (42 if seed is None else seed))
    clinical = study_clinical(spec, tables["clinical"], patients)
    split_table, _ = _study_split(spec, clinical, splits, seed)
    split = pd.Series(split_table["split"].to_numpy(), index=split_table["patient"].to_numpy())
    run = _Run(spec, seed, Path("."), {}, clinical, split.reindex(clinical.index), [])
    pts = _patients(run, tables, backbones)
    return pts.data, split.reindex(pts.study)


# ---- stage 1: patients ----------------------------------------------------------------------


def _patients(
    run: _Run,
    tables: Mapping[str, pd.DataFrame],
    backbones: Mapping[str, tuple[Path, Mapping[str, Path]]] | None = None,
) -> _Patients:
    """Patients: labelled, in an evaluated split, with a row in every used block; and the
    design of every pipeline model on them."""
    spec, clinical, split = run.spec, run.clinical, run.split
    label = pd.to_numeric(clinical[spec.label], errors="coerce")
    bad_label = label.notna() & ~label.isin([0, 1])
    if bad_label.any():
        which = list(label.index[bad_label][:5])
        raise InputError(f"study {spec.name}: label {spec.label!r} is not 0/1 for {which}")
    candidates = [p for p in clinical.index if pd.notna(label[p]) and split[p] in EVAL_SPLITS]
    blocks, block_cats = {}, {}
    for b in spec.used_blocks:
        blocks[b], block_cats[b] = block_table(spec, spec.blocks[b], tables, clinical)
    excluded: dict[str, str] = {}
    for p in candidates:
        lacking = [b for b in blocks if p not in blocks[b].index]
        if lacking:
            excluded[p] = f"no row in block(s) {', '.join(lacking)}"
    if excluded:
        run.notes.append(f"{len(excluded)} labelled patient(s) excluded: no features in some block")
    study = pd.Index([p for p in candidates if p not in excluded], name="patient")
    outcome = _outcome_patients(run, blocks)
    scored = study.append(pd.Index([p for ix in outcome.values() for p in ix])).unique()
    y = label.loc[study].astype(int)
    X, cats, rad = _designs(spec, blocks, block_cats, scored)
    icc = _icc_frame(tables.get("reader_icc"))
    icc_intra = _icc_frame(tables.get("reader_icc_intra"))
    data = StudyData(spec, run.seed, clinical.loc[study], y, X, cats, icc, rad, icc_intra=icc_intra)
    data.backbones = {
        k: (Path(ckpt), {str(p): Path(f) for p, f in inputs.items()})
        for k, (ckpt, inputs) in (backbones or {}).items()
    }
    return _Patients(data, study, excluded, outcome)


def _outcome_patients(run: _Run, blocks: Mapping[str, pd.DataFrame]) -> dict[str, pd.Index]:
    """The outcome cohorts' patients (``survival.outcome_cohorts``, labelled or not, never a
    training patient) with a row in every used block; a note counts those without."""
    if run.spec.survival is None:
        return {}
    out = {}
    for name, idx in outcome_members(run.spec, run.clinical, run.split).items():
        ok = [p for p in idx if all(p in b.index for b in blocks.values())]
        if len(ok) < len(idx):
            run.notes.append(
                f"outcome cohort {name}: {len(idx) - len(ok)} of {len(idx)} patient(s) "
                "without features in some block"
            )
        out[name] = pd.Index(ok, name="patient")
    return out


def _designs(
    spec: StudySpec,
    blocks: Mapping[str, pd.DataFrame],
    block_cats: Mapping[str, list[str]],
    study: pd.Index,
) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], dict[str, dict[str, str]]]:
    """Per pipeline model: its blocks fused (``{block}__{column}``), its categorical fused
    columns and its radiomics columns (fused name -> radiomics name)."""
    X, cats, rad = {}, {}, {}
    for name, m in spec.models.items():
        if m.kind != "pipeline":
            continue
        X[name] = fuse_blocks({b: blocks[b] for b in m.blocks}, study)
        cats[name] = [f"{b}__{c}" for b in m.blocks for c in block_cats[b]]
        rad[name] = {
            f"{b}__{c}": c
            for b in m.blocks
            if spec.blocks[b].source == "radiomics"
            for c in blocks[b].columns
        }
    return X, cats, rad


# ---- stage 2: fitting -----------------------------------------------------------------------


def _fitting(run: _Run, pts: _Patients) -> _Fits:
    """Fitting: every model on the training patients (dependencies first), its predictions
    for every analysed patient and its training Youden cut-off."""
    spec = run.spec
    train = pd.Index([p for p in pts.study if run.split[p] == "train"], name="patient")
    untrainable = _untrainable(pts.data.y.loc[train])
    if untrainable:
        run.notes.append(f"no model trained: training set has {untrainable}")
        log.warning("study %s: no model trained (training set: %s)", spec.name, untrainable)
    fitted, failed, scores = _fit_models(pts.data, train, pts.study, untrainable)
    run.notes.extend(_dropped_scores(spec, fitted))
    ok = [n for n in spec.models if n in fitted]
    pred = _prediction_table(run.split, pts, scores, ok)
    cutoffs = {}
    for name in ok:
        tr = pred[(pred["model"] == name) & (pred["split"] == "train")]
        cutoffs[name] = youden_cutoff(tr["label"].to_numpy(float), tr["score"].to_numpy(float))
    return _Fits(fitted, failed, scores, ok, pred, cutoffs)


def _dropped_scores(spec: StudySpec, fitted: Mapping[str, Any]) -> list[str]:
    """A note per stacked score that its clinical model could not estimate (e.g. an in-sample
    score that separates the training patients): the model then stands without it."""
    notes = []
    for name in spec.clinical_models:
        if name not in fitted:
            continue
        uni = fitted[name].estimator.univariable
        for dep in spec.models[name].scores:
            rows = uni[uni["variable"] == f"{dep}_score"]
            failed = rows[rows["note"].astype(str) != ""] if "note" in rows else rows.iloc[:0]
            if len(failed):
                notes.append(
                    f"model {name}: the {dep} score was left out ({failed['note'].iloc[0]}); "
                    f"the model stands on its clinical variables alone"
                )
    for note in notes:
        log.warning("study %s: %s", spec.name, note)
    return notes


def _untrainable(ytr: pd.Series) -> str:
    """Why no model can be trained on these training labels ('' when one can)."""
    untrainable = degenerate(ytr.to_numpy())
    if not untrainable and min_class_count(ytr) < 2:
        n1 = int(ytr.sum())
        untrainable = f"a class with fewer than 2 patients ({n1} cases, {len(ytr) - n1} controls)"
    return untrainable


def _fit_models(
    data: StudyData, train: pd.Index, study: pd.Index, untrainable: str
) -> tuple[dict[str, Fitted], dict[str, str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fit the models in dependency order and predict the analysed patients; a model that
    cannot be fitted gets the reason instead (``failed``)."""
    spec = data.spec
    dependencies = {d for m in spec.models.values() for d in m.depends_on}
    fitted: dict[str, Fitted] = {}
    failed: dict[str, str] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stack: dict[str, pd.Series] = {}
    for name in spec.model_order():
        m = spec.models[name]
        if untrainable:
            failed[name] = f"not trained: training set has {untrainable}"
            continue
        lost = [d for d in m.depends_on if d in failed]
        if lost:
            failed[name] = f"depends on failed model(s) {lost}"
            continue
        try:
            f = fit_model(data, m, train, stack)
            prob, lp = f.predict(study)
            if not (np.isfinite(prob).all() and np.isfinite(lp).all()):
                raise ValueError("non-finite predictions")
            if name in dependencies:
                stack[name] = stack_scores(data, m, f, train, study)
        except (ValueError, np.linalg.LinAlgError) as err:
            log.warning("study %s: model %s failed: %s", spec.name, name, err, exc_info=True)
            failed[name] = f"fit failed: {err}"
            continue
        fitted[name] = f
        scores[name] = (prob, lp)
        log.info(
            "study %s: model %s fitted (%s features)", spec.name, name, f.info.get("n_features")
        )
    return fitted, failed, scores


def _prediction_table(
    split: pd.Series,
    pts: _Patients,
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ok: list[str],
) -> pd.DataFrame:
    """``predictions.parquet``: one row per fitted model and analysed patient."""
    study, y = pts.study, pts.data.y
    frames = [
        pd.DataFrame(
            {
                "patient": study.to_numpy(),
                "split": split.loc[study].to_numpy(),
                "model": name,
                "score": scores[name][0],
                "linear_predictor": scores[name][1],
                "label": y.to_numpy(),
            }
        )
        for name in ok
    ]
    empty = pd.DataFrame(columns=list(PREDICTION_TYPES))
    return pd.concat(frames or [empty], ignore_index=True).astype(PREDICTION_TYPES)


# ---- stage 3: tables ------------------------------------------------------------------------


def _tables(
    run: _Run, pts: _Patients, fits: _Fits
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tables: predictions, performance, comparisons, calibration, decision curve, AUC by
    group, baseline, inter-reader agreement and the clinical models' tables. Returns
    performance, comparisons and the decision curve."""
    spec, files, pred, ok = run.spec, run.files, fits.pred, fits.ok
    ev = spec.evaluation
    level = float(ev.get("ci_level", 0.95))
    split_names = spec.splits.names
    write_parquet(pred, files["predictions"])
    with quiet():
        perf = performance_table(
            pred, fits.cutoffs, split_names, list(spec.models), level, fits.failed
        )
        comp = comparison_table(pred, spec.comparisons, fits.cutoffs, split_names)
    write_parquet(perf, files["performance"])
    write_parquet(comp, files["comparisons"])
    with quiet():
        calib = calibration_table(
            pred, ok, split_names, int(ev["calibration_bins"]), ev["calibration_strategy"]
        )
    write_parquet(calib, files["calibration"])
    dca = decision_curve_table(pred, ok, split_names, threshold_grid(ev))
    write_parquet(dca, files["decision_curve"])
    with quiet():
        by_center = by_group_table(pred, run.clinical, ev.get("by", []), ok, level)
    write_parquet(by_center, files["by_center"])
    write_parquet(baseline_tables(spec, run.clinical, run.split, pts.data.y), files["baseline"])
    if spec.agreement:
        kappa = agreement_table(spec, run.clinical, level)
        write_parquet(kappa, files["agreement"])
        keep = ["reader1", "reader2", "n", "kappa", "kappa_lower", "kappa_upper", "p", "note"]
        run.agreement = kappa[keep].to_dict(orient="records")
    if spec.pathology:
        _pathology(run, pts, fits, level)
    if spec.clinical_models:
        _clinical_tables(spec, fits, files)
    return perf, comp, dca


def _pathology(run: _Run, pts: _Patients, fits: _Fits, level: float) -> None:
    """``pathology_correlation.parquet``: the pathology model's selected features against the
    pathology columns on the analysed patients (a failed model: one row with a note)."""
    model = run.spec.pathology["model"]
    fitted = fits.fitted.get(model)
    if fitted is None:
        table = pd.DataFrame(
            [{"model": model, "feature": "", "pathology": "", "n": 0,
              "note": f"model {model} not fitted: {fits.failed.get(model, 'failed')}"}],
            columns=list(PATHOLOGY_COLUMNS),
        )  # fmt: skip
    else:
        X = pts.data.X[model].reindex(pts.study)  # not the outcome cohorts' extra rows
        selected = [f for f in fitted.info.get("features", []) if f in X.columns]
        table = pathology_table(run.spec, X[selected], run.clinical, level)
    write_parquet(table, run.files["pathology"])
    keep = ["feature", "pathology", "n", "r", "p", "q", "note"]
    run.pathology = table[keep].to_dict(orient="records")


def _clinical_tables(spec: StudySpec, fits: _Fits, files: Mapping[str, Path]) -> None:
    """The clinical models' univariable and multivariable tables (a note for a failed one)."""
    uni, multi = [], []
    for name in spec.clinical_models:
        if name in fits.fitted:
            cm = fits.fitted[name].estimator
            uni.append(cm.univariable.assign(model=name))
            multi.append(cm.multivariable.assign(model=name, note=""))
        else:
            multi.append(pd.DataFrame([{"model": name, "note": fits.failed.get(name, "")}]))
    u = pd.concat(uni, ignore_index=True) if uni else pd.DataFrame(columns=["model"])
    mt = pd.concat(multi, ignore_index=True)
    write_parquet(
        u[["model", *[c for c in u.columns if c != "model"]]], files["clinical_univariable"]
    )
    write_parquet(
        mt[["model", *[c for c in mt.columns if c != "model"]]], files["clinical_multivariable"]
    )


# ---- stage 4: figures -----------------------------------------------------------------------


def _figures(
    run: _Run, pts: _Patients, fits: _Fits, dca: pd.DataFrame
) -> tuple[str | None, dict[str, Any]]:
    """Figures: ROC, calibration and decision curves, SHAP, nomogram, and the survival
    analysis. Returns the figure split and the survival summary (``cutpoint.json``'s content
    under ``endpoints``, the score tests and the outcome cohorts)."""
    spec, files, ok = run.spec, run.files, fits.ok
    ev = spec.evaluation
    level = float(ev.get("ci_level", 0.95))
    fig_split = figure_split(spec, fits.pred) if ok else None
    with quiet():
        draw_roc(spec, fits.pred, ok, spec.splits.names, files, level)
        draw_calibration(spec, fits.pred, ok, fig_split, dca, files, ev)
    if spec.explain:
        draw_shap(spec, pts.data, fits.fitted, run.split, pts.study, files)
    if spec.nomogram:
        draw_nomogram(spec, fits.fitted, fits.failed, files)
    survival_info: dict[str, Any] = {"endpoints": {}, "score_tests": [], "outcome_cohorts": {}}
    if spec.survival is not None:
        survival_info = _survival(run, pts, fits)
    return fig_split, survival_info


def _outcome_scores(run: _Run, pts: _Patients, fits: _Fits) -> pd.Series | None:
    """The survival model's linear predictor for every outcome-cohort patient (None, with a
    note, when the model cannot score patients outside the analysed ones)."""
    sv = run.spec.survival
    assert sv is not None
    idx = pd.Index([p for ix in pts.outcome.values() for p in ix]).unique()
    if not len(idx) or sv.model not in fits.fitted:
        return None
    try:
        return pd.Series(fits.fitted[sv.model].predict(idx)[1], index=idx)
    except KeyError:  # a clinical or fusion model predicts its analysed patients only
        run.notes.append(f"outcome cohorts not scored: model {sv.model} is not a pipeline")
        return None


def _survival(run: _Run, pts: _Patients, fits: _Fits) -> dict[str, Any]:
    """``cox.parquet``, ``cutpoint.json`` and the KM figures (placeholders when the survival
    model has no fit); the score tests and outcome-cohort sizes for ``metrics.json``."""
    spec, files = run.spec, run.files
    sv = spec.survival
    assert sv is not None
    tests: list[dict[str, Any]] = []
    outcome = _outcome_scores(run, pts, fits)
    sizes = {
        name: {"n_members": len(idx), "n_scored": 0 if outcome is None else len(idx)}
        for name, idx in pts.outcome.items()
    }
    if sv.model in fits.fitted:
        lp = pd.Series(fits.scores[sv.model][1], index=pts.study)
        cut = fits.cutoffs.get(sv.model)
        youden = float(np.log(cut / (1 - cut))) if cut is not None and 0 < cut < 1 else None
        members = pts.outcome if outcome is not None else {}
        cox_table, survival_info = survival_analysis(
            spec, run.clinical, run.split, lp, run.out, outcome_score=outcome, members=members,
            youden=youden,
        )
        tests = score_tests(
            spec, run.clinical, run.split, lp, pts.data.y, outcome_score=outcome, members=members
        )
    else:
        note = f"model {sv.model} not fitted ({fits.failed.get(sv.model, '')})"
        cox_table = pd.DataFrame([{"endpoint": ep, "note": note} for ep in sv.endpoints])
        survival_info = {
            ep: {"model": sv.model, "cutpoint": None, "note": note} for ep in sv.endpoints
        }
        for ep in sv.endpoints:
            placeholder(files[f"km_{ep}"], f"Kaplan-Meier: {ep}", note)
    write_parquet(cox_table, files["cox"])
    write_json(survival_info, files["cutpoint"])
    return {"endpoints": survival_info, "score_tests": tests, "outcome_cohorts": sizes}


# ---- stage 5: summaries ---------------------------------------------------------------------


def _summaries(
    run: _Run,
    pts: _Patients,
    fits: _Fits,
    perf: pd.DataFrame,
    comp: pd.DataFrame,
    fig_split: str | None,
    survival_info: dict[str, Any],
) -> dict[str, Any]:
    """Summaries: ``selected_features.json`` and ``metrics.json`` (returned)."""
    spec, split, y, study = run.spec, run.split, pts.data.y, pts.study
    selected = _selected_features(spec, fits)
    write_json(selected, run.files["selected_features"])
    counts = {}
    for s in (*EVAL_SPLITS, "unlabeled"):
        members = split[split == s].index
        ys = y.reindex(members).dropna()
        counts[s] = {"n": len(members), "n_analysed": len(ys), "n_pos": int(ys.sum())}
    for s in spec.splits.names:
        if degenerate(y[split.loc[study] == s].to_numpy()):
            run.notes.append(f"split {s}: {degenerate(y[split.loc[study] == s].to_numpy())}")
    primary_perf = perf[perf["model"] == spec.primary].set_index("split")
    metrics = {
        "study": spec.name,
        "title": spec.title,
        "modality": spec.modality,
        "label": spec.label,
        "seed": run.seed,
        "n_patients": len(run.clinical),
        "n_analysed": len(study),
        "splits": counts,
        "excluded": pts.excluded,
        "criteria": run.clinical.attrs.get("criteria", {}),  # include / exclude (study_clinical)
        "primary": spec.primary,
        "primary_auc": primary_perf["auc"].to_dict(),
        "models": {
            name: {
                "status": selected[name]["status"],
                "note": selected[name]["note"],
                "cutoff": fits.cutoffs.get(name),
                "auc": perf[perf["model"] == name].set_index("split")["auc"].to_dict(),
            }
            for name in spec.models
        },
        "comparisons": comp[["model", "reference", "split", "delong_p", "nri_continuous"]].to_dict(
            orient="records"
        ),
        "figure_split": fig_split,
        "survival": survival_info["endpoints"],
        "score_tests": survival_info["score_tests"],
        "outcome_cohorts": survival_info["outcome_cohorts"],
        "agreement": run.agreement,  # Cohen's kappa per reader pair (agreement.parquet)
        "pathology": run.pathology,  # r per feature and column (pathology_correlation.parquet)
        "notes": run.notes,
        # the paper next to this run (hccrad.report): its key comparison, what it reports,
        # where this study differs from it, and what a configuration overlay scaled down
        "key_comparison": {**spec.key_comparison, "pair": list(spec.key_pair or [])},
        "published": spec.published,
        "deviations": list(spec.deviations),
        "overlay_changes": [c.as_row() for c in spec.overlay_changes],
    }
    write_json(metrics, run.files["metrics"])
    return metrics


def _selected_features(spec: StudySpec, fits: _Fits) -> dict[str, dict[str, Any]]:
    """Per model: kind, status, note, the fit's information and (pipelines) its blocks."""
    selected = {}
    for name, m in spec.models.items():
        status = "fitted" if name in fits.fitted else "failed"
        entry: dict[str, Any] = {"kind": m.kind, "status": status}
        entry["note"] = fits.failed.get(name, "")
        if name in fits.fitted:
            entry.update(fits.fitted[name].info)
        if m.kind == "pipeline":
            entry["blocks"] = list(m.blocks)
        selected[name] = entry
    return selected
