"""Evaluation of a study's predictions: performance per split at the training cut-off with the
unpaired DeLong test against the training AUC, paired comparisons (DeLong, NRI), calibration,
decision curves, AUC by subgroup per split (unpaired DeLong between subgroups), baseline
tables and the inter-reader agreement of reader-scored columns (Cohen's kappa)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hccrad.errors import InputError
from hccrad.stats import (
    auc_ci,
    baseline_table,
    calibration,
    classification_metrics,
    delong_test,
    delong_unpaired_test,
    net_benefit,
    nri,
)
from hccrad.stats.agreement import cohen_kappa
from hccrad.stats.roc import RATE_COUNTS, rate_cis
from hccrad.studies.spec import StudySpec

#: The split whose AUC the held-out splits are tested against (``train_delong_*``).
TRAIN = "train"


def _classes(y: np.ndarray) -> tuple[int, int]:
    n1 = int(np.sum(y == 1))
    return n1, int(y.size - n1)


def degenerate(y: np.ndarray) -> str:
    """Why a split cannot be evaluated ('' when it can)."""
    n1, n0 = _classes(y)
    if y.size == 0:
        return "no patients"
    if n1 == 0 or n0 == 0:
        return f"one class only ({n1} cases, {n0} controls)"
    return ""


def performance_table(
    predictions: pd.DataFrame,
    cutoffs: Mapping[str, float],
    splits: Sequence[str],
    models: Sequence[str],
    level: float = 0.95,
    notes: Mapping[str, str] | None = None,
    rate_ci: str = "wilson",
) -> pd.DataFrame:
    """One row per model x split: ``n, n_pos, auc, auc_lower, auc_upper`` (DeLong) and the
    classification metrics at the model's **training** Youden cut-off (``cutoff``), each rate
    with its ``level`` confidence interval (``{rate}_lower``, ``{rate}_upper``; ``rate_ci``:
    ``wilson`` or ``clopper_pearson``, :func:`hccrad.stats.roc.proportion_ci`); ``note`` says
    why values are NaN (no patients, one class, a failed fit). ``train_delong_z`` and
    ``train_delong_p``: the unpaired DeLong test of the split's AUC against the model's
    training AUC (the overfitting test; NaN on the training split itself)."""
    rows = []
    metric_cols = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn")
    ci_cols = tuple(f"{r}_{b}" for r in RATE_COUNTS for b in ("lower", "upper"))
    for model in models:
        for split in splits:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            y = sub["label"].to_numpy(dtype=float)
            s = sub["score"].to_numpy(dtype=float)
            n1, _ = _classes(y)
            cut = float(cutoffs.get(model, np.nan))
            row: dict[str, Any] = {"model": model, "split": split, "n": len(sub), "n_pos": n1}
            row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan, cutoff=cut)
            row.update(dict.fromkeys((*metric_cols, *ci_cols), np.nan))
            note = (notes or {}).get(model, "")
            if not note:
                note = degenerate(y) if len(sub) else "no patients"
                if not degenerate(y):
                    row["auc"], row["auc_lower"], row["auc_upper"] = auc_ci(y, s, level)
                if len(sub) and np.isfinite(cut):
                    row.update(classification_metrics(y, s, cut))
                    row.update(rate_cis(row, level, rate_ci))
                elif len(sub):
                    note = note or "no training cut-off"
            row["train_delong_z"], row["train_delong_p"] = np.nan, np.nan
            if not note and split != TRAIN:
                row["train_delong_z"], row["train_delong_p"] = _vs_train(predictions, model, sub)
            row["note"] = note
            rows.append(row)
    cols = ["model", "split", "n", "n_pos", "auc", "auc_lower", "auc_upper", "cutoff"]
    tests = ["train_delong_z", "train_delong_p"]
    return pd.DataFrame(rows, columns=[*cols, *metric_cols, *ci_cols, *tests, "note"])


def _vs_train(predictions: pd.DataFrame, model: str, sub: pd.DataFrame) -> tuple[float, float]:
    """Unpaired DeLong ``(z, p)`` of ``sub``'s AUC minus the model's training AUC (NaN when
    either sample has one class only)."""
    tr = predictions[(predictions["model"] == model) & (predictions["split"] == TRAIN)]
    y_tr, y = tr["label"].to_numpy(float), sub["label"].to_numpy(float)
    if degenerate(y_tr) or degenerate(y):
        return np.nan, np.nan
    d = delong_unpaired_test(y, sub["score"].to_numpy(float), y_tr, tr["score"].to_numpy(float))
    return d.z, d.p


def _paired(predictions: pd.DataFrame, a: str, b: str, split: str) -> pd.DataFrame:
    pa = predictions[(predictions["model"] == a) & (predictions["split"] == split)]
    pb = predictions[(predictions["model"] == b) & (predictions["split"] == split)]
    return pa.merge(pb[["patient", "score"]], on="patient", suffixes=("_a", "_b"))


def comparison_table(
    predictions: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    cutoffs: Mapping[str, float],
    splits: Sequence[str],
) -> pd.DataFrame:
    """Per pair (``model`` vs ``reference``) and split: paired DeLong ``z, p``; categorical NRI
    of the two models' classifications at their training cut-offs; continuous NRI of their
    probabilities."""
    rows = []
    for a, b in pairs:
        for split in splits:
            m = _paired(predictions, a, b, split)
            y = m["label"].to_numpy(dtype=float)
            row: dict[str, Any] = {"model": a, "reference": b, "split": split, "n": len(m)}
            row["n_pos"] = _classes(y)[0]
            absent = [x for x in (a, b) if not (predictions["model"] == x).any()]
            note = f"model(s) {absent} not fitted" if absent else degenerate(y)
            if not note:
                sa, sb = m["score_a"].to_numpy(float), m["score_b"].to_numpy(float)
                d = delong_test(y, sa, sb)
                row.update(auc_model=d.auc_a, auc_reference=d.auc_b, delong_z=d.z, delong_p=d.p)
                ca, cb = cutoffs.get(a, np.nan), cutoffs.get(b, np.nan)
                if np.isfinite(ca) and np.isfinite(cb):
                    cat = nri(y, (sb >= cb).astype(float), (sa >= ca).astype(float), [0.5])
                    row.update(
                        nri_categorical=cat.nri,
                        nri_categorical_events=cat.nri_events,
                        nri_categorical_nonevents=cat.nri_nonevents,
                        nri_categorical_p=cat.p,
                    )
                cont = nri(y, sb, sa)
                row.update(
                    nri_continuous=cont.nri,
                    nri_continuous_events=cont.nri_events,
                    nri_continuous_nonevents=cont.nri_nonevents,
                    nri_continuous_p=cont.p,
                )
            row["note"] = note
            rows.append(row)
    cols = [
        "model",
        "reference",
        "split",
        "n",
        "n_pos",
        "auc_model",
        "auc_reference",
        "delong_z",
        "delong_p",
        "nri_categorical",
        "nri_categorical_events",
        "nri_categorical_nonevents",
        "nri_categorical_p",
        "nri_continuous",
        "nri_continuous_events",
        "nri_continuous_nonevents",
        "nri_continuous_p",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols)


def calibration_table(
    predictions: pd.DataFrame,
    models: Sequence[str],
    splits: Sequence[str],
    n_bins: int,
    strategy: str,
) -> pd.DataFrame:
    """Per model x split x bin: the binned curve with the split's slope, intercept and Brier."""
    rows = []
    for model in models:
        for split in splits:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            y = sub["label"].to_numpy(dtype=float)
            base = {"model": model, "split": split, "n": len(sub)}
            note = degenerate(y)
            if note:
                rows.append({**base, "note": note})
                continue
            try:
                res = calibration(y, sub["score"].to_numpy(float), n_bins=n_bins, strategy=strategy)
            except (InputError, ValueError) as err:
                rows.append({**base, "note": f"calibration failed: {err}"})
                continue
            scal = {k: v for k, v in res.as_dict().items() if k != "n"}
            for _, b in res.curve.iterrows():
                rows.append(
                    {
                        **base,
                        **scal,
                        "bin": int(b["bin"]) if np.isfinite(b["bin"]) else b["bin"],
                        "mean_predicted": b["mean_predicted"],
                        "observed": b["observed"],
                        "bin_n": int(b["n"]),
                        "note": "",
                    }
                )
    cols = [
        "model",
        "split",
        "n",
        "slope",
        "intercept",
        "recalibration_intercept",
        "brier",
        "bin",
        "mean_predicted",
        "observed",
        "bin_n",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols).astype({"bin": "float64"})


