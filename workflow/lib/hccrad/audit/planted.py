"""Planted-signal recovery: did each study find what the synthetic generator built in?

The synthetic cohort (:mod:`hccrad.synth`, ``docs/synthetic_cohort.md``) writes ``truth.tsv``:
per patient the hidden latents, the image-generating values and the *true* labels. For each study
this module puts side by side

* the planted effect of its label (:data:`PLANTED`, in words from the generator's documentation)
  and the AUC of the generating latent itself against the true labels of the study's patients
  (``oracle_auc_true``) and against the labels the study saw on its held-out patients
  (``oracle_auc_held_out``; on the null cohort, whose labels are permuted, about 0.5);
* what the study found: the AUC of its primary model and of its comparator (the reference of its
  first comparison of the primary model, ``comparisons.parquet``) on the held-out patients pooled
  (``held_out``, from ``predictions.parquet``) and per held-out split (``performance.parquet``),
  and whether the comparison goes the planted way (``as_expected``; empty when an AUC is
  undefined): "beats" asks for a higher AUC, "at least as good as" (where the generator plants
  no extra signal in the primary's additional inputs, or the paper's claim is non-inferiority)
  for an AUC no more than :data:`NONINFERIORITY_MARGIN` below the comparator's (``margin``).

Real cohorts have no ``truth.tsv``: the table is then written empty (header only) and the audit
says so. ``truth: null`` in the config (the default) uses ``truth.tsv`` beside the cohort sheet
when there is one, which is where ``hccrad synth`` writes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hccrad.audit._io import PathLike
from hccrad.stats.roc import auc_ci

log = logging.getLogger(__name__)

HELD_OUT_SPLITS = ("validation", "temporal", "external")


@dataclass(frozen=True)
class Planted:
    """What the generator built into one label: the latent column of truth.tsv and the words."""

    latent: str | None
    effect: str


#: Planted effects by label (docs/synthetic_cohort.md, "Planted signal").
PLANTED: dict[str, Planted] = {
    "grade_pd": Planted(
        "aggressiveness",
        "aggressiveness a drives PD grade (logit -0.85 + 2.0 a); in the images a enlarges the "
        "necrotic habitat and roughens the texture of the viable habitat only",
    ),
    "mvi": Planted(
        "mvi_latent",
        "MVI latent m = (0.8 a + 1.2 u_m)/1.44 drives MVI (logit -0.45 + 1.8 m); in the images m "
        "raises arterial enhancement of the 0-10 mm peritumoral ring, margin irregularity and "
        "satellites, and interrupts the capsule",
    ),
    "early_recurrence": Planted(
        "er_linear_predictor",
        "early recurrence: logit -1.50 + 0.9 MVI + 0.8 a + 0.6 log2(D/30) + 0.5 [multiple] + "
        "0.35 (log10 AFP - 1.5) + 0.3 (AST - 40)/20 + 1.0 s; in the images a enlarges the "
        "necrotic habitat and roughens the viable texture, the satellite latent s shows as "
        "satellite nodules near the margin on a few slices",
    ),
    "proliferative": Planted(
        "prolif_latent",
        "proliferative latent p drives the label (logit -0.9 + 2.0 p); in the images p gives rim "
        "arterial enhancement and more necrosis; log10 AFP rises with p",
    ),
    "tace_response": Planted(
        None,
        "TACE response: logit 0.55 - 1.6 proliferative - 0.4 a - 0.4 log2(D/30) (no single latent)",
    ),
}

#: What each seed study should find on the planted cohort (docs/studies.md).
EXPECTED: dict[tuple[str, str], str] = {
    ("habitat_fusion", "whole_tumor"): "habitat fusion beats the whole-tumor model",
    ("deep_habitat_25d", "deep_whole_25d"): "the subregion networks beat the whole-tumor network",
    ("biregional", "intratumoral"): "bi-regional radiomics at least as good as one region",
    ("cr_dlr", "biregional"): "handcrafted + deep features at least as good as handcrafted alone",
    ("rc", "clinical"): "radiomics-clinical fusion (RC) beats the clinical model",
    ("dlrcr", "clinical"): "deep + radiomics + clinical fusion beats the clinical model",
    ("mil", "radiomics"): "MIL beats slice-free radiomics",
    ("rad_afp", "radscore"): "nomogram (rad-score + AFP) at least as good as the rad-score alone",
}

#: How far below its comparator an "at least as good as" primary may fall (a common
#: non-inferiority margin for AUCs; with two equally informed models the observed difference is
#: positive or negative by chance, so a strict "higher" would be a coin toss).
NONINFERIORITY_MARGIN = 0.05


def comparison_margin(expected: str) -> float:
    """The margin of the expected comparison: :data:`NONINFERIORITY_MARGIN` for "at least as
    good as", 0 (strictly higher) otherwise."""
    return NONINFERIORITY_MARGIN if "at least as good as" in expected else 0.0


