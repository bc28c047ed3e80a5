"""Diagnostic: where a study loses the planted signal (synthetic cohort, a finished run).

Run on demand (not part of the test suite), after `make demo` or any run on a synthetic cohort:

    .venv/bin/python tests/bench/signal_ceiling.py --run DIR [--cohort DIR]
        [--overlay config/demo.yaml] [--studies mvi_biregional ...]

For each study and each of its pipeline models, the model's design (its blocks fused, exactly as
`run_study` builds it: `hccrad.studies.study_data`) on all of the study's analysed patients
(default; a network's features of its training patients come from a network that saw their
labels, so read a deep design's label columns with care) or on its held-out patients only
(`--patients held-out`: clean, but 30-60 patients make the cross-validation noisy), 5-fold
cross-validated (seed 0):

- `best rho`: the largest rank correlation of a single feature with the latent.
- `rho latent`, `AUC latent`: a ridge regression (alpha by inner CV) of the label's generating
  latent (`truth.tsv`, `hccrad.audit.planted.PLANTED`) on the standardised features: the
  rank correlation of the cross-validated prediction with the latent, and that prediction's AUC for
  the label. How much of the latent the features carry, told by the truth itself.
- `AUC labels`: an L2 logistic regression (C by inner CV) fitted on the labels: what a
  regularised linear model learns from the labels of ~80 % of these patients.
- `oracle`: the AUC of the latent itself for the study's labels.
- `held-out`: the run's pooled held-out AUC of the model (its `predictions.parquet`): what the
  study's own pipeline, trained on its training split only, achieved.

Read: `AUC latent` near the oracle and `AUC labels` far below it means the features hold the
signal and the labels of this many patients are too few to find it; `rho latent` near 0 means the
features do not carry it at all (e.g. a network that learned nothing). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow" / "lib"))

from hccrad.audit.planted import HELD_OUT_SPLITS, PLANTED, auc  # noqa: E402
from hccrad.config import SEED_STUDIES  # noqa: E402
from hccrad.overlay import parse_overlay  # noqa: E402
from hccrad.studies import load_study, load_tables, study_data, study_inputs  # noqa: E402


def _design(x: pd.DataFrame) -> np.ndarray:
    """Numeric features without missing values (median-filled) and without constant columns."""
    arr = x.apply(pd.to_numeric, errors="coerce").astype(float)
    arr = arr.fillna(arr.median()).fillna(0.0).to_numpy()
    return arr[:, arr.std(axis=0) > 0]


def ceiling_rows(
    run: Path, cohort: Path, overlay: Path | None, study: str, held_out_only: bool = False
) -> list[dict]:
    """One row per pipeline model of ``study`` (see the module docstring)."""
    delta = {}
    if overlay is not None:
        delta = parse_overlay(overlay, yaml.safe_load(overlay.read_text())).study(study)
    spec = load_study(ROOT / "config" / "studies" / f"{study}.yaml", override=delta)
    planted = PLANTED.get(spec.label)
    if planted is None or planted.latent is None:
        return []
    folder = run / "results" / "cohort" / "studies" / study
    cwd = os.getcwd()
    os.chdir(run)  # the study inputs are paths relative to the run's folder
    try:
        inputs = study_inputs(spec, str(cohort / "clinical.tsv"))
        # the checkpoints of networks trained end to end with a model's columns are no tables:
        # such a model's design here is its tabular columns
        tables = load_tables({k: v for k, v in inputs.items() if not k.startswith("backbone_")})
    finally:
        os.chdir(cwd)
    data, split = study_data(spec, tables, pd.read_parquet(folder / "splits.parquet"))
    truth = pd.read_csv(cohort / "truth.tsv", sep="\t", dtype={"patient": str})
    patients = data.y.index[split.isin(HELD_OUT_SPLITS)] if held_out_only else data.y.index
    latent = truth.set_index("patient")[planted.latent].reindex(patients).to_numpy(float)
    y = data.y.loc[patients].to_numpy(int)
    pred = pd.read_parquet(folder / "predictions.parquet")
    held = pred[pred["split"].isin(HELD_OUT_SPLITS)].dropna(subset=["label", "score"])
    rows = []
    for name, x in data.X.items():
        xs = _design(x.loc[patients])
        if xs.shape[1] == 0:  # e.g. a clinical block whose columns are constant here
            continue
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 20)))
        guess = cross_val_predict(ridge, xs, latent, cv=KFold(5, shuffle=True, random_state=0))
        logit = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=10, max_iter=5000, scoring="roc_auc")
        )
        prob = cross_val_predict(
            logit,
            xs,
            y,
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
            method="predict_proba",
        )[:, 1]
        mine = held[held["model"] == name]
        rows.append(
            {
                "study": study,
                "model": name,
                "patients": len(y),
                "features": xs.shape[1],
                "best rho": max(abs(spearmanr(xs[:, j], latent)[0]) for j in range(xs.shape[1])),
                "rho latent": spearmanr(guess, latent)[0],
                "AUC latent": auc(y, guess),
                "AUC labels": auc(y, prob),
                "oracle": auc(y, latent),
                "held-out": auc(mine["label"].to_numpy(float), mine["score"].to_numpy(float))
                if len(mine)
                else np.nan,
                "held-out n": len(mine),
                "split": ", ".join(f"{k} {v}" for k, v in split.value_counts().items()),
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="folder holding the run's results/")
    ap.add_argument("--cohort", type=Path, help="synthetic cohort (default RUN/resources/demo)")
    ap.add_argument("--overlay", type=Path, default=ROOT / "config" / "demo.yaml")
    ap.add_argument("--no-overlay", action="store_true", help="the full-scale study files")
    ap.add_argument("--studies", nargs="*", default=list(SEED_STUDIES))
    ap.add_argument("--patients", choices=["all", "held-out"], default="all")
    args = ap.parse_args()
    run = args.run.resolve()
    cohort = (args.cohort or run / "resources" / "demo").resolve()
    overlay = None if args.no_overlay else args.overlay.resolve()
    warnings.filterwarnings("ignore")
    held_out_only = args.patients == "held-out"
    rows = [r for s in args.studies for r in ceiling_rows(run, cohort, overlay, s, held_out_only)]
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