def threshold_grid(evaluation: Mapping[str, Any]) -> np.ndarray:
    """The decision-curve thresholds of ``evaluation.thresholds`` (start to stop by step, < 1)."""
    t = evaluation["thresholds"]
    grid = np.arange(t["start"], t["stop"] + t["step"] / 2, t["step"])
    return np.round(grid[grid < 1], 10)


def decision_curve_table(
    predictions: pd.DataFrame, models: Sequence[str], splits: Sequence[str], thresholds: np.ndarray
) -> pd.DataFrame:
    """Net benefit per split, threshold and strategy (each model, ``all``, ``none``)."""
    parts = []
    for split in splits:
        refs = False
        for model in models:
            sub = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
            if sub.empty:
                continue
            nb = net_benefit(
                sub["label"].to_numpy(float), sub["score"].to_numpy(float), thresholds, model
            )
            if refs:
                nb = nb[nb["strategy"] == model]
            refs = True
            parts.append(nb.assign(split=split))
    if not parts:
        return pd.DataFrame(columns=["split", "threshold", "strategy", "net_benefit"])
    out = pd.concat(parts, ignore_index=True)
    return out[["split", "threshold", "strategy", "net_benefit"]]


def by_group_table(
    predictions: pd.DataFrame,
    clinical: pd.DataFrame,
    columns: Sequence[str],
    models: Sequence[str],
    level: float = 0.95,
    splits: Sequence[str] | None = None,
) -> pd.DataFrame:
    """AUC per model within each value of ``columns`` (center, field strength...) over all
    evaluated patients (``scope = all``), the held-out ones (``held_out``) and each split
    (``scope`` = the split's name; ``splits`` default: those of ``predictions``, training
    first). Within a model, scope and column, each value's AUC is compared with the first
    evaluable value's (``reference``) by the unpaired DeLong test: ``delong_z`` (this value's
    AUC minus the reference's) and ``delong_p``."""
    if splits is None:
        splits = sorted(dict.fromkeys(predictions["split"]), key=lambda s: s != TRAIN)
    present = [c for c in columns if c in clinical.columns]
    rows: list[dict[str, Any]] = []
    for model in models:
        pm = predictions[predictions["model"] == model]
        scopes = {"all": pm, "held_out": pm[pm["split"] != TRAIN]}
        scopes.update({s: pm[pm["split"] == s] for s in splits})
        for scope, ps in scopes.items():
            for col in present:
                labels = _group_labels(clinical[col].reindex(ps["patient"]).to_numpy())
                base = {"model": model, "scope": scope, "by": col}
                rows += _subgroup_rows(ps, labels, base, level)
    cols = ["model", "scope", "by", "value", "n", "n_pos", "auc", "auc_lower", "auc_upper"]
    return pd.DataFrame(rows, columns=[*cols, "reference", "delong_z", "delong_p", "note"])