COLUMNS = [
    "study",
    "label",
    "modality",
    "null_cohort",
    "planted_effect",
    "expected",
    "latent",
    "oracle_auc_true",
    "oracle_auc_held_out",
    "primary",
    "comparator",
    "scope",
    "n",
    "n_pos",
    "auc_primary",
    "auc_primary_lower",
    "auc_primary_upper",
    "auc_comparator",
    "auc_difference",
    "margin",
    "as_expected",
    "note",
]


def find_truth(cohort_sheet: PathLike, configured: PathLike | None = None) -> Path | None:
    """The truth table of the run: ``configured`` when given, else ``truth.tsv`` beside the
    cohort sheet when it exists (synthetic cohorts), else None (real cohorts)."""
    if configured:
        return Path(configured)
    candidate = Path(cohort_sheet).resolve().parent / "truth.tsv"
    return candidate if candidate.is_file() else None


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / (n1 n0), ties counted one half); NaN without both classes.

    Pairs with a missing label or score are dropped.
    """
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    keep = ~(np.isnan(y) | np.isnan(s))
    y, s = y[keep], s[keep]
    n1 = int((y == 1).sum())
    n0 = int((y == 0).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _is_null_cohort(truth: pd.DataFrame) -> bool:
    """Whether the truth table is the null cohort's (labels permuted, ``null = 1``)."""
    return "null" in truth and bool((pd.to_numeric(truth["null"], errors="coerce") == 1).any())


def _comparator(metrics: dict, comparisons: pd.DataFrame, primary: str) -> str | None:
    """The primary model's comparator: the reference of the study's key comparison when it
    tests the primary model, else of the first comparison of the primary model."""
    pair = (metrics.get("key_comparison") or {}).get("pair") or []
    if len(pair) == 2 and pair[0] == primary:
        return str(pair[1])
    if not len(comparisons):
        return None
    pairs = list(dict.fromkeys(zip(comparisons["model"], comparisons["reference"], strict=True)))
    for model, ref in pairs:
        if model == primary:
            return str(ref)
    return None


def _oracle_aucs(
    truth: pd.DataFrame, label: str, planted: Planted, modality: str | None, held: pd.DataFrame
) -> tuple[float, float]:
    """AUC of the generating latent against the true labels of the study's patients and against
    the labels the study saw on its held-out patients; NaN when the label has no latent."""
    if not (planted.latent and planted.latent in truth and f"{label}_true" in truth):
        return np.nan, np.nan
    in_study = truth[truth["modality"] == modality] if "modality" in truth else truth
    oracle_true = auc(in_study[f"{label}_true"].to_numpy(), in_study[planted.latent].to_numpy())
    labels = held.drop_duplicates("patient").set_index("patient")["label"]
    latent = truth.set_index("patient")[planted.latent].reindex(labels.index)
    return oracle_true, auc(labels.to_numpy(dtype=float), latent.to_numpy(dtype=float))


def _pooled_auc(held: pd.DataFrame, model: str | None) -> float:
    """AUC of ``model`` on the held-out patients pooled; NaN without a model."""
    if not model:
        return float("nan")
    sub = held[held["model"] == model]
    return auc(sub["label"].to_numpy(dtype=float), sub["score"].to_numpy(dtype=float))


def _pooled_ci(held: pd.DataFrame, model: str) -> tuple[float, float]:
    """DeLong 95 % CI of ``model``'s AUC on the held-out patients pooled; NaN when undefined."""
    sub = held[held["model"] == model]
    y = pd.to_numeric(sub["label"], errors="coerce").to_numpy(dtype=float)
    s = sub["score"].to_numpy(dtype=float)
    keep = ~(np.isnan(y) | np.isnan(s))
    y, s = y[keep], s[keep]
    if not ((y == 1).sum() >= 2 and (y == 0).sum() >= 2):
        return float("nan"), float("nan")
    _, lower, upper = auc_ci(y, s)
    return lower, upper


def _held_out_aucs(
    held: pd.DataFrame, primary: str, comparator: str | None
) -> tuple[str, int, int, float, float, tuple[float, float]]:
    """``("held_out", n, n_pos, auc_primary, auc_comparator, primary's CI)`` on the held-out
    patients pooled (``predictions.parquet``)."""
    first = held[held["model"] == primary].drop_duplicates("patient")
    labels = pd.to_numeric(first["label"], errors="coerce")
    return (
        "held_out",
        int(labels.notna().sum()),
        int((labels == 1).sum()),
        _pooled_auc(held, primary),
        _pooled_auc(held, comparator),
        _pooled_ci(held, primary),
    )


