"""Sample size for a held-out AUC: how many patients a test set needs for its AUC to mean anything.

The standard error of an AUC estimated on ``n_pos`` cases and ``n_neg`` controls is Hanley and
McNeil's (Radiology 1982; 143: 29-36, eq. 2)::

    SE^2 = [A (1 - A) + (n_pos - 1)(Q1 - A^2) + (n_neg - 1)(Q2 - A^2)] / (n_pos n_neg)
    Q1 = A / (2 - A),   Q2 = 2 A^2 / (1 + A)

Two questions a study's held-out set must answer, with probability ``power`` when the model's
true AUC is ``A`` (normal approximation of the AUC estimate):

* **detection**: its two-sided ``level`` confidence interval lies above 0.5. As in Obuchowski's
  sample-size formula (Radiology 2005; 237: 389-396), the interval's half-width is taken at the
  null (``SE_0``, the SE at ``A = 0.5``: an estimate near the boundary has about that spread) and
  the estimate's spread at ``A``: ``A - 0.5 >= z_{(1+level)/2} SE_0 + z_power SE``. (Taking
  ``SE`` for both under-powers: 0.73 instead of 0.80 in simulation at ``A = 0.75``);
* **precision**: the estimate is within ``margin`` of ``A``, i.e.
  ``z_{(1+power)/2} SE <= margin`` (two-sided), or not more than ``margin`` below it,
  ``z_power SE <= margin`` (``sided=1``).

:func:`held_out_size` returns the smallest held-out size (cases at the given prevalence) that
answers both. The workflow uses it to size the synthetic demo cohort from the generator's
effect sizes (``docs/synthetic.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from hccrad.errors import InputError

__all__ = ["HeldOutSize", "auc_se", "held_out_size"]


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil standard error of an AUC from ``n_pos`` cases and ``n_neg`` controls."""
    if not 0.0 < auc < 1.0:
        raise InputError(f"AUC must be in (0, 1), got {auc}")
    if n_pos < 1 or n_neg < 1:
        raise InputError(f"need at least one case and one control, got {n_pos} and {n_neg}")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (
        auc * (1.0 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    ) / (n_pos * n_neg)
    return math.sqrt(var)


@dataclass(frozen=True)
class HeldOutSize:
    """Smallest held-out set for one study's AUC.

    Attributes:
        n: patients in the held-out set.
        n_pos: cases among them (``round(prevalence * n)``, at least 1).
        se: Hanley-McNeil SE of the AUC at that size.
        detect_n: size needed for detection alone (CI above 0.5 with probability ``power``).
        precise_n: size needed for precision alone (within ``margin`` with probability ``power``).
    """

    n: int
    n_pos: int
    se: float
    detect_n: int
    precise_n: int


def _cases(n: int, prevalence: float) -> tuple[int, int]:
    n_pos = min(n - 1, max(1, round(prevalence * n)))
    return n_pos, n - n_pos


def _smallest(ok, n_max: int) -> int:
    """Smallest n in [2, n_max] with ok(n) (ok is monotone in n for these criteria)."""
    for n in range(2, n_max + 1):
        if ok(n):
            return n
    raise InputError(f"no held-out size up to {n_max} reaches the target")


def held_out_size(
    auc: float,
    prevalence: float,
    *,
    margin: float = 0.10,
    power: float = 0.8,
    level: float = 0.95,
    sided: int = 2,
    n_max: int = 100_000,
) -> HeldOutSize:
    """Smallest held-out size whose AUC detects ``auc`` and estimates it within ``margin``.

    Args:
        auc: the model's true AUC (for a planted effect: the oracle AUC of the true latent).
        prevalence: share of cases in the held-out set.
        margin: largest acceptable distance of the estimate from ``auc``.
        power: probability with which both criteria must hold.
        level: confidence level of the interval that must lie above 0.5.
        sided: 2: the estimate within ``margin`` either side of ``auc``; 1: not more than
            ``margin`` below it.
        n_max: search limit.

    Returns:
        :class:`HeldOutSize` (``n`` is the larger of the two criteria's sizes).
    """
    if not 0.5 < auc < 1.0:
        raise InputError(f"a detectable AUC is in (0.5, 1), got {auc}")
    if not 0.0 < prevalence < 1.0:
        raise InputError(f"prevalence must be in (0, 1), got {prevalence}")
    if not (0.0 < power < 1.0 and 0.0 < level < 1.0 and margin > 0.0):
        raise InputError("power and level must be in (0, 1) and margin positive")
    if sided not in (1, 2):
        raise InputError(f"sided must be 1 or 2, got {sided}")
    z_level = stats.norm.ppf(0.5 + level / 2.0)
    z_power = stats.norm.ppf(power)
    z_margin = stats.norm.ppf(0.5 + power / 2.0) if sided == 2 else z_power

    def se(n: int) -> float:
        return auc_se(auc, *_cases(n, prevalence))

    def se_null(n: int) -> float:
        return auc_se(0.5, *_cases(n, prevalence))

    detect_n = _smallest(lambda n: auc - 0.5 >= z_level * se_null(n) + z_power * se(n), n_max)
    precise_n = _smallest(lambda n: z_margin * se(n) <= margin, n_max)
    n = max(detect_n, precise_n)
    n_pos, _ = _cases(n, prevalence)
    return HeldOutSize(n=n, n_pos=n_pos, se=se(n), detect_n=detect_n, precise_n=precise_n)
