"""How large the synthetic demo cohort must be for its held-out AUCs to recover the planted effects.

For each seed study: the generator's population oracle AUC (its label against the true latent,
on ``--population`` patients drawn without images) and prevalence; the held-out size that puts
the 95 % CI above 0.5 and the estimate within 0.10 of the oracle with 80 % power
(:func:`hccrad.stats.power.held_out_size`, taking the primary model's AUC as the oracle's minus
``--shortfall``, so that the estimate must not fall more than ``0.10 - shortfall`` below it);
and, from a finished run's splits (``results/cohort/studies/*/splits.parquet``:
the share of the modality's patients that the study holds out), the patients per modality the
demo cohort needs. Prints a Markdown table (docs/synthetic_cohort.md).

    python tests/bench/power_demo_cohort.py --results results --per-modality 48
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hccrad.audit.planted import PLANTED
from hccrad.stats.power import held_out_size
from hccrad.synth.cohort import sample_patient_biology

STUDIES = {  # study: (label, modality)
    "habitat_grade": ("grade_pd", "MR"),
    "mvi_biregional": ("mvi", "MR"),
    "er_fusion": ("early_recurrence", "MR"),
    "mil_er": ("early_recurrence", "CT"),
    "proliferative_tace": ("proliferative", "CT"),
}


def _population(modality: str, n: int, seed: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        b = sample_patient_biology(modality, i, seed=seed)
        rows.append({**b.hidden, **{k: b.clinical[k] for k in ("grade_pd", "mvi",
                                                             "early_recurrence",
                                                             "proliferative")}})
    return pd.DataFrame(rows)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _held_out_share(results: Path, study: str, per_modality: int) -> float:
    splits = pd.read_parquet(results / "cohort" / "studies" / study / "splits.parquet")
    return float((splits["split"] != "train").sum()) / per_modality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--per-modality", type=int, default=48)
    ap.add_argument("--population", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--shortfall", type=float, default=0.05)
    args = ap.parse_args()
    pops = {m: _population(m, args.population, args.seed) for m in ("MR", "CT")}
    print(
        "| study | label | oracle AUC | prevalence | held-out n (detect / not more than 0.10 "
        "below the oracle) | held-out share of the modality | patients per modality |"
    )
    print("|---|---|---|---|---|---|---|")
    for study, (label, modality) in STUDIES.items():
        pop = pops[modality]
        y = pop[label].to_numpy(dtype=int)
        oracle = _auc(y, pop[PLANTED[label].latent].to_numpy())
        size = held_out_size(
            oracle - args.shortfall, float(y.mean()), margin=0.10 - args.shortfall, sided=1
        )
        share = _held_out_share(args.results, study, args.per_modality)
        need = int(np.ceil(size.n / share))
        print(f"| {study} | {label} | {oracle:.3f} | {y.mean():.2f} | {size.n} "
              f"({size.detect_n} / {size.precise_n}) | {share:.2f} | {need} |")


if __name__ == "__main__":
    main()