def _split_aucs(
    performance: pd.DataFrame, primary: str, comparator: str | None
) -> list[tuple[str, int, int, float, float]]:
    """``(split, n, n_pos, auc_primary, auc_comparator)`` per held-out split of the primary
    model (``performance.parquet``)."""
    perf = performance.set_index(["model", "split"])
    out = []
    for split in HELD_OUT_SPLITS:
        if (primary, split) not in perf.index:
            continue
        p = perf.loc[(primary, split)]
        c = perf.loc[(comparator, split)] if (comparator, split) in perf.index else None
        out.append(
            (
                split,
                int(p["n"]),
                int(p["n_pos"]),
                float(p["auc"]),
                float(c["auc"]) if c is not None else float("nan"),
            )
        )
    return out


def _scope_row(
    base: dict[str, object],
    note: str,
    scope: str,
    n: int,
    n_pos: int,
    a: float,
    b: float,
    ci: tuple[float, float] = (np.nan, np.nan),
) -> dict[str, object]:
    """One row of the table: the study's ``base`` columns and the AUCs of one scope."""
    defined = np.isfinite(a) and np.isfinite(b)
    margin = comparison_margin(str(base.get("expected", "")))
    return {
        **base,
        "scope": scope,
        "n": n,
        "n_pos": n_pos,
        "auc_primary": a,
        "auc_primary_lower": ci[0],
        "auc_primary_upper": ci[1],
        "auc_comparator": b,
        "auc_difference": a - b if defined else np.nan,
        "margin": margin,
        "as_expected": (bool(a >= b - margin) if margin else bool(a > b)) if defined else None,
        "note": note,
    }


def _study_rows(folder: Path, truth: pd.DataFrame) -> list[dict[str, object]]:
    """The rows of one study: held-out patients pooled, then each held-out split."""
    metrics = json.loads((folder / "metrics.json").read_text())
    study, label = metrics["study"], metrics["label"]
    primary = metrics["primary"]
    modality = metrics.get("modality")
    planted = PLANTED.get(label, Planted(None, "not planted by the generator"))
    comparisons = pd.read_parquet(folder / "comparisons.parquet")
    performance = pd.read_parquet(folder / "performance.parquet")
    predictions = pd.read_parquet(folder / "predictions.parquet")
    comparator = _comparator(metrics, comparisons, primary)
    held = predictions[predictions["split"].isin(HELD_OUT_SPLITS)]
    oracle_true, oracle_held = _oracle_aucs(truth, label, planted, modality, held)
    base = {
        "study": study,
        "label": label,
        "modality": modality,
        "null_cohort": _is_null_cohort(truth),
        "planted_effect": planted.effect,
        "expected": EXPECTED.get(
            (primary, comparator or ""), f"{primary} beats {comparator}" if comparator else ""
        ),
        "latent": planted.latent or "",
        "oracle_auc_true": oracle_true,
        "oracle_auc_held_out": oracle_held,
        "primary": primary,
        "comparator": comparator or "",
    }
    status = {m: info.get("status") for m, info in metrics.get("models", {}).items()}
    note = "; ".join(
        f"{m} {status[m]}" for m in (primary, comparator) if m and status.get(m) not in (None, "ok")
    )
    scopes = [
        _held_out_aucs(held, primary, comparator),
        *_split_aucs(performance, primary, comparator),
    ]
    return [_scope_row(base, note, *aucs) for aucs in scopes]


def planted_signal_table(
    study_dirs: Sequence[PathLike], truth_path: PathLike | None
) -> pd.DataFrame:
    """The planted-signal recovery table (module docstring); empty without a truth table."""
    if truth_path is None:
        log.info("planted signal: no truth.tsv (not a synthetic cohort): table left empty")
        return pd.DataFrame(columns=COLUMNS)
    truth = pd.read_csv(truth_path, sep="\t")
    rows: list[dict[str, object]] = []
    for d in study_dirs:
        folder = Path(d)
        needed = (
            "metrics.json",
            "performance.parquet",
            "comparisons.parquet",
            "predictions.parquet",
        )
        missing = [n for n in needed if not (folder / n).is_file()]
        if missing:
            log.warning("planted signal: study %s skipped, missing %s", folder.name, missing)
            continue
        rows += _study_rows(folder, truth)
    table = pd.DataFrame(rows, columns=COLUMNS)
    log.info("planted signal: %d studies, %d rows", table["study"].nunique(), len(table))
    return table


#: The recovery criteria: the primary model's pooled held-out AUC no more than this below the
#: oracle AUC of the generating latent on the same patients.
RECOVERY_MARGIN = 0.10