def _group_labels(values: np.ndarray) -> np.ndarray:
    """Subgroup labels as text (``1.5``, ``3`` for floats; ``""`` for a missing value)."""
    return np.array(
        ["" if pd.isna(v) else (f"{v:g}" if isinstance(v, float) else str(v)) for v in values],
        dtype=object,
    )


def _subgroup_rows(
    ps: pd.DataFrame, labels: np.ndarray, base: Mapping[str, Any], level: float
) -> list[dict[str, Any]]:
    """One row per subgroup label (sorted): n, cases, AUC with its DeLong CI and the unpaired
    DeLong test against the first evaluable subgroup (the ``reference``; its own row and the
    one-class subgroups have none)."""
    y_all, s_all = ps["label"].to_numpy(float), ps["score"].to_numpy(float)
    ref: tuple[str, np.ndarray, np.ndarray] | None = None
    rows = []
    for value in sorted(set(labels) - {""}):
        sel = labels == value
        y, s = y_all[sel], s_all[sel]
        row = {**base, "value": value, "n": int(sel.sum()), "n_pos": _classes(y)[0]}
        row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan, reference="")
        row.update(delong_z=np.nan, delong_p=np.nan, note=degenerate(y))
        if not row["note"]:
            row["auc"], row["auc_lower"], row["auc_upper"] = auc_ci(y, s, level)
            if ref is None:
                ref = (value, y, s)
            else:
                d = delong_unpaired_test(y, s, ref[1], ref[2])
                row.update(reference=ref[0], delong_z=d.z, delong_p=d.p)
        rows.append(row)
    return rows


