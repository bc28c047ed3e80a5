"""Preoperative blood counts of one synthetic patient (the inflammation indices' inputs).

Neutrophil, lymphocyte, monocyte and platelet counts (10^9/L), log-normal with medians 3.3,
1.55, 0.42 and 185 (platelets 125 with cirrhosis: hypersplenism) and log-SDs 0.35, 0.38, 0.35,
0.35, drawn from the patient's own ``blood`` stream. They carry no planted signal: the
inflammation-based indices (NLR, PLR, LMR) rank early recurrence at about chance in Zhao et al.
2024 (AUC 0.47-0.56), and none of the hidden variables enters them. Their ratios have medians
of about NLR 2.1, PLR 80-120, LMR 3.7. Documented in ``docs/synthetic_cohort.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Column -> (median without cirrhosis, median with cirrhosis, log-SD, decimals); 10^9/L.
BLOOD_COUNTS: dict[str, tuple[float, float, float, int]] = {
    "neutrophils": (3.3, 3.3, 0.35, 2),
    "lymphocytes": (1.55, 1.55, 0.38, 2),
    "monocytes": (0.42, 0.42, 0.35, 2),
    "platelets": (185.0, 125.0, 0.35, 0),
}


def blood_counts(rng: np.random.Generator, clinical: Mapping[str, Any]) -> dict[str, float | int]:
    """The patient's counts, rounded as written (platelets whole), in :data:`BLOOD_COUNTS`
    order; never zero (a ratio's denominator): at least the smallest written value.

    Args:
        rng: The patient's ``blood`` stream (``[seed, modality_code, index, 6]``).
        clinical: Its clinical row (for ``cirrhosis``).
    """
    z = rng.standard_normal(len(BLOOD_COUNTS))
    cirrhosis = bool(clinical["cirrhosis"])
    out: dict[str, float | int] = {}
    for zi, (col, (median, median_cirrhosis, sd, decimals)) in zip(
        z, BLOOD_COUNTS.items(), strict=True
    ):
        m = median_cirrhosis if cirrhosis else median
        value = max(round(math.exp(math.log(m) + sd * float(zi)), decimals), 10.0**-decimals)
        out[col] = int(value) if decimals == 0 else value
    return out