@dataclass(frozen=True)
class Verdict:
    """Whether one study recovered its planted effect (or, on the null cohort, stayed at chance).

    Attributes:
        study: the study.
        null_cohort: the labels were permuted (``hccrad synth --null``).
        recovered: every criterion held (planted cohort) / the CI includes 0.5 (null cohort);
            None when the table cannot tell (no latent for the label, no held-out patients).
        failures: the criteria that failed, in words.
        line: one sentence for the summary and the report.
    """

    study: str
    null_cohort: bool
    recovered: bool | None
    failures: tuple[str, ...]
    line: str


def _is_true(x: object) -> bool:
    """True for a true boolean cell (None and NaN, which pandas may hold for "undefined", are
    not)."""
    return x is not None and not (isinstance(x, float) and np.isnan(x)) and bool(x)


def _fmt(x: object) -> str:
    return "n/a" if x is None or not np.isfinite(float(x)) else f"{float(x):.2f}"


def _planted_failures(pooled: pd.Series, splits: pd.DataFrame) -> list[str]:
    """The recovery criteria (issue: primary within 0.10 of the oracle, CI above 0.5, the key
    comparison in the planted direction, both classes in every held-out split) that fail."""
    fails = []
    a, oracle = float(pooled["auc_primary"]), float(pooled["oracle_auc_held_out"])
    if not a >= oracle - RECOVERY_MARGIN:
        fails.append(
            f"AUC {_fmt(a)} more than {RECOVERY_MARGIN:.2f} below the oracle {_fmt(oracle)}"
        )
    if not float(pooled["auc_primary_lower"]) > 0.5:
        fails.append(f"95 % CI lower bound {_fmt(pooled['auc_primary_lower'])} not above 0.5")
    if pooled["comparator"] and not _is_true(pooled["as_expected"]):
        margin = float(pooled.get("margin", 0.0) or 0.0)
        within = f", margin {margin:.2f}" if margin else ""
        fails.append(
            f"key comparison against {pooled['comparator']} not in the planted direction "
            f"({_fmt(a)} vs {_fmt(pooled['auc_comparator'])}{within})"
        )
    present = splits[splits["n"] > 0]  # a split the design has no patient in is not judged
    one_class = present[(present["n_pos"] <= 0) | (present["n_pos"] >= present["n"])]
    if len(one_class):
        fails.append("split(s) with one class: " + ", ".join(one_class["scope"]))
    return fails


def _verdict(study: str, rows: pd.DataFrame) -> Verdict:
    """The verdict of one study's rows of the planted-signal table."""
    pooled_rows = rows[rows["scope"] == "held_out"]
    null = bool(rows["null_cohort"].iloc[0])
    if pooled_rows.empty or not rows["latent"].iloc[0] or int(pooled_rows["n"].iloc[0]) == 0:
        return Verdict(study, null, None, (), f"{study}: no planted latent or no held-out patient")
    pooled = pooled_rows.iloc[0]
    auc_text = (
        f"{pooled['primary']} AUC {_fmt(pooled['auc_primary'])} "
        f"(95 % CI {_fmt(pooled['auc_primary_lower'])}-{_fmt(pooled['auc_primary_upper'])}) "
        f"on {int(pooled['n'])} held-out patients"
    )
    if null:
        at_chance = bool(pooled["auc_primary_lower"] <= 0.5 <= pooled["auc_primary_upper"])
        fails = () if at_chance else ("the CI excludes 0.5 on permuted labels",)
        word = "at chance, as it should be" if at_chance else "NOT AT CHANCE on permuted labels"
        return Verdict(study, null, at_chance, fails, f"{study} (null cohort): {auc_text}: {word}")
    fails = tuple(_planted_failures(pooled, rows[rows["scope"] != "held_out"]))
    oracle = f"oracle {_fmt(pooled['oracle_auc_held_out'])}"
    if fails:
        line = f"{study}: planted effect NOT RECOVERED: {auc_text}, {oracle}; " + "; ".join(fails)
    else:
        line = f"{study}: planted effect recovered: {auc_text}, {oracle}; {pooled['expected']}"
    return Verdict(study, null, not fails, fails, line)


def verdicts(table: pd.DataFrame) -> list[Verdict]:
    """One :class:`Verdict` per study of a :func:`planted_signal_table`."""
    return [_verdict(str(study), rows) for study, rows in table.groupby("study", sort=False)]


def tally(found: Sequence[Verdict]) -> tuple[int, int]:
    """``(good, judged)``: studies recovered (on the null cohort: at chance) among those judged."""
    judged = [v for v in found if v.recovered is not None]
    return sum(bool(v.recovered) for v in judged), len(judged)
