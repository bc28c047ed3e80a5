"""One study's results in the summary and the report: AUC with CI per split (and, in the report,
the unpaired DeLong test of each held-out AUC against the training AUC), classification metrics
at the training cut-off, comparisons (the key comparison first), survival, notes.

The **key comparison** of a study is its configured ``key_comparison`` (``metrics.json``), else
the first pair of its ``comparisons`` whose new model is the primary model, else its first pair.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.report.format import (
    DASH,
    _cases,
    _missing,
    fmt_auc,
    fmt_num,
    fmt_p,
    split_label,
)

PathLike = str | os.PathLike[str]

#: Column of ``performance.parquet``: unpaired DeLong P of a split's AUC against the training AUC.
TRAIN_P = "train_delong_p"
#: Ending of the headers of :func:`performance_matrix`'s train-vs-split P columns.
TRAIN_P_HEADER = ": P vs training"


@dataclass
class StudyResult:
    """What the summary says about one study (from its output folder).

    ``by_center`` is the study's subgroup table (``by_center.parquet``; None when not read) and
    ``networks`` the per-split metrics of its deep models (``deep/{model}/split_metrics.parquet``
    by model, in config order; empty for a study without deep models).
    """

    name: str
    folder: str
    metrics: dict[str, Any]
    performance: pd.DataFrame
    comparisons: pd.DataFrame
    figures: list[str] = field(default_factory=list)
    by_center: pd.DataFrame | None = None
    networks: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metrics.get("title") or self.name)

    @property
    def primary(self) -> str:
        return str(self.metrics.get("primary", ""))

    @property
    def key_pair(self) -> tuple[str, str] | None:
        """The key comparison (:func:`key_comparison`)."""
        configured = (self.metrics.get("key_comparison") or {}).get("pair")
        return key_comparison(self.comparisons, self.primary, configured)

    @property
    def splits(self) -> list[str]:
        """Evaluated splits in the study's order (as in the performance table)."""
        return list(dict.fromkeys(self.performance["split"]))

    @property
    def models(self) -> list[str]:
        """Models in the study's order, the primary first."""
        models = list(dict.fromkeys(self.performance["model"]))
        if self.primary in models:
            models.remove(self.primary)
            models.insert(0, self.primary)
        return models


def load_study_result(
    name: str,
    performance: PathLike,
    comparisons: PathLike,
    metrics: PathLike,
    *,
    figures: Sequence[str] = (),
    by_center: PathLike | None = None,
    networks: Mapping[str, PathLike] | None = None,
) -> StudyResult:
    """Read one study's tables; ``folder`` is the folder of ``metrics``.

    Args:
        by_center: ``by_center.parquet`` (subgroup AUCs); None: no subgroup section.
        networks: Deep model -> its ``split_metrics.parquet``; None or empty: no section.
    """
    with open(metrics) as fh:
        meta = json.load(fh)
    return StudyResult(
        name=name,
        folder=str(Path(metrics).parent),
        metrics=meta,
        performance=pd.read_parquet(performance),
        comparisons=pd.read_parquet(comparisons),
        figures=list(figures),
        by_center=None if by_center is None else pd.read_parquet(by_center),
        networks={m: pd.read_parquet(path) for m, path in (networks or {}).items()},
    )


def performance_matrix(result: StudyResult, *, train_p: bool = False) -> pd.DataFrame:
    """AUC with 95 % CI: one row per model (primary first, marked), one column per split.

    Column headers are ``{split} (n={n}, {cases} cases)`` with the patient counts of the
    primary model (all models of a study are evaluated on the same patients). With
    ``train_p`` (and a ``train_delong_p`` column in the performance table), each split but
    training is followed by ``{split}: P vs training``: the unpaired DeLong test of that AUC
    against the same model's training AUC (a small P: the model does worse on unseen patients
    than where it was fitted, i.e. overfitting).
    """
    perf = result.performance.set_index(["model", "split"])
    with_p = train_p and TRAIN_P in result.performance and "train" in result.splits
    headers: dict[str, str] = {}
    p_headers: dict[str, str] = {}
    for split in result.splits:
        headers[split] = split_label(split)
        key = (result.models[0], split)
        if key in perf.index and not _missing(perf.loc[key, "n"]):
            n, cases = int(perf.loc[key, "n"]), int(perf.loc[key, "n_pos"])
            headers[split] = f"{split_label(split)} (n={n}, {_cases(cases)})"
        if with_p and split != "train":
            p_headers[split] = f"{split_label(split)}{TRAIN_P_HEADER}"
    rows = []
    for model in result.models:
        label = f"{model} (primary)" if model == result.primary else model
        row = {"model": label}
        status = unfit(result, model)
        for split in result.splits:
            r = perf.loc[(model, split)] if (model, split) in perf.index else None
            auc = DASH if r is None else fmt_auc(r["auc"], r["auc_lower"], r["auc_upper"])
            row[headers[split]] = status or auc
            if split in p_headers:
                row[p_headers[split]] = status or (DASH if r is None else fmt_p(r[TRAIN_P]))
        rows.append(row)
    pairs = ((headers[s], p_headers.get(s)) for s in result.splits)
    columns = ["model", *(h for pair in pairs for h in pair if h)]
    return pd.DataFrame(rows, columns=columns)


