"""AUC by center and scanner subgroup, for the study's report page.

``by_center.parquet`` (:func:`hccrad.studies.evaluation.by_group_table`) holds, per model,
scope (all evaluated patients, the held-out ones, each split) and subgroup column (the study's
``evaluation.by``: center, field strength, vendor), each value's AUC with its DeLong 95 % CI
and the unpaired DeLong test of that AUC against the first evaluable value's (the reference;
:func:`hccrad.stats.roc.delong_unpaired_test`, as pROC's ``roc.test(paired = FALSE)``: each
sample's DeLong variance, no covariance term). One table per subgroup column.
"""

from __future__ import annotations

import pandas as pd

from hccrad.report.format import DASH, fmt_auc, fmt_p, split_label
from hccrad.report.studies import StudyResult

#: Reader-facing names of the scopes that are not a split.
SCOPE_NAMES = {"all": "all evaluated", "held_out": "held-out splits"}

COLUMNS = (
    "model", "patients", "subgroup", "n", "cases", "AUC (95 % CI)", "compared with", "DeLong P",
    "note",
)  # fmt: skip


def scope_label(scope: str) -> str:
    return SCOPE_NAMES.get(scope, split_label(scope))


def shown_models(result: StudyResult) -> list[str]:
    """The models whose subgroups the page shows: the primary and the other model of the key
    comparison (every model when the table has neither); ``by_center.parquet`` holds all."""
    table = result.by_center
    present = set() if table is None else set(table["model"])
    key = [m for m in (result.primary, *(result.key_pair or ())) if m in present]
    return list(dict.fromkeys(key)) or [m for m in result.models if m in present]


def subgroup_tables(result: StudyResult) -> dict[str, pd.DataFrame]:
    """Subgroup column (``center``, ``field strength``, ...) -> its table: one row per model
    of :func:`shown_models` (primary first), scope and value, in the file's order within a
    model. ``compared with`` is the reference value (``reference`` on the reference's own row,
    an en dash on a subgroup that cannot be evaluated); the note column is left out when empty.
    Empty without a subgroup table."""
    table = result.by_center
    if table is None or table.empty:
        return {}
    table = table[table["model"].isin(shown_models(result))]
    order = {m: i for i, m in enumerate(result.models)}
    rank = table["model"].map(lambda m: order.get(m, len(order)))
    table = table.assign(_rank=rank).sort_values("_rank", kind="stable")
    out = {}
    for by in dict.fromkeys(table["by"]):
        rows = [_row(r) for _, r in table[table["by"] == by].iterrows()]
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        if not frame["note"].astype(bool).any():
            frame = frame.drop(columns=["note"])
        out[str(by).replace("_", " ")] = frame
    return out


def _row(r: pd.Series) -> dict[str, object]:
    note = str(r.get("note") or "")
    reference = str(r.get("reference") or "")
    if not reference:
        reference = DASH if note else "reference"
    return {
        "model": r["model"],
        "patients": scope_label(str(r["scope"])),
        "subgroup": str(r["value"]),
        "n": int(r["n"]),
        "cases": int(r["n_pos"]),
        "AUC (95 % CI)": fmt_auc(r["auc"], r["auc_lower"], r["auc_upper"]),
        "compared with": reference,
        "DeLong P": fmt_p(r.get("delong_p")),
        "note": note,
    }
