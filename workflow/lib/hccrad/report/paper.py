"""The paper next to this run: per study, the published cohorts and AUCs beside this run's
(same models, same split names), the paper's key comparison beside this run's result, and the
deviations list (where the study's configuration differs from the paper, and why).

Everything comes from the study's ``metrics.json`` (``published``, ``key_comparison``,
``deviations``, ``models``; written by :mod:`hccrad.studies.run` from the study file) and its
performance and comparison tables.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from hccrad.report.format import DASH, HELD_OUT, _missing, fmt_auc, fmt_num, fmt_p, split_label
from hccrad.report.studies import StudyResult, unfit
from hccrad.studies.spec import EVAL_SPLITS  # the studies' split names, in report order


def _n(n: Any, positives: Any) -> str:
    if _missing(n):
        return DASH
    return f"{int(n)}" + ("" if _missing(positives) else f" ({int(positives)} cases)")


def _paper_auc(values: Any) -> str:
    if not values:
        return DASH
    auc, lower, upper = [*values, None, None][:3]
    return fmt_auc(auc, lower, upper, digits=3)


def _run_cell(perf: pd.DataFrame, model: str, split: str) -> tuple[str, str]:
    """(n with cases, AUC with CI) of this run's model on a split."""
    if (model, split) not in perf.index:
        return DASH, DASH
    r = perf.loc[(model, split)]
    return _n(r["n"], r["n_pos"]), fmt_auc(r["auc"], r["auc_lower"], r["auc_upper"], digits=3)


def paper_vs_run(result: StudyResult) -> pd.DataFrame | None:
    """One row per published model and split: the paper's n and AUC (95 % CI) beside this
    run's, for the models this study has (``published.models``) and those it lacks
    (``published.missing_models``); None when the study publishes nothing."""
    pub = result.metrics.get("published") or {}
    models = {k: v for k, v in (pub.get("models") or {}).items() if v}
    missing = pub.get("missing_models") or {}
    if not models and not missing:
        return None
    cohorts = pub.get("cohorts") or {}
    perf = result.performance.set_index(["model", "split"])
    rows = []
    for model, info in [*models.items(), *missing.items()]:
        aucs = info.get("auc") or {}
        name = model + (f" ({info['paper_name']})" if info.get("paper_name") else "")
        for split in [s for s in EVAL_SPLITS if s in aucs or s in cohorts]:
            cohort = cohorts.get(split) or {}
            if model in missing:
                run_n, run_auc = DASH, "not in this study"
            else:
                run_n, run_auc = _run_cell(perf, model, split)
                run_auc = unfit(result, model) or run_auc
            rows.append(
                {
                    "model": name,
                    "split": split_label(split),
                    "paper n": _n(cohort.get("n"), cohort.get("positives")),
                    "paper AUC (95 % CI)": _paper_auc(aucs.get(split)),
                    "this run n": run_n,
                    "this run AUC (95 % CI)": run_auc,
                }
            )
    return pd.DataFrame(rows)


def key_comparison_line(result: StudyResult) -> str:
    """The paper's key comparison and this run's: the pair, the paper's claim and P, this run's
    AUCs and DeLong P on the pooled held-out splits' rows (each held-out split)."""
    key = result.metrics.get("key_comparison") or {}
    pair = key.get("pair") or []
    if len(pair) != 2:
        return ""
    a, b = pair
    paper = key.get("claim") or "not stated"
    if key.get("p") is not None:
        paper += f" (P = {key['p']}" + (f", {key['split']}" if key.get("split") else "") + ")"
    comp = result.comparisons
    rows = comp[(comp["model"] == a) & (comp["reference"] == b) & comp["split"].isin(HELD_OUT)]
    rows = rows[rows["n"] > 0]  # a split this study does not have (e.g. no external test)
    parts = [
        f"{split_label(r['split'])} {fmt_num(r.get('auc_model'))} vs "
        f"{fmt_num(r.get('auc_reference'))}, DeLong P = {fmt_p(r.get('delong_p'))}"
        for _, r in rows.iterrows()
    ]
    status = "; ".join(s for s in (unfit(result, a), unfit(result, b)) if s)
    run = status or ("; ".join(parts) if parts else "no held-out comparison")
    return f"Key comparison `{a}` vs `{b}`. Paper: {paper}. This run: {run}."


def deviations_table(result: StudyResult) -> pd.DataFrame | None:
    """The study's deviations from the paper (step, paper, ours, reason), or None."""
    rows = result.metrics.get("deviations") or []
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["step", "paper", "ours", "reason"])


def scaled_count(result: StudyResult) -> int:
    """How many of the study's values a configuration overlay changed."""
    return len(result.metrics.get("overlay_changes") or [])