def unfit(result: StudyResult, model: str) -> str:
    """``""`` for a fitted model, else ``NOT FITTED: why`` (never shown as a result)."""
    info = (result.metrics.get("models") or {}).get(model)
    if info is None or info.get("status") in (None, "fitted"):
        return ""
    return f"NOT FITTED: {info.get('note') or info.get('status')}"


def classification_table(result: StudyResult) -> pd.DataFrame:
    """Every model (primary first) per split at its training Youden cut-off: n, cases,
    cut-off, accuracy, sensitivity, specificity, PPV, NPV (each with its 95 % CI when the
    performance table has ``{rate}_lower/_upper``)."""
    perf = result.performance.set_index(["model", "split"])
    metrics = (("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
               ("specificity", "specificity"), ("ppv", "PPV"), ("npv", "NPV"))  # fmt: skip
    rows = []
    for model in result.models:
        for split in result.splits:
            if (model, split) not in perf.index:
                continue
            r = perf.loc[(model, split)]
            rows.append(
                {
                    "model": model,
                    "split": split_label(split),
                    "n": int(r["n"]),
                    "cases": int(r["n_pos"]),
                    "cut-off": fmt_num(r.get("cutoff"), 3),
                    **{name: _rate(r, col) for col, name in metrics},
                }
            )
    return pd.DataFrame(rows)


def _rate(row: pd.Series, col: str) -> str:
    """A rate with two decimals and, when present, its CI: ``0.74 (0.61-0.84)``."""
    value = fmt_num(row.get(col), 2)
    lo, hi = row.get(f"{col}_lower"), row.get(f"{col}_upper")
    if _missing(row.get(col)) or _missing(lo) or _missing(hi):
        return value
    return f"{value} ({fmt_num(lo, 2)}{DASH}{fmt_num(hi, 2)})"


def comparison_pairs(comparisons: pd.DataFrame) -> list[tuple[str, str]]:
    """The study's ``[model, reference]`` pairs in their configured order."""
    pairs = zip(comparisons["model"], comparisons["reference"], strict=True)
    return list(dict.fromkeys((str(a), str(b)) for a, b in pairs))


def key_comparison(
    comparisons: pd.DataFrame, primary: str, configured: Sequence[str] | None = None
) -> tuple[str, str] | None:
    """The paper's comparison: the ``configured`` pair (the study's ``key_comparison``), else
    the first pair whose new model is ``primary``, else the first pair; None when the study
    compares nothing."""
    if configured is not None and len(configured) == 2:
        return (str(configured[0]), str(configured[1]))
    pairs = comparison_pairs(comparisons)
    for pair in pairs:
        if pair[0] == primary:
            return pair
    return pairs[0] if pairs else None


def comparison_rows(comparisons: pd.DataFrame, pair: tuple[str, str] | None = None) -> pd.DataFrame:
    """Formatted comparisons (all pairs, or ``pair``): per split the two AUCs, DeLong P,
    categorical and continuous NRI with their P."""
    comp = comparisons
    if pair is not None:
        comp = comp[(comp["model"] == pair[0]) & (comp["reference"] == pair[1])]
    rows = []
    for _, r in comp.iterrows():
        rows.append(
            {
                "comparison": f"{r['model']} vs {r['reference']}",
                "split": split_label(r["split"]),
                "n": int(r["n"]),
                "AUC model": fmt_num(r.get("auc_model")),
                "AUC reference": fmt_num(r.get("auc_reference")),
                "DeLong P": fmt_p(r.get("delong_p")),
                "NRI categorical (P)": _nri(r, "nri_categorical"),
                "NRI continuous (P)": _nri(r, "nri_continuous"),
                "note": str(r.get("note") or ""),
            }
        )
    cols = [
        "comparison",
        "split",
        "n",
        "AUC model",
        "AUC reference",
        "DeLong P",
        "NRI categorical (P)",
        "NRI continuous (P)",
        "note",
    ]
    return pd.DataFrame(rows, columns=cols)


def _nri(row: pd.Series, prefix: str) -> str:
    value = row.get(prefix)
    if _missing(value):
        return DASH
    return f"{fmt_num(value)} ({fmt_p(row.get(f'{prefix}_p'))})"


def survival_lines(result: StudyResult) -> list[str]:
    """One sentence per survival endpoint: model, training cut-point, log-rank P and group
    sizes on the KM scope."""
    lines = []
    for endpoint, info in (result.metrics.get("survival") or {}).items():
        model = info.get("model", "")
        if info.get("cutpoint") is None:
            lines.append(f"{endpoint}: not analysed ({info.get('note') or 'no cut-point'})")
            continue
        scope = info.get("km_scope", "held_out")
        group = (info.get("groups") or {}).get(scope, {})
        where = "held-out patients" if scope == "held_out" else f"{scope} patients"
        lines.append(
            f"{endpoint}: {model} score high vs low (training cut-point "
            f"{fmt_num(info['cutpoint'], 3)}), log-rank P = {fmt_p(group.get('logrank_p'))} "
            f"on {where} (high {group.get('n_high', DASH)}, low {group.get('n_low', DASH)})"
        )
        lines += _outcome_lines(endpoint, info.get("outcome_cohorts") or {})
    return lines + score_test_lines(result)


def _outcome_lines(endpoint: str, cohorts: dict[str, Any]) -> list[str]:
    """One sentence per outcome cohort: size (unlabelled), cut-point rule, log-rank P,
    response rate by group."""
    lines = []
    for name, c in cohorts.items():
        head = f"{endpoint}, outcome cohort {name} (n = {c.get('n', DASH)}, "
        head += f"{c.get('n_unlabelled', DASH)} unlabelled)"
        if c.get("cutpoint") is None:
            lines.append(f"{head}: not analysed ({c.get('note') or 'no cut-point'})")
            continue
        text = (
            f"{head}: cut-point {fmt_num(c['cutpoint'], 3)} ({c.get('cut_rule', '')}), "
            f"high {c.get('n_high', DASH)} vs low {c.get('n_low', DASH)}, "
            f"log-rank P {_p_is(c.get('logrank_p'))}"
        )
        r = c.get("response")
        if r:
            text += (
                f", responders high {r['responders_high']}/{r['n_high']} vs low "
                f"{r['responders_low']}/{r['n_low']} (Fisher P {_p_is(r.get('fisher_p'))})"
            )
        lines.append(text)
    return lines


def _p_is(p: Any) -> str:
    """``= 0.036`` or ``< 0.001``."""
    text = fmt_p(p)
    return text if text.startswith(("<", ">")) else f"= {text}"


def score_test_lines(result: StudyResult) -> list[str]:
    """One sentence per score test of ``metrics.json`` (score by class or by response)."""
    lines = []
    for t in result.metrics.get("score_tests") or []:
        what = "by class" if t.get("test") == "class" else "by response"
        where = split_label(t["cohort"]) if t.get("test") == "class" else t["cohort"]
        if t.get("p") is None:
            lines.append(f"score {what}, {where}: not tested ({t.get('note', '')})")
        elif t.get("method") == "rank_sum":
            lines.append(
                f"score {what}, {where}: median {fmt_num(t['median_pos'], 3)} vs "
                f"{fmt_num(t['median_neg'], 3)} ({t['groups']}, {t['n_pos']} vs {t['n_neg']}), "
                f"rank-sum P {_p_is(t['p'])}"
            )
        else:
            lines.append(f"score {what}, {where}: Kruskal-Wallis P {_p_is(t['p'])}")
    return lines


def study_notes(result: StudyResult) -> list[str]:
    """The study's notes and those of models that failed."""
    notes = [str(n) for n in result.metrics.get("notes", [])]
    for model, info in (result.metrics.get("models") or {}).items():
        if info.get("status") != "fitted":
            notes.append(f"model {model}: {info.get('status')} ({info.get('note') or 'no note'})")
    return notes


def study_overview(result: StudyResult) -> str:
    """One sentence: modality, label, patients analysed per split, primary model."""
    m = result.metrics
    sizes = m.get("splits") or {}
    parts = []
    for split in result.splits:
        s = sizes.get(split, {})
        parts.append(f"{split_label(split)} {s.get('n_analysed', DASH)} ({_cases(s.get('n_pos'))})")
    per_split = f" ({'; '.join(parts)})" if parts else ""
    return (
        f"{m.get('modality', '')} patients, label {m.get('label', '')}; "
        f"{m.get('n_analysed', DASH)} of {m.get('n_patients', DASH)} patients analysed"
        f"{per_split}. Primary model: {result.primary}."
    )