def baseline_tables(
    spec: StudySpec, clinical: pd.DataFrame, split: pd.Series, y: pd.Series
) -> pd.DataFrame:
    """Baseline characteristics: by split (``table = by_split``) and, within each split, by
    label (``table = <split>``); long format, group columns side by side."""
    cfg = spec.baseline
    variables = [v for v in cfg.get("variables", []) if v in clinical.columns and v != spec.label]
    parts = []
    if not variables:
        return pd.DataFrame(columns=["table", "variable", "level", "p", "test", "missing", "note"])
    df = clinical.loc[y.index, variables].copy()
    empty = [v for v in variables if df[v].isna().all()]
    variables = [v for v in variables if v not in empty]
    df = df[variables]
    df["split"] = split.loc[y.index].to_numpy()
    df[spec.label] = y.astype(int).astype(str).to_numpy()
    cats = [v for v in cfg.get("categorical", []) if v in variables]
    nonnormal = [v for v in cfg.get("nonnormal", []) if v in variables]
    groups = [("by_split", df, "split")]
    groups += [(s, df[df["split"] == s], spec.label) for s in spec.splits.names]
    for name, data, col in groups:
        try:
            tab = baseline_table(
                data, col, variables, categorical=cats, nonnormal=nonnormal,
                variance_test=cfg.get("variance_test", "none"),
            )  # fmt: skip
            parts.append(tab.assign(table=name, note=""))
        except (InputError, ValueError, IndexError) as err:
            parts.append(pd.DataFrame([{"table": name, "note": f"not tabulated: {err}"}]))
    out = pd.concat(parts, ignore_index=True)
    lead = ["table", "variable", "level"]
    for c in lead:  # every group may have failed (tiny or one-class splits)
        if c not in out:
            out[c] = None
    out = out[lead + [c for c in out.columns if c not in lead]]
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(_text_or_none)
    return out


