"""Cohen's kappa (hccrad.stats.agreement.cohen_kappa) against its closed form, scikit-learn and
statsmodels (the Fleiss-Cohen-Everitt standard errors of SAS PROC FREQ AGREE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

from hccrad.stats.agreement import cohen_kappa


def _pairs(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reader scores with the given cross-table (row: reader 1, column: reader 2)."""
    r1, r2 = [], []
    for i, j in np.ndindex(*table.shape):
        r1 += [i] * int(table[i, j])
        r2 += [j] * int(table[i, j])
    return np.array(r1), np.array(r2)


def test_two_by_two_closed_form() -> None:
    # a = both present, b = reader 1 only, c = reader 2 only, d = both absent
    a, b, c, d = 40, 6, 9, 45
    n = a + b + c + d
    r1, r2 = _pairs(np.array([[d, b], [c, a]]))
    res = cohen_kappa(r1, r2)
    p_o = (a + d) / n
    p_e = ((a + b) * (a + c) + (c + d) * (b + d)) / n**2
    assert res.n == n and res.categories == 2
    assert res.observed == pytest.approx(p_o) and res.expected == pytest.approx(p_e)
    # kappa of a 2 x 2 table: 2 (ad - bc) / ((a + b)(b + d) + (a + c)(c + d))
    closed = 2 * (a * d - b * c) / ((a + b) * (b + d) + (a + c) * (c + d))
    assert res.kappa == pytest.approx(closed, abs=1e-12)
    assert res.kappa == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12)
    assert res.lower < res.kappa < res.upper and res.p < 1e-6


@pytest.mark.parametrize("k", [2, 3, 4])
def test_matches_sklearn_and_statsmodels(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(5):
        r1 = rng.integers(0, k, 90)
        r2 = np.where(rng.uniform(size=90) < 0.65, r1, rng.integers(0, k, 90))
        res = cohen_kappa(r1, r2)
        assert res.kappa == pytest.approx(cohen_kappa_score(r1, r2), abs=1e-12)
        table = np.zeros((k, k))
        np.add.at(table, (r1, r2), 1)
        ref = sm_kappa(table)  # 95 % interval
        assert res.se == pytest.approx(ref["std_kappa"], rel=1e-10)
        assert res.se0 == pytest.approx(ref["std_kappa0"], rel=1e-10)
        assert res.z == pytest.approx(ref["z_value"], rel=1e-10)
        assert res.p == pytest.approx(ref["pvalue_two_sided"], rel=1e-8, abs=1e-300)
        assert (res.lower, res.upper) == pytest.approx((ref["kappa_low"], ref["kappa_upp"]))
        narrow = cohen_kappa(r1, r2, level=0.90)
        assert narrow.upper - narrow.kappa == pytest.approx(1.6448536 * res.se, rel=1e-6)


def test_missing_pairs_labels_and_degenerate_cases() -> None:
    r1 = ["yes", "no", None, "yes", "no", "yes", float("nan")]
    r2 = ["yes", "no", "yes", "no", "no", "yes", "no"]
    res = cohen_kappa(r1, r2)
    assert res.n == 5  # pairs with a missing score dropped
    assert res.kappa == pytest.approx(cohen_kappa_score(r1[:2] + r1[3:6], r2[:2] + r2[3:6]))
    # perfect agreement
    assert cohen_kappa([0, 1, 1, 0], [0, 1, 1, 0]).kappa == pytest.approx(1.0)
    # 0/1 integers and 0.0/1.0 floats are the same categories
    assert cohen_kappa([0, 1, 1, 0], [0.0, 1.0, 0.0, 0.0]).categories == 2
    # one category for everyone: chance agreement 1, kappa undefined
    same = cohen_kappa([1, 1, 1], [1, 1, 1])
    assert math.isnan(same.kappa) and "one category" in same.note and same.observed == 1.0
    none = cohen_kappa([None, 1], [0, None])
    assert none.n == 0 and math.isnan(none.kappa) and none.note
    with pytest.raises(ValueError, match="lengths"):
        cohen_kappa([0, 1], [0])
    with pytest.raises(ValueError, match="level"):
        cohen_kappa([0, 1], [0, 1], level=1.5)
