"""The study's deep networks scored on their own, per split, for the study's report page.

Each deep model of a study writes ``deep/{model}/split_metrics.parquet``
(:func:`hccrad.deep.split_metrics.split_metrics`): the network's own probability scored per
split, AUC with DeLong 95 % CI, and accuracy, sensitivity, specificity, PPV, NPV at Youden's
cut-off on the training split's samples. Slice-level (MIL) networks are scored per slice
against the patient's label (the MIL study's slice-level table), the others per patient. A
bundle of networks (one per habitat subregion or per phase) scores each member network: its
rows carry the member (``h{i}`` or the phase), shown as ``model (member)``. A model without a
labelled patient scored has an empty table, and the page says so.
"""

from __future__ import annotations

import pandas as pd

from hccrad.report.format import fmt_auc, fmt_num, split_label
from hccrad.report.studies import StudyResult

#: Reader-facing names of ``split_metrics.parquet``'s ``level`` (the unit that is scored).
LEVEL_NAMES = {"instance": "slice", "patient": "patient"}

COLUMNS = (
    "network", "split", "scored per", "patients", "n", "cases", "AUC (95 % CI)", "cut-off",
    "accuracy", "sensitivity", "specificity", "PPV", "NPV",
)  # fmt: skip

_RATES = (("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
          ("specificity", "specificity"), ("ppv", "PPV"), ("npv", "NPV"))  # fmt: skip


def network_table(result: StudyResult) -> pd.DataFrame:
    """One row per deep model and split (models in config order, splits as in their tables):
    the unit scored (patient or slice), patients, samples scored (``n``) and positive samples
    (``cases``: for slices, the slices of case patients), AUC (95 % CI), training cut-off and
    the rates at it."""
    rows = []
    for model, table in result.networks.items():
        for _, r in table.iterrows():
            level = str(r["level"])
            member = r.get("member")
            rows.append(
                {
                    "network": f"{model} ({member})" if isinstance(member, str) else model,
                    "split": split_label(str(r["split"])),
                    "scored per": LEVEL_NAMES.get(level, level),
                    "patients": int(r["n_patients"]),
                    "n": int(r["n"]),
                    "cases": int(r["positives"]),
                    "AUC (95 % CI)": fmt_auc(r["auc"], r["auc_lower"], r["auc_upper"]),
                    "cut-off": fmt_num(r["cutoff"], 3),
                    **{name: fmt_num(r[col]) for col, name in _RATES},
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def network_notes(result: StudyResult) -> list[str]:
    """One sentence per deep model whose table is empty."""
    return [
        f"{model}: no per-split metrics (no labelled patient scored)"
        for model, table in result.networks.items()
        if table.empty
    ]