def _text_or_none(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v if isinstance(v, str) else str(v)


#: Columns of ``agreement.parquet``.
AGREEMENT_COLUMNS = (
    "reader1", "reader2", "n", "categories", "observed", "expected", "kappa", "kappa_lower",
    "kappa_upper", "se", "se0", "z", "p", "note",
)  # fmt: skip


def agreement_table(spec: StudySpec, clinical: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Cohen's kappa of each ``agreement`` pair (reader 1's column, reader 2's) on the study's
    patients scored by both readers (:func:`hccrad.stats.agreement.cohen_kappa`: observed and
    chance agreement, kappa with its ``level`` Wald interval, the test of kappa = 0). A pair
    whose column is not in the table gets a row with a ``note`` and no statistics; nothing is
    fitted (no split)."""
    rows = []
    for r1, r2 in spec.agreement.items():
        absent = [c for c in (r1, r2) if c not in clinical.columns]
        if absent:
            rows.append({"reader1": r1, "reader2": r2, "n": 0, "note": f"no column {absent}"})
            continue
        res = cohen_kappa(clinical[r1], clinical[r2], level=level).as_row()
        res["kappa_lower"], res["kappa_upper"] = res.pop("lower"), res.pop("upper")
        rows.append({"reader1": r1, "reader2": r2, **res})
    out = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    out["note"] = out["note"].fillna("").astype(str)
    for c in ("reader1", "reader2"):
        out[c] = out[c].astype(str)
    for c in ("n", "categories"):
        out[c] = out[c].fillna(0).astype(int)
    floats = list(AGREEMENT_COLUMNS[4:-1])  # observed ... p
    out[floats] = out[floats].astype(float)
    return out


#: Columns of ``pathology_correlation.parquet``.
PATHOLOGY_COLUMNS = (
    "model", "feature", "pathology", "method", "n", "r", "r_lower", "r_upper", "p", "q", "note",
)  # fmt: skip


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted P values (q) of ``p``; NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if not ok.size:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def pathology_table(
    spec: StudySpec,
    features: pd.DataFrame,
    clinical: pd.DataFrame,
    level: float = 0.95,
) -> pd.DataFrame:
    """Correlation of each selected feature of ``spec.pathology['model']`` (the columns of
    ``features``, one row per analysed patient) with each pathology column of the clinical
    table: Pearson's r (or Spearman's rho, ``method``) over the patients with both values, its
    ``level`` interval from Fisher's z (``tanh(atanh(r) -+ z / sqrt(n - 3))``), the two-sided P
    (scipy) and the Benjamini-Hochberg q over every pair of the table. A pair without a column,
    with fewer than 4 patients or with a constant side gets a ``note`` and no statistics.
    Descriptive: nothing is fitted, no split."""
    from scipy import stats

    cfg = spec.pathology
    method = cfg.get("method", "pearson")
    test = stats.pearsonr if method == "pearson" else stats.spearmanr
    zc = float(stats.norm.ppf(0.5 + level / 2))
    rows: list[dict[str, Any]] = []
    for col in cfg["columns"]:
        base = {"model": cfg["model"], "pathology": col, "method": method}
        if col not in clinical.columns:
            rows.append({**base, "feature": "", "n": 0, "note": f"no column {col!r}"})
            continue
        y = pd.to_numeric(clinical[col], errors="coerce").reindex(features.index)
        for f in features.columns:
            x = pd.to_numeric(features[f], errors="coerce")
            keep = x.notna() & y.notna()
            n = int(keep.sum())
            row = {**base, "feature": str(f), "n": n}
            if n < 4 or x[keep].nunique() < 2 or y[keep].nunique() < 2:
                rows.append({**row, "note": "fewer than 4 patients or a constant side"})
                continue
            r, p = test(x[keep].to_numpy(float), y[keep].to_numpy(float))
            r = float(r)
            z, se = math.atanh(max(min(r, 1 - 1e-15), -1 + 1e-15)), 1 / math.sqrt(n - 3)
            rows.append(
                {**row, "r": r, "r_lower": math.tanh(z - zc * se),
                 "r_upper": math.tanh(z + zc * se), "p": float(p), "note": ""}
            )  # fmt: skip
    out = pd.DataFrame(rows, columns=list(PATHOLOGY_COLUMNS))
    out["q"] = benjamini_hochberg(out["p"].to_numpy(dtype=float))
    out["note"] = out["note"].fillna("").astype(str)
    out["n"] = out["n"].fillna(0).astype(int)
    floats = ["r", "r_lower", "r_upper", "p", "q"]
    out[floats] = out[floats].astype(float)
    return out
