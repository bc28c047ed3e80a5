"""Reader-scored radiological features of one synthetic patient (two readers).

The studies' radiologists score binary features on the images (tumor margin, necrosis,
hemorrhage, capsule, arterial peritumoral enhancement, cirrhosis; e.g. Zhao et al. 2024,
"Evaluation of MRI features"), and report the inter-reader agreement (Cohen's kappa). Here each
feature has a *true value* ``t`` — the image-generating value the phantom is drawn with
(:mod:`hccrad.synth.biology`), so a reader looks at what the image shows — and a threshold
``c``: the true state is ``t > c``. Reader ``r`` scores ``1[t + s_r * scale * z_r > c]`` with
``z_r`` standard normal from the patient's own ``readers`` stream, ``scale`` about the value's
standard deviation in the population and ``s_1 = 0.20`` (reader 1, the senior reader) and
``s_2 = 0.30`` (reader 2): the readers disagree near the threshold, with a Cohen's kappa of
about 0.77-0.86 per feature (about 0.83-0.95 for reader 1 against the truth).

Intratumoral hemorrhage is not rendered (the synthetic protocol has no T1WI / T2WI); its true
value is a latent drawn here, ``hemorrhage_latent = z_h + 4 (necrotic_fraction - 0.20)``
(larger necrotic tumors bleed more), written to ``truth.tsv``. Radiological cirrhosis reads the
patient's cirrhosis (0/1, rendered as a nodular liver surface and coarse texture) at threshold
0.5.

Documented in ``docs/synthetic_cohort.md`` ("Reader-scored features").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ReaderFeature:
    """One reader-scored binary feature.

    Attributes:
        column: Reader 1's clinical column (reader 2's is ``{column}_r2``).
        source: The true value read: a key of the patient's hidden values, or ``cirrhosis``
            (the clinical column).
        threshold: Present when the (noisy) value exceeds it.
        scale: Reader noise unit (about the population SD of the value).
    """

    column: str
    source: str
    threshold: float
    scale: float


#: The features, in draw order (append new ones at the end: each takes two draws, so the
#: earlier features of every patient stay unchanged).
READER_FEATURES: tuple[ReaderFeature, ...] = (
    ReaderFeature("nonsmooth_margin", "margin_irregularity", 0.10, 0.043),
    ReaderFeature("intratumoral_necrosis", "necrotic_fraction", 0.20, 0.115),
    ReaderFeature("intratumoral_hemorrhage", "hemorrhage_latent", 0.70, 1.10),
    ReaderFeature("capsule", "capsule_coverage", 0.50, 0.16),
    ReaderFeature("arterial_peritumoral_enhancement", "peritumoral_enhancement", 0.30, 0.163),
    ReaderFeature("radiological_cirrhosis", "cirrhosis", 0.50, 1.0),
)
#: Reader noise as a multiple of each feature's ``scale``: reader 1 (senior), reader 2.
READER_NOISE: tuple[float, float] = (0.20, 0.30)
#: Reader 2's column suffix.
READER2_SUFFIX = "_r2"


def reader_columns() -> tuple[str, ...]:
    """The clinical columns: each feature's reader-1 column, then its reader-2 column."""
    return tuple(c for f in READER_FEATURES for c in (f.column, f.column + READER2_SUFFIX))


def hemorrhage_latent(rng: np.random.Generator, hidden: Mapping[str, float]) -> float:
    """The true value of intratumoral hemorrhage (the first draw of the ``readers`` stream)."""
    return float(rng.standard_normal() + 4.0 * (hidden["necrotic_fraction"] - 0.20))


def reader_scores(
    rng: np.random.Generator, hidden: Mapping[str, float], clinical: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, int]]:
    """The hidden hemorrhage latent and both readers' scores of one patient.

    Args:
        rng: The patient's ``readers`` stream (``[seed, modality_code, index, 5]``).
        hidden: The patient's hidden values (:attr:`hccrad.synth.biology.Biology.hidden`).
        clinical: Its clinical row (for ``cirrhosis``).

    Returns:
        ``({"hemorrhage_latent": h}, {column: 0/1, ...})`` in :func:`reader_columns` order.
    """
    truth = {**hidden, "hemorrhage_latent": hemorrhage_latent(rng, hidden)}
    truth["cirrhosis"] = float(clinical["cirrhosis"])
    z = rng.standard_normal((len(READER_FEATURES), len(READER_NOISE)))
    scores: dict[str, int] = {}
    for f, zf in zip(READER_FEATURES, z, strict=True):
        value = float(truth[f.source])
        noisy = [value + s * f.scale * zr for s, zr in zip(READER_NOISE, zf, strict=True)]
        scores[f.column] = int(noisy[0] > f.threshold)
        scores[f.column + READER2_SUFFIX] = int(noisy[1] > f.threshold)
    return {"hemorrhage_latent": truth["hemorrhage_latent"]}, scores
