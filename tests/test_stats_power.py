"""Held-out sample size for an AUC (hccrad.stats.power) against simulation.

Hanley and McNeil's SE is exact for the negative-exponential model (controls ~ Exp(1), cases ~
Exp(lam), AUC = 1 / (1 + lam)); the simulations below draw from it and measure the empirical
AUC's spread and the DeLong interval's coverage independently of the formula.
"""

from __future__ import annotations

import numpy as np
import pytest

from hccrad.errors import InputError
from hccrad.stats import auc_ci
from hccrad.stats.power import auc_se, held_out_size


def _draw(rng: np.random.Generator, auc: float, n_pos: int, n_neg: int):
    lam = 1.0 / auc - 1.0
    scores = np.concatenate([rng.exponential(1.0 / lam, n_pos), rng.exponential(1.0, n_neg)])
    return np.r_[np.ones(n_pos), np.zeros(n_neg)], scores


def _mw_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float((pos[:, None] > neg[None, :]).mean())


@pytest.mark.parametrize(("auc", "n_pos", "n_neg"), [(0.8, 20, 40), (0.7, 15, 15), (0.9, 10, 50)])
def test_se_matches_the_spread_of_simulated_aucs(auc, n_pos, n_neg):
    rng = np.random.default_rng(3)
    sims = [_mw_auc(*_draw(rng, auc, n_pos, n_neg)) for _ in range(4000)]
    assert np.mean(sims) == pytest.approx(auc, abs=0.005)
    # SD of 4,000 draws: relative Monte-Carlo error about 1.1 %
    assert np.std(sims, ddof=1) == pytest.approx(auc_se(auc, n_pos, n_neg), rel=0.04)


def test_se_closed_form_values():
    # A = 0.5: Q1 = 1/3, Q2 = 1/3, SE^2 = (1/4 + (n1 + n2 - 2) / 12) / (n1 n2) (Mann-Whitney null)
    assert auc_se(0.5, 10, 10) == pytest.approx(np.sqrt((0.25 + 18 / 12) / 100))
    assert auc_se(0.5, 10, 10) == pytest.approx(np.sqrt((10 + 10 + 1) / (12 * 10 * 10)))


def test_held_out_size_gives_the_asked_power():
    auc, prev = 0.75, 0.35
    size = held_out_size(auc, prev, margin=0.10, power=0.8)
    assert size.n == max(size.detect_n, size.precise_n)
    rng = np.random.default_rng(11)
    n_pos = size.n_pos
    n_neg = size.n - n_pos

    def detected(n_pos: int, n_neg: int) -> float:
        hits = [auc_ci(*_draw(rng, auc, n_pos, n_neg))[1] > 0.5 for _ in range(1500)]
        return float(np.mean(hits))

    at_detect = detected(*_split(size.detect_n, prev))
    assert at_detect == pytest.approx(0.8, abs=0.05)
    # half the size loses most of the power
    assert detected(*_split(size.detect_n // 2, prev)) < 0.65
    close = [
        abs(_mw_auc(*_draw(rng, auc, n_pos, n_neg)) - auc) < 0.10 for _ in range(1500)
    ]
    assert np.mean(close) >= 0.8 - 0.04


def _split(n: int, prev: float) -> tuple[int, int]:
    n_pos = max(1, round(prev * n))
    return n_pos, n - n_pos


def test_one_sided_precision():
    auc, prev = 0.78, 0.33
    size = held_out_size(auc, prev, margin=0.07, sided=1, power=0.8)
    assert size.precise_n < held_out_size(auc, prev, margin=0.07, sided=2).precise_n
    rng = np.random.default_rng(5)
    n_pos, n_neg = _split(size.precise_n, prev)
    above = [_mw_auc(*_draw(rng, auc, n_pos, n_neg)) > auc - 0.07 for _ in range(2000)]
    assert np.mean(above) == pytest.approx(0.8, abs=0.04)


def test_stronger_effects_need_fewer_patients():
    sizes = [held_out_size(a, 0.4).n for a in (0.65, 0.75, 0.85)]
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.parametrize("bad", [dict(auc=0.5, prevalence=0.3), dict(auc=0.8, prevalence=0.0)])
def test_bad_arguments(bad):
    with pytest.raises(InputError):
        held_out_size(**bad)
